// The paper's interventions in the model (isolate per layer, amplify variance, the plain-scaling
// control) and `sinklab probe` on a trained checkpoint.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "ops/rmsnorm.h"
#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/io/checkpoint.h"
#include "train/metrics/sink_metrics.h"
#include "train/model.h"
#include "train/paper_metrics.h"
#include "train/commands/probe.h"
#include "train/commands/probe_plan.h"
#include "train/trainer.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

ModelSection small_model() {
  ModelSection m;
  m.arch = Arch::Llama;
  m.n_layer = 2;
  m.n_head = 2;
  m.n_embd = 16;
  m.block_size = 9;
  m.vocab_size = 13;
  return m;
}

// Forward with capture of a fresh fp64 model (seed 3); returns the capture (no grad).
ForwardCapture run(const ModelSection& m, const Tensor& ids) {
  return test::capture_of(GPT(m, 3, DType::F64), ids);
}

// Trains a 2-layer LLaMA-style model on letter text in dir for `steps` steps (batch 4, T=16);
// returns its final checkpoint.
std::string trained_checkpoint(const fs::path& dir, int steps, std::ostream& console) {
  const std::vector<int32_t> tokens = test::letter_tokens(4, 1, 20000, 20, 2);
  test::write_train_val(dir, tokens, {tokens.begin(), tokens.begin() + 3000});
  std::ostringstream y;
  y << "run: {name: p, out_dir: " << dir.string() << "}\n"
    << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
    << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
    << "train: {steps: " << steps << ", batch_size: 4, eval_every: 0, sample_tokens: 0}\n";
  Run(parse_config(y.str(), "p.yaml"), console).train();
  return checkpoint_path((dir / "p" / "main" / "ckpt").string(), steps);
}

}  // namespace

TEST_CASE("interventions: lambda 1 is the identity; scaling and amplifying touch only o_k",
          "[probe]") {
  const Tensor ids = rand_ints({3, 9}, RngKey{8, 1, 0}, 13);
  const ModelSection base = small_model();
  const ForwardCapture plain_run = run(base, ids);
  for (AmplifyMode mode : {AmplifyMode::Plain, AmplifyMode::Centered}) {
    ModelSection m = base;
    m.amplify_position = 4;
    m.amplify_mode = mode;
    m.amplify_lambda = 1.0;
    REQUIRE(run(m, ids).final_residual.to_doubles() == plain_run.final_residual.to_doubles());
    m.amplify_lambda = 7.0;
    m.amplify_layers = {0};
    const ForwardCapture cap = run(m, ids);
    const std::vector<double> before = plain_run.layers[0].attn_out.to_doubles();  // (3,9,2,8)
    const std::vector<double> after = cap.layers[0].attn_out.to_doubles();
    const int64_t row = 2 * 8;  // NH * HS per position
    std::vector<double> mu(row, 0.0);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t t = 0; t < 9; ++t)
        for (int64_t c = 0; c < row; ++c) {
          const size_t i = static_cast<size_t>((b * 9 + t) * row + c);
          if (t != 4) {
            REQUIRE(after[i] == before[i]);  // only position k changes
          } else if (mode == AmplifyMode::Plain) {
            REQUIRE(after[i] == Approx(7.0 * before[i]).epsilon(1e-12));
          } else {
            // o_k' = mu + 7 (o_k - mu)  =>  mu = (7 o_k - o_k') / 6, the same for every b.
            const double m_bc = (7.0 * before[i] - after[i]) / 6.0;
            if (b == 0) mu[c] = m_bc;
            REQUIRE(m_bc == Approx(mu[c]).margin(1e-12));
          }
        }
    // Layer 1 was not listed: its attention output differs only through its input.
    REQUIRE(cap.layers[1].attention.isolate_positions.empty());
  }
}

