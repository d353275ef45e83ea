// Checkpoint/resume end to end: bit-identical continuation, metric files without duplicated or
// missing steps, SIGTERM and SIGKILL during training, a corrupted newest checkpoint, a model
// config that does not match, non-finite steps, and safetensors export.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <cmath>
#include <sstream>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "ops/matmul.h"
#include "train/io/checkpoint.h"
#include "train/io/gemm_choices_file.h"
#include "train/io/val_losses_file.h"
#include "train/config.h"
#include "train/io/export.h"
#include "train/io/safetensors.h"
#include "train/step_graph.h"
#include "train/trainer.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

fs::path fresh(const std::string& name) { return test::fresh_dir("resume_" + name); }

fs::path byte_data(const std::string& name) {
  fs::path dir = fresh(name);
  test::write_train_val(dir, test::letter_tokens(5, 1, 60000, 20, 3),
                        test::letter_tokens(5, 2, 6000, 20, 3));
  return dir;
}

std::string config_text(const fs::path& data, const fs::path& out, int steps, bool two_variants,
                        int n_embd = 32, const std::string& device = "cpu",
                        const std::string& attention_kernels = "own") {
  std::ostringstream y;
  y << "run: {name: r, out_dir: " << out.string() << ", seed: 11, device: " << device
    << ", attention_kernels: " << attention_kernels << "}\n"
    << "model: {arch: gpt2, n_layer: 2, n_head: 2, n_embd: " << n_embd
    << ", block_size: " << (device == "cpu" ? 16 : 128) << "}\n"  // GPU: cuDNN's T % 128 = 0
    << "data: {dir: " << data.string() << ", tokenizer: byte}\n"
    << "train: {steps: " << steps << ", batch_size: 4, eval_every: 4, eval_batches: 1, "
    << "sample_tokens: 0, log_every: 100}\n"
    << "optim: {lr: 0.003, warmup_steps: 2}\n"
    << "checkpoint: {every: 0, keep_last: 3}\n";
  if (two_variants)
    y << "variants:\n  - {name: baseline, set: {model.attn_output_norm: none}}\n"
      << "  - {name: headwise, set: {model.attn_output_norm: headwise_rmsnorm}}\n";
  return y.str();
}

