#include "train/dist/socket.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "train/phase_clock.h"

namespace sinklab::train {

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

bool send_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool recv_all(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

Socket listen_on(int port, const std::string& who, const std::string& hint) {
  Socket listener(::socket(AF_INET, SOCK_STREAM, 0));
  SINKLAB_CHECK(listener.valid(), IOError, who << ": socket() failed: " << std::strerror(errno),
                "check the host's network stack");
  const int yes = 1;
  ::setsockopt(listener.fd(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  SINKLAB_CHECK(::bind(listener.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0,
                IOError, who << ": cannot listen on port " << port << ": " << std::strerror(errno),
                hint);
  SINKLAB_CHECK(::listen(listener.fd(), 64) == 0, IOError,
                who << ": listen() on port " << port << ": " << std::strerror(errno), hint);
  return listener;
}

Socket accept_within(const Socket& listener, double timeout_s) {
  pollfd p{listener.fd(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0) return Socket();
  Socket peer(::accept(listener.fd(), nullptr, nullptr));
  if (peer.valid()) {
    const int yes = 1;
    ::setsockopt(peer.fd(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  }
  return peer;
}

Socket connect_retrying(const std::string& addr, int port, double timeout_s, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const std::string service = std::to_string(port);
  const auto t0 = Clock::now();
  error = "no attempt";
  do {
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(addr.c_str(), service.c_str(), &hints, &found);
    if (rc != 0) {
      error = std::string("cannot resolve the address: ") + gai_strerror(rc);
    } else {
      Socket s(::socket(found->ai_family, found->ai_socktype, found->ai_protocol));
      const bool connected = s.valid() && ::connect(s.fd(), found->ai_addr, found->ai_addrlen) == 0;
      if (!connected) error = std::strerror(errno);
      ::freeaddrinfo(found);
      if (connected) {
        const int yes = 1;
        ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        return s;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (seconds_since(t0) < timeout_s);
  return Socket();
}

void set_timeouts(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void shutdown_both(const Socket& s) {
  if (s.valid()) ::shutdown(s.fd(), SHUT_RDWR);
}

}  // namespace sinklab::train