TEST_CASE("interventions after head-wise RMSNorm: plain scaling survives the norm, before it "
          "the norm divides it out; centered uses the normed output's mean",
          "[probe]") {
  const Tensor ids = rand_ints({3, 9}, RngKey{8, 3, 0}, 13);
  ModelSection base = small_model();
  base.attn_output_norm = AttnOutputNorm::HeadwiseRmsNorm;
  const ForwardCapture plain_run = run(base, ids);
  const std::vector<double> normed = plain_run.layers[0].attn_out_normed.to_doubles();  // (3,9,2,8)
  const int64_t row = 2 * 8, k = 4;  // NH * HS per position
  ModelSection m = base;
  m.amplify_position = k;
  m.amplify_lambda = 7.0;
  m.amplify_layers = {0};
  m.amplify_mode = AmplifyMode::Plain;
  // Before the norm (the default site): lambda o_k has the same RMS-normalised value, so the
  // input to W_O changes only through the norm's epsilon, against the factor 7 after the norm
  // (values of about 0.02 at initialisation: the epsilon weighs a few per mille there).
  const std::vector<double> before_site = run(m, ids).layers[0].attn_out_normed.to_doubles();
  for (size_t i = 0; i < normed.size(); ++i) REQUIRE(before_site[i] == Approx(normed[i]).epsilon(0.05));
  m.amplify_site = AmplifySite::AfterNorm;
  const ForwardCapture after_run = run(m, ids);
  const std::vector<double> after = after_run.layers[0].attn_out_normed.to_doubles();
  std::vector<double> mean(row, 0.0);  // the normed output's mean over batch and positions
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < 9; ++t)
      for (int64_t c = 0; c < row; ++c) {
        const size_t i = static_cast<size_t>((b * 9 + t) * row + c);
        mean[c] += normed[i] / 27.0;
        REQUIRE(after[i] == Approx(t == k ? 7.0 * normed[i] : normed[i]).epsilon(1e-12));
      }
  // var_ratio_normed reads the intervened output whichever way its variances come (a review
  // found run.head_norm_statistics handing it the norm's own statistics, from before it).
  {
    const SinkMetrics direct = compute_sink_metrics(after_run, 0.3, false);
    const ops::HeadNormStatisticsGuard from_norm(true);
    const SinkMetrics pooled = compute_sink_metrics(run(m, ids), 0.3, false);
    REQUIRE(pooled.layers[0].var_ratio_normed ==
            Approx(direct.layers[0].var_ratio_normed).epsilon(1e-9));
    // Position k's variance, 49 times, in the mean over t >= 1: lower than without it.
    REQUIRE(direct.layers[0].var_ratio_normed <
            compute_sink_metrics(plain_run, 0.3, false).layers[0].var_ratio_normed);
  }
  // The attention output itself is untouched; layer 1 changes only through its input.
  REQUIRE(after_run.layers[0].attn_out.to_doubles() == plain_run.layers[0].attn_out.to_doubles());
  REQUIRE(after_run.final_residual.to_doubles() != plain_run.final_residual.to_doubles());
  m.amplify_mode = AmplifyMode::Centered;  // mu: the batch's mean of the normed output
  const std::vector<double> centered = run(m, ids).layers[0].attn_out_normed.to_doubles();
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t c = 0; c < row; ++c) {
      const size_t i = static_cast<size_t>((b * 9 + k) * row + c);
      REQUIRE(centered[i] == Approx(mean[c] + 7.0 * (normed[i] - mean[c])).epsilon(1e-10));
    }
  // value_means at the site: the normed output's mean, the mu a random-token probe takes.
  const GPT clean(base, 3, DType::F64);
  const std::vector<std::vector<double>> site_mean = value_means(clean, ids, AmplifySite::AfterNorm);
  for (int64_t c = 0; c < row; ++c) REQUIRE(site_mean[0][c] == Approx(mean[c]).epsilon(1e-12));
  // The key reads and writes back as YAML.
  const RunConfig with_site = parse_config(
      "model: {attn_output_norm: headwise_rmsnorm, amplify_site: after_norm}\n", "s.yaml");
  REQUIRE(with_site.model.amplify_site == AmplifySite::AfterNorm);
  REQUIRE(parse_config(to_yaml(with_site), "back.yaml").model.amplify_site ==
          AmplifySite::AfterNorm);
  // Without the head-wise norm there is no "after": refused by the config and by value_means.
  test::require_error<ConfigError>(
      [] { parse_config("model: {amplify_site: after_norm}\n", "x.yaml"); },
      {"model.amplify_site = after_norm", "x.yaml", "attn_output_norm"});
  test::require_error<ConfigError>(
      [&] { value_means(GPT(small_model(), 3, DType::F64), ids, AmplifySite::AfterNorm); },
      {"after_norm", "head-wise RMSNorm"});
}

