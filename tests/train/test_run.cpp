// End to end on the CPU: a side-by-side run learns, its variants see identical batches, metrics
// are finite and do not change training, and the CLI fails clearly on bad input.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <iterator>
#include <sstream>

#include "autograd/engine.h"
#include "core/error.h"
#include "core/philox.h"
#include "ops/cpu/blas_gemm.h"
#include "ops/matmul.h"
#include "tests/op_checks.h"
#include "train/config.h"
#include "train/data/prepare.h"
#include "train/data/shards.h"
#include "train/paper_metrics.h"
#include "train/trainer.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sinklab_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A small synthetic English-like corpus: sentences from a tiny grammar (deterministic).
std::string synthetic_text(size_t sentences, uint64_t stream) {
  const char* subjects[] = {"the whale", "the captain", "a sailor", "the ship", "the sea"};
  const char* verbs[] = {"sees", "follows", "fears", "leaves", "finds", "remembers"};
  const char* objects[] = {"the harbor", "a storm", "the white whale", "the old map",
                           "the crew", "a distant island"};
  std::string text;
  for (size_t i = 0; i < sentences; ++i) {
    PhiloxBlock r = philox4x32_10(99, stream, i);
    text += subjects[r.v[0] % 5];
    text += " ";
    text += verbs[r.v[1] % 6];
    text += " ";
    text += objects[r.v[2] % 6];
    text += (r.v[3] % 4 == 0) ? ".\n" : ". ";
  }
  return text;
}

std::vector<int32_t> bytes_of(const std::string& s) {
  return std::vector<int32_t>(s.begin(), s.end());
}

fs::path make_byte_dataset(const std::string& name) {
  fs::path dir = fresh_dir(name);
  write_shard((dir / "train_000000.bin").string(), bytes_of(synthetic_text(3000, 1)));
  write_shard((dir / "val_000000.bin").string(), bytes_of(synthetic_text(300, 2)));
  return dir;
}

std::string tiny_config(const fs::path& data, const fs::path& out, int steps) {
  std::ostringstream y;
  y << "run: {name: e2e, out_dir: " << out.string() << ", seed: 3}\n"
    << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}\n"
    << "data: {dir: " << data.string() << ", tokenizer: byte}\n"
    << "train: {steps: " << steps << ", batch_size: 8, eval_every: 50, eval_batches: 2, "
    << "sample_tokens: 8}\n"
    << "optim: {lr: 0.004, min_lr: 0.0004, warmup_steps: 5, weight_decay: 0.0}\n"
    << "variants:\n"
    << "  - {name: baseline, set: {model.attn_output_norm: none}}\n"
    << "  - {name: headwise_rmsnorm, set: {model.attn_output_norm: headwise_rmsnorm}}\n";
  return y.str();
}

using test::json_field;
using test::lines_of;

