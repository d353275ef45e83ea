#include "train/bootstrap.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "core/error.h"

namespace sinklab::train {

namespace {

using Clock = std::chrono::steady_clock;

// Closes a socket descriptor on scope exit.
struct Socket {
  int fd = -1;
  explicit Socket(int f) : fd(f) {}
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
};

bool send_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
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
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Rank 0: accept world_size - 1 connections and send each the length-prefixed blob.
void serve(const LaunchEnv& env, const std::string& blob, double timeout_s) {
  Socket listener(::socket(AF_INET, SOCK_STREAM, 0));
  SINKLAB_CHECK(listener.fd >= 0, IOError, "rank 0: socket() failed: " << std::strerror(errno),
                "check the host's network stack");
  const int yes = 1;
  ::setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(env.id_port));
  SINKLAB_CHECK(::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0,
                IOError,
                "rank 0: cannot listen on port " << env.id_port << " for the NCCL id: "
                                                 << std::strerror(errno),
                "set SINKLAB_ID_PORT to a free port (default MASTER_PORT + 1), or use "
                "SINKLAB_ID_FILE on a shared file system");
  SINKLAB_CHECK(::listen(listener.fd, 64) == 0, IOError,
                "rank 0: listen() on port " << env.id_port << ": " << std::strerror(errno),
                "set SINKLAB_ID_PORT to a free port");
  const auto t0 = Clock::now();
  const uint64_t size = blob.size();
  for (int served = 1; served < env.world_size;) {
    pollfd p{listener.fd, POLLIN, 0};
    const double left = timeout_s - seconds_since(t0);
    SINKLAB_CHECK(left > 0, IOError,
                  "rank 0: only " << served - 1 << " of " << env.world_size - 1
                                  << " ranks fetched the NCCL id from port " << env.id_port
                                  << " within " << timeout_s << " s",
                  "a rank failed to start or cannot reach " + env.master_addr +
                      ": check its log, MASTER_ADDR and firewalls");
    if (::poll(&p, 1, static_cast<int>(std::min(left, 1.0) * 1000)) <= 0) continue;
    Socket peer(::accept(listener.fd, nullptr, nullptr));
    if (peer.fd < 0) continue;
    if (send_all(peer.fd, &size, sizeof size) && send_all(peer.fd, blob.data(), blob.size()))
      ++served;
  }
}

// Other ranks: connect to master_addr:id_port (retrying while rank 0 starts) and read the blob.
std::string fetch(const LaunchEnv& env, double timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(env.id_port);
  const auto t0 = Clock::now();
  std::string last_error = "no attempt";
  while (seconds_since(t0) < timeout_s) {
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(env.master_addr.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      last_error = std::string("cannot resolve the address: ") + gai_strerror(rc);
    } else {
      Socket s(::socket(found->ai_family, found->ai_socktype, found->ai_protocol));
      if (s.fd >= 0 && ::connect(s.fd, found->ai_addr, found->ai_addrlen) == 0) {
        ::freeaddrinfo(found);
        uint64_t size = 0;
        std::string blob;
        if (recv_all(s.fd, &size, sizeof size) && size < (1u << 20)) {
          blob.resize(size);
          if (recv_all(s.fd, blob.data(), size)) return blob;
        }
        last_error = "the connection closed before the id arrived";
      } else {
        last_error = std::strerror(errno);
        ::freeaddrinfo(found);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  SINKLAB_FAIL(IOError,
               "rank " << env.rank << ": no NCCL id from rank 0 at " << env.master_addr << ":"
                       << env.id_port << " within " << timeout_s << " s (" << last_error << ")",
               "check that rank 0 started, MASTER_ADDR names its host and the port is open "
               "(SINKLAB_ID_PORT), or use SINKLAB_ID_FILE on a shared file system");
}

void write_file(const LaunchEnv& env, const std::string& blob) {
  const std::string tmp = env.id_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(blob.data(), static_cast<std::streamsize>(blob.size()));
    SINKLAB_CHECK(out.good(), IOError, "rank 0: cannot write the NCCL id to " << tmp,
                  "SINKLAB_ID_FILE must name a writable path on a file system all ranks see");
  }
  std::filesystem::rename(tmp, env.id_file);  // readers see all of it or nothing
}

std::string poll_file(const LaunchEnv& env, double timeout_s) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < timeout_s) {
    std::ifstream in(env.id_file, std::ios::binary);
    if (in) return std::string(std::istreambuf_iterator<char>(in), {});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  SINKLAB_FAIL(IOError,
               "rank " << env.rank << ": " << env.id_file << " did not appear within "
                       << timeout_s << " s",
               "rank 0 writes it: check its log, and that SINKLAB_ID_FILE is on a file system "
               "every rank sees (and was removed before the job started)");
}

}  // namespace

std::string share_from_rank0(const LaunchEnv& env, const std::string& blob, double timeout_s) {
  if (env.world_size <= 1) return blob;
  if (!env.id_file.empty()) {
    if (env.rank == 0) {
      write_file(env, blob);
      return blob;
    }
    return poll_file(env, timeout_s);
  }
  if (env.rank == 0) {
    serve(env, blob, timeout_s);
    return blob;
  }
  return fetch(env, timeout_s);
}

}  // namespace sinklab::train