TEST_CASE("interventions: isolate positions only in the listed layers", "[probe]") {
  ModelSection m = small_model();
  m.isolate_positions = {3};
  m.isolate_layers = {1};
  const ForwardCapture cap = run(m, rand_ints({2, 9}, RngKey{8, 2, 0}, 13));
  REQUIRE(cap.layers[0].attention.isolate_positions.empty());
  REQUIRE(cap.layers[1].attention.isolate_positions == std::vector<int64_t>{3});
}

TEST_CASE("interventions: out-of-range layers and positions are config errors", "[probe]") {
  test::require_error<ConfigError>(
      [] {
        parse_config("model: {n_layer: 2, amplify_layers: [0, 2]}\n", "x.yaml");
      },
      {"model.amplify_layers[1] = 2", "x.yaml", "n_layer = 2"});
  test::require_error<ConfigError>(
      [] { parse_config("model: {block_size: 8, amplify_position: 8}\n", "x.yaml"); },
      {"model.amplify_position = 8", "block_size = 8"});
  test::require_error<ConfigError>(
      [] { parse_config("model: {amplify_mode: loud}\n", "x.yaml"); }, {"model.amplify_mode"});
}

TEST_CASE("probe: metrics of a checkpoint, the score at the isolated key, a JSON file",
          "[probe]") {
  const fs::path dir = test::fresh_dir("probe");
  std::ostringstream console;
  const std::string ck = trained_checkpoint(dir, 6, console);
  ProbeOptions plain;
  plain.batches = 2;
  plain.out = (dir / "plain.json").string();
  ProbeResult a = probe_checkpoint(ck, plain, console);
  REQUIRE(a.metrics.layers.size() == 2);
  REQUIRE(std::isfinite(a.loss));
  ProbeOptions iso = plain;
  iso.isolate = {3};
  iso.out = (dir / "iso.json").string();
  ProbeOptions base3 = plain;  // the score at key 3 without the intervention
  base3.amplify = 3;           // lambda 1: no change, but reports key 3
  ProbeResult b = probe_checkpoint(ck, base3, console);
  ProbeResult c = probe_checkpoint(ck, iso, console);
  // --amplify-site: a name, only with --amplify / --scale, and after_norm only with the norm.
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = base3;
        bad.amplify_site = "after";
        probe_checkpoint(ck, bad, console);
      },
      {"--amplify-site is 'after'", "before_norm"});
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = plain;
        bad.amplify_site = "after_norm";
        probe_checkpoint(ck, bad, console);
      },
      {"--amplify-site after_norm without --amplify or --scale"});
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = base3;
        bad.amplify_site = "after_norm";
        probe_checkpoint(ck, bad, console);
      },
      {"no head-wise RMSNorm", "model.attn_output_norm none"});
  REQUIRE(c.key == 3);
  for (size_t l = 0; l < 2; ++l)
    for (size_t h = 0; h < 2; ++h) {
      // Query 3 now puts all its attention on key 3: alpha_3 gains (1 - A[3,3]) / (T - 3).
      INFO("layer " << l << " head " << h);
      REQUIRE(c.key_score[l][h] > b.key_score[l][h]);
    }
  std::ifstream json(iso.out);
  const std::string text((std::istreambuf_iterator<char>(json)), {});
  REQUIRE(text.find("\"key_score\":[[") != std::string::npos);
  REQUIRE(text.find("\"sink_mass\"") != std::string::npos);
  std::ostringstream iso_console;
  probe_checkpoint(ck, iso, iso_console);
  REQUIRE(iso_console.str().find("  isolate positions 3\n") != std::string::npos);
  // Options named as given (not as the stored config's model.* keys), and options that would
  // have run no intervention, silently, refused.
  const auto refused = [&](const std::function<void(ProbeOptions&)>& change,
                           std::initializer_list<std::string> mentions) {
    test::require_error<ConfigError>(
        [&] {
          ProbeOptions bad = plain;
          change(bad);
          probe_checkpoint(ck, bad, console);
        },
        mentions);
  };
  refused([](ProbeOptions& o) { o.amplify = 3; o.layers = {5}; },
          {"--layers 5", "the model has 2 layers"});
  refused([](ProbeOptions& o) { o.isolate = {1000}; }, {"key 1000", "block_size"});
  refused([](ProbeOptions& o) { o.lambda = 5; }, {"--lambda 5 without --amplify or --scale"});
  refused([](ProbeOptions& o) { o.layers = {0}; }, {"--layers without an intervention"});
  refused([](ProbeOptions& o) { o.mean_tokens = 100; }, {"--mean-tokens without --amplify"});
  refused([](ProbeOptions& o) { o.amplify = 3; o.plain_scaling = true; o.amplify_mean = "batch"; },
          {"--scale takes no mean"});
  refused([](ProbeOptions& o) { o.amplify = 3; o.lambda = 2; o.mean_tokens = 3; },
          {"--mean-tokens 3 is less than one window", "block_size"});
  fs::remove_all(dir);
}

