#include "cuda/runtime.h"

#include <cuda_bf16.h>

#include <string>

#include <cmath>
#include <cstdint>
#include <mutex>

#include "core/concat_flat.h"
#include "core/tensor_math.h"
#include "cuda/check.h"
#include "cuda/elementwise_map.cuh"
#include "ops/op_list.h"

namespace sinklab::cuda {

namespace {

cudaStream_t g_stream = nullptr;       // the compute stream
cudaStream_t g_side_stream = nullptr;  // SideStreamScope's: one of the two below
cudaStream_t g_side_low = nullptr;     // the lowest priority (the default)
cudaStream_t g_side_equal = nullptr;   // the compute stream's priority (made when first asked)
int g_highest_priority = 0;            // the compute stream's
cudaEvent_t g_fork = nullptr, g_join = nullptr;  // g_fork: the latest start point
uint64_t g_marks = 0;  // start points marked so far (the latest is the one g_fork holds)
thread_local cudaStream_t t_current = nullptr;  // set inside a SideStreamScope
bool g_available = false;

void* allocate(size_t bytes, int device) {
  SINKLAB_CUDA_CHECK(cudaSetDevice(device));
  void* p = nullptr;
  if (bytes == 0) bytes = 1;
  SINKLAB_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream()));
  return p;
}

void release(void* p, int device) {
  cudaSetDevice(device);
  cudaFreeAsync(p, stream());  // no throw from destructors
}

void copy(void* dst, const void* src, size_t bytes, int kind, int /*device*/) {
  const cudaMemcpyKind k = kind == 0   ? cudaMemcpyHostToDevice
                           : kind == 1 ? cudaMemcpyDeviceToHost
                                       : cudaMemcpyDeviceToDevice;
  SINKLAB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, stream()));
  if (kind != 2) SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));  // host memory is pageable
}

template <class T>
__global__ void fill_kernel(T* dst, int64_t n, T value) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = value;
}

// Float-to-float conversion of n contiguous elements (f32, f64, bf16 rounded to nearest even;
// f64 reaches bf16 through f32, as the CPU's conversion does).
template <class S, class D>
__global__ void convert_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = static_cast<D>(static_cast<float>(src[i]));
}
template <class S>
__global__ void convert_kernel(const S* __restrict__ src, double* __restrict__ dst, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = static_cast<double>(src[i]);
}

bool convert(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t n, int /*device*/) {
  return convert_elements(src, static_cast<DType>(src_dtype), dst, static_cast<DType>(dst_dtype),
                          n);
}

}  // namespace

bool convert_elements(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
  if (n == 0) return true;
  bool done = false;
  auto with_type = [](DType dtype, auto&& body) {  // body(T{}) for the float dtypes
    switch (dtype) {
      case DType::F32: body(float{}); return true;
      case DType::F64: body(double{}); return true;
      case DType::BF16: body(__nv_bfloat16{}); return true;
      default: return false;
    }
  };
  with_type(src_dtype, [&](auto s) {
    using S = decltype(s);
    done = with_type(dst_dtype, [&](auto d) {
      using D = decltype(d);
      convert_kernel<<<blocks_for(n), 256, 0, stream()>>>(static_cast<const S*>(src),
                                                          static_cast<D*>(dst), n);
      SINKLAB_KERNEL_CHECK("to_dtype");
    });
  });
  return done;
}

namespace {

void fill(void* dst, int64_t n, int dtype, double value, int /*device*/) {
  if (n == 0) return;
  if (value == 0 && !std::signbit(value)) {  // +0 is all zero bytes in every dtype: the copy
    // engine's memset (the gradients' zeroing each step: about twice the kernel's bandwidth)
    SINKLAB_CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(n) * dtype_size(
                                                   static_cast<DType>(dtype)), stream()));
    return;
  }
  switch (static_cast<DType>(dtype)) {
    case DType::F32:
      fill_kernel<<<blocks_for(n), 256, 0, stream()>>>(static_cast<float*>(dst), n,
                                                      static_cast<float>(value));
      break;
    case DType::F64:
      fill_kernel<<<blocks_for(n), 256, 0, stream()>>>(static_cast<double*>(dst), n, value);
      break;
    case DType::I32:
      fill_kernel<<<blocks_for(n), 256, 0, stream()>>>(static_cast<int32_t*>(dst), n,
                                                      static_cast<int32_t>(value));
      break;
    case DType::BF16: {
      const bf16 b = float_to_bf16(static_cast<float>(value));
      fill_kernel<<<blocks_for(n), 256, 0, stream()>>>(static_cast<uint16_t*>(dst), n, b.bits);
      break;
    }
  }
  SINKLAB_KERNEL_CHECK("fill");
}


