#include "cuda/communicator.h"

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "core/peer_failure.h"
#include "cuda/check.h"
#include "cuda/runtime.h"

#if defined(SINKLAB_HAVE_NCCL)
#include <nccl.h>
#endif

namespace sinklab::cuda {

#if defined(SINKLAB_HAVE_NCCL)

#define SINKLAB_NCCL_CHECK(expr, rank)                                                      \
  do {                                                                                      \
    const ncclResult_t sinklab_nccl_ = (expr);                                              \
    SINKLAB_CHECK(sinklab_nccl_ == ncclSuccess || sinklab_nccl_ == ncclInProgress,          \
                  DeviceError,                                                              \
                  "rank " << (rank) << ": " #expr " failed: " << ncclGetErrorString(sinklab_nccl_), \
                  "a peer rank may have died (see its log); NCCL_DEBUG=WARN tells more");   \
  } while (0)

struct Communicator::Impl {
  ncclComm_t comm = nullptr;
  double timeout_s = 0;  // the constructor's
  // Started reductions run on their own stream, after the compute stream's work so far.
  cudaStream_t side = nullptr;
  cudaEvent_t ready = nullptr;  // recorded on the compute stream before each started reduction
  cudaEvent_t done = nullptr;   // recorded on the side stream by wait_started
};

bool nccl_available() { return true; }

std::string Communicator::unique_id() {
  ncclUniqueId id;
  SINKLAB_NCCL_CHECK(ncclGetUniqueId(&id), 0);
  return std::string(id.internal, sizeof id.internal);
}

Communicator::Communicator(const std::string& unique_id, int rank, int world_size,
                           double timeout_s)
    : impl_(std::make_unique<Impl>()), rank_(rank), world_size_(world_size) {
  ncclUniqueId id;
  SINKLAB_CHECK(unique_id.size() == sizeof id.internal, ValueError,
                "rank " << rank << ": the NCCL id has " << unique_id.size() << " bytes, not "
                        << sizeof id.internal,
                "all ranks must run the same sinklab build");
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  impl_->timeout_s = timeout_s;
  SINKLAB_NCCL_CHECK(ncclCommInitRank(&impl_->comm, world_size, id, rank), rank);
  SINKLAB_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->side, cudaStreamNonBlocking));
  SINKLAB_CUDA_CHECK(cudaEventCreateWithFlags(&impl_->ready, cudaEventDisableTiming));
  SINKLAB_CUDA_CHECK(cudaEventCreateWithFlags(&impl_->done, cudaEventDisableTiming));
}

Communicator::~Communicator() {
  if (!impl_) return;
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->done) cudaEventDestroy(impl_->done);
  if (impl_->ready) cudaEventDestroy(impl_->ready);
  if (impl_->side) cudaStreamDestroy(impl_->side);
}

void Communicator::start_all_reduce_mean(Tensor& t, const char* what) {
  SINKLAB_CHECK(t.device().is_cuda() && t.dtype() == DType::F32 && t.is_contiguous(),
                DeviceError,
                "start_all_reduce_mean: " << t.str() << " must be contiguous f32 on a GPU",
                "reduce ranges of the flat gradient buffer");
  (void)what;
  SINKLAB_CUDA_CHECK(cudaEventRecord(impl_->ready, stream()));
  SINKLAB_CUDA_CHECK(cudaStreamWaitEvent(impl_->side, impl_->ready, 0));
  SINKLAB_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                   ncclFloat32, ncclAvg, impl_->comm, impl_->side),
                     rank_);
}

void Communicator::wait_started(const char* what) {
  SINKLAB_CUDA_CHECK(cudaEventRecord(impl_->done, impl_->side));
  wait(what, true);
  SINKLAB_CUDA_CHECK(cudaStreamWaitEvent(stream(), impl_->done, 0));
}

void Communicator::wait(const char* what, bool started) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = started ? cudaEventQuery(impl_->done) : cudaStreamQuery(stream());
    if (q == cudaSuccess) return;
    SINKLAB_CHECK(q == cudaErrorNotReady, DeviceError,
                  "rank " << rank_ << ": " << what << ": " << cudaGetErrorString(q),
                  "see the CUDA error above");
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(impl_->comm, &async);
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // This rank gives up on the rank watch's news, an NCCL error, or the timeout.
    const std::optional<std::string> failure = peer_failure();
    const bool nccl_error = async != ncclSuccess && async != ncclInProgress;
    if (failure || nccl_error || waited > impl_->timeout_s) {
      ncclCommAbort(impl_->comm);
      impl_->comm = nullptr;
      if (failure)
        SINKLAB_FAIL(DeviceError, "rank " << rank_ << ": " << what << " stopped: " << *failure,
                     "every rank stops; continue from the last checkpoint with --resume auto");
      if (nccl_error)
        SINKLAB_FAIL(DeviceError,
                     "rank " << rank_ << ": NCCL error during " << what << ": "
                             << ncclGetErrorString(async),
                     "a peer rank may have died: see the other ranks' logs");
      SINKLAB_FAIL(DeviceError,
                   "rank " << rank_ << " of " << world_size_ << ": " << what
                           << " did not finish within " << impl_->timeout_s
                           << " s (run.collective_timeout_s)",
                   "another rank is stuck or dead: see its log");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void Communicator::all_reduce_mean(Tensor& t, const char* what) {
  SINKLAB_CHECK(t.device().is_cuda() && t.dtype() == DType::F32 && t.is_contiguous(),
                DeviceError, "all_reduce_mean: " << t.str() << " must be contiguous f32 on a GPU",
                "reduce the flat gradient buffer");
  SINKLAB_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                   ncclFloat32, ncclAvg, impl_->comm, stream()),
                     rank_);
  wait(what);
}

