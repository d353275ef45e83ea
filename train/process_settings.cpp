#include "train/process_settings.h"

#include "autograd/engine.h"
#include "core/error.h"
#include "core/precision.h"
#include "ops/add_norm.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/cpu/blas_gemm.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/statistics.h"
#include "ops/weight_operands.h"

namespace sinklab::train {

void apply_process_settings(const RunSection& run) {
  set_cuda_precision(resolved_precision(run));
  ops::attention_kernels_preference = run.attention_kernels;
  ops::bf16_gemm_preference = run.bf16_gemm;
  ops::gemm_epilogues = run.gemm_epilogues;
  ops::bias_grad_columns = run.bias_grad_columns;
  ops::gemm_search = static_cast<int>(run.gemm_search);  // at most 64 (validated)
  ops::fused_cross_entropy = run.fused_cross_entropy;
  ops::fold_residual_grads = run.fold_residual_grads;
  ops::rope_in_place = run.rope_in_place;
  ops::bf16_branch_outputs = run.bf16_branch_outputs;
  ops::fused_norm_param_grads = run.fused_norm_param_grads;
  ops::flat_weight_operands = run.flat_weight_operands;
  ops::head_norm_statistics = run.head_norm_statistics;
  ops::sigmoid_row_sums = run.sigmoid_row_sums;
  ops::one_pass_order_statistics = run.one_pass_order_statistics;
  ops::deterministic_attention = run.deterministic;
  SINKLAB_CHECK(run.cpu_gemm != CpuGemmSetting::OpenBLAS || cpu::openblas_built(), ConfigError,
                "run.cpu_gemm is openblas, but this build has no OpenBLAS",
                "install libopenblas-dev and reconfigure, or set run.cpu_gemm: auto");
  cpu::set_cpu_gemm(run.cpu_gemm == CpuGemmSetting::Reference || !cpu::openblas_built()
                        ? cpu::CpuGemm::kReference
                        : cpu::CpuGemm::kOpenBLAS);
  autograd::set_op_profiling(run.profile);
  autograd::set_keep_inputs(!run.release_forward_inputs);
}

void apply_stored_model_settings(const RunSection& run) {
  apply_process_settings(run);
  ops::gemm_search = 0;
}

ops::CrossEntropyLogits logits_after_loss(const RunSection& run) {
  return run.release_forward_inputs ? ops::CrossEntropyLogits::kOverwritten
                                    : ops::CrossEntropyLogits::kKept;
}

}  // namespace sinklab::train
