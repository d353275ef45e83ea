#include "train/dist/rank_watch.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <utility>

#include "core/error.h"
#include "core/peer_failure.h"

namespace sinklab::train {

namespace {

// The messages on a watched connection, one byte each; a notice carries the dead rank after it.
constexpr char kGoodbye = 'B';  // the sender ends cleanly
constexpr char kNotice = 'D';   // rank 0 to the others: this rank died (int32 world rank follows)

// One byte from fd: 1 read, 0 the peer closed, -1 an error.
int read_byte(int fd, char& byte) {
  const ssize_t n = ::recv(fd, &byte, 1, 0);
  return n == 1 ? 1 : n == 0 ? 0 : -1;
}

}  // namespace

RankWatch::RankWatch(const LaunchEnv& env, std::vector<Socket> peers, FailureSink on_failure)
    : env_(env), peers_(std::move(peers)), on_failure_(std::move(on_failure)) {
  if (!on_failure_) on_failure_ = [](const std::string& what) { report_peer_failure(what); };
  for (Socket& s : peers_)
    if (s.valid()) set_timeouts(s.fd(), 5.0);  // reads follow poll; a goodbye cannot hang
  SINKLAB_CHECK(::pipe(stop_pipe_) == 0, IOError,
                rank_name(env_, env_.rank) << ": cannot create the rank watch's pipe",
                "the process may be out of file descriptors");
  thread_ = std::thread([this] { env_.rank == 0 ? watch_as_root() : watch_rank_0(); });
}

RankWatch::~RankWatch() {
  const char stop = 0;  // the thread first: its notices and the goodbye never interleave
  if (::write(stop_pipe_[1], &stop, 1) != 1) std::perror("sinklab: stopping the rank watch");
  thread_.join();
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
  if (std::uncaught_exceptions() == 0) {  // a clean end: the peers must not take it for a death
    for (Socket& s : peers_)
      if (s.valid()) send_all(s.fd(), &kGoodbye, 1);
  }
}

void RankWatch::fail(const std::string& what) {
  on_failure_(rank_name(env_, env_.rank) + ": " + what);
}

void RankWatch::watch_as_root() {
  std::vector<pollfd> fds;  // [0] the stop pipe, then each watched rank's connection
  std::vector<int> rank_of;
  fds.push_back({stop_pipe_[0], POLLIN, 0});
  rank_of.push_back(-1);
  for (int r = 1; r < static_cast<int>(peers_.size()); ++r) {
    if (!peers_[r].valid()) continue;
    fds.push_back({peers_[r].fd(), POLLIN, 0});
    rank_of.push_back(r);
  }
  size_t watched = fds.size() - 1;
  while (watched > 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;  // EINTR: poll again
    if (fds[0].revents != 0) return;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char byte = 0;
      const int got = read_byte(fds[i].fd, byte);
      if (got == 1 && byte == kGoodbye) {  // that rank ended cleanly: stop watching it
        fds[i].fd = -1;
        --watched;
        continue;
      }
      if (got == 1) continue;  // nothing else is sent to rank 0
      const int dead = rank_of[i];
      const int32_t world_rank = env_.first_rank + dead;
      for (size_t j = 1; j < fds.size(); ++j)  // tell every other rank still watched, first
        if (j != i && fds[j].fd >= 0)
          send_all(fds[j].fd, &kNotice, 1) && send_all(fds[j].fd, &world_rank, sizeof world_rank);
      fail(rank_name(env_, dead) + " died (its connection to " + rank_name(env_, 0) +
           " closed without a goodbye): its process ended; see its log");
      return;
    }
  }
}

void RankWatch::watch_rank_0() {
  const int fd = peers_.at(0).fd();
  pollfd fds[2] = {{stop_pipe_[0], POLLIN, 0}, {fd, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR: poll again
    if (fds[0].revents != 0) return;
    if (fds[1].revents == 0) continue;
    char byte = 0;
    const int got = read_byte(fd, byte);
    if (got == 1 && byte == kGoodbye) return;  // rank 0 ended cleanly
    int32_t dead = -1;
    if (got == 1 && byte == kNotice && recv_all(fd, &dead, sizeof dead)) {
      fail("rank " + std::to_string(dead) + " died (" + rank_name(env_, 0) +
           " saw its connection close without a goodbye): its process ended; see its log");
      return;
    }
    if (got == 1) continue;  // an unknown byte: a newer peer; keep watching
    fail(rank_name(env_, 0) + " died (its connection closed without a goodbye): see its log");
    return;
  }
}

}  // namespace sinklab::train
