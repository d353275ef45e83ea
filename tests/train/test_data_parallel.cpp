// Data-parallel training end to end: 2 ranks launched with mpirun and with torchrun-style
// variables follow the 1-GPU loss curve of the same config (same global batch: accumulation
// adapts to the world size). Needs 2 GPUs ([cuda][distributed]; skipped otherwise), plus the
// refusal of a multi-rank CPU launch, which runs everywhere.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/philox.h"
#include "tests/op_checks.h"
#include "train/data_parallel.h"
#include "train/shards.h"
#if defined(SINKLAB_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

int gpu_count() {
#if defined(SINKLAB_HAVE_CUDA)
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
#else
  return 0;
#endif
}

std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const size_t p = line.find("\"loss\":");
    if (p != std::string::npos && line.compare(p + 7, 4, "null") != 0)
      out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

// Runs `command` through the shell; returns its exit status.
int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

TEST_CASE("data parallel: several ranks on the CPU are refused with a clear message",
          "[distributed]") {
  LaunchEnv env;
  env.launcher = "torchrun";
  env.world_size = 2;
  test::require_error<ConfigError>([&] { DataParallel dp(env, Device::cpu()); },
                                   {"world size 2", "run.device: cuda"});
  DataParallel single(LaunchEnv{}, Device::cpu());  // one process: nothing to set up
  REQUIRE(single.writer());
  REQUIRE(single.average(2.5) == 2.5);
}

TEST_CASE("data parallel: 2 ranks (mpirun, torchrun variables) follow the 1-GPU loss curve",
          "[cuda][distributed]") {
  if (gpu_count() < 2) {
    WARN("fewer than 2 GPUs: the 2-rank runs are skipped");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("sinklab_dp_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 60000; ++i) tokens.push_back(97 + philox4x32_10(9, 1, i / 3).v[0] % 20);
  write_shard((dir / "train_000000.bin").string(), tokens);
  write_shard((dir / "val_000000.bin").string(), std::vector<int32_t>(tokens.begin(), tokens.begin() + 6000));
  std::ofstream(dir / "dp.yaml")
      << "run: {name: dp, out_dir: " << dir.string() << ", device: cuda, precision: fp32}\n"
      << "model: {arch: gpt2, n_layer: 2, n_head: 2, n_embd: 64, block_size: 32}\n"
      << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
      << "train: {steps: 30, batch_size: 4, tokens_per_step: 256, eval_every: 0, "
      << "sample_tokens: 0}\n";
  const std::string bin = std::string(SINKLAB_BINARY_DIR) + "/sinklab";
  const std::string cfg = (dir / "dp.yaml").string();
  auto run = [&](const std::string& name, const std::string& launch) {
    const std::string cmd = launch + " " + bin + " train " + cfg + " --no-progress --set run.name=" +
                            name + " > " + (dir / (name + ".log")).string() + " 2>&1";
    INFO(cmd);
    REQUIRE(shell(cmd) == 0);
    return losses(dir / name / "main" / "metrics.jsonl");
  };
  const std::vector<double> single = run("one", "");
  REQUIRE(single.size() == 30);
  std::map<std::string, std::vector<double>> curves;
  if (shell("command -v mpirun > /dev/null") == 0)
    curves["mpirun"] = run("mpi", "mpirun -np 2 --allow-run-as-root --oversubscribe");
  else
    WARN("mpirun not found: the Open MPI launch is skipped");
  // torchrun-style: two processes with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_*.
  const std::string port = std::to_string(30000 + ::getpid() % 20000);
  const std::string vars = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port;
  const std::string log = (dir / "torchrun.log").string();
  const std::string two = "(RANK=1 LOCAL_RANK=1 " + vars + " " + bin + " train " + cfg +
                          " --no-progress --set run.name=tr > " + log + ".1 2>&1 &) ; RANK=0 " +
                          "LOCAL_RANK=0 " + vars + " " + bin + " train " + cfg +
                          " --no-progress --set run.name=tr > " + log + " 2>&1; st=$?; wait; exit $st";
  REQUIRE(shell("bash -c '" + two + "'") == 0);
  curves["torchrun"] = losses(dir / "tr" / "main" / "metrics.jsonl");
  for (const auto& [launcher, curve] : curves) {
    REQUIRE(curve.size() == single.size());
    for (size_t i = 0; i < curve.size(); ++i) {
      INFO(launcher << " step " << i << ": 1 GPU " << single[i] << ", 2 ranks " << curve[i]);
      // Same global batch and fp32 math: only the summation order of the gradient differs.
      REQUIRE(std::fabs(curve[i] - single[i]) <= 1e-3 * std::fabs(single[i]));
    }
  }
  fs::remove_all(dir);
}