int run_cli(const std::string& args, std::string& output) {
  const std::string cmd = std::string(SINKLAB_BINARY_DIR) + "/sinklab " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[512];
  output.clear();
  while (fgets(buf, sizeof buf, pipe)) output += buf;
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("side-by-side run: learns, identical batches, finite metrics", "[e2e]") {
  fs::path data = make_byte_dataset("e2e_data"), out = fresh_dir("e2e_out");
  RunConfig cfg = parse_config(tiny_config(data, out, 150), "inline.yaml");
  std::ostringstream console;
  Run run(cfg, console);
  std::vector<VariantSummary> summaries = run.train();
  INFO(console.str());
  REQUIRE(summaries.size() == 2);
  REQUIRE(fs::exists(out / "e2e" / "config.yaml"));
  std::map<std::string, std::vector<std::string>> logs;
  for (const char* v : {"baseline", "headwise_rmsnorm"}) {
    logs[v] = lines_of(out / "e2e" / v / "metrics.jsonl");
    REQUIRE(logs[v].size() == 151);  // 150 training steps + the final evaluation record
    REQUIRE(fs::exists(out / "e2e" / v / "metrics.h5"));
    REQUIRE(fs::exists(out / "e2e" / v / "config.yaml"));
  }
  // The model must do far better than the byte-level unigram entropy of the corpus.
  const double entropy = unigram_entropy(bytes_of(synthetic_text(3000, 1)));
  REQUIRE(entropy > 2.5);
  for (const VariantSummary& s : summaries) {
    INFO(s.name << " val " << s.val_loss << " train " << s.final_loss << " unigram " << entropy);
    REQUIRE(s.val_loss < entropy - 0.5);
    REQUIRE(s.final_loss < entropy - 0.5);
    REQUIRE(s.last_metrics.has_sink);
  }
  const double first = std::stod(json_field(logs["baseline"][0], "loss"));
  REQUIRE(first > 4.0);  // ~log(256) at init
  for (size_t i = 0; i < 150; ++i) {
    // Identical batches in identical order.
    REQUIRE(json_field(logs["baseline"][i], "batch_hash") ==
            json_field(logs["headwise_rmsnorm"][i], "batch_hash"));
    for (const char* key : {"loss", "lr", "grad_norm", "sink_rate"})
      REQUIRE(json_field(logs["baseline"][i], key) != "null");
    REQUIRE(json_field(logs["baseline"][i], "sink_mass").find("null") == std::string::npos);
    REQUIRE(json_field(logs["baseline"][i], "dim_disparity").find("null") == std::string::npos);
  }
  // Head-wise RMSNorm: the post-norm variance ratio is near 1 (in every layer).
  const std::string normed = json_field(logs["headwise_rmsnorm"][149], "var_ratio_normed");
  double a = 0, b = 0;
  REQUIRE(std::sscanf(normed.c_str(), "[%lf,%lf]", &a, &b) == 2);
  REQUIRE(a == Approx(1.0).margin(0.2));
  REQUIRE(b == Approx(1.0).margin(0.2));
  REQUIRE(json_field(logs["baseline"][149], "var_ratio_normed") == "[null,null]");
  REQUIRE(console.str().find("sink mass") != std::string::npos);  // the comparison table
  // The variants evaluated the same validation batches, so their difference is paired.
  REQUIRE(summaries[0].val_batches_hash == summaries[1].val_batches_hash);
  REQUIRE(summaries[0].val_losses.size() == static_cast<size_t>(cfg.train.eval_batches));
  char paired[160];
  std::snprintf(paired, sizeof paired, "val loss, headwise_rmsnorm - baseline: %+.4f ± %.4f",
                summaries[1].val_loss - summaries[0].val_loss,
                paired_standard_error(summaries[1].val_losses, summaries[0].val_losses));
  REQUIRE(console.str().find(paired) != std::string::npos);
  // The process's peak memory: logged every step, never falling, and on the last line beside the
  // estimate the run was checked against (two variants: one micro-batch's activations).
  double previous = 0;
  for (size_t i = 0; i < 150; ++i) {
    const double peak = std::stod(json_field(logs["baseline"][i], "memory_peak_mib"));
    REQUIRE(peak >= previous);
    REQUIRE(peak >= std::stod(json_field(logs["baseline"][i], "memory_mib")) - 1);
    previous = peak;
  }
  REQUIRE(json_field(logs["baseline"][150], "memory_peak_mib") == "null");  // the final evaluation
  RunConfig resolved = cfg;
  resolved.model.vocab_size = 256;  // the byte tokenizer's, as the run resolved it
  const MemoryEstimate one = estimate_training_memory(resolved);
  INFO("one variant's estimate: " << format_bytes(one.total()));
  const std::string estimate = format_bytes(side_by_side_bytes({one, one}));
  REQUIRE(estimate != format_bytes(2 * one.total()));
  REQUIRE(console.str().find("the check before the first step estimated " + estimate +
                             " for parameters and activations") != std::string::npos);
}

TEST_CASE("computing metrics does not change the training result", "[e2e]") {
  fs::path data = make_byte_dataset("nochange_data");
  std::vector<std::string> losses[2];
  for (int every : {0, 1}) {
    fs::path out = fresh_dir("nochange_out" + std::to_string(every));
    RunConfig cfg = parse_config(tiny_config(data, out, 8), "inline.yaml",
                                 {"metrics.every=" + std::to_string(every)});
    cfg.variants.resize(1);
    std::ostringstream console;
    Run(cfg, console).train();
    for (const std::string& line : lines_of(out / "e2e" / "baseline" / "metrics.jsonl"))
      losses[every].push_back(json_field(line, "loss") + json_field(line, "grad_norm"));
  }
  REQUIRE(losses[0] == losses[1]);
}

TEST_CASE("run.release_forward_inputs changes no bit of the training, its metrics or the "
          "evaluations", "[e2e]") {
  fs::path data = make_byte_dataset("release_data");
  autograd::KeepInputsGuard restore(true);  // the runs below set it for the process
  std::vector<std::string> lines[2];
  for (int release : {0, 1}) {
    fs::path out = fresh_dir("release_out" + std::to_string(release));
    RunConfig cfg = parse_config(
        tiny_config(data, out, 6), "inline.yaml",
        {release ? "run.release_forward_inputs=true" : "run.release_forward_inputs=false",
         "train.eval_every=3"});
    std::ostringstream console;
    Run(cfg, console).train();
    REQUIRE(autograd::keep_inputs() == !release);
    for (const char* v : {"baseline", "headwise_rmsnorm"})
      for (const std::string& line : test::untimed_lines(out / "e2e" / v / "metrics.jsonl"))
        lines[release].push_back(line);
  }
  REQUIRE(lines[0].size() == 14);  // 6 steps and the final evaluation, two variants
  REQUIRE(lines[0] == lines[1]);
}

TEST_CASE("run.profile prints where a step's time goes and changes nothing else", "[e2e]") {
  fs::path data = make_byte_dataset("profile_data");
  std::vector<std::string> losses[2];
  std::string consoles[2];
  for (int profile : {0, 1}) {
    fs::path out = fresh_dir("profile_out" + std::to_string(profile));
    RunConfig cfg = parse_config(tiny_config(data, out, 4), "inline.yaml",
                                 {profile ? "run.profile=true" : "run.profile=false"});
    std::ostringstream console;
    Run(cfg, console).train();
    consoles[profile] = console.str();
    for (const std::string& line : lines_of(out / "e2e" / "baseline" / "metrics.jsonl"))
      losses[profile].push_back(json_field(line, "loss") + json_field(line, "grad_norm"));
    // Saved with the run.
    const std::vector<std::string> saved = lines_of(out / "e2e" / "config.yaml");
    REQUIRE(std::find(saved.begin(), saved.end(),
                      profile ? "  profile: true" : "  profile: false") != saved.end());
  }
  REQUIRE(losses[0] == losses[1]);
  INFO(consoles[1]);
  for (const char* line : {"profile baseline (ms per step", "profile headwise_rmsnorm (ms per step",
                           "profile forward by op", "profile backward by op"}) {
    REQUIRE(consoles[1].find(line) != std::string::npos);
    REQUIRE(consoles[0].find(line) == std::string::npos);
  }
}

TEST_CASE("run.cpu_gemm and run.bf16_gemm reach the kernels; process keys stay out of variants",
          "[e2e]") {
  fs::path data = make_byte_dataset("cpu_gemm_data"), out = fresh_dir("cpu_gemm_out");
  const cpu::CpuGemm saved = cpu::cpu_gemm();
  {
    RunConfig cfg = parse_config(tiny_config(data, out, 1), "inline.yaml",
                                 {"run.cpu_gemm=reference", "run.bf16_gemm=fast"});
    std::ostringstream console;
    Run run(cfg, console);
    INFO(console.str());
    REQUIRE(cpu::cpu_gemm() == cpu::CpuGemm::kReference);
    REQUIRE(console.str().find("CPU matmuls: own blocked kernel") != std::string::npos);
    REQUIRE(ops::bf16_gemm_preference == ops::Bf16Gemm::Fast);  // read by CUDA products
  }
  if (cpu::openblas_built()) {
    RunConfig cfg = parse_config(tiny_config(data, out, 1), "inline.yaml");  // auto
    std::ostringstream console;
    Run run(cfg, console);
    REQUIRE(cpu::cpu_gemm() == cpu::CpuGemm::kOpenBLAS);
    REQUIRE(ops::bf16_gemm_preference == ops::Bf16Gemm::Rounded);
  } else {
    RunConfig cfg =
        parse_config(tiny_config(data, out, 1), "inline.yaml", {"run.cpu_gemm=openblas"});
    std::ostringstream console;
    test::require_error<ConfigError>([&] { Run run(cfg, console); },
                                     {"run.cpu_gemm", "no OpenBLAS"});
  }
  cpu::set_cpu_gemm(saved);
  // A variant may not change what holds for the whole process.
  for (const char* key : {"run.profile=true", "run.bucket_mib=1", "run.collective_timeout_s=5",
                          "run.bf16_gemm=fast", "run.metrics_priority=equal",
                          "run.cpu_gemm=reference", "run.attention_kernels=own",
                          "run.cuda_graph=true"}) {
    RunConfig cfg = parse_config(tiny_config(data, out, 1), "inline.yaml");
    cfg.variants[1].overrides.push_back(key);
    const std::string k = std::string(key).substr(0, std::string(key).find('='));
    std::ostringstream console;
    test::require_error<ConfigError>([&] { Run run(cfg, console); },
                                     {"variant headwise_rmsnorm", k, "one per process"});
  }
  cpu::set_cpu_gemm(saved);
  ops::bf16_gemm_preference = ops::Bf16Gemm::Rounded;
}

TEST_CASE("CLI: bad config, missing data and a wrong shard header fail clearly", "[e2e][cli]") {
  fs::path dir = fresh_dir("cli");
  std::string output;
  {  // unknown key: exit code 2, names the key and the file
    std::ofstream(dir / "bad.yaml") << "model: {n_layrs: 3}\n";
    REQUIRE(run_cli("train " + (dir / "bad.yaml").string(), output) == 2);
    REQUIRE(output.find("n_layrs") != std::string::npos);
    REQUIRE(output.find("bad.yaml") != std::string::npos);
  }
  {  // missing data folder: exit code 1, names the folder and what to run
    std::ofstream(dir / "nodata.yaml")
        << "data: {dir: " << (dir / "nowhere").string() << ", tokenizer: byte}\n";
    REQUIRE(run_cli("train " + (dir / "nodata.yaml").string(), output) == 1);
    REQUIRE(output.find("nowhere") != std::string::npos);
  }
  {  // a shard with a wrong magic number (and no raw fallback for shard patterns)
    fs::path data = dir / "badshard";
    fs::create_directories(data);
    std::vector<int32_t> header(256, 0);
    header[0] = 12345;
    header[1] = 1;
    header[2] = 4;
    std::ofstream f(data / "train_000000.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 1024);
    f.write("abcdefgh", 8);
    f.close();
    fs::copy_file(data / "train_000000.bin", data / "val_000000.bin");
    std::ofstream(dir / "badshard.yaml") << "data: {dir: " << data.string()
                                         << ", tokenizer: byte}\n";
    REQUIRE(run_cli("train " + (dir / "badshard.yaml").string(), output) == 1);
    REQUIRE(output.find("train_000000.bin") != std::string::npos);
  }
  REQUIRE(run_cli("compare --help", output) == 0);
  REQUIRE(output.find("--set") != std::string::npos);
}

TEST_CASE("the comparison table's layer maxima skip NaN layers and show nan when none is left",
          "[run]") {
  // metrics.order_statistics false leaves super_ratio NaN in every layer: the table says nan,
  // not -inf; a NaN layer among finite ones is left out of the maximum.
  VariantSummary s;
  s.name = "v";
  s.last_metrics.has_sink = true;
  s.last_metrics.sink.layers.resize(3);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (LayerMetrics& l : s.last_metrics.sink.layers) l.super_ratio = nan;
  s.last_metrics.sink.layers[0].dim_disparity = 2.0;
  s.last_metrics.sink.layers[1].dim_disparity = nan;
  s.last_metrics.sink.layers[2].dim_disparity = 4.0;
  const ComparisonRow row = comparison_row(s);
  REQUIRE(std::isnan(row.super_x));
  REQUIRE(row.disparity == 4.0);
  const std::string table = comparison_table({row});
  INFO(table);
  REQUIRE_FALSE(test::contains(table, "inf"));
  std::istringstream cells(table.substr(table.find("\nv ") + 1));  // the row of variant v
  std::vector<std::string> cell{std::istream_iterator<std::string>(cells), {}};
  REQUIRE(cell.size() > 8);
  REQUIRE(cell[7] == "4.0");  // disparity
  REQUIRE(cell[8] == "nan");  // super x
  REQUIRE(test::contains(table, "super x is nan for v: no median at the last metrics step"));
  s.last_metrics.sink.layers[1].super_ratio = 30.0;  // the medians were taken: no such line
  REQUIRE_FALSE(test::contains(comparison_table({comparison_row(s)}), "super x is nan"));
}
