#include "train/dist/tcp_collective.h"

#include <cstdio>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "train/dist/handshake.h"
#include "train/phase_clock.h"

namespace sinklab::train {

namespace {

// Precedes every message: which operation, and how many bytes follow.
struct Header {
  int32_t op;
  int32_t rank;
  uint64_t bytes;
};

// kLost: rank 0 to the others, instead of a result: it lost the rank in Header::rank.
enum Op : int32_t { kReduce = 2, kSum, kGather, kResult, kRanges, kLost };

// out += in, elementwise over n values of type T (rank-order accumulation at rank 0).
template <class T>
void add_into(std::vector<char>& out, const std::vector<char>& in) {
  T* o = reinterpret_cast<T*>(out.data());
  const T* x = reinterpret_cast<const T*>(in.data());
  for (size_t i = 0; i < out.size() / sizeof(T); ++i) o[i] += x[i];
}

}  // namespace

TcpCollective::TcpCollective(const LaunchEnv& env, double timeout_s)
    : env_(env), timeout_s_(timeout_s) {
  const auto t0 = Clock::now();
  auto left = [&] { return timeout_s_ - seconds_since(t0); };
  if (env_.rank == 0) {
    const Socket listener =
        listen_on(env_.id_port, "rank 0 (CPU collectives)",
                  "set SINKLAB_ID_PORT to a free port (default MASTER_PORT + 1)");
    peers_.resize(env_.world_size);
    for (int joined = 1; joined < env_.world_size;) {
      SINKLAB_CHECK(left() > 0, IOError,
                    rank_name(env_, 0) << ": only " << joined - 1 << " of " << env_.world_size - 1
                                    << " ranks connected on port " << env_.id_port << " within "
                                    << timeout_s_ << " s (run.collective_timeout_s)",
                    "a rank failed to start or cannot reach " + env_.master_addr +
                        ": check its log, MASTER_ADDR and firewalls");
      Socket peer = accept_within(listener, std::min(left(), 1.0));
      if (!peer.valid()) continue;
      std::string why;
      const int rank = receive_join(peer.fd(), env_.job_token, env_.world_size, why);
      if (rank < 0) {  // a stranger: dropped and named, the ranks keep joining
        std::fprintf(stderr, "sinklab: rank 0: dropped a connection from %s on port %d: it %s\n",
                     peer_address(peer.fd()).c_str(), env_.id_port, why.c_str());
        continue;
      }
      set_timeouts(peer.fd(), timeout_s_);
      SINKLAB_CHECK(!peers_[rank].valid(), IOError,
                    rank_name(env_, 0) << ": two processes joined as rank " << rank
                                       << " (world size " << env_.world_size << ")",
                    "every rank needs a distinct RANK below WORLD_SIZE");
      peers_[rank] = std::move(peer);
      ++joined;
    }
  } else {
    std::string error;
    Socket root = connect_retrying(env_.master_addr, env_.id_port, timeout_s_, error);
    SINKLAB_CHECK(root.valid(), IOError,
                  rank_name(env_, env_.rank)
                      << ": cannot reach " << rank_name(env_, 0) << " at " << env_.master_addr
                      << ":" << env_.id_port << " within " << timeout_s_ << " s (" << error << ")",
                  "check that rank 0 started, MASTER_ADDR names its host and the port is open "
                  "(SINKLAB_ID_PORT)");
    set_timeouts(root.fd(), timeout_s_);
    SINKLAB_CHECK(send_join(root.fd(), env_.rank, env_.job_token), IOError,
                  rank_name(env_, env_.rank)
                      << ": " << rank_name(env_, 0) << " closed the connection at start-up",
                  "see rank 0's log");
    peers_.push_back(std::move(root));
  }
  worker_ = std::thread([this] { work(); });
}

TcpCollective::~TcpCollective() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    if (!jobs_.empty() || busy_) {
      // Unwinding with reductions still queued (an error elsewhere): drop them, and unblock
      // the one in flight, instead of waiting out the timeout for each.
      jobs_.clear();
      for (const Socket& peer : peers_) shutdown_both(peer);
    }
  }
  changed_.notify_all();
  worker_.join();
}

void TcpCollective::work() {
  for (;;) {
    Job job;
    bool failed_before = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
      busy_ = true;
      failed_before = failure_ != nullptr;
    }
    std::exception_ptr error;
    try {
      if (!failed_before) reduce_now(job.t, job.what);  // after a failure, drop the rest
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !failure_) failure_ = error;
      busy_ = false;
    }
    changed_.notify_all();
  }
}