// out = a + b (gradient accumulation: add_into and sum_of of core/tensor_math), four elements
// per thread (cuda/elementwise_map.cuh); out may be a.
void accumulate_cuda(const Tensor& a, const Tensor& b, Tensor& out) {
  SINKLAB_CHECK(a.is_contiguous() && b.is_contiguous() && out.is_contiguous(), ShapeError,
                "gradient sum (cuda): " << a.str() << " + " << b.str(),
                "CUDA accumulation needs contiguous tensors");
  launch_binary_map<Plus>(a, b, out, "gradient sum (cuda)");
}

// Up to 8 dims; offsets in elements.
struct StridedLayout {
  int rank;
  int64_t shape[8], dst_strides[8], src_strides[8];
};

template <class T>
__global__ void strided_copy_kernel(T* dst, const T* src, int64_t n, StridedLayout layout) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  int64_t rest = i, d_off = 0, s_off = 0;
  for (int d = layout.rank - 1; d >= 0; --d) {
    const int64_t idx = rest % layout.shape[d];
    rest /= layout.shape[d];
    d_off += idx * layout.dst_strides[d];
    s_off += idx * layout.src_strides[d];
  }
  dst[d_off] = src[s_off];
}

void strided_copy_cuda(Tensor& dst, const Tensor& src) {
  SINKLAB_CHECK(dst.dim() <= 8, ShapeError, "strided copy (cuda): rank " << dst.dim() << " > 8",
                "reshape to at most 8 dims");
  StridedLayout layout{};
  layout.rank = static_cast<int>(dst.dim());
  for (size_t d = 0; d < dst.dim(); ++d) {
    layout.shape[d] = dst.shape()[d];
    layout.dst_strides[d] = dst.strides()[d];
    layout.src_strides[d] = src.strides()[d];
  }
  const int64_t n = dst.numel();
  switch (dtype_size(dst.dtype())) {
    case 2:
      strided_copy_kernel<<<blocks_for(n), 256, 0, stream()>>>(
          static_cast<uint16_t*>(dst.raw_data()), static_cast<const uint16_t*>(src.raw_data()), n,
          layout);
      break;
    case 4:
      strided_copy_kernel<<<blocks_for(n), 256, 0, stream()>>>(
          static_cast<uint32_t*>(dst.raw_data()), static_cast<const uint32_t*>(src.raw_data()), n,
          layout);
      break;
    default:
      strided_copy_kernel<<<blocks_for(n), 256, 0, stream()>>>(
          static_cast<uint64_t*>(dst.raw_data()), static_cast<const uint64_t*>(src.raw_data()), n,
          layout);
  }
  SINKLAB_KERNEL_CHECK("strided copy");
}

// concat_flat (core/concat_flat.h): up to kPartsPerLaunch parts per launch, one block per part
// (the parts are small: per-layer statistics), each part's elements in row-major order through
// its shape and strides (rank <= kPartRank). The table rides in the kernel's parameters (under
// the classic 4 KB limit).
constexpr int kPartRank = 4;
constexpr int kPartsPerLaunch = 40;
struct FlatPart {
  const void* src;
  int64_t dst;  // first element in flat
  int64_t n;
  int64_t shape[kPartRank], strides[kPartRank];
  int rank;
};
struct FlatParts {
  FlatPart part[kPartsPerLaunch];
  int count;
};
static_assert(sizeof(FlatParts) <= 4000, "the table must fit the kernel parameter space");

