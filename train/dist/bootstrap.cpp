#include "train/dist/bootstrap.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "core/error.h"
#include "train/io/atomic_file.h"
#include "train/dist/handshake.h"
#include "train/dist/socket.h"
#include "train/phase_clock.h"

namespace sinklab::train {

namespace {

// Rank 0: accept world_size - 1 connections and send each the length-prefixed blob; with
// `keep`, each rank's connection is kept at its index.
void serve(const LaunchEnv& env, const std::string& blob, double timeout_s,
           std::vector<Socket>* keep) {
  const Socket listener = listen_on(env.id_port, "rank 0 (NCCL id)",
                                    "set SINKLAB_ID_PORT to a free port (default MASTER_PORT + 1), "
                                    "or use SINKLAB_ID_FILE on a shared file system");
  const auto t0 = Clock::now();
  const uint64_t size = blob.size();
  std::vector<bool> served_rank(env.world_size, false);
  if (keep) keep->resize(env.world_size);
  for (int served = 1; served < env.world_size;) {
    const double left = timeout_s - seconds_since(t0);
    SINKLAB_CHECK(left > 0, IOError,
                  rank_name(env, 0) << ": only " << served - 1 << " of " << env.world_size - 1
                                  << " ranks fetched the NCCL id from port " << env.id_port
                                  << " within " << timeout_s << " s",
                  "a rank failed to start or cannot reach " + env.master_addr +
                      ": check its log, MASTER_ADDR and firewalls");
    Socket peer = accept_within(listener, std::min(left, 1.0));
    if (!peer.valid()) continue;
    std::string why;
    const int rank = receive_join(peer.fd(), env.job_token, env.world_size, why);
    if (rank < 0) {  // a stranger gets nothing and takes no rank's place
      std::fprintf(stderr, "sinklab: rank 0: dropped a connection from %s on port %d: it %s\n",
                   peer_address(peer.fd()).c_str(), env.id_port, why.c_str());
      continue;
    }
    if (send_all(peer.fd(), &size, sizeof size) && send_all(peer.fd(), blob.data(), blob.size())) {
      if (!served_rank[rank]) {
        served_rank[rank] = true;
        ++served;
      }
      if (keep) (*keep)[rank] = std::move(peer);  // the newest: a rank that retried left the old
    }
  }
}

// Other ranks: connect to master_addr:id_port (retrying while rank 0 starts) and read the blob;
// with `keep`, the connection is kept.
std::string fetch(const LaunchEnv& env, double timeout_s, std::vector<Socket>* keep) {
  const auto t0 = Clock::now();
  std::string last_error = "no attempt";
  while (seconds_since(t0) < timeout_s) {
    Socket s = connect_retrying(env.master_addr, env.id_port, timeout_s - seconds_since(t0),
                                last_error);
    if (!s.valid()) break;
    uint64_t size = 0;
    std::string blob;
    if (send_join(s.fd(), env.rank, env.job_token) && recv_all(s.fd(), &size, sizeof size) &&
        size < (1u << 20)) {
      blob.resize(size);
      if (recv_all(s.fd(), blob.data(), size)) {
        if (keep) keep->push_back(std::move(s));
        return blob;
      }
    }
    last_error = "the connection closed before the id arrived";
  }
  SINKLAB_FAIL(IOError,
               rank_name(env, env.rank)
                   << ": no NCCL id from " << rank_name(env, 0) << " at " << env.master_addr << ":"
                   << env.id_port << " within " << timeout_s << " s (" << last_error << ")",
               "check that rank 0 started, MASTER_ADDR names its host and the port is open "
               "(SINKLAB_ID_PORT), or use SINKLAB_ID_FILE on a shared file system");
}

void write_file(const LaunchEnv& env, const std::string& blob) {
  // Readers see all of it or nothing.
  write_file_atomic(env.id_file, blob,
                    "SINKLAB_ID_FILE must name a writable path on a file system all ranks see");
}

std::string poll_file(const LaunchEnv& env, double timeout_s) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < timeout_s) {
    std::ifstream in(env.id_file, std::ios::binary);
    if (in) return std::string(std::istreambuf_iterator<char>(in), {});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  SINKLAB_FAIL(IOError,
               rank_name(env, env.rank) << ": " << env.id_file << " did not appear within "
                       << timeout_s << " s",
               "rank 0 writes it: check its log, and that SINKLAB_ID_FILE is on a file system "
               "every rank sees (and was removed before the job started)");
}

}  // namespace

std::string share_from_rank0(const LaunchEnv& env, const std::string& blob, double timeout_s,
                             std::vector<Socket>* keep) {
  if (env.world_size <= 1) return blob;
  if (!env.id_file.empty()) {
    if (env.rank == 0) {
      write_file(env, blob);
      return blob;
    }
    return poll_file(env, timeout_s);
  }
  if (env.rank == 0) {
    serve(env, blob, timeout_s, keep);
    return blob;
  }
  return fetch(env, timeout_s, keep);
}

}  // namespace sinklab::train
