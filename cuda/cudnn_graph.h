// Internal to cuda/: a small owner of cuDNN's graph (backend) API, cudnn_graph.h. An operation
// graph is built from tensors (named by unique ids) and operations (pointwise, matmul,
// reduction, reshape), cuDNN's heuristics pick an engine, and the finalized execution plan runs
// on a variant pack (uid -> device pointer, scalars by value from the host). Only compiled where
// CMake found cuDNN (SINKLAB_HAVE_CUDNN); cuda/cudnn_attention.cpp builds its graphs with it.
#pragma once
#include <cudnn_graph.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sinklab::cuda::cudnn {

// One backend descriptor (cudnnBackendCreateDescriptor .. Destroy), move-only.
class Descriptor {
 public:
  Descriptor() = default;
  explicit Descriptor(cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(Descriptor&& other) noexcept : desc_(std::exchange(other.desc_, nullptr)) {}
  Descriptor& operator=(Descriptor&& other) noexcept;
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return desc_; }
  // cudnnBackendSetAttribute; a failure throws a DeviceError naming the attribute and `what`.
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                  int64_t count, const void* values, const char* what);
  Descriptor& set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& value,
                             const char* what);
  // cudnnBackendFinalize: throws with cuDNN's last error message when it fails.
  void finalize(const char* what);
  // cudnnBackendFinalize without throwing (engine configs that do not support a graph).
  cudnnStatus_t try_finalize();

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
};

// The handle of the calling thread's current device (created once, on first use).
cudnnHandle_t handle();
std::string version_string();  // "9.14.0": the loaded library's version

// Row-major strides of dims (the last dimension contiguous).
std::vector<int64_t> packed_strides(const std::vector<int64_t>& dims);

// An operation graph under construction. Tensor ids are the caller's (each unique in the graph);
// virtual tensors live only inside the fused kernel.
class GraphBuilder {
 public:
  // A tensor the graph reads or writes (not virtual) or passes between its operations (virtual).
  void tensor(int64_t uid, const std::vector<int64_t>& dims, const std::vector<int64_t>& strides,
              cudnnDataType_t dtype, bool is_virtual);
  // A float scalar passed by value (its host value goes into the variant pack at execution).
  void scalar(int64_t uid);
  // y = mode(x [, b [, t]]): t is BINARY_SELECT's condition; axis only for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, int64_t x, int64_t y, int64_t b = -1, int64_t t = -1,
                 cudnnDataType_t compute = CUDNN_DATA_FLOAT, int64_t axis = -1);
  void matmul(int64_t a, int64_t b, int64_t c);  // c = a @ b over the last two dimensions
  void reduction(cudnnReduceTensorOp_t op, int64_t x, int64_t y);  // over y's size-1 dims
  void reshape(int64_t x, int64_t y);  // y: x's elements under another view (transposes)

  struct Plan {
    Descriptor plan;
    int64_t workspace_bytes = 0;
    // The graph, engine configuration, operations and tensors the plan was built from, kept as
    // long as the plan (cuDNN does not promise a finalized plan never reads them).
    std::vector<Descriptor> sources;
  };
  // Finalizes the operation graph on the handle and returns the first engine configuration of
  // cuDNN's heuristics (mode A, then the fallback list) that finalizes into a plan. Throws a
  // DeviceError naming `what` and cuDNN's message when none does. The builder is empty after.
  Plan build(cudnnHandle_t handle, const char* what);

 private:
  const Descriptor& tensor_of(int64_t uid, const char* what) const;
  std::vector<std::pair<int64_t, Descriptor>> tensors_;
  std::vector<Descriptor> operations_;
  std::vector<Descriptor> op_descriptors_;  // pointwise/matmul/reduction descriptors, kept alive
};

// Runs a plan: pointers[i] is the device buffer (or host scalar) of uids[i].
void execute(cudnnHandle_t handle, const Descriptor& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace, cudaStream_t stream,
             const char* what);

}  // namespace sinklab::cuda::cudnn
