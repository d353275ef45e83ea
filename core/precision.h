// How CUDA kernels compute on f32 tensors. Storage stays f32 (fp32 master weights, moments and
// the residual stream) except for activations that only feed products, stored in bf16 under BF16
// as PyTorch's autocast stores them: the model's logits (cross_entropy sums them in f32), q/k/v
// (one product, RoPE'd in place for LLaMA), every norm's output, attention's output where cuDNN
// writes it, GPT-2's FFN hidden, and LLaMA's gate | up and SwiGLU output (each computed in f32,
// rounded once when stored); otherwise only the arithmetic inside a kernel changes:
//   Exact: fp32 products and sums (the default; what the [cuda] tests compare bit-for-tolerance
//          against the CPU reference).
//   BF16:  tensor-core math on bf16-rounded operands with fp32 accumulation (matmuls through
//          cuBLAS's bf16 compute mode, the attention kernel's Q.K and P.V products); every
//          reduction, softmax, norm and the optimizer stay fp32.
// f64 tensors and CPU kernels ignore it. The trainer sets it from `run.precision`.
#pragma once

namespace sinklab {

enum class Precision { Exact, BF16 };

Precision cuda_precision();
void set_cuda_precision(Precision precision);

// Sets the precision for a scope and restores the previous one on exit.
class PrecisionGuard {
 public:
  explicit PrecisionGuard(Precision precision) : previous_(cuda_precision()) {
    set_cuda_precision(precision);
  }
  ~PrecisionGuard() { set_cuda_precision(previous_); }
  PrecisionGuard(const PrecisionGuard&) = delete;
  PrecisionGuard& operator=(const PrecisionGuard&) = delete;

 private:
  Precision previous_;
};

}  // namespace sinklab