void TcpCollective::start_all_reduce_mean(Tensor& t, const char* what) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back({t, what});
  }
  changed_.notify_all();
}

void TcpCollective::wait_started(const char* what) {
  (void)what;
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return jobs_.empty() && !busy_; });
  if (failure_) {
    std::exception_ptr error = failure_;
    failure_ = nullptr;
    std::rethrow_exception(error);
  }
}

std::vector<std::vector<char>> TcpCollective::gather_at_root(const void* data, size_t bytes,
                                                             int op, const char* what) {
  const Header header{op, env_.rank, bytes};
  if (env_.rank != 0) {
    SINKLAB_CHECK(send_all(peers_[0].fd(), &header, sizeof header) &&
                      send_all(peers_[0].fd(), data, bytes),
                  IOError,
                  rank_name(env_, env_.rank) << ": " << rank_name(env_, 0)
                                            << " closed the connection during " << what,
                  rank_name(env_, 0) + " may have died: see its log");
    return {};
  }
  std::vector<std::vector<char>> all(env_.world_size);
  all[0].assign(static_cast<const char*>(data), static_cast<const char*>(data) + bytes);
  for (int r = 1; r < env_.world_size; ++r) {
    Header got{};
    SINKLAB_CHECK(reached(r, recv_all(peers_[r].fd(), &got, sizeof got)), IOError,
                  rank_name(env_, 0) << ": nothing from " << rank_name(env_, r) << " during "
                                     << what << " (closed, or silent for " << timeout_s_
                                     << " s: run.collective_timeout_s)",
                  rank_name(env_, r) + " may have died or hung: see its log");
    SINKLAB_CHECK(got.op == op && got.bytes == bytes, IOError,
                  rank_name(env_, 0) << ": " << rank_name(env_, r) << " sent operation " << got.op
                                     << " with " << got.bytes << " bytes during " << what
                                     << " (expected operation " << op << " with " << bytes << ")",
                  "every rank must run the same config and code version");
    all[r].resize(bytes);
    SINKLAB_CHECK(reached(r, recv_all(peers_[r].fd(), all[r].data(), bytes)), IOError,
                  rank_name(env_, 0) << ": " << rank_name(env_, r)
                                     << " closed the connection during " << what,
                  rank_name(env_, r) + " may have died: see its log");
  }
  return all;
}

void TcpCollective::broadcast_from_root(void* data, size_t bytes, int op, const char* what) {
  const Header header{op, 0, bytes};
  if (env_.rank == 0) {
    for (int r = 1; r < env_.world_size; ++r)
      SINKLAB_CHECK(reached(r, send_all(peers_[r].fd(), &header, sizeof header) &&
                                   send_all(peers_[r].fd(), data, bytes)),
                    IOError,
                    rank_name(env_, 0) << ": " << rank_name(env_, r)
                                       << " closed the connection during " << what,
                    rank_name(env_, r) + " may have died: see its log");
    return;
  }
  Header got{};
  const bool heard = recv_all(peers_[0].fd(), &got, sizeof got);
  SINKLAB_CHECK(!heard || got.op != kLost, IOError,
                rank_name(env_, env_.rank) << ": " << rank_name(env_, 0) << " lost "
                                           << rank_name(env_, got.rank) << " during " << what,
                rank_name(env_, got.rank) + " may have died: see its log");
  SINKLAB_CHECK(
      heard && got.op == op && got.bytes == bytes && recv_all(peers_[0].fd(), data, bytes), IOError,
      rank_name(env_, env_.rank) << ": no result from " << rank_name(env_, 0) << " during " << what
                                 << " (closed, or silent for " << timeout_s_
                                 << " s: run.collective_timeout_s)",
      "rank 0 or another rank may have died or hung: see their logs");
}

bool TcpCollective::reached(int r, bool ok) {
  if (ok) return true;
  const Header lost{kLost, r, 0};  // best effort: the others may be gone too
  for (int p = 1; p < env_.world_size; ++p)
    if (p != r) send_all(peers_[p].fd(), &lost, sizeof lost);
  return false;
}

void TcpCollective::all_reduce_mean(Tensor& t, const char* what) {
  wait_started(what);  // the sockets carry one operation at a time, in the order started
  reduce_now(t, what);
}

