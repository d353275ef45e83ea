// Blocking TCP sockets for the launch-time exchanges of a multi-process job (the NCCL id in
// train/bootstrap, the CPU collectives in train/tcp_collective): an owning descriptor, whole-
// buffer send/receive, a listener on a port and a client that retries while its server starts.
#pragma once
#include <cstddef>
#include <string>

namespace sinklab::train {

// Owns a socket descriptor; closes it on destruction. Movable, not copyable.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// All n bytes, or false (peer closed, error, or the receive timeout set on the socket).
bool send_all(int fd, const void* data, size_t n);
bool recv_all(int fd, void* data, size_t n);

// A listener on `port` at every address. Throws IOError naming `who`, the port and `hint`.
Socket listen_on(int port, const std::string& who, const std::string& hint);

// Waits up to timeout_s for one connection on `listener` (invalid Socket on timeout).
Socket accept_within(const Socket& listener, double timeout_s);

// Connects to addr:port, retrying every 100 ms until timeout_s; an invalid Socket on failure,
// with the last reason in `error`.
Socket connect_retrying(const std::string& addr, int port, double timeout_s, std::string& error);

// Fails sends and receives on fd that block longer than seconds (send_all / recv_all then
// return false): a hung peer cannot hold this rank forever.
void set_timeouts(int fd, double seconds);

// Ends both directions of s at once: a thread blocked on it returns (with false).
void shutdown_both(const Socket& s);

}  // namespace sinklab::train
