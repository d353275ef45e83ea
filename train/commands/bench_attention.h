// `sinklab bench-attention`: causal attention alone at a model's shapes, timed forward and
// forward + backward, on the path a model takes: GPT-2's one packed qkv (B, T, 3C) through
// ops::attention_qkv (bf16 under run.precision bf16 on a GPU), or separate f32 q, k, v through
// ops::attention (`packed = false`). scripts/bench_attention.sh runs it beside PyTorch's
// scaled_dot_product_attention on the same shapes and prints the ratios: the attention kernels
// can be tuned without training a model.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace sinklab::train {

struct AttentionBenchOptions {
  int64_t batch = 32;
  int64_t seq = 1024;
  int64_t heads = 12;
  int64_t head_size = 64;
  int64_t iters = 20;              // timed repetitions (after `warmup` untimed ones)
  int64_t warmup = 3;
  bool packed = true;              // one (B, T, 3C) qkv as GPT-2 has it; else q, k, v
  bool sigmoid = false;            // sigmoid attention instead of softmax
  std::vector<int64_t> isolate;    // isolated positions (the paper's intervention)
  std::string device = "cuda";
  std::string precision = "bf16";  // bf16 (tensor cores on a GPU) or fp32
  std::string kernels = "own";     // own (sinklab's kernels) or auto (cuDNN's where it applies)
};

struct AttentionBenchResult {
  double forward_ms = 0;       // mean per call, calls queued back to back
  double backward_ms = 0;      // mean per call, each timed alone after its forward
  double forward_tflops = 0;   // causal FLOPs 4 B NH T^2 HS / 2 over forward_ms
  double backward_tflops = 0;  // 2.5x the forward's FLOPs (the FlashAttention convention)
};

// Throws ConfigError naming the option for a non-positive size or count, a head count that
// does not divide into the tensor-core path's layout, an unknown device or precision.
AttentionBenchResult bench_attention(const AttentionBenchOptions& options);

// One line: the shapes, the times and the TFLOP/s (what scripts/bench_attention.sh parses).
void print_attention_bench(const AttentionBenchOptions& options,
                           const AttentionBenchResult& result, std::ostream& out);

}  // namespace sinklab::train