std::vector<std::string> lines(const fs::path& f) {
  std::ifstream in(f);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The deterministic part of a metrics line: everything but timing fields.
std::string deterministic_fields(const std::string& line) {
  std::string out;
  for (const char* key : {"\"step\":", "\"loss\":", "\"lr\":", "\"grad_norm\":", "\"val_loss\":",
                          "\"batch_hash\":", "\"sink_mass\":", "\"dim_disparity\":"}) {
    const size_t p = line.find(key);
    if (p == std::string::npos) continue;
    out += line.substr(p, line.find_first_of(",]", p + std::strlen(key) + 1) - p) + "|";
  }
  return out;
}

// Trains cfg; returns what the run printed.
std::string run_and_collect(const RunConfig& cfg, RunOptions opts = {}) {
  std::ostringstream console;
  Run run(cfg, console, opts);
  run.train();
  return console.str();
}

int spawn_sinklab(const std::vector<std::string>& args, const fs::path& log) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    std::vector<char*> argv;
    std::string bin = std::string(SINKLAB_BINARY_DIR) + "/sinklab";
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_text(const fs::path& f) {
  std::ifstream in(f);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Two runs of the variants "baseline" and "headwise" (folders x / r and y / r) computed the
// same: `lines` metrics lines each, equal but for their timing fields, and the same weights in
// their checkpoints named `checkpoint`, bit for bit.
void require_same_runs(const fs::path& x_run, const fs::path& y_run, size_t lines_each,
                       const std::string& checkpoint) {
  for (const char* v : {"baseline", "headwise"}) {
    const std::vector<std::string> x = lines(x_run / "r" / v / "metrics.jsonl");
    const std::vector<std::string> y = lines(y_run / "r" / v / "metrics.jsonl");
    REQUIRE(x.size() == lines_each);
    REQUIRE(y.size() == x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      INFO(y_run << " " << v << " line " << i);
      REQUIRE(deterministic_fields(y[i]) == deterministic_fields(x[i]));
    }
    const auto wx = read_checkpoint_params((x_run / "r" / v / "ckpt" / checkpoint).string());
    const auto wy = read_checkpoint_params((y_run / "r" / v / "ckpt" / checkpoint).string());
    REQUIRE(wx.size() == wy.size());
    for (size_t i = 0; i < wx.size(); ++i)
      REQUIRE(wx[i].second.to_doubles() == wy[i].second.to_doubles());
  }
}

}  // namespace

// Trains 12 steps straight and 6 + resume + 6 on `device` (bf16 math on a GPU, where the
// heads are 64 wide and T = 128 so that the tensor-core and cuDNN attention apply) with the given
// run.attention_kernels (and --set overrides `sets`, `tag_suffix` naming them in the folders);
// before_resume(the split run's folder) runs between the two halves. Requires the same metrics
// lines (timing aside) and the same final weights, bit for bit.
static void require_bit_exact_resume(const std::string& device,
                                     const std::string& attention_kernels = "own",
                                     const std::vector<std::string>& sets = {},
                                     const std::string& tag_suffix = "",
                                     const std::function<void(const fs::path&)>& before_resume =
                                         {}) {
  const std::string tag = device + "_" + attention_kernels + tag_suffix;
  const int n_embd = device == "cpu" ? 32 : 128;  // 2 heads of 16 or 64
  fs::path data = byte_data("bitexact_data_" + tag);
  fs::path straight = fresh("straight_" + tag), split = fresh("split_" + tag);
  RunConfig a = parse_config(
      config_text(data, straight, 12, true, n_embd, device, attention_kernels), "a.yaml", sets);
  run_and_collect(a);
  RunConfig b = parse_config(
      config_text(data, split, 12, true, n_embd, device, attention_kernels), "b.yaml", sets);
  RunOptions first;
  first.stop_after = 6;
  run_and_collect(b, first);
  REQUIRE(fs::exists(split / "r" / "baseline" / "ckpt" / "step_00000006.h5"));
  if (before_resume) before_resume(split);
  RunOptions second;
  second.resume = "auto";
  run_and_collect(b, second);
  INFO(device);
  // steps 0..11 and the final evaluation, no duplicates
  require_same_runs(straight, split, 13, "step_00000012.h5");
}

TEST_CASE("2N steps straight == N steps + resume + N steps, bit for bit", "[resume]") {
  require_bit_exact_resume("cpu");
}

TEST_CASE("cuda: 2N steps straight == N steps + resume + N steps on the GPU, bit for bit",
          "[cuda][resume]") {
  SINKLAB_REQUIRE_CUDA();
  for (const char* kernels : {"auto", "own"}) {
    INFO("run.attention_kernels: " << kernels);
    require_bit_exact_resume("cuda", kernels);
  }
}

TEST_CASE("cuda: with run.gemm_search, the resumed process takes the checkpoint's algorithms "
          "again, bit for bit", "[cuda][resume]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::GemmSearchGuard restore(ops::gemm_search);  // the runs set it; as it was after
  // Plans are made once a shape and process: forgotten first, so that this run's shapes are
  // searched (earlier cases made them without), and before the resume, as a new process starts.
  // The straight run and the first half share their plans (one process here); the resumed half
  // must search nothing: every algorithm comes from the checkpoint.
  ops::forget_gemm_plans();
  int64_t searched = -1;
  const auto before_resume = [&](const fs::path& split) {
    const fs::path ckpt = split / "r" / "baseline" / "ckpt" / "step_00000006.h5";
    REQUIRE(test::contains(read_checkpoint_state(ckpt.string()).gemm_choices,
                           "sinklab gemm choices 1\nlibrary cublasLt "));
    // Only the checkpoint's: without the run folder's file (train/io/gemm_choices_file.h),
    // which a fresh run in the folder would take.
    fs::remove_all(split / "r" / "baseline" / "gemm_choices");
    ops::forget_gemm_plans();
    searched = ops::gemm_searches();
  };
  require_bit_exact_resume("cuda", "auto", {"run.gemm_search=8"}, "_search", before_resume);
  REQUIRE(ops::gemm_searches() == searched);
  ops::forget_gemm_plans();  // later cases make their own plans
}

TEST_CASE("cuda: with run.gemm_search, a fresh run in the same folder takes the first run's "
          "algorithms from the folder, bit for bit",
          "[cuda][resume]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::GemmSearchGuard restore(ops::gemm_search);  // the runs set it; as it was after
  const fs::path data = byte_data("stored_choices_data");
  const fs::path folder = fresh("stored_choices");
  const RunConfig cfg = parse_config(config_text(data, folder, 6, true, 128, "cuda", "auto"),
                                     "c.yaml", {"run.gemm_search=8"});
  ops::forget_gemm_plans();  // as a new process: the first run searches every shape
  const int64_t before_first = ops::gemm_searches();
  run_and_collect(cfg);
  REQUIRE(ops::gemm_searches() > before_first);
  // in the folder of the first variant the process trained
  const fs::path stored = gemm_choices_path((folder / "r" / "baseline").string(), ops::gemm_library());
  REQUIRE(fs::exists(stored));
  REQUIRE(read_text(stored) == ops::gemm_choices());
  // The first run's files aside; the second run starts afresh, with the stored file only.
  const fs::path first = fresh("stored_choices_first");
  fs::rename(folder / "r", first / "r");
  fs::create_directories(folder / "r" / "baseline");
  fs::copy(first / "r" / "baseline" / "gemm_choices", folder / "r" / "baseline" / "gemm_choices");
  ops::forget_gemm_plans();  // a second process
  const int64_t before_second = ops::gemm_searches();
  const std::string console = run_and_collect(cfg);
  REQUIRE(test::contains(console, "product shapes from " + stored.string()));
  REQUIRE(ops::gemm_searches() == before_second);  // every algorithm from the file
  require_same_runs(first, folder, 7, "step_00000006.h5");  // 6 steps and the final evaluation
  // A process that trains one variant of the config (`train --variant`, beside another such
  // process in the same run folder) keeps its choices in that variant's folder, and leaves the
  // other's file alone.
  const std::string kept = read_text(stored);
  ops::forget_gemm_plans();
  RunOptions headwise_only;
  headwise_only.only_variants = {"headwise"};
  run_and_collect(cfg, headwise_only);
  REQUIRE(fs::exists(gemm_choices_path((folder / "r" / "headwise").string(), ops::gemm_library())));
  REQUIRE(read_text(stored) == kept);
  ops::forget_gemm_plans();  // later cases make their own plans
}

// run.cuda_graph: 12 steps of two variants on `device`, two micro-batches a step, metrics every
// fourth step (eager, as is the first step), straight and as 6 + resume + 6, against the same
// run without the recording: the same metrics lines (timing aside) and final weights, bit for
// bit. Returns the recorded run's console.
static std::string require_cuda_graph_changes_no_bit(const std::string& device) {
  const int n_embd = device == "cpu" ? 32 : 128;
  const int T = device == "cpu" ? 16 : 128;
  const std::string kernels = device == "cpu" ? "own" : "auto";  // cuDNN's attention on a GPU
  const std::vector<std::string> sets{"metrics.every=4",
                                      "train.tokens_per_step=" + std::to_string(2 * 4 * T)};
  std::vector<std::string> graph_sets = sets;
  graph_sets.push_back("run.cuda_graph=true");
  const fs::path data = byte_data("graph_data_" + device);
  const fs::path eager = fresh("graph_eager_" + device), straight = fresh("graph_" + device),
                 split = fresh("graph_split_" + device);
  const std::string text = config_text(data, eager, 12, true, n_embd, device, kernels);
  run_and_collect(parse_config(text, "e.yaml", sets));
  const std::string console = run_and_collect(parse_config(
      config_text(data, straight, 12, true, n_embd, device, kernels), "g.yaml", graph_sets));
  const RunConfig b = parse_config(config_text(data, split, 12, true, n_embd, device, kernels),
                                   "s.yaml", graph_sets);
  RunOptions first;
  first.stop_after = 6;
  run_and_collect(b, first);
  RunOptions second;
  second.resume = "auto";
  run_and_collect(b, second);
  for (const fs::path& run : {straight, split})
    require_same_runs(eager, run, 13, "step_00000012.h5");
  return console;
}

TEST_CASE("run.cuda_graph on the CPU: off with the reason in the run header, the same bits",
          "[resume]") {
  const std::string console = require_cuda_graph_changes_no_bit("cpu");
  INFO(console);
  REQUIRE(console.find("variant baseline: cuda graph off: run.device is cpu: the CPU runs every "
                       "op when it is called") != std::string::npos);
  REQUIRE(console.find("cuda graph recorded") == std::string::npos);
  // Where a run cannot record, whatever the machine: the reason names the key or the setting.
  RunConfig c = parse_config("run: {device: cuda, cuda_graph: true}", "g.yaml");
  REQUIRE(StepGraph::unavailable_because(c, 1).empty());
  REQUIRE(test::contains(StepGraph::unavailable_because(c, 4), "data parallel (4 ranks)"));
  c.run.profile = true;
  REQUIRE(test::contains(StepGraph::unavailable_because(c, 1), "run.profile"));
  c.run.cuda_graph = false;
  REQUIRE(StepGraph::unavailable_because(c, 1) == "run.cuda_graph is off");
}

TEST_CASE("cuda: run.cuda_graph replays the micro-batches bit for bit, with accumulation, "
          "metrics steps and resume", "[cuda][resume]") {
  SINKLAB_REQUIRE_CUDA();
  const std::string console = require_cuda_graph_changes_no_bit("cuda");
  INFO(console);
  // Step 0 runs eagerly (metrics); step 1 records.
  for (const char* v : {"baseline", "headwise"})
    REQUIRE(console.find(std::string("variant ") + v + ": cuda graph recorded at step 1 (") !=
            std::string::npos);
  REQUIRE(console.find("cuda graph off") == std::string::npos);
}

TEST_CASE("resuming from an earlier checkpoint rewrites the metrics from that step", "[resume]") {
  fs::path data = byte_data("earlier_data"), out = fresh("earlier");
  RunConfig cfg = parse_config(config_text(data, out, 8, false), "c.yaml", {"checkpoint.every=4"});
  run_and_collect(cfg);
  const fs::path ckpt = out / "r" / "main" / "ckpt" / "step_00000004.h5";
  REQUIRE(fs::exists(ckpt));
  RunOptions opts;
  opts.resume = ckpt.string();
  run_and_collect(cfg, opts);
  std::vector<std::string> log = lines(out / "r" / "main" / "metrics.jsonl");
  REQUIRE(log.size() == 9);
  for (size_t i = 0; i < log.size(); ++i)
    REQUIRE(log[i].rfind("{\"step\":" + std::to_string(i) + ",", 0) == 0);
  // The events file likewise: steps 0..7 and the final evaluation (8), once each.
  REQUIRE(test::event_steps(test::events_in(out / "r" / "main")) ==
          std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8});
  // metrics.tensorboard: false writes none.
  const fs::path quiet = fresh("earlier_quiet");
  run_and_collect(parse_config(config_text(data, quiet, 2, false), "q.yaml",
                               {"metrics.tensorboard=false"}));
  REQUIRE(fs::exists(quiet / "r" / "main" / "metrics.jsonl"));
  REQUIRE(sinklab_events_files((quiet / "r" / "main").string()).empty());
}

