// The paper's interventions in the model (isolate per layer, amplify variance, the plain-scaling
// control) and `sinklab probe` on a trained checkpoint.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/model.h"
#include "train/commands/probe.h"
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
  const std::vector<int32_t> tokens = test::letter_tokens(4, 1, 20000, 20, 2);
  test::write_train_val(dir, tokens, {tokens.begin(), tokens.begin() + 3000});
  std::ostringstream y;
  y << "run: {name: p, out_dir: " << dir.string() << "}\n"
    << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
    << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
    << "train: {steps: 6, batch_size: 4, eval_every: 0, sample_tokens: 0}\n";
  std::ostringstream console;
  Run(parse_config(y.str(), "p.yaml"), console).train();
  const std::string ck = (dir / "p" / "main" / "ckpt" / "step_00000006.h5").string();
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
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = plain;
        bad.amplify = 3;
        bad.layers = {5};
        probe_checkpoint(ck, bad, console);
      },
      {"model.amplify_layers[0] = 5"});
  fs::remove_all(dir);
}