void TcpCollective::reduce_now(Tensor& t, const char* what) {
  SINKLAB_CHECK(t.device().is_cpu() && t.is_contiguous() &&
                    (t.dtype() == DType::F32 || t.dtype() == DType::F64),
                DeviceError, "all_reduce_mean over TCP: " << t.str() << " must be contiguous f32/f64 on the CPU",
                "reduce the flat gradient buffer of a run.device: cpu job");
  const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
  std::vector<std::vector<char>> all = gather_at_root(t.raw_data(), bytes, kReduce, what);
  if (env_.rank == 0) {
    std::vector<char>& total = all[0];
    for (int r = 1; r < env_.world_size; ++r) {
      if (t.dtype() == DType::F32)
        add_into<float>(total, all[r]);
      else
        add_into<double>(total, all[r]);
    }
    if (t.dtype() == DType::F32) {
      float* v = reinterpret_cast<float*>(total.data());
      for (int64_t i = 0; i < t.numel(); ++i) v[i] /= static_cast<float>(env_.world_size);
    } else {
      double* v = reinterpret_cast<double*>(total.data());
      for (int64_t i = 0; i < t.numel(); ++i) v[i] /= static_cast<double>(env_.world_size);
    }
    std::memcpy(t.raw_data(), total.data(), bytes);
  }
  broadcast_from_root(t.raw_data(), bytes, kResult, what);
}

double TcpCollective::sum(double value, const char* what) {
  wait_started(what);
  std::vector<std::vector<char>> all = gather_at_root(&value, sizeof value, kSum, what);
  double total = value;
  if (env_.rank == 0) {
    total = 0;
    for (const auto& part : all) {
      double v;
      std::memcpy(&v, part.data(), sizeof v);
      total += v;
    }
  }
  broadcast_from_root(&total, sizeof total, kResult, what);
  return total;
}

std::vector<double> TcpCollective::all_gather(const std::vector<double>& mine, const char* what) {
  wait_started(what);
  const size_t bytes = mine.size() * sizeof(double);
  std::vector<std::vector<char>> all = gather_at_root(mine.data(), bytes, kGather, what);
  std::vector<double> out(mine.size() * env_.world_size);
  if (env_.rank == 0)
    for (int r = 0; r < env_.world_size; ++r)
      if (bytes > 0) std::memcpy(out.data() + r * mine.size(), all[r].data(), bytes);
  broadcast_from_root(out.data(), out.size() * sizeof(double), kResult, what);
  return out;
}

void TcpCollective::all_gather_ranges(Tensor& t, const std::vector<int64_t>& bounds,
                                      const char* what) {
  wait_started(what);
  SINKLAB_CHECK(t.device().is_cpu() && t.is_contiguous() &&
                    static_cast<int>(bounds.size()) == env_.world_size + 1 &&
                    bounds.back() <= t.numel(),
                DeviceError,
                "all_gather_ranges over TCP: " << t.str() << " with " << bounds.size()
                                               << " bounds for " << env_.world_size << " ranks",
                "a contiguous CPU tensor and one range per rank");
  const size_t elem = dtype_size(t.dtype());
  char* base = static_cast<char*>(t.raw_data());
  const int r = env_.rank;
  const size_t mine = static_cast<size_t>(bounds[r + 1] - bounds[r]) * elem;
  // Ranks' parts differ in size: each sends its own; rank 0 checks every size it receives.
  if (r != 0) {
    const Header header{kRanges, r, mine};
    SINKLAB_CHECK(send_all(peers_[0].fd(), &header, sizeof header) &&
                      send_all(peers_[0].fd(), base + bounds[r] * elem, mine),
                  IOError,
                  rank_name(env_, r) << ": " << rank_name(env_, 0)
                                     << " closed the connection during " << what,
                  rank_name(env_, 0) + " may have died: see its log");
  } else {
    for (int p = 1; p < env_.world_size; ++p) {
      const size_t bytes = static_cast<size_t>(bounds[p + 1] - bounds[p]) * elem;
      Header got{};
      SINKLAB_CHECK(reached(p, recv_all(peers_[p].fd(), &got, sizeof got) && got.op == kRanges &&
                                   got.bytes == bytes &&
                                   recv_all(peers_[p].fd(), base + bounds[p] * elem, bytes)),
                    IOError,
                    rank_name(env_, 0)
                        << ": no part " << p << " from " << rank_name(env_, p) << " during " << what
                        << " (closed, silent, or another operation)",
                    rank_name(env_, p) + " may have died or run another config: see its log");
    }
  }
  broadcast_from_root(base, static_cast<size_t>(bounds.back()) * elem, kResult, what);
}

}  // namespace sinklab::train
