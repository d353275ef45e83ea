#include "ops/embedding.h"

#include "autograd/node.h"
#include "ops/cpu/embedding.h"

namespace sinklab::ops {

OpKernels<EmbeddingForwardFn, EmbeddingBackwardFn> embedding_kernels{
    "embedding", cpu::embedding_forward, cpu::embedding_backward};

Tensor embedding(const Tensor& ids, const Tensor& table) {
  check_dtype(ids, DType::I32, "embedding", "ids");
  check_float(table, "embedding", "table");
  check_same_device(ids, table, "embedding");
  check_contiguous(ids, "embedding", "ids");
  check_contiguous(table, "embedding", "table");
  check_rank(table, 2, "embedding", "table");
  Shape out_shape = ids.shape();
  out_shape.push_back(table.size(1));
  Tensor out = Tensor::empty(out_shape, table.dtype(), table.device());  // (..., C)
  embedding_kernels.forward(table.device())(ids, table, out);
  autograd::record(out, "embedding", {ids, table},
                   [ids = ids.detach(), table_shape = table.shape(), dtype = table.dtype(),
                    device = table.device()](const Tensor& g) {
                     Tensor gt = Tensor::empty(table_shape, dtype, device);  // (V, C)
                     embedding_kernels.backward(device)(g, ids, gt);
                     return std::vector<Tensor>{Tensor(), gt};
                   });
  return out;
}

}  // namespace sinklab::ops