template <class T>
__global__ void concat_flat_kernel(T* flat, FlatParts table) {
  const FlatPart& p = table.part[blockIdx.x];
  const T* src = static_cast<const T*>(p.src);
  for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) {
    int64_t rest = i, offset = 0;
    for (int d = p.rank - 1; d >= 0; --d) {
      offset += (rest % p.shape[d]) * p.strides[d];
      rest /= p.shape[d];
    }
    flat[p.dst + i] = src[offset];
  }
}

bool concat_flat_cuda(const std::vector<Tensor>& parts, Tensor& flat) {
  const int64_t es = dtype_size(flat.dtype());
  if (es != 2 && es != 4 && es != 8) return false;
  for (const Tensor& t : parts)
    if (t.dim() > static_cast<size_t>(kPartRank)) return false;
  FlatParts table{};
  int64_t at = 0;
  auto launch = [&] {
    if (table.count == 0) return;
    switch (es) {
      case 2:
        concat_flat_kernel<<<table.count, 256, 0, stream()>>>(
            static_cast<uint16_t*>(flat.raw_data()), table);
        break;
      case 4:
        concat_flat_kernel<<<table.count, 256, 0, stream()>>>(
            static_cast<uint32_t*>(flat.raw_data()), table);
        break;
      default:
        concat_flat_kernel<<<table.count, 256, 0, stream()>>>(
            static_cast<uint64_t*>(flat.raw_data()), table);
    }
    SINKLAB_KERNEL_CHECK("concat_flat");
    table.count = 0;
  };
  for (const Tensor& t : parts) {
    if (t.numel() > 0) {
      FlatPart& p = table.part[table.count++];
      p.src = t.raw_data();
      p.dst = at;
      p.n = t.numel();
      p.rank = static_cast<int>(t.dim());
      for (size_t d = 0; d < t.dim(); ++d) {
        p.shape[d] = t.shape()[d];
        p.strides[d] = t.strides()[d];
      }
      if (table.count == kPartsPerLaunch) launch();
    }
    at += t.numel();
  }
  launch();
  return true;
}

}  // namespace

bool initialize() {
  static std::once_flag once;
  std::call_once(once, [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();  // clear the sticky "no device" error
      return;
    }
    SINKLAB_CUDA_CHECK(cudaSetDevice(0));
    int lowest = 0, highest = 0;  // numerically: lowest priority >= highest
    SINKLAB_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lowest, &highest));
    SINKLAB_CUDA_CHECK(cudaStreamCreateWithPriority(&g_stream, cudaStreamNonBlocking, highest));
    g_highest_priority = highest;
    SINKLAB_CUDA_CHECK(cudaStreamCreateWithPriority(&g_side_low, cudaStreamNonBlocking, lowest));
    g_side_stream = g_side_low;
    SINKLAB_CUDA_CHECK(cudaEventCreateWithFlags(&g_fork, cudaEventDisableTiming));
    SINKLAB_CUDA_CHECK(cudaEventCreateWithFlags(&g_join, cudaEventDisableTiming));
    cudaMemPool_t pool;
    SINKLAB_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
    uint64_t keep = UINT64_MAX;  // keep freed blocks in the pool: no per-step cudaMalloc
    SINKLAB_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    // A block freed on one stream is reused by another only once its free has run: never by
    // making the allocating stream wait (that would tie the compute stream to the side work).
    int no = 0;
    SINKLAB_CUDA_CHECK(
        cudaMemPoolSetAttribute(pool, cudaMemPoolReuseAllowInternalDependencies, &no));
    DeviceMemoryHooks hooks;
    hooks.allocate = allocate;
    hooks.release = release;
    hooks.copy = copy;
    hooks.fill = fill;
    hooks.convert = convert;
    hooks.synchronize = [](int) { synchronize(); };
    install_device_memory_hooks(hooks);
    install_cuda_add(accumulate_cuda);
    install_cuda_strided_copy(strided_copy_cuda);
    install_cuda_concat_flat(concat_flat_cuda);
    install_elementwise_kernels();
    install_matmul_kernels();
    install_norm_kernels();
    install_activation_kernels();
    install_embedding_kernels();
    install_attention_kernels();
    install_rope_kernels();
    install_cross_entropy_kernels();
    install_statistics_kernels();
    install_optimizer_kernels();
    install_device_runtime();
    ops::check_cuda_slots();  // every CUDA slot ops/op_list.h claims is filled
    g_available = true;
  });
  return g_available;
}