double Communicator::sum(double value, const char* what) {
  Tensor buf = Tensor::from_doubles({value}, {1}, DType::F64).to_device(Device::cuda());  // (1)
  SINKLAB_NCCL_CHECK(ncclAllReduce(buf.raw_data(), buf.raw_data(), 1, ncclFloat64, ncclSum,
                                   impl_->comm, stream()),
                     rank_);
  wait(what);
  return buf.item();
}

std::vector<double> Communicator::all_gather(const std::vector<double>& mine, const char* what) {
  const int64_t n = static_cast<int64_t>(mine.size());
  Tensor all = Tensor::empty({world_size_ * n}, DType::F64, Device::cuda());  // (world * n)
  if (n > 0) {
    Tensor own = all.narrow_view(0, rank_ * n, n);  // (n) this rank's part
    own.copy_from(Tensor::from_doubles(mine, {n}, DType::F64));
    SINKLAB_NCCL_CHECK(ncclAllGather(own.raw_data(), all.raw_data(), static_cast<size_t>(n),
                                     ncclFloat64, impl_->comm, stream()),
                       rank_);
    wait(what);
  }
  return all.to_doubles();
}

void Communicator::all_gather_ranges(Tensor& t, const std::vector<int64_t>& bounds,
                                     const char* what) {
  SINKLAB_CHECK(t.device().is_cuda() && t.is_contiguous() &&
                    (t.dtype() == DType::F32 || t.dtype() == DType::F64) &&
                    static_cast<int>(bounds.size()) == world_size_ + 1 &&
                    bounds.back() <= t.numel(),
                DeviceError,
                "all_gather_ranges: " << t.str() << " with " << bounds.size() << " bounds for "
                                      << world_size_ << " ranks",
                "a contiguous f32/f64 GPU tensor and one range per rank");
  const ncclDataType_t type = t.dtype() == DType::F32 ? ncclFloat32 : ncclFloat64;
  const size_t elem = dtype_size(t.dtype());
  char* base = static_cast<char*>(t.raw_data());
  // One broadcast per rank (parts may differ in size), grouped into one launch.
  SINKLAB_NCCL_CHECK(ncclGroupStart(), rank_);
  for (int r = 0; r < world_size_; ++r) {
    const size_t count = static_cast<size_t>(bounds[r + 1] - bounds[r]);
    if (count == 0) continue;
    char* part = base + bounds[r] * elem;
    SINKLAB_NCCL_CHECK(ncclBroadcast(part, part, count, type, r, impl_->comm, stream()), rank_);
  }
  SINKLAB_NCCL_CHECK(ncclGroupEnd(), rank_);
  wait(what);
}

#else  // no NCCL in this build

struct Communicator::Impl {};
bool nccl_available() { return false; }
std::string Communicator::unique_id() {
  SINKLAB_FAIL(DeviceError, "this sinklab build has no NCCL", "install NCCL and rebuild");
}
Communicator::Communicator(const std::string&, int rank, int world_size, double)
    : rank_(rank), world_size_(world_size) {
  SINKLAB_FAIL(DeviceError, "rank " << rank << ": this sinklab build has no NCCL",
               "install NCCL (libnccl-dev) and rebuild to train on several GPUs");
}
Communicator::~Communicator() = default;
void Communicator::wait(const char*, bool) {}
void Communicator::start_all_reduce_mean(Tensor&, const char*) {}
void Communicator::wait_started(const char*) {}
void Communicator::all_gather_ranges(Tensor&, const std::vector<int64_t>&, const char*) {}
void Communicator::all_reduce_mean(Tensor&, const char*) {}
double Communicator::sum(double value, const char*) { return value; }
std::vector<double> Communicator::all_gather(const std::vector<double>& mine, const char*) {
  return mine;
}

#endif

}  // namespace sinklab::cuda