TEST_CASE("a corrupted newest checkpoint is refused and auto falls back", "[resume]") {
  fs::path data = byte_data("corrupt_data"), out = fresh("corrupt");
  RunConfig cfg = parse_config(config_text(data, out, 8, false), "c.yaml", {"checkpoint.every=4"});
  run_and_collect(cfg);
  const fs::path newest = out / "r" / "main" / "ckpt" / "step_00000008.h5";
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(newest) / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(newest) / 2));
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  REQUIRE_THROWS_AS(read_checkpoint_state(newest.string()), IOError);
  std::ostringstream warnings;
  REQUIRE(find_latest_good_checkpoint((out / "r" / "main" / "ckpt").string(), warnings) ==
          (out / "r" / "main" / "ckpt" / "step_00000004.h5").string());
  REQUIRE(warnings.str().find("step_00000008.h5") != std::string::npos);
  std::ostringstream console;
  RunOptions opts;
  opts.resume = "auto";
  Run run(cfg, console, opts);
  REQUIRE(run.start_step() == 4);
}

TEST_CASE("a config that does not match the checkpoint is refused naming the key", "[resume]") {
  fs::path data = byte_data("mismatch_data"), out = fresh("mismatch");
  run_and_collect(parse_config(config_text(data, out, 4, false), "m.yaml"));
  RunConfig wider = parse_config(config_text(data, out, 8, false, 64), "wider.yaml");
  RunOptions opts;
  opts.resume = "auto";
  std::ostringstream console;
  try {
    Run run(wider, console, opts);
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    REQUIRE(std::string(e.what()).find("model.n_embd") != std::string::npos);
  }
}

TEST_CASE("every model key that changes the function is checked on resume", "[resume]") {
  // issue 20: attention, norm_eps, rope_theta and isolate_positions resumed silently.
  fs::path data = byte_data("model_keys_data"), out = fresh("model_keys");
  run_and_collect(parse_config(config_text(data, out, 4, false), "m.yaml"));
  RunOptions opts;
  opts.resume = "auto";
  for (const std::string set :
       {"model.attention=sigmoid", "model.norm_eps=0.001", "model.rope_theta=500000",
        "model.isolate_positions=[3]", "model.amplify_position=2", "model.amplify_lambda=2",
        "model.gamma_weight_decay=false", "model.attn_output_norm=headwise_rmsnorm",
        "model.tie_embeddings=false", "model.n_layer=3"}) {
    INFO(set);
    const RunConfig changed = parse_config(config_text(data, out, 8, false), "c.yaml", {set});
    std::ostringstream console;
    try {
      Run run(changed, console, opts);
      FAIL("resumed with " << set);
    } catch (const ConfigError& e) {
      const std::string key = set.substr(0, set.find('='));
      INFO(e.what());
      REQUIRE(std::string(e.what()).find(key) != std::string::npos);
      REQUIRE(std::string(e.what()).find("c.yaml") != std::string::npos);
    }
  }
  // What only initialises, and defaults written out, resume.
  for (const std::string set : {"model.init_std=0.05", "model.ffn_hidden=128",
                                "model.norm_eps=0.00001", "model.gamma_init=ones",
                                "model.gamma_init_scale=0.5"}) {
    INFO(set);
    const RunConfig same = parse_config(config_text(data, out, 5, false), "s.yaml", {set});
    std::ostringstream console;
    Run run(same, console, opts);
    REQUIRE(run.start_step() == 4);
  }
  fs::remove_all(data);
  fs::remove_all(out);
}