bool available() { return g_available; }
cudaStream_t stream() { return t_current != nullptr ? t_current : g_stream; }
bool inside_side_stream_scope() { return t_current != nullptr; }
void synchronize() { SINKLAB_CUDA_CHECK(cudaStreamSynchronize(g_stream)); }

SideStreamStart mark_side_stream_start() {
  SINKLAB_CUDA_CHECK(cudaEventRecord(g_fork, g_stream));
  return SideStreamStart(++g_marks);
}

SideStreamScope::SideStreamScope() : SideStreamScope(mark_side_stream_start()) {}

SideStreamScope::SideStreamScope(const SideStreamStart& start) {
  SINKLAB_CHECK(t_current == nullptr, ValueError, "SideStreamScope inside another",
                "close the first scope before opening a second");
  SINKLAB_CHECK(start.mark_ == g_marks, ValueError,
                "SideStreamScope: its start (mark " << start.mark_ << ") was superseded by mark "
                                                    << g_marks,
                "open the scope with the latest mark_side_stream_start()");
  SINKLAB_CUDA_CHECK(cudaStreamWaitEvent(g_side_stream, g_fork, 0));
  t_current = g_side_stream;
}

SideStreamScope::~SideStreamScope() { t_current = nullptr; }

void join_side_stream() {
  SINKLAB_CUDA_CHECK(cudaEventRecord(g_join, g_side_stream));
  SINKLAB_CUDA_CHECK(cudaStreamWaitEvent(g_stream, g_join, 0));
}

void set_side_stream_priority(SidePriority priority) {
  SINKLAB_CHECK(t_current == nullptr, ValueError,
                "set_side_stream_priority inside a SideStreamScope",
                "set the priority before opening the scope");
  if (priority == SidePriority::Equal && g_side_equal == nullptr)
    SINKLAB_CUDA_CHECK(
        cudaStreamCreateWithPriority(&g_side_equal, cudaStreamNonBlocking, g_highest_priority));
  cudaStream_t next = priority == SidePriority::Equal ? g_side_equal : g_side_low;
  if (next == g_side_stream) return;
  join_side_stream();  // whatever the previous side stream holds stays ordered before the next
  g_side_stream = next;
}

double memory_in_use_mib() {
  cudaMemPool_t pool;
  SINKLAB_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
  uint64_t used = 0;
  SINKLAB_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used));
  uint64_t graphs = 0;  // what instantiated graphs hold for their allocation nodes
  SINKLAB_CUDA_CHECK(cudaDeviceGetGraphMemAttribute(0, cudaGraphMemAttrUsedMemCurrent, &graphs));
  return static_cast<double>(used + graphs) / (1024.0 * 1024.0);
}

double memory_peak_mib() {
  cudaMemPool_t pool;
  SINKLAB_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
  uint64_t used = 0;
  SINKLAB_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &used));
  uint64_t graphs = 0;
  SINKLAB_CUDA_CHECK(cudaDeviceGetGraphMemAttribute(0, cudaGraphMemAttrUsedMemHigh, &graphs));
  return static_cast<double>(used + graphs) / (1024.0 * 1024.0);
}

void release_cached_memory() {
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(g_side_stream));
  cudaMemPool_t pool;
  SINKLAB_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
  SINKLAB_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
}

double memory_capacity_mib() {
  size_t free = 0, total = 0;
  SINKLAB_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return static_cast<double>(total) / (1024.0 * 1024.0);
}

int device_attribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  SINKLAB_CUDA_CHECK(cudaGetDevice(&device));
  SINKLAB_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, device));
  return value;
}

double peak_bf16_tflops() {
  static const double peak = [] {  // looked up once: the trainer asks every step
    cudaDeviceProp prop{};
    SINKLAB_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const std::string name = prop.name;
    // Dense bf16 tensor-core peaks from the vendor's data sheets (SXM parts).
    if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos)
      return 989.5;
    if (name.find("A100") != std::string::npos) return 312.0;
    return 0.0;
  }();
  return peak;
}

}  // namespace sinklab::cuda