TEST_CASE("probe plan: the lines a file holds, and errors naming the file and the line",
          "[probe]") {
  const fs::path dir = test::fresh_dir("probe_plan_lines");
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  ProbeOptions base;
  base.batches = 3;
  base.device = "cpu";
  base.overrides = {"data.dir=x"};
  base.lambda = 5;  // the command line's measurement values do not leak into the lines
  const std::vector<ProbePlanLine> plan = read_probe_plan(
      write("ok.txt", "# the paper's probes\nnone\n\n--isolate 9   # comment\n"
                      "--amplify 10 --lambda 3 --layers 0,1\n--scale 4 --lambda 30\n"
                      "--window 64 --random-tokens 8\n"),
      base);
  REQUIRE(plan.size() == 5);
  REQUIRE(plan[0].line == 2);
  REQUIRE(plan[0].text == "none");
  REQUIRE(plan[0].options.amplify == -1);
  REQUIRE(plan[0].options.isolate.empty());
  REQUIRE(plan[0].options.lambda == 1.0);
  REQUIRE(plan[1].line == 4);
  REQUIRE(plan[1].text == "--isolate 9");
  REQUIRE(plan[1].options.isolate == std::vector<int64_t>{9});
  REQUIRE(plan[2].options.amplify == 10);
  REQUIRE_FALSE(plan[2].options.plain_scaling);
  REQUIRE(plan[2].options.lambda == 3.0);
  REQUIRE(plan[2].options.layers == std::vector<int64_t>{0, 1});
  REQUIRE(plan[3].options.amplify == 4);
  REQUIRE(plan[3].options.plain_scaling);
  REQUIRE(plan[3].options.lambda == 30.0);
  REQUIRE(plan[4].options.window == 64);
  REQUIRE(plan[4].options.random_tokens == 8);
  for (const ProbePlanLine& p : plan) {  // the command line's options hold for every line
    REQUIRE(p.options.batches == 3);
    REQUIRE(p.options.device == "cpu");
    REQUIRE(p.options.overrides == base.overrides);
  }
  test::require_error<ConfigError>(
      [&] { read_probe_plan(write("device.txt", "none\n--isolate 2 --device cuda\n"), base); },
      {"device.txt:2", "--device", "command line"});
  test::require_error<ConfigError>(
      [&] { read_probe_plan(write("both.txt", "--amplify 3 --scale 3\n"), base); },
      {"both.txt:1", "--amplify 3 --scale 3"});
  test::require_error<ConfigError>(
      [&] { read_probe_plan(write("nan.txt", "none\n\n--scale 2 --lambda nan\n"), base); },
      {"nan.txt:3", "--lambda"});
  test::require_error<ConfigError>(
      [&] { read_probe_plan(write("empty.txt", "# nothing\n\n"), base); },
      {"empty.txt", "no probe"});
  // A negative key or layer is refused naming the option: a negative --amplify or --scale had
  // read as "off" and run no intervention.
  for (const char* line : {"--amplify -2 --lambda 3", "--scale -3 --lambda 3", "--isolate -1",
                           "--isolate 4 --layers -1"})
    test::require_error<ConfigError>(
        [&] { read_probe_plan(write("negative.txt", std::string(line) + "\n"), base); },
        {"negative.txt:1", line, "is 0 or more, not -"});
  test::require_error<ConfigError>(
      [&] { read_probe_plan(write("lambda.txt", "none\n--lambda 4\n"), base); },
      {"lambda.txt:2", "without --amplify or --scale"});
  // Positions as a list, like the layers.
  REQUIRE(read_probe_plan(write("list.txt", "--isolate 10,20\n"), base)[0].options.isolate ==
          std::vector<int64_t>{10, 20});
  test::require_error<IOError>([&] { read_probe_plan((dir / "missing.txt").string(), base); },
                               {"missing.txt"});
  fs::remove_all(dir);
}

