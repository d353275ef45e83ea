#include "train/commands/bench_attention.h"

#include <chrono>
#include <iomanip>
#include <string>

#include "autograd/engine.h"
#include "core/device_runtime.h"
#include "core/error.h"
#include "core/precision.h"
#include "core/random.h"
#include "ops/attention.h"

namespace sinklab::train {

namespace {

void check_positive(int64_t value, const char* option) {
  SINKLAB_CHECK(value > 0, ConfigError,
                "bench-attention: " << option << " is " << value << "; it must be positive",
                std::string("pass ") + option + " >= 1");
}

void check_options(const AttentionBenchOptions& o) {
  check_positive(o.batch, "--batch");
  check_positive(o.seq, "--seq");
  check_positive(o.heads, "--heads");
  check_positive(o.head_size, "--head-size");
  check_positive(o.iters, "--iters");
  SINKLAB_CHECK(o.warmup >= 0, ConfigError,
                "bench-attention: --warmup is " << o.warmup << "; it must be at least 0",
                "pass --warmup 0 or more");
  SINKLAB_CHECK(o.precision == "bf16" || o.precision == "fp32", ConfigError,
                "bench-attention: --precision '" << o.precision << "' is not bf16 or fp32",
                "use --precision bf16 (tensor cores on a GPU) or fp32 (exact kernels)");
  SINKLAB_CHECK(o.kernels == "own" || o.kernels == "auto", ConfigError,
                "bench-attention: --kernels '" << o.kernels << "' is not own or auto",
                "use --kernels own (sinklab's kernels) or auto (cuDNN's where it applies)");
  for (int64_t pos : o.isolate)
    SINKLAB_CHECK(pos >= 0 && pos < o.seq, ConfigError,
                  "bench-attention: --isolate " << pos << " is outside [0, " << o.seq << ")",
                  "isolate positions index the sequence: 0 <= position < --seq");
}

// Waits for the device's queued work, so that wall-clock time covers the kernels.
void wait_for(Device device) {
  device_runtime(device).synchronize();
}

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

AttentionBenchResult bench_attention(const AttentionBenchOptions& o) {
  check_options(o);
  Device device;
  try {
    device = parse_device(o.device);
  } catch (const Error& e) {
    SINKLAB_FAIL(ConfigError, "bench-attention: --device: " << e.what(), "use cpu or cuda");
  }
  SINKLAB_CHECK(device_available(device.kind), ConfigError,
                "bench-attention: --device " << o.device
                                             << " but this build or machine has no GPU",
                "pass --device cpu (the own kernels on the CPU)");
  PrecisionGuard precision(o.precision == "bf16" ? Precision::BF16 : Precision::Exact);
  const ops::AttentionKernelsGuard kernels(o.kernels == "auto" ? ops::AttentionKernels::Auto
                                                               : ops::AttentionKernels::Own);
  const int64_t B = o.batch, T = o.seq, NH = o.heads, HS = o.head_size, C = NH * HS;
  ops::AttentionOptions attn;
  attn.sigmoid = o.sigmoid;
  attn.isolate_positions = o.isolate;
  // GPT-2 under bf16 on a GPU: c_attn writes its (B, T, 3C) product in bf16.
  const DType qkv_dtype =
      device.is_cuda() && o.precision == "bf16" && o.packed ? DType::BF16 : DType::F32;
  std::vector<Tensor> inputs;  // qkv (B, T, 3C), or q, k, v (B, T, NH, HS) each
  if (o.packed) {
    inputs.push_back(randn({B, T, 3 * C}, {1, 1, 0}).to_dtype(qkv_dtype).to_device(device));
  } else {
    for (uint64_t part = 0; part < 3; ++part)
      inputs.push_back(randn({B, T, NH, HS}, {1, 2 + part, 0}).to_device(device));
  }
  const Tensor grad = randn({B, T, NH, HS}, {1, 5, 0}).to_device(device);  // (B, T, NH, HS)
  // Fresh leaves per call (sharing the inputs' storage), so gradients never accumulate.
  auto forward = [&] {
    std::vector<Tensor> leaves;
    for (const Tensor& t : inputs) leaves.push_back(t.detach().set_requires_grad(true));
    return o.packed ? ops::attention_qkv(leaves[0], NH, attn)
                    : ops::attention(leaves[0], leaves[1], leaves[2], attn);
  };
  for (int64_t i = 0; i < o.warmup; ++i) autograd::backward(forward(), grad);
  wait_for(device);
  AttentionBenchResult r;
  // Forwards back to back (as a model queues them); each backward timed alone after its
  // forward has finished.
  const Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < o.iters; ++i) forward();
  wait_for(device);
  r.forward_ms = ms_since(start) / static_cast<double>(o.iters);
  for (int64_t i = 0; i < o.iters; ++i) {
    const Tensor out = forward();
    wait_for(device);
    const Clock::time_point backward_start = Clock::now();
    autograd::backward(out, grad);
    wait_for(device);
    r.backward_ms += ms_since(backward_start) / static_cast<double>(o.iters);
  }
  const double forward_flops = 4.0 * B * NH * static_cast<double>(T) * T * HS / 2.0;
  r.forward_tflops = forward_flops / (r.forward_ms * 1e9);
  r.backward_tflops = 2.5 * forward_flops / (r.backward_ms * 1e9);
  return r;
}

void print_attention_bench(const AttentionBenchOptions& o, const AttentionBenchResult& r,
                           std::ostream& out) {
  out << std::fixed << std::setprecision(3) << "sinklab attention"
      << (o.packed ? " (packed qkv)" : " (q, k, v)") << " " << o.kernels << " " << o.precision << " " << o.device
      << " B=" << o.batch << " T=" << o.seq << " NH=" << o.heads << " HS=" << o.head_size
      << (o.sigmoid ? " sigmoid" : " softmax") << " isolate=" << o.isolate.size()
      << ": forward_ms " << r.forward_ms << " backward_ms " << r.backward_ms << " forward_tflops " << std::setprecision(1)
      << r.forward_tflops << " backward_tflops " << r.backward_tflops << "\n";
}

}  // namespace sinklab::train