TEST_CASE("non-finite loss skips the update and stops after max_skipped_steps", "[resume]") {
  fs::path data = byte_data("nan_data"), out = fresh("nan");
  RunConfig cfg = parse_config(config_text(data, out, 20, false), "n.yaml",
                               {"optim.lr=1e30", "optim.warmup_steps=0", "optim.grad_clip=0",
                                "train.max_skipped_steps=2"});
  std::ostringstream console;
  Run run(cfg, console);
  run.train();
  REQUIRE(run.end_reason() == RunEnd::TooManySkipped);
  REQUIRE(console.str().find("update skipped") != std::string::npos);
  std::vector<std::string> log = lines(out / "r" / "main" / "metrics.jsonl");
  REQUIRE(log.back().find("\"skipped\":1") != std::string::npos);
  REQUIRE(log.size() < 20);
}

TEST_CASE("SIGTERM writes a checkpoint and exits cleanly; SIGKILL leaves a good one",
          "[resume][signals]") {
  fs::path data = byte_data("signal_data"), out = fresh("signal");
  std::ofstream(out / "s.yaml") << config_text(data, out, 100000, false, 128);
  const fs::path run_dir = out / "r" / "main";
  auto wait_for_steps = [&](size_t n) {
    for (int i = 0; i < 600 && lines(run_dir / "metrics.jsonl").size() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  // Pre-emption: SIGTERM -> checkpoint + exit 0.
  pid_t pid = spawn_sinklab({"train", (out / "s.yaml").string(), "--no-progress",
                             "--set", "checkpoint.every=1"}, out / "term.log");
  wait_for_steps(3);
  kill(pid, SIGTERM);
  REQUIRE(wait_exit(pid) == 0);
  REQUIRE(read_text(out / "term.log").find("interrupted by signal") != std::string::npos);
  // SIGKILL at arbitrary moments while checkpoints are written every step: the newest good
  // checkpoint always loads, and the run resumes from it.
  for (int attempt = 0; attempt < 3; ++attempt) {
    pid = spawn_sinklab({"train", (out / "s.yaml").string(), "--no-progress", "--resume", "auto",
                         "--set", "checkpoint.every=1"}, out / "kill.log");
    wait_for_steps(lines(run_dir / "metrics.jsonl").size() + 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(7 * attempt + 3));
    kill(pid, SIGKILL);
    REQUIRE(wait_exit(pid) == 128 + SIGKILL);
    std::ostringstream warnings;
    const std::string good = find_latest_good_checkpoint((run_dir / "ckpt").string(), warnings);
    REQUIRE_FALSE(good.empty());
    REQUIRE_NOTHROW(read_checkpoint_state(good));
  }
  // And the run continues from there.
  pid = spawn_sinklab({"train", (out / "s.yaml").string(), "--no-progress", "--resume", "auto",
                       "--stop-after", "1"}, out / "resume.log");
  REQUIRE(wait_exit(pid) == 0);
  REQUIRE(read_text(out / "resume.log").find("resumed main from") != std::string::npos);
}

TEST_CASE("a kill right after a checkpoint became durable loses no metrics line", "[resume][signals]") {
  // The metric files are flushed and fsynced before the checkpoint is written: a SIGKILL at the
  // moment the checkpoint and `latest` are on disk (SINKLAB_FAULT_AT) leaves every step up to
  // it in metrics.jsonl, and the resumed run writes each later step once. (The files had been
  // flushed after the checkpoint: steps 0-4 went missing here.)
  fs::path data = byte_data("durable_data"), out = fresh("durable");
  std::ofstream(out / "d.yaml") << config_text(data, out, 12, false);
  const fs::path run_dir = out / "r" / "main";
  setenv("SINKLAB_FAULT_AT", "checkpoint-durable", 1);
  pid_t pid = spawn_sinklab({"train", (out / "d.yaml").string(), "--no-progress", "--set",
                             "checkpoint.every=5"}, out / "killed.log");
  unsetenv("SINKLAB_FAULT_AT");
  REQUIRE(wait_exit(pid) == 128 + SIGKILL);
  REQUIRE(fs::exists(run_dir / "ckpt" / "step_00000005.h5"));
  REQUIRE(lines(run_dir / "metrics.jsonl").size() == 5);  // steps 0..4, all on disk
  REQUIRE(test::event_steps(test::events_in(run_dir)) == std::vector<int64_t>{0, 1, 2, 3, 4});
  pid = spawn_sinklab({"train", (out / "d.yaml").string(), "--no-progress", "--resume", "auto"},
                      out / "resumed.log");
  REQUIRE(wait_exit(pid) == 0);
  const std::vector<std::string> log = lines(run_dir / "metrics.jsonl");
  REQUIRE(log.size() == 13);  // steps 0..11 once each, and the final evaluation
  for (size_t i = 0; i < 12; ++i) {
    INFO("line " << i << ": " << log[i]);
    REQUIRE(log[i].find("\"step\":" + std::to_string(i) + ",") != std::string::npos);
  }
  std::vector<int64_t> steps(13);
  std::iota(steps.begin(), steps.end(), 0);
  REQUIRE(test::event_steps(test::events_in(run_dir)) == steps);
}

TEST_CASE("export writes Hugging Face-named safetensors (GPT-2 Conv1D transposed)", "[resume]") {
  fs::path data = byte_data("export_data"), out = fresh("export");
  run_and_collect(parse_config(config_text(data, out, 2, false), "e.yaml"));
  const fs::path ckpt = out / "r" / "main" / "ckpt" / "step_00000002.h5";
  const std::string file = export_checkpoint(ckpt.string(), {ExportFormat::Safetensors, (out / "model.safetensors").string(), ""});
  auto tensors = read_safetensors(file);
  REQUIRE(tensors.count("transformer.wte.weight"));
  REQUIRE(tensors.at("transformer.h.0.attn.c_attn.weight").shape() == Shape{32, 96});
  REQUIRE(tensors.at("transformer.h.1.mlp.c_proj.weight").shape() == Shape{128, 32});
  auto params = read_checkpoint_params(ckpt.string());
  for (auto& [name, value] : params)
    if (name == "transformer.h.0.attn.c_attn.weight")
      REQUIRE(value.transpose_view(0, 1).to_doubles() ==
              tensors.at(name).to_doubles());
}

TEST_CASE("a model larger than the machine's memory is refused before it is allocated",
          "[resume][memory]") {
  const fs::path data = byte_data("too_big");
  const fs::path out = fresh("too_big_out");
  // 4096 layers of 65536 channels: petabytes of parameters (each key within its bound).
  const RunConfig cfg = parse_config(config_text(data, out, 2, false), "big.yaml",
                                     {"model.n_layer=4096", "model.n_embd=65536"});
  std::ostringstream console;
  try {
    Run run(cfg, console);
    FAIL("a petabyte model was accepted");
  } catch (const ConfigError& e) {
    INFO(e.message());
    REQUIRE(e.message().find("model.n_embd 65536") != std::string::npos);
    REQUIRE(e.message().find("PiB") != std::string::npos);
    REQUIRE(e.message().find("RAM") != std::string::npos);
  }
  fs::remove_all(data);
  fs::remove_all(out);
}

TEST_CASE("SIGTERM interrupts a long evaluation or sample, with a checkpoint and exit 0",
          "[resume][signals]") {
  // issue 20: eval_batches or sample_tokens in the millions held SIGTERM for as long as they ran
  // (the signal was looked at only at a step's end).
  fs::path data = byte_data("long_eval_data"), out = fresh("long_eval");
  std::ofstream(out / "s.yaml") << config_text(data, out, 2, false);
  const fs::path run_dir = out / "r" / "main";
  for (const char* set : {"train.eval_batches=1048576", "train.sample_tokens=1048576"}) {
    INFO(set);
    fs::remove_all(out / "r");
    const auto t0 = std::chrono::steady_clock::now();
    pid_t pid = spawn_sinklab({"train", (out / "s.yaml").string(), "--no-progress", "--set", set},
                              out / "long.log");
    // Both steps done (the final evaluation or sample is running), then the signal.
    for (int i = 0; i < 600 && lines(run_dir / "metrics.jsonl").size() < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    kill(pid, SIGTERM);
    int status = 0;
    bool ended = false;
    for (int i = 0; i < 200 && !ended; ++i) {
      ended = waitpid(pid, &status, WNOHANG) == pid;
      if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!ended) {  // still running 10 s after the signal: the bug
      kill(pid, SIGKILL);
      wait_exit(pid);
      FAIL("SIGTERM did not end the final evaluation/sample within 10 s");
    }
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO(read_text(out / "long.log"));
    REQUIRE(seconds < 60);
    REQUIRE(read_text(out / "long.log").find("interrupted by signal") != std::string::npos);
    // The checkpoint at the end of training exists; the final record is left to a resumed run.
    REQUIRE(fs::exists(run_dir / "ckpt" / "step_00000002.h5"));
    REQUIRE(lines(run_dir / "metrics.jsonl").size() == 2);
  }
  fs::remove_all(data);
  fs::remove_all(out);
}

TEST_CASE("a stop signal after the final evaluation is written ends the run as finished",
          "[resume][signals]") {
  // The sixteenth session's 152M run: SIGTERM arrived while the final checkpoints were saved,
  // after every final evaluation had been recorded. The run called itself interrupted, printed
  // no paired val-loss differences, and the resumed run threw the final records away to
  // evaluate again.
  fs::path data = byte_data("late_signal_data"), out = fresh("late_signal");
  std::ofstream(out / "l.yaml") << config_text(data, out, 4, true);
  setenv("SINKLAB_FAULT_AT", "final-checkpoints-written:SIGTERM", 1);
  pid_t pid = spawn_sinklab({"compare", (out / "l.yaml").string(), "--no-progress", "--set",
                             "train.eval_batches=3"}, out / "late.log");
  unsetenv("SINKLAB_FAULT_AT");
  REQUIRE(wait_exit(pid) == 0);
  const std::string log = read_text(out / "late.log");
  INFO(log);
  REQUIRE(log.find("interrupted") == std::string::npos);
  REQUIRE(log.find("val loss, headwise - baseline: ") != std::string::npos);
  REQUIRE(log.find("paired s.e. over the same 3 validation batches") != std::string::npos);
  for (const char* v : {"baseline", "headwise"}) {
    const fs::path dir = out / "r" / v;
    REQUIRE(fs::exists(dir / "ckpt" / "step_00000004.h5"));
    const std::vector<std::string> metrics = lines(dir / "metrics.jsonl");
    REQUIRE(metrics.size() == 5);  // steps 0..3 and the final evaluation
    // val_losses.json: the final evaluation batch by batch; its mean is the recorded val loss.
    const YAML::Node file = YAML::LoadFile((dir / "val_losses.json").string());
    REQUIRE(file["step"].as<int64_t>() == 4);
    REQUIRE(file["batches_hash"].as<std::string>().size() == 16);
    std::vector<double> losses = file["losses"].as<std::vector<double>>();
    REQUIRE(losses.size() == 3);
    const double mean = (losses[0] + losses[1] + losses[2]) / 3;
    const YAML::Node final_record = YAML::Load(metrics.back());
    REQUIRE(final_record["step"].as<int64_t>() == 4);
    REQUIRE(final_record["val_loss"].as<double>() == Approx(mean).epsilon(1e-6));
    REQUIRE(file["loss"].as<double>() == Approx(mean).epsilon(1e-12));
  }
  // Both variants evaluated the same batches, so their files pair.
  REQUIRE(YAML::LoadFile((out / "r" / "baseline" / "val_losses.json").string())["batches_hash"]
              .as<std::string>() ==
          YAML::LoadFile((out / "r" / "headwise" / "val_losses.json").string())["batches_hash"]
              .as<std::string>());
  fs::remove_all(data);
  fs::remove_all(out);
}

TEST_CASE("val_losses.json reads back what was written; a non-finite loss as null, read as NaN",
          "[resume]") {
  test::TempDir dir;
  const std::string path = dir.file("val_losses.json");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  write_val_losses(path, 12, 0xfedcba9876543210ull, 2.5, {2.25, nan, 1.0 / 3.0});
  REQUIRE(test::read_bytes(path).find("\"batches_hash\": \"fedcba9876543210\"") != std::string::npos);
  REQUIRE(test::read_bytes(path).find("null") != std::string::npos);
  const std::optional<ValLosses> back = read_val_losses(path);
  REQUIRE(back.has_value());
  REQUIRE(back->step == 12);
  REQUIRE(back->batches_hash == 0xfedcba9876543210ull);
  REQUIRE(back->loss == 2.5);
  REQUIRE(back->losses.size() == 3);
  REQUIRE(back->losses[0] == 2.25);
  REQUIRE(std::isnan(back->losses[1]));
  REQUIRE(back->losses[2] == 1.0 / 3.0);  // json_number's digits read back exactly
  REQUIRE_FALSE(read_val_losses(dir.file("missing.json")).has_value());
  REQUIRE_FALSE(read_val_losses(dir.write("other.json", "{\"step\": \"x\"}")).has_value());
}

TEST_CASE("compare --resume auto with one variant lacking checkpoints is refused, losing nothing",
          "[resume]") {
  // issue 20: every variant restarted from step 0, cutting the others' metrics and pruning their
  // checkpoints, while the message named only the one variant.
  fs::path data = byte_data("lacking_data"), out = fresh("lacking");
  run_and_collect(parse_config(config_text(data, out, 4, true), "v.yaml"));
  const fs::path base = out / "r" / "baseline", head = out / "r" / "headwise";
  fs::remove_all(head / "ckpt");
  const size_t base_lines = lines(base / "metrics.jsonl").size();
  REQUIRE(base_lines == 5);  // steps 0-3 and the final record at 4
  RunOptions opts;
  opts.resume = "auto";
  std::ostringstream console;
  try {
    Run run(parse_config(config_text(data, out, 8, true), "v.yaml"), console, opts);
    FAIL("resumed with a variant lacking checkpoints");
  } catch (const ConfigError& e) {
    const std::string text = e.what();
    INFO(text);
    REQUIRE(text.find("headwise") != std::string::npos);
    REQUIRE(text.find("baseline (step 4)") != std::string::npos);
    REQUIRE(text.find("step 0") != std::string::npos);
    REQUIRE(text.find("cutting their metric files") != std::string::npos);
    REQUIRE(e.hint().find("--variant headwise --stop-after 4") != std::string::npos);
  }
  // Nothing was touched: the other variant's metrics and checkpoint are still there.
  REQUIRE(lines(base / "metrics.jsonl").size() == base_lines);
  REQUIRE(fs::exists(base / "ckpt" / "step_00000004.h5"));
  // The way out the hint gives: the missing variant alone to step 4, then lockstep resume.
  {
    RunConfig alone = parse_config(config_text(data, out, 8, true), "v.yaml");
    RunOptions only;
    only.only_variants = {"headwise"};
    only.stop_after = 4;
    std::ostringstream c2;
    Run run(alone, c2, only);
    run.train();
  }
  std::ostringstream c3;
  Run resumed(parse_config(config_text(data, out, 8, true), "v.yaml"), c3, opts);
  REQUIRE(resumed.start_step() == 4);
  fs::remove_all(data);
  fs::remove_all(out);
}

TEST_CASE("--resume auto after a kill before the first checkpoint starts afresh", "[resume]") {
  // A review found the run stuck: no checkpoint, so a fresh start, but the metric files were
  // opened as a resume's (kept up to step 0) and the never-flushed metrics.h5 refused, on every
  // retry.
  fs::path data = byte_data("killed_early_data"), out = fresh("killed_early");
  const fs::path main = out / "r" / "main";
  fs::create_directories(main);
  std::ofstream(main / "metrics.h5", std::ios::binary) << std::string(96, '\0');  // unflushed
  std::ofstream(main / "metrics.jsonl") << "{\"step\":0,\"loss\":9}\n{\"step\":1,\"loss\":9}\n";
  RunOptions opts;
  opts.resume = "auto";
  const std::string console =
      run_and_collect(parse_config(config_text(data, out, 4, false), "k.yaml"), opts);
  REQUIRE(console.find("no checkpoint") != std::string::npos);
  const std::vector<std::string> log = lines(main / "metrics.jsonl");
  REQUIRE(log.size() == 5);  // steps 0-3 and the final record, each once
  for (size_t i = 0; i < log.size(); ++i)
    REQUIRE(log[i].rfind("{\"step\":" + std::to_string(i) + ",", 0) == 0);
  REQUIRE(log[0].find("\"loss\":9,") == std::string::npos);
}

TEST_CASE("a fresh run moves an earlier run's checkpoints aside; resume takes its own",
          "[resume]") {
  // A review found --resume auto taking the earlier run's newest checkpoint (and pruning keeping
  // it over the new run's own, which it deleted).
  fs::path data = byte_data("earlier_run_data"), out = fresh("earlier_run");
  const fs::path ckpt = out / "r" / "main" / "ckpt";
  run_and_collect(parse_config(config_text(data, out, 8, false), "a.yaml", {"checkpoint.every=4"}));
  REQUIRE(fs::exists(ckpt / "step_00000008.h5"));
  // Run B, another lr, fresh in the same folder, stopped after 2 steps; then resumed.
  const RunConfig b = parse_config(config_text(data, out, 8, false), "b.yaml",
                                   {"checkpoint.every=4", "optim.lr=0.002"});
  RunOptions stop;
  stop.stop_after = 2;
  const std::vector<std::string> a_lines = test::lines_of(out / "r" / "main" / "metrics.jsonl");
  const std::string first = run_and_collect(b, stop);
  const fs::path kept = out / "r" / "main" / "replaced";
  REQUIRE(first.find("moved to " + kept.string()) != std::string::npos);
  REQUIRE(fs::exists(kept / "ckpt" / "step_00000008.h5"));
  // A's records and config too (a fresh start had cut its metric files to nothing).
  REQUIRE(test::lines_of(kept / "metrics.jsonl") == a_lines);
  REQUIRE(a_lines.size() == 9);  // steps 0 to 7 and the final evaluation
  REQUIRE(fs::exists(kept / "metrics.h5"));
  REQUIRE(fs::exists(kept / "config.yaml"));
  REQUIRE(test::lines_of(out / "r" / "main" / "metrics.jsonl").size() == 2);  // B's steps 0, 1
  REQUIRE_FALSE(fs::exists(ckpt / "step_00000008.h5"));
  REQUIRE(fs::exists(ckpt / "step_00000002.h5"));
  RunOptions opts;
  opts.resume = "auto";
  std::ostringstream console;
  Run resumed(b, console, opts);
  REQUIRE(resumed.start_step() == 2);
  // A resumed run at its newest checkpoint moves nothing.
  REQUIRE(fs::exists(ckpt / "step_00000002.h5"));
  REQUIRE(fs::exists(kept / "ckpt" / "step_00000008.h5"));
}

TEST_CASE("resume refuses another seed or global batch, names other changed keys, and leaves "
          "the configs as they were when it refuses",
          "[resume]") {
  fs::path data = byte_data("changed_data"), out = fresh("changed");
  const std::string text = config_text(data, out, 8, false);
  run_and_collect(parse_config(text, "c.yaml", {"checkpoint.every=4"}), [] {
    RunOptions o;
    o.stop_after = 4;
    return o;
  }());
  const fs::path run_yaml = out / "r" / "config.yaml", main_yaml = out / "r" / "main" / "config.yaml";
  const std::string run_before = read_text(run_yaml), main_before = read_text(main_yaml);
  RunOptions opts;
  opts.resume = "auto";
  auto refusal = [&](const std::vector<std::string>& sets) {
    std::ostringstream console;
    try {
      Run run(parse_config(text, "c.yaml", sets), console, opts);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  const std::string seed = refusal({"run.seed=7"});
  INFO(seed);
  REQUIRE(seed.find("run.seed 11") != std::string::npos);
  REQUIRE(seed.find("another run's batches") != std::string::npos);
  const std::string batch = refusal({"train.batch_size=8"});
  INFO(batch);
  REQUIRE(batch.find("trained on 4 sequences a step") != std::string::npos);
  REQUIRE(batch.find("would take 8") != std::string::npos);
  REQUIRE(refusal({"model.n_embd=64"}).find("model.n_embd") != std::string::npos);
  // Refused: the configs still say what the checkpoints' run wrote.
  REQUIRE(read_text(run_yaml) == run_before);
  REQUIRE(read_text(main_yaml) == main_before);
  // The same 4 sequences a step in micro-batches of 2 (tokens_per_step 64 = 4 x 16) resume;
  // a changed lr is named in the run header.
  std::ostringstream console;
  Run run(parse_config(text, "c.yaml",
                       {"train.batch_size=2", "train.tokens_per_step=64", "optim.lr=0.001"}),
          console, opts);
  REQUIRE(run.start_step() == 4);
  INFO(console.str());
  REQUIRE(console.str().find("resume main: optim.lr 0.001 (the checkpoint's run: 0.003)") !=
          std::string::npos);
  REQUIRE(console.str().find("resume main: train.batch_size 2 (the checkpoint's run: 4)") !=
          std::string::npos);
}

TEST_CASE("compare --resume auto names the lockstep step a variant's pruning took", "[resume]") {
  // A review found "checkpoint .../step_00000002.h5 does not exist; check the path", a path the
  // user never named.
  fs::path data = byte_data("pruned_data"), out = fresh("pruned");
  const std::string text = config_text(data, out, 8, true);
  const std::vector<std::string> sets = {"checkpoint.every=2", "checkpoint.keep_last=1"};
  RunOptions first;
  first.stop_after = 2;
  run_and_collect(parse_config(text, "v.yaml", sets), first);
  RunOptions ahead;
  ahead.resume = "auto";
  ahead.only_variants = {"headwise"};
  ahead.stop_after = 4;
  run_and_collect(parse_config(text, "v.yaml", sets), ahead);
  REQUIRE_FALSE(fs::exists(out / "r" / "headwise" / "ckpt" / "step_00000002.h5"));
  RunOptions both;
  both.resume = "auto";
  std::ostringstream console;
  try {
    Run run(parse_config(text, "v.yaml", sets), console, both);
    FAIL("resumed without headwise's step-2 checkpoint");
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE(what.find("lockstep at step 2") != std::string::npos);
    REQUIRE(what.find("baseline stop there") != std::string::npos);
    REQUIRE(what.find("variant headwise has no checkpoint at step 2 (its newest is step 4") !=
            std::string::npos);
    REQUIRE(e.hint().find("--stop-after 4") != std::string::npos);
  }
}

TEST_CASE("a resumed run's summary prints the uninterrupted run's train loss and sink columns, "
          "also when resumed at the final step",
          "[resume]") {
  // A review found the last 10 steps' mean taken over the resumed process's steps only; and a
  // resume at the final step, where no step runs, printed nan in the sink columns and tok/s.
  fs::path data = byte_data("summary_data"), straight = fresh("summary_straight"),
           split = fresh("summary_split");
  const auto line_of = [](const std::string& console) {  // the comparison row
    const size_t at = console.rfind("\nmain ");
    REQUIRE(at != std::string::npos);
    return console.substr(at + 1, console.find('\n', at + 1) - at - 1);
  };
  const auto row = [&](const std::string& console) {  // the comparison row, tok/s cut off
    const std::string line = line_of(console);
    const std::string cut = line.substr(0, line.find_last_of(' ', line.find_last_not_of(' ')));
    return cut.substr(0, cut.find_last_not_of(' ') + 1);  // tok/s's width varies with its value
  };
  const std::vector<std::string> sets = {"checkpoint.every=3"};
  const std::string whole =
      run_and_collect(parse_config(config_text(data, straight, 12, false), "s.yaml", sets));
  RunOptions first;
  first.stop_after = 6;  // 6 steps before, 6 after: the mean of 10 spans the checkpoint
  run_and_collect(parse_config(config_text(data, split, 12, false), "s.yaml", sets), first);
  RunOptions resume;
  resume.resume = "auto";
  const std::string resumed =
      run_and_collect(parse_config(config_text(data, split, 12, false), "s.yaml", sets), resume);
  INFO(whole << "\n---\n" << resumed);
  REQUIRE(row(resumed) == row(whole));
  // Resumed at step 12 of 12: only the final evaluation runs; the summary reads the rest back.
  const std::string at_end =
      run_and_collect(parse_config(config_text(data, straight, 12, false), "s.yaml", sets), resume);
  INFO(at_end);
  REQUIRE(at_end.find("resum") != std::string::npos);
  REQUIRE(row(at_end) == row(whole));
  const std::string line = line_of(at_end);  // tok/s: the logged steps' mean, not nan
  REQUIRE(line.substr(line.find_last_of(' ') + 1) != "nan");
}

TEST_CASE("a fresh start keeps one generation of checkpoints, never a stray .tmp in its place; "
          "a resume past train.steps is refused",
          "[resume]") {
  fs::path data = byte_data("generations_data"), out = fresh("generations");
  const fs::path ckpt = out / "r" / "main" / "ckpt", kept = out / "r" / "main" / "replaced" / "ckpt";
  const auto run = [&](const std::string& lr) {
    return run_and_collect(parse_config(config_text(data, out, 4, false), "g.yaml",
                                        {"checkpoint.every=2", "optim.lr=" + lr}));
  };
  run("0.003");  // A: steps 2 and 4
  const auto weights = [](const fs::path& file) {
    return read_checkpoint_params(file.string()).front().second.to_doubles();
  };
  const std::vector<double> a = weights(ckpt / "step_00000004.h5");
  run("0.002");  // B: A's generation kept
  REQUIRE(weights(kept / "step_00000004.h5") == a);
  const std::vector<double> b = weights(ckpt / "step_00000004.h5");
  REQUIRE(b != a);
  run("0.001");  // C: B's generation kept, A's gone
  REQUIRE(weights(kept / "step_00000004.h5") == b);
  REQUIRE_FALSE(fs::exists(out / "r" / "main" / "replaced.old"));
  // Only a stray .tmp of an interrupted first save (and the records of its first steps): no
  // checkpoint, so nothing to keep; the kept generation stays (a review found a start killed
  // before its first save replacing the kept run, and the next start deleting it).
  fs::remove_all(ckpt);
  fs::create_directories(ckpt);
  std::ofstream(ckpt / "step_00000002.h5.4242.tmp") << "partial";
  const std::string console = run("0.0005");
  REQUIRE(console.find("moved to") == std::string::npos);
  REQUIRE(weights(kept / "step_00000004.h5") == b);
  // A start that failed half-way through setting a run aside left replaced.new/: refused,
  // nothing deleted or moved.
  const std::vector<double> d = weights(ckpt / "step_00000004.h5");  // D's own
  fs::create_directories(out / "r" / "main" / "replaced.new");
  test::require_error<IOError>([&] { run("0.002"); }, {"replaced.new exists", "move its files back"});
  REQUIRE(weights(kept / "step_00000004.h5") == b);
  REQUIRE(weights(ckpt / "step_00000004.h5") == d);
  // Also when ckpt/ holds no checkpoint any more (it is the first thing a start moves): a
  // review found the check skipped there, and the next start cutting the earlier run's records.
  fs::rename(ckpt, out / "r" / "main" / "ckpt.aside");
  test::require_error<IOError>([&] { run("0.002"); }, {"replaced.new exists"});
  fs::rename(out / "r" / "main" / "ckpt.aside", ckpt);
  fs::remove(out / "r" / "main" / "replaced.new");
  // Resumed from an earlier checkpoint by name: the later one (an abandoned continuation's,
  // which --resume auto would have taken) is renamed in place, and `latest` names the one
  // resumed from; the kept generation is not touched.
  run("0.003");  // E: steps 2 and 4; D's generation kept
  REQUIRE(weights(kept / "step_00000004.h5") == d);
  const std::vector<double> e4 = weights(ckpt / "step_00000004.h5");
  RunOptions from2;
  from2.resume = (ckpt / "step_00000002.h5").string();
  from2.stop_after = 3;
  const std::string again = run_and_collect(
      parse_config(config_text(data, out, 4, false), "g.yaml",
                   {"checkpoint.every=2", "optim.lr=0.001"}),
      from2);
  INFO(again);
  REQUIRE(again.find("resumed at step 2: the later checkpoints renamed in " + ckpt.string() +
                      " (step_00000004.h5.abandoned)") != std::string::npos);
  REQUIRE(weights(ckpt / "step_00000004.h5.abandoned") == e4);
  REQUIRE(weights(kept / "step_00000004.h5") == d);
  REQUIRE_FALSE(fs::exists(ckpt / "step_00000004.h5"));
  REQUIRE(fs::exists(ckpt / "step_00000003.h5"));  // --stop-after 3's
  std::ostringstream found;
  REQUIRE(find_latest_good_checkpoint(ckpt.string(), found) == (ckpt / "step_00000003.h5").string());
  // Resumed with fewer steps than the checkpoints': refused, nothing written over.
  RunOptions opts;
  opts.resume = "auto";
  std::ostringstream refused;
  test::require_error<ConfigError>(
      [&] { Run(parse_config(config_text(data, out, 2, false), "g.yaml"), refused, opts); },
      {"at step 3, past train.steps 2"});
  REQUIRE(fs::exists(ckpt / "step_00000003.h5"));
}
