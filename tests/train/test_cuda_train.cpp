// [cuda] the training path on the GPU: AdamW, grad norm and clipping kernels against the CPU
// loop, and whole runs on CPU and GPU following the same loss curve.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/philox.h"
#include "train/config.h"
#include "train/optimizer.h"
#include "train/shards.h"
#include "train/trainer.h"
#include "tests/helpers.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

TEST_CASE("cuda: AdamW, grad norm and clipping match the CPU", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  std::vector<ParamSpec> specs{{"a.weight", {37, 19}, Init::Normal, 0.02, true, false},
                               {"a.bias", {19}, Init::Zeros, 0.0, false, false},
                               {"emb.weight", {101, 19}, Init::Normal, 0.02, true, true}};
  ParameterSet cpu(specs, 3, DType::F32, Device::cpu());
  ParameterSet gpu(specs, 3, DType::F32, Device::cuda(0));
  REQUIRE(gpu.flat_values().to_doubles() == cpu.flat_values().to_doubles());
  OptimSection o;
  o.weight_decay = 0.1;
  o.decay_embeddings = false;
  AdamW adam_cpu(cpu, o), adam_gpu(gpu, o);
  for (int step = 0; step < 3; ++step) {
    Tensor g = randn({cpu.numel()}, RngKey{9, static_cast<uint64_t>(step), 0});
    cpu.flat_grads().copy_from(g);
    gpu.flat_grads().copy_from(g.to_device(Device::cuda(0)));
    const double n_cpu = global_grad_norm(cpu), n_gpu = global_grad_norm(gpu);
    REQUIRE(n_gpu == Approx(n_cpu).epsilon(1e-12));
    clip_gradients(cpu, n_cpu, 5.0);
    clip_gradients(gpu, n_gpu, 5.0);
    adam_cpu.step(cpu, 1e-2);
    adam_gpu.step(gpu, 1e-2);
  }
  test::require_close(gpu.flat_values().to_device(Device::cpu()), cpu.flat_values(), 1e-5, 1e-7);
  test::require_close(adam_gpu.m().to_device(Device::cpu()), adam_cpu.m(), 1e-5, 1e-8);
}

TEST_CASE("cuda: a run on the GPU follows the CPU loss curve", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  fs::path dir = fs::temp_directory_path() / ("sinklab_cuda_run_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40000; ++i) tokens.push_back(97 + philox4x32_10(1, 1, i / 2).v[0] % 26);
  write_shard((dir / "train_000000.bin").string(), tokens);
  write_shard((dir / "val_000000.bin").string(), std::vector<int32_t>(tokens.begin(), tokens.begin() + 4000));
  std::map<std::string, std::vector<double>> losses;
  for (const char* device : {"cpu", "cuda"}) {
    std::ostringstream y;
    y << "run: {name: " << device << ", out_dir: " << dir.string() << ", device: " << device << "}\n"
      << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 64, block_size: 32}\n"
      << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
      << "train: {steps: 60, batch_size: 8, eval_every: 30, eval_batches: 1, sample_tokens: 0}\n"
      << "variants:\n  - {name: base, set: {model.attn_output_norm: none}}\n"
      << "  - {name: headwise, set: {model.attn_output_norm: headwise_rmsnorm}}\n";
    RunConfig cfg = parse_config(y.str(), "inline.yaml");
    std::ostringstream console;
    Run(cfg, console).train();
    for (const char* v : {"base", "headwise"}) {
      std::ifstream in(dir / device / v / "metrics.jsonl");
      for (std::string line; std::getline(in, line);) {
        const size_t p = line.find("\"loss\":");
        if (line.compare(p + 7, 4, "null") != 0)
          losses[std::string(device) + v].push_back(std::stod(line.substr(p + 7)));
      }
    }
  }
  for (const char* v : {"base", "headwise"}) {
    const auto& a = losses[std::string("cpu") + v];
    const auto& b = losses[std::string("cuda") + v];
    REQUIRE(a.size() == 60);
    REQUIRE(b.size() == a.size());
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(v << " step " << i << " cpu " << a[i] << " cuda " << b[i]);
      REQUIRE(std::fabs(a[i] - b[i]) <= 2e-3 * std::fabs(a[i]));
    }
    REQUIRE(b.back() < b.front() - 0.5);  // and it learns
  }
}
