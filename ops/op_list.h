// Every row of the op table, listed once (an X-macro, like ggml's op table): its name, what it
// has besides a forward, and which CUDA slots cuda/ claims to fill. Everything that must cover
// every op expands this list, so a new op that is left out of one of them does not compile or
// fails at start-up:
//   - the count below (a compile-time check: update it on purpose);
//   - cuda::initialize() runs check_cuda_slots(): every claimed CUDA slot must be filled;
//   - tests/test_op_list.cpp needs one case per op (CPU vs GPU, gradient check), and a CPU test
//     requires that every `*_kernels` row defined in ops/*.cpp stands in this list.
//
// X(name, grad, cuda): the row is ops::<name>_kernels;
//   grad: Backward  forward and backward (autograd records it; gradient-checked in fp64),
//         Fused     forward only: its gradient runs through other rows (fused adds and norms,
//                   fused GEMM entries, metric reductions that are never differentiated),
//         Update    outside autograd, in place (the optimizer's rows: UpdateKernels);
//   cuda: Both | ForwardOnly | None: the slots cuda/ fills (Update rows: Both = its one kernel).
#pragma once
#include "ops/activations.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/optimizer.h"
#include "ops/reduce.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/statistics.h"

#define SINKLAB_OPS(X)                                   \
  X(add, Backward, Both)                                 \
  X(mul, Backward, Both)                                 \
  X(scale, Backward, Both)                               \
  X(sum, Backward, Both)                                 \
  X(matmul, Backward, Both)                              \
  X(bias_grad, Fused, Both)                              \
  X(linear, Fused, ForwardOnly)                          \
  X(bf16_round, Fused, ForwardOnly)                      \
  X(weight_bias_grad, Fused, ForwardOnly)                \
  X(gelu, Backward, Both)                                \
  X(silu, Backward, Both)                                \
  X(swiglu, Backward, Both)                              \
  X(swiglu_packed, Backward, Both)                       \
  X(bias_gelu, Backward, Both)                           \
  X(gelu_linear, Fused, ForwardOnly)                     \
  X(gelu_grad_product, Fused, ForwardOnly)               \
  X(layernorm, Backward, Both)                           \
  X(add_layernorm, Fused, ForwardOnly)                   \
  X(rmsnorm, Backward, Both)                             \
  X(headwise_rmsnorm, Backward, Both)                    \
  X(add_rmsnorm, Fused, ForwardOnly)                     \
  X(embedding, Backward, Both)                           \
  X(rope, Backward, Both)                                \
  X(rope_qkv, Backward, Both)                            \
  X(attention, Backward, Both)                           \
  X(attention_qkv, Backward, Both)                       \
  X(attention_probabilities, Fused, ForwardOnly)         \
  X(attention_key_mass, Fused, ForwardOnly)              \
  X(cross_entropy, Backward, Both)                       \
  X(row_statistics, Fused, ForwardOnly)                  \
  X(abs_order_statistics, Fused, ForwardOnly)            \
  X(rows_and_abs_order_statistics, Fused, ForwardOnly)   \
  X(pooled_variance, Fused, ForwardOnly)                 \
  X(adamw_update, Update, Both)                          \
  X(sum_of_squares, Update, Both)                        \
  X(scale_in_place, Update, Both)                        \
  X(sum_of_squares_into, Update, Both)                   \
  X(adamw_update_scheduled, Update, Both)

namespace sinklab::ops {

enum class OpGrad { Backward, Fused, Update };
enum class OpCuda { Both, ForwardOnly, None };

enum class OpId : int {
#define SINKLAB_OP_ID(name, grad, cuda) name,
  SINKLAB_OPS(SINKLAB_OP_ID)
#undef SINKLAB_OP_ID
  count
};

// Adding or removing an op changes this number on purpose: give the new op its case in
// tests/test_op_list.cpp and its CUDA slots in cuda/ in the same change.
inline constexpr int kOpCount = static_cast<int>(OpId::count);
static_assert(kOpCount == 38, "the op list changed: update kOpCount's check, the op's case in "
                              "tests/test_op_list.cpp and the CUDA slots it claims");

struct OpInfo {
  const char* name;
  OpGrad grad;
  OpCuda cuda;
};

// The list as data, in list order.
inline constexpr OpInfo kOps[kOpCount] = {
#define SINKLAB_OP_INFO(name, grad, cuda) {#name, OpGrad::grad, OpCuda::cuda},
    SINKLAB_OPS(SINKLAB_OP_INFO)
#undef SINKLAB_OP_INFO
};

// Throws InternalError naming the first op whose claimed CUDA slot is empty, or whose slot is
// filled though the list claims none (cuda::initialize() calls it after installing).
void check_cuda_slots();

}  // namespace sinklab::ops
