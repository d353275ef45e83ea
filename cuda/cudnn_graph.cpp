// cuDNN's graph API behind the small builder of cuda/cudnn_graph.h.
#if SINKLAB_HAVE_CUDNN
#include "cuda/cudnn_graph.h"

#include <cudnn.h>

#include <map>
#include <mutex>
#include <sstream>

#include "core/error.h"
#include "cuda/check.h"

namespace sinklab::cuda::cudnn {
namespace {

std::string last_error() {
  char message[1024] = {0};
  cudnnGetLastErrorString(message, sizeof(message));
  return message;
}

void check(cudnnStatus_t status, const char* call, const char* what) {
  SINKLAB_CHECK(status == CUDNN_STATUS_SUCCESS, DeviceError,
                what << ": cuDNN " << call << " failed: " << cudnnGetErrorString(status) << " ("
                     << last_error() << ")",
                "set run.attention_kernels: own to use sinklab's own attention kernels");
}

}  // namespace

Descriptor::Descriptor(cudnnBackendDescriptorType_t type) {
  check(cudnnBackendCreateDescriptor(type, &desc_), "cudnnBackendCreateDescriptor",
        "cuDNN graph");
}

Descriptor::~Descriptor() {
  if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
}

Descriptor& Descriptor::operator=(Descriptor&& other) noexcept {
  if (this != &other) {
    if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
    desc_ = std::exchange(other.desc_, nullptr);
  }
  return *this;
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                            int64_t count, const void* values, const char* what) {
  const cudnnStatus_t status = cudnnBackendSetAttribute(desc_, name, type, count, values);
  SINKLAB_CHECK(status == CUDNN_STATUS_SUCCESS, DeviceError,
                what << ": cuDNN attribute " << static_cast<int>(name)
                     << " not accepted: " << cudnnGetErrorString(status) << " (" << last_error()
                     << ")",
                "set run.attention_kernels: own to use sinklab's own attention kernels");
  return *this;
}

Descriptor& Descriptor::set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& value,
                                       const char* what) {
  cudnnBackendDescriptor_t raw = value.get();
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw, what);
}

void Descriptor::finalize(const char* what) {
  check(cudnnBackendFinalize(desc_), "cudnnBackendFinalize", what);
}

cudnnStatus_t Descriptor::try_finalize() { return cudnnBackendFinalize(desc_); }

cudnnHandle_t handle() {
  static std::mutex mutex;
  static std::map<int, cudnnHandle_t> handles;  // device -> handle, never destroyed (exit)
  int device = 0;
  SINKLAB_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cudnnHandle_t h = nullptr;
  check(cudnnCreate(&h), "cudnnCreate", "cuDNN handle");
  handles.emplace(device, h);
  return h;
}

std::string version_string() {
  const size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch (cuDNN 9)
  std::ostringstream s;
  s << v / 10000 << "." << (v / 100) % 100 << "." << v % 100;
  return s.str();
}

std::vector<int64_t> packed_strides(const std::vector<int64_t>& dims) {
  std::vector<int64_t> strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * dims[i + 1];
  return strides;
}

void GraphBuilder::tensor(int64_t uid, const std::vector<int64_t>& dims,
                          const std::vector<int64_t>& strides, cudnnDataType_t dtype,
                          bool is_virtual) {
  const char* what = "cuDNN tensor";
  Descriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t alignment = 16;
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dtype, what)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<int64_t>(dims.size()),
           dims.data(), what)
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<int64_t>(strides.size()),
           strides.data(), what)
      .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, what)
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, what)
      .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual, what);
  t.finalize(what);
  tensors_.emplace_back(uid, std::move(t));
}

void GraphBuilder::scalar(int64_t uid) {
  const char* what = "cuDNN scalar";
  Descriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const cudnnDataType_t dtype = CUDNN_DATA_FLOAT;
  // Of the graph's rank (every tensor of these graphs is 4-D): pointwise operations refuse
  // operands of different ranks (CUDNN_STATUS_BAD_PARAM, "xDesc.getNbDims() != bDesc.getNbDims()",
  // seen on cuDNN 9.14).
  const int64_t ones[4] = {1, 1, 1, 1}, alignment = 16;
  const bool by_value = true, is_virtual = false;
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dtype, what)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, ones, what)
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, ones, what)
      .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, what)
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, what)
      .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual, what)
      .set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value, what);
  t.finalize(what);
  tensors_.emplace_back(uid, std::move(t));
}

const Descriptor& GraphBuilder::tensor_of(int64_t uid, const char* what) const {
  for (const auto& [id, t] : tensors_)
    if (id == uid) return t;
  SINKLAB_FAIL(InternalError, what << ": cuDNN graph has no tensor " << uid,
               "declare every tensor before the operation that uses it");
}

