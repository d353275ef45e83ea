// Helpers shared by the trainer-layer tests: a temporary folder, loader token helpers, tiny
// model configs and a forward capture.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "ops/add_norm.h"
#include "ops/rope.h"
#include "ops/weight_operands.h"
#include "tests/catch.h"
#include "tests/helpers.h"
#include "train/model.h"
#include "train/process_settings.h"
#include "train/data/shards.h"
#include "train/metrics/sink_metrics.h"
#include "train/io/tensorboard_log.h"
#include "train/io/tf_record.h"

namespace sinklab::test {

// A text file's lines (none when it cannot be read).
inline std::vector<std::string> lines_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The lines of a metrics.jsonl without the fields that time the step or count its memory (they
// differ between runs): what the training computed, step by step.
inline std::vector<std::string> untimed_lines(const std::filesystem::path& file) {
  const std::regex timed("\"(tokens_per_s|step_ms|mfu|memory_mib|memory_peak_mib)\":[^,]*,");
  std::vector<std::string> lines = lines_of(file);
  for (std::string& line : lines) line = std::regex_replace(line, timed, "");
  return lines;
}

// The raw JSON text of a top-level key's value in one JSONL line (numbers, strings, arrays,
// null; "" when the key is absent).
inline std::string json_field(const std::string& line, const std::string& key) {
  const std::string tag = "\"" + key + "\":";
  const size_t pos = line.find(tag);
  if (pos == std::string::npos) return "";
  size_t i = pos + tag.size(), depth = 0, j = i;
  for (; j < line.size(); ++j) {
    const char c = line[j];
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  return line.substr(i, j - i);
}

// The numbers of a JSON array of numbers as json_field gives it ("[0.5,null,2]": null as NaN).
inline std::vector<double> json_numbers(const std::string& array) {
  std::vector<double> out;
  std::string item;
  for (char ch : array.substr(array.empty() ? 0 : 1)) {
    if (ch != ',' && ch != ']') {
      item += ch;
      continue;
    }
    if (!item.empty()) out.push_back(item == "null" ? std::nan("") : std::stod(item));
    item.clear();
  }
  return out;
}

// The bytes of a file ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The training losses of a metrics.jsonl, in step order (records without one skipped).
inline std::vector<double> losses(const std::filesystem::path& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const size_t p = line.find("\"loss\":");
    if (p != std::string::npos && line.compare(p + 7, 4, "null") != 0)
      out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

// A free-ish port per test process (two test binaries may run at once).
inline int test_port(int offset) { return 20000 + (::getpid() * 7 + offset) % 20000; }

// Runs `command` through the shell; returns its exit status.
inline int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// An emptied folder sinklab_<name>_<pid> under the system temp dir (the caller removes it).
inline std::filesystem::path fresh_dir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("sinklab_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// n tokens 'a', 'b', ... (`letters` of them), each drawn from Philox (seed, stream) and repeated
// `repeat` times in a row: a small corpus with something to learn.
inline std::vector<int32_t> letter_tokens(uint64_t seed, uint64_t stream, size_t n, int letters,
                                          int repeat) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(97 + static_cast<int32_t>(philox4x32_10(seed, stream, i / repeat).v[0] % letters));
  return out;
}

// train_000000.bin and val_000000.bin in dir.
inline void write_train_val(const std::filesystem::path& dir, const std::vector<int32_t>& train,
                            const std::vector<int32_t>& val) {
  train::write_shard((dir / "train_000000.bin").string(), train);
  train::write_shard((dir / "val_000000.bin").string(), val);
}

// A tiny model: 2 layers, 2 heads, C = 8, T = 6, vocabulary 11.
inline train::ModelSection tiny_model(train::Arch arch, train::AttnOutputNorm norm) {
  train::ModelSection m;
  m.arch = arch;
  m.n_layer = 2;
  m.n_head = 2;
  m.n_embd = 8;
  m.block_size = 6;
  m.vocab_size = 11;
  m.attn_output_norm = norm;
  return m;
}

// The capture of one forward pass of model over ids (no grad, no targets).
// Dimension disparity computed directly: the batch mean of max_j |v[b, 0, j]| / mean_j
// |v[b, 0, j]| over the position-0 rows of v (B, T, C) row-major.
inline double first_token_disparity(const std::vector<double>& v, int64_t B, int64_t T,
                                    int64_t C) {
  double disparity = 0;
  for (int64_t b = 0; b < B; ++b) {
    double largest = 0, sum = 0;
    for (int64_t j = 0; j < C; ++j) {
      largest = std::max(largest, std::fabs(v[b * T * C + j]));
      sum += std::fabs(v[b * T * C + j]);
    }
    disparity += largest / (sum / static_cast<double>(C)) / static_cast<double>(B);
  }
  return disparity;
}

inline train::ForwardCapture capture_of(const train::GPT& model, const Tensor& ids) {
  autograd::NoGradGuard no_grad;
  train::ForwardCapture cap;
  model.forward(ids, Tensor(), &cap);
  return cap;
}

// One model (make(), on ids' device) trained one step on (ids, targets) with a switch (`flag`, an
// ops-level setting) off, then on, then restored: each way's loss and flat gradients, and how far
// count() moved during the step.
struct StepEachWay {
  std::vector<double> losses[2], grads[2];
  int64_t counted[2] = {0, 0};
};
template <class MakeModel, class Count>
StepEachWay one_step_each_way(MakeModel&& make, const Tensor& ids, const Tensor& targets,
                              bool& flag, Count&& count) {
  StepEachWay r;
  const bool saved = flag;
  for (bool on : {false, true}) {
    flag = on;
    train::GPT model = make();
    model.params().zero_grad();
    const int64_t before = count();
    const Tensor loss = model.forward(ids, targets).loss;
    r.losses[on] = loss.to_doubles();
    autograd::backward(loss);
    r.counted[on] = count() - before;
    r.grads[on] = model.params().flat_grads().to_doubles();
  }
  flag = saved;
  return r;
}

// run.rope_in_place off, then on: RoPE rotated in place twice a layer (forward and backward),
// and no bit of the loss or of any gradient changes.
template <class MakeModel>
void require_rope_in_place_changes_no_bit(MakeModel&& make, const Tensor& ids,
                                          const Tensor& targets, int64_t n_layer) {
  const StepEachWay r = one_step_each_way(
      make, ids, targets, ops::rope_in_place, [] { return ops::rope_rotations_in_place(); });
  REQUIRE(r.counted[0] == 0);
  REQUIRE(r.counted[1] == 2 * n_layer);
  REQUIRE(r.losses[1] == r.losses[0]);
  REQUIRE(r.grads[1] == r.grads[0]);
}

// run.release_forward_inputs off, then on (autograd::set_keep_inputs and the training step's
// forward with CrossEntropyLogits::kOverwritten): without it the loss's node keeps the logits
// once the caller drops them; with it the forward returns no logits (the loss's gradient went
// over them); no bit of the loss or of any gradient changes.
template <class MakeModel>
void require_release_forward_inputs_changes_no_bit(MakeModel&& make, const Tensor& ids,
                                                   const Tensor& targets) {
  std::vector<double> losses[2], grads[2];
  for (bool release : {false, true}) {
    autograd::KeepInputsGuard keep(!release);
    train::GPT model = make();
    model.params().zero_grad();
    train::RunSection run;
    run.release_forward_inputs = release;
    train::ForwardResult out = model.forward(ids, targets, nullptr, train::logits_after_loss(run));
    if (release) {
      REQUIRE_FALSE(out.logits.defined());
    } else {
      const std::weak_ptr<Storage> logits = out.logits.storage();
      out.logits = Tensor();
      REQUIRE_FALSE(logits.expired());  // the loss's node keeps its input
    }
    losses[release] = out.loss.to_doubles();
    autograd::backward(out.loss);
    grads[release] = model.params().flat_grads().to_doubles();
  }
  REQUIRE(losses[1] == losses[0]);
  REQUIRE(grads[1] == grads[0]);
}

// run.flat_weight_operands off, then on. `rounds`: whether the products round their f32 weights
// (under bf16 on a GPU): then every block's four products (or more) and the output head take
// their weight from the forward's one rounded copy of the flat buffer. Either way no bit of the
// loss or of any gradient changes (round-to-nearest-even of each weight, one pass or many).
template <class MakeModel>
void require_flat_weight_operands_change_no_bit(MakeModel&& make, const Tensor& ids,
                                                const Tensor& targets, int64_t n_layer,
                                                bool rounds) {
  const int64_t open_before = ops::weight_operand_scopes_open();
  const StepEachWay r = one_step_each_way(make, ids, targets, ops::flat_weight_operands,
                                          [] { return ops::weight_operand_views_taken(); });
  REQUIRE(r.counted[0] == 0);
  if (rounds)
    REQUIRE(r.counted[1] >= 4 * n_layer + 1);
  else
    REQUIRE(r.counted[1] == 0);
  REQUIRE(r.losses[1] == r.losses[0]);
  REQUIRE(r.grads[1] == r.grads[0]);
  REQUIRE(ops::weight_operand_scopes_open() == open_before);  // closed with each forward
}

// run.bf16_branch_outputs off, then on. `rounds`: whether the branch outputs are bf16 then
// (under bf16 on a GPU): every block's two adds take a bf16 delta, and the loss and gradients stay
// within bf16 rounding of the f32 path's (one bf16 rounding of each branch output, rtol 2^-8,
// carried through the step). Elsewhere (the CPU, fp32) the switch changes no bit and no add
// takes a bf16 delta.
template <class MakeModel>
void require_bf16_branch_outputs(MakeModel&& make, const Tensor& ids, const Tensor& targets,
                                 int64_t n_layer, bool rounds) {
  const StepEachWay r = one_step_each_way(
      make, ids, targets, ops::bf16_branch_outputs, [] { return ops::bf16_deltas_added(); });
  REQUIRE(r.counted[0] == 0);
  if (!rounds) {
    REQUIRE(r.counted[1] == 0);
    REQUIRE(r.losses[1] == r.losses[0]);
    REQUIRE(r.grads[1] == r.grads[0]);
    return;
  }
  REQUIRE(r.counted[1] == 2 * n_layer);  // every block's attention and FFN branch
  REQUIRE(std::isfinite(r.losses[1][0]));
  REQUIRE(r.losses[1][0] == Approx(r.losses[0][0]).epsilon(1e-2));
  REQUIRE(r.losses[1] != r.losses[0]);  // the rounding happened
  double scale = 0, worst = 0;
  for (size_t i = 0; i < r.grads[0].size(); ++i) {
    scale = std::max(scale, std::fabs(r.grads[0][i]));
    worst = std::max(worst, std::fabs(r.grads[1][i] - r.grads[0][i]));
  }
  INFO("largest gradient " << scale << ", largest difference " << worst);
  REQUIRE(scale > 0);
  REQUIRE(worst <= 5e-2 * scale);
}

// A fresh folder under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("sinklab_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Writes text to <path>/name and returns the file's path.
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return file(name);
  }
};

// 0, 1, ..., n - 1 as a token stream.
inline std::vector<int32_t> iota_tokens(int32_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = i;
  return t;
}

// The values of an int32 CPU tensor.
inline std::vector<int32_t> ints(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

// Runs f, requires that it throws E, and returns the error's message (without the hint).
template <class E, class F>
std::string error_message(F&& f) {
  return caught<E>(std::forward<F>(f)).message();
}

// The events of the one sinklab events file in `dir` (REQUIREs exactly one, every record
// intact), the file_version event first.
inline std::vector<train::Event> events_in(const std::filesystem::path& dir) {
  const std::vector<std::string> files = train::sinklab_events_files(dir.string());
  REQUIRE(files.size() == 1);
  std::ifstream in(files[0], std::ios::binary);
  train::RecordReader reader(in, std::filesystem::file_size(files[0]));
  std::vector<train::Event> out;
  for (std::string data; reader.next(data);) out.push_back(train::decode_event(data));
  REQUIRE(reader.stop() == train::RecordReader::Stop::End);
  REQUIRE_FALSE(out.empty());
  REQUIRE(out[0].file_version == train::kEventFileVersion);
  return out;
}

// The steps of the events after the file_version one.
inline std::vector<int64_t> event_steps(const std::vector<train::Event>& events) {
  std::vector<int64_t> steps;
  for (size_t i = 1; i < events.size(); ++i) steps.push_back(events[i].step);
  return steps;
}

// Every metric of `got` has the bits of `want`'s (NaN equal to NaN): two ways of computing the
// metrics of one capture that must agree exactly (fetched early, queued on a side stream,
// exchanged at another moment).
inline void require_same_metrics(const train::SinkMetrics& want, const train::SinkMetrics& got) {
  const auto same = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  const auto same_all = [&](const std::vector<double>& x, const std::vector<double>& y) {
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!same(x[i], y[i])) return false;
    return true;
  };
  REQUIRE(same(got.sink_rate, want.sink_rate));
  REQUIRE(got.layers.size() == want.layers.size());
  for (size_t l = 0; l < want.layers.size(); ++l) {
    const train::LayerMetrics &a = want.layers[l], &b = got.layers[l];
    INFO("layer " << l);
    REQUIRE(same_all(b.sink_mass, a.sink_mass));
    REQUIRE(same_all(b.alpha0, a.alpha0));
    REQUIRE(same_all(b.var_pos, a.var_pos));
    REQUIRE(same_all(b.var_pos_normed, a.var_pos_normed));
    REQUIRE(same(b.var_ratio, a.var_ratio));
    REQUIRE(same(b.var_ratio_normed, a.var_ratio_normed));
    REQUIRE(same(b.dim_disparity, a.dim_disparity));
    REQUIRE(b.dim_argmax == a.dim_argmax);
    REQUIRE(same(b.norm_ratio, a.norm_ratio));
    REQUIRE(b.super_neuron == a.super_neuron);
    REQUIRE(same(b.super_value, a.super_value));
    REQUIRE(same(b.super_ratio, a.super_ratio));
    for (int i = 0; i < 3; ++i) REQUIRE(same(b.massive_top[i], a.massive_top[i]));
    REQUIRE(same(b.massive_median, a.massive_median));
    REQUIRE(same(b.sink_score, a.sink_score));
    REQUIRE(same(b.dim_disparity_normed, a.dim_disparity_normed));
  }
}

}  // namespace sinklab::test