TEST_CASE("probe plan: one read of the checkpoint, each line's result as its own probe's",
          "[probe]") {
  const fs::path dir = test::fresh_dir("probe_plan");
  std::ofstream(dir / "plan.txt") << "none\n--isolate 3\n--amplify 5 --lambda 3 --layers 1 "
                                     "--mean-tokens 64\n--scale 5 --lambda 10\n--window 8\n";
  std::ostringstream console;
  const std::string ck = trained_checkpoint(dir, 4, console);
  ProbeOptions base;  // the command line's: every line probes 2 batches
  base.batches = 2;
  const std::vector<ProbePlanLine> plan = read_probe_plan((dir / "plan.txt").string(), base);
  std::ostringstream plan_console;
  const std::vector<ProbeResult> planned =
      probe_plan(ck, plan, (dir / "planned").string(), plan_console);
  REQUIRE(planned.size() == 5);
  REQUIRE(plan_console.str().find("once for 5 probes") != std::string::npos);
  REQUIRE(plan_console.str().find("== probe 3 of 5 (line 3): --amplify 5") != std::string::npos);
  const auto text_of = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  for (size_t i = 0; i < plan.size(); ++i) {
    INFO("plan line " << plan[i].text);
    ProbeOptions single = plan[i].options;
    single.out = (dir / ("single_" + std::to_string(i + 1) + ".json")).string();
    const ProbeResult alone = probe_checkpoint(ck, single, console);
    REQUIRE(planned[i].json_path == (dir / ("planned_" + std::to_string(i + 1) + ".json")).string());
    REQUIRE(planned[i].loss == alone.loss);
    REQUIRE(planned[i].key_score == alone.key_score);
    REQUIRE(text_of(planned[i].json_path) == text_of(single.out));  // every value, bit for bit
  }
  // The interventions differ between lines: isolation moves the score at key 3.
  REQUIRE(planned[1].key_score != planned[0].key_score);
  // A line the model cannot take fails before the first probe, naming the file and the line.
  std::ofstream(dir / "bad.txt") << "none\n--scale 3 --lambda 2\n--isolate 99\n";
  const std::vector<ProbePlanLine> bad = read_probe_plan((dir / "bad.txt").string(), base);
  test::require_error<ConfigError>(
      [&] { probe_plan(ck, bad, (dir / "bad").string(), plan_console); },
      {"bad.txt:3", "--isolate 99", "key 99", "block_size"});
  REQUIRE_FALSE(fs::exists(dir / "bad_1.json"));
  // A loaded model serves only the device and overrides it was loaded with.
  const LoadedProbeModel loaded = load_probe_model(ck, base);
  ProbeOptions other = base;
  other.overrides = {"metrics.sink_threshold=0.5"};
  test::require_error<ValueError>([&] { probe_loaded(loaded, other, console); },
                                  {"loaded for --device", "overrides"});
  fs::remove_all(dir);
}