void GraphBuilder::pointwise(cudnnPointwiseMode_t mode, int64_t x, int64_t y, int64_t b,
                             int64_t t, cudnnDataType_t compute, int64_t axis) {
  const char* what = "cuDNN pointwise";
  Descriptor pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, what)
      .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &compute, what);
  if (mode == CUDNN_POINTWISE_GEN_INDEX)
    pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, what);
  pw.finalize(what);
  Descriptor op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw, what)
      .set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, tensor_of(x, what), what)
      .set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, tensor_of(y, what), what);
  if (b >= 0) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, tensor_of(b, what), what);
  if (t >= 0) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, tensor_of(t, what), what);
  const float alpha = 1.0f;
  op.set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &alpha, what)
      .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &alpha, what);
  op.finalize(what);
  op_descriptors_.push_back(std::move(pw));
  operations_.push_back(std::move(op));
}

void GraphBuilder::matmul(int64_t a, int64_t b, int64_t c) {
  const char* what = "cuDNN matmul";
  Descriptor mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  mm.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute, what);
  mm.finalize(what);
  Descriptor op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, tensor_of(a, what), what)
      .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, tensor_of(b, what), what)
      .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, tensor_of(c, what), what)
      .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm, what);
  op.finalize(what);
  op_descriptors_.push_back(std::move(mm));
  operations_.push_back(std::move(op));
}

void GraphBuilder::reduction(cudnnReduceTensorOp_t reduce, int64_t x, int64_t y) {
  const char* what = "cuDNN reduction";
  Descriptor red(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  red.set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute, what)
      .set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce, what);
  red.finalize(what);
  Descriptor op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_DESC, red, what)
      .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, tensor_of(x, what), what)
      .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, tensor_of(y, what), what);
  op.finalize(what);
  op_descriptors_.push_back(std::move(red));
  operations_.push_back(std::move(op));
}

void GraphBuilder::reshape(int64_t x, int64_t y) {
  const char* what = "cuDNN reshape";
  Descriptor op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, tensor_of(x, what), what)
      .set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, tensor_of(y, what), what);
  op.finalize(what);
  operations_.push_back(std::move(op));
}

GraphBuilder::Plan GraphBuilder::build(cudnnHandle_t h, const char* what) {
  Descriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  std::vector<cudnnBackendDescriptor_t> ops;  // (operations)
  for (const Descriptor& op : operations_) ops.push_back(op.get());
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
            static_cast<int64_t>(ops.size()), ops.data(), what)
      .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, what);
  graph.finalize(what);

  std::string reasons;
  for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heuristics.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph, what)
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, what);
    if (heuristics.try_finalize() != CUDNN_STATUS_SUCCESS) {
      reasons += " heuristics " + std::to_string(mode) + ": " + last_error() + ";";
      continue;
    }
    int64_t count = 0;
    cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                             CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
    std::vector<Descriptor> configs;  // (count) engine configurations, best first
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    int64_t returned = 0;
    if (count > 0)
      check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()),
            "engine heuristics results", what);
    for (int64_t i = 0; i < returned; ++i) {
      Descriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, what)
          .set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[i], what);
      if (plan.try_finalize() != CUDNN_STATUS_SUCCESS) {
        reasons += " config " + std::to_string(i) + ": " + last_error() + ";";
        continue;
      }
      Plan result;
      int64_t n = 0;
      check(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                     CUDNN_TYPE_INT64, 1, &n, &result.workspace_bytes),
            "plan workspace size", what);
      result.plan = std::move(plan);
      result.sources.push_back(std::move(graph));
      result.sources.push_back(std::move(configs[i]));
      for (auto& op : operations_) result.sources.push_back(std::move(op));
      for (auto& d : op_descriptors_) result.sources.push_back(std::move(d));
      for (auto& [uid, t] : tensors_) result.sources.push_back(std::move(t));
      operations_.clear();
      op_descriptors_.clear();
      tensors_.clear();
      return result;
    }
    if (returned == 0) reasons += " heuristics " + std::to_string(mode) + ": no engine;";
  }
  SINKLAB_FAIL(DeviceError, what << ": no cuDNN " << version_string()
                                 << " engine supports this graph:" << reasons,
               "set run.attention_kernels: own to use sinklab's own attention kernels");
}

void execute(cudnnHandle_t h, const Descriptor& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace, cudaStream_t stream,
             const char* what) {
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
           static_cast<int64_t>(uids.size()), uids.data(), what)
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
           static_cast<int64_t>(pointers.size()), pointers.data(), what)
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace, what);
  pack.finalize(what);
  check(cudnnSetStream(h, stream), "cudnnSetStream", what);
  check(cudnnBackendExecute(h, plan.get(), pack.get()), "cudnnBackendExecute", what);
}

}  // namespace sinklab::cuda::cudnn
#endif  // SINKLAB_HAVE_CUDNN
