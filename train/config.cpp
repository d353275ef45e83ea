// Run configuration: one table row per key drives parsing, --set/variant overrides, validation of
// bounds and enumerations, and writing the resolved YAML. Cross-key rules live in validate().
#include "train/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <variant>

#include "core/error.h"
#include "train/arch.h"
#include "train/yaml_util.h"

namespace sinklab::train {

namespace {

namespace yu = yaml_util;

// ---------------------------------------------------------------------------------------------
// The choice keys' names: one table per enum, the only place they are written. Each table lists
// the values in the order messages give them.

template <class E>
struct ChoiceName {
  E value;
  const char* text;
};

// The table of an enum, picked by the type of the (ignored) argument.
std::span<const ChoiceName<PrecisionSetting>> names_of(PrecisionSetting) {
  static constexpr ChoiceName<PrecisionSetting> names[] = {
      {PrecisionSetting::Auto, "auto"}, {PrecisionSetting::BF16, "bf16"},
      {PrecisionSetting::FP32, "fp32"}};
  return names;
}
std::span<const ChoiceName<ops::AttentionKernels>> names_of(ops::AttentionKernels) {
  static constexpr ChoiceName<ops::AttentionKernels> names[] = {
      {ops::AttentionKernels::Auto, "auto"}, {ops::AttentionKernels::Own, "own"}};
  return names;
}
std::span<const ChoiceName<Arch>> names_of(Arch) {
  static constexpr ChoiceName<Arch> names[] = {{Arch::Gpt2, "gpt2"}, {Arch::Llama, "llama"}};
  return names;
}
std::span<const ChoiceName<AttnOutputNorm>> names_of(AttnOutputNorm) {
  static constexpr ChoiceName<AttnOutputNorm> names[] = {
      {AttnOutputNorm::None, "none"}, {AttnOutputNorm::HeadwiseRmsNorm, "headwise_rmsnorm"}};
  return names;
}
std::span<const ChoiceName<AttentionKind>> names_of(AttentionKind) {
  static constexpr ChoiceName<AttentionKind> names[] = {{AttentionKind::Softmax, "softmax"},
                                                        {AttentionKind::Sigmoid, "sigmoid"}};
  return names;
}
std::span<const ChoiceName<GammaInit>> names_of(GammaInit) {
  static constexpr ChoiceName<GammaInit> names[] = {{GammaInit::FirstTokenStd, "first_token_std"},
                                                    {GammaInit::Ones, "ones"}};
  return names;
}
std::span<const ChoiceName<AmplifyMode>> names_of(AmplifyMode) {
  static constexpr ChoiceName<AmplifyMode> names[] = {{AmplifyMode::Centered, "centered"},
                                                      {AmplifyMode::Plain, "plain"}};
  return names;
}
std::span<const ChoiceName<AmplifySite>> names_of(AmplifySite) {
  static constexpr ChoiceName<AmplifySite> names[] = {{AmplifySite::BeforeNorm, "before_norm"},
                                                      {AmplifySite::AfterNorm, "after_norm"}};
  return names;
}
std::span<const ChoiceName<ValSplit>> names_of(ValSplit) {
  static constexpr ChoiceName<ValSplit> names[] = {{ValSplit::Documents, "documents"},
                                                   {ValSplit::Tail, "tail"}};
  return names;
}
std::span<const ChoiceName<VariantPlacement>> names_of(VariantPlacement) {
  static constexpr ChoiceName<VariantPlacement> names[] = {
      {VariantPlacement::Together, "together"}, {VariantPlacement::Split, "split"}};
  return names;
}
std::span<const ChoiceName<ops::Bf16Gemm>> names_of(ops::Bf16Gemm) {
  static constexpr ChoiceName<ops::Bf16Gemm> names[] = {{ops::Bf16Gemm::Rounded, "rounded"},
                                                        {ops::Bf16Gemm::Fast, "fast"}};
  return names;
}
std::span<const ChoiceName<ops::GemmEpilogues>> names_of(ops::GemmEpilogues) {
  static constexpr ChoiceName<ops::GemmEpilogues> names[] = {
      {ops::GemmEpilogues::None, "none"},
      {ops::GemmEpilogues::Forward, "forward"},
      {ops::GemmEpilogues::ForwardBiasGrad, "forward_bias_grad"},
      {ops::GemmEpilogues::ForwardBackward, "forward_backward"}};
  return names;
}
std::span<const ChoiceName<SidePriority>> names_of(SidePriority) {
  static constexpr ChoiceName<SidePriority> names[] = {{SidePriority::Low, "low"},
                                                       {SidePriority::Equal, "equal"}};
  return names;
}
std::span<const ChoiceName<CpuGemmSetting>> names_of(CpuGemmSetting) {
  static constexpr ChoiceName<CpuGemmSetting> names[] = {
      {CpuGemmSetting::Auto, "auto"}, {CpuGemmSetting::OpenBLAS, "openblas"},
      {CpuGemmSetting::Reference, "reference"}};
  return names;
}

}  // namespace

template <class E>
const char* choice_text(E value) {
  for (const ChoiceName<E>& c : names_of(value))
    if (c.value == value) return c.text;
  SINKLAB_FAIL(InternalError,
               "a choice key's value " << static_cast<int>(value) << " has no YAML name",
               "add it to its enum's table in train/config.cpp");
}

template <class E>
std::optional<E> choice_from_text(std::string_view text) {
  for (const ChoiceName<E>& c : names_of(E{}))
    if (text == c.text) return c.value;
  return std::nullopt;
}

// Both directions, for each choice enum.
#define SINKLAB_CHOICE(E)                                            \
  template const char* choice_text(E);                               \
  template std::optional<E> choice_from_text<E>(std::string_view);
SINKLAB_CHOICE(PrecisionSetting)
SINKLAB_CHOICE(ops::AttentionKernels)
SINKLAB_CHOICE(Arch)
SINKLAB_CHOICE(AttnOutputNorm)
SINKLAB_CHOICE(AttentionKind)
SINKLAB_CHOICE(GammaInit)
SINKLAB_CHOICE(AmplifyMode)
SINKLAB_CHOICE(AmplifySite)
SINKLAB_CHOICE(ValSplit)
SINKLAB_CHOICE(VariantPlacement)
SINKLAB_CHOICE(ops::Bf16Gemm)
SINKLAB_CHOICE(ops::GemmEpilogues)
SINKLAB_CHOICE(SidePriority)
SINKLAB_CHOICE(CpuGemmSetting)
#undef SINKLAB_CHOICE

namespace {

// An enum field (a choice key) behind one type: its value read and written as YAML text through
// the enum's table.
struct ChoiceRef {
  void* field;
  const char* (*text)(const void* field);           // the value's YAML text
  bool (*set)(void* field, std::string_view text);  // false: `text` names no value
  std::vector<std::string> (*names)();              // every value's text, in table order
};

template <class E>
ChoiceRef choice_ref(E* field) {
  return {field, [](const void* f) { return choice_text(*static_cast<const E*>(f)); },
          [](void* f, std::string_view text) {
            const std::optional<E> value = choice_from_text<E>(text);
            if (value) *static_cast<E*>(f) = *value;
            return value.has_value();
          },
          [] {
            std::vector<std::string> out;
            for (const ChoiceName<E>& c : names_of(E{})) out.push_back(c.text);
            return out;
          }};
}

// ---------------------------------------------------------------------------------------------
// The key table.

// A typed pointer to one field of a RunConfig; the alternative is the key's type.
using Ref = std::variant<std::string*, int64_t*, uint64_t*, double*, bool*, std::vector<int64_t>*,
                         std::vector<std::string>*, ChoiceRef>;

enum class Bound { None, Positive, NonNegative };  // checked by validate() for numbers

struct Field {
  const char* section;
  const char* key;
  Ref (*ref)(RunConfig&);
  Bound bound = Bound::None;
  const char* choices = nullptr;  // "a|b|c" for a string with a closed set of values (an enum
                                  // field's choices come from its table)

  std::string name() const { return std::string(section) + "." + key; }
};

template <auto Section, auto Member>
Ref member_ref(RunConfig& c) {
  auto* field = &((c.*Section).*Member);
  if constexpr (std::is_enum_v<std::remove_pointer_t<decltype(field)>>)
    return choice_ref(field);
  else
    return field;
}

// Read-only access through the same table (the pointer is only read from).
Ref const_ref(const Field& f, const RunConfig& c) { return f.ref(const_cast<RunConfig&>(c)); }

#define SINKLAB_KEY(section, Type, key, ...) \
  Field { #section, #key, &member_ref<&RunConfig::section, &Type::key>, __VA_ARGS__ }

constexpr Bound kPos = Bound::Positive;
constexpr Bound kNonNeg = Bound::NonNegative;
constexpr Bound kAny = Bound::None;

// Sections are written in this order; a section's keys in the order of config.h.
const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      SINKLAB_KEY(run, RunSection, name),
      SINKLAB_KEY(run, RunSection, out_dir),
      SINKLAB_KEY(run, RunSection, device),
      SINKLAB_KEY(run, RunSection, precision),
      SINKLAB_KEY(run, RunSection, attention_kernels),
      SINKLAB_KEY(run, RunSection, seed),
      SINKLAB_KEY(run, RunSection, profile),
      SINKLAB_KEY(run, RunSection, bucket_mib, kPos),
      SINKLAB_KEY(run, RunSection, collective_timeout_s, kPos),
      SINKLAB_KEY(run, RunSection, bf16_gemm),
      SINKLAB_KEY(run, RunSection, metrics_priority),
      SINKLAB_KEY(run, RunSection, cpu_gemm),
      SINKLAB_KEY(run, RunSection, gemm_epilogues),
      SINKLAB_KEY(run, RunSection, bias_grad_columns),
      SINKLAB_KEY(run, RunSection, gemm_search, kNonNeg),
      SINKLAB_KEY(run, RunSection, fused_cross_entropy),
      SINKLAB_KEY(run, RunSection, fold_residual_grads),
      SINKLAB_KEY(run, RunSection, rope_in_place),
      SINKLAB_KEY(run, RunSection, bf16_branch_outputs),
      SINKLAB_KEY(run, RunSection, fused_norm_param_grads),
      SINKLAB_KEY(run, RunSection, flat_weight_operands),
      SINKLAB_KEY(run, RunSection, head_norm_statistics),
      SINKLAB_KEY(run, RunSection, sigmoid_row_sums),
      SINKLAB_KEY(run, RunSection, one_pass_order_statistics),
      SINKLAB_KEY(run, RunSection, metrics_exchange_on_side),
      SINKLAB_KEY(run, RunSection, cuda_graph),
      SINKLAB_KEY(run, RunSection, deterministic),
      SINKLAB_KEY(run, RunSection, release_forward_inputs),
      SINKLAB_KEY(run, RunSection, variant_placement),

      SINKLAB_KEY(model, ModelSection, arch),
      SINKLAB_KEY(model, ModelSection, n_layer, kPos),
      SINKLAB_KEY(model, ModelSection, n_head, kPos),
      SINKLAB_KEY(model, ModelSection, n_embd, kPos),
      SINKLAB_KEY(model, ModelSection, ffn_hidden, kNonNeg),
      SINKLAB_KEY(model, ModelSection, block_size, kPos),
      SINKLAB_KEY(model, ModelSection, vocab_size, kNonNeg),
      SINKLAB_KEY(model, ModelSection, vocab_multiple, kPos),
      SINKLAB_KEY(model, ModelSection, tie_embeddings),
      SINKLAB_KEY(model, ModelSection, attn_output_norm),
      SINKLAB_KEY(model, ModelSection, attention),
      SINKLAB_KEY(model, ModelSection, gamma_init),
      SINKLAB_KEY(model, ModelSection, gamma_init_scale, kPos),
      SINKLAB_KEY(model, ModelSection, gamma_shared),
      SINKLAB_KEY(model, ModelSection, gamma_weight_decay),
      SINKLAB_KEY(model, ModelSection, norm_eps, kNonNeg),
      SINKLAB_KEY(model, ModelSection, rope_theta, kPos),
      SINKLAB_KEY(model, ModelSection, isolate_positions),
      SINKLAB_KEY(model, ModelSection, isolate_layers),
      SINKLAB_KEY(model, ModelSection, amplify_position),
      SINKLAB_KEY(model, ModelSection, amplify_lambda),
      SINKLAB_KEY(model, ModelSection, amplify_layers),
      SINKLAB_KEY(model, ModelSection, amplify_mode),
      SINKLAB_KEY(model, ModelSection, amplify_site),
      SINKLAB_KEY(model, ModelSection, init_std, kPos),

      SINKLAB_KEY(data, DataSection, dir),
      SINKLAB_KEY(data, DataSection, train_pattern),
      SINKLAB_KEY(data, DataSection, val_pattern),
      SINKLAB_KEY(data, DataSection, tokenizer),
      SINKLAB_KEY(data, DataSection, window_stride, kNonNeg),

      SINKLAB_KEY(prepare, PrepareSection, inputs),
      SINKLAB_KEY(prepare, PrepareSection, tokenizer),  // checked in validate(): hf:<path>
      SINKLAB_KEY(prepare, PrepareSection, vocab_size, kPos),
      SINKLAB_KEY(prepare, PrepareSection, val_fraction, kNonNeg),
      SINKLAB_KEY(prepare, PrepareSection, val_split),
      SINKLAB_KEY(prepare, PrepareSection, val_unit_bytes, kPos),
      SINKLAB_KEY(prepare, PrepareSection, shard_tokens, kPos),

      SINKLAB_KEY(train, TrainSection, steps, kPos),
      SINKLAB_KEY(train, TrainSection, batch_size, kPos),
      SINKLAB_KEY(train, TrainSection, tokens_per_step, kNonNeg),
      SINKLAB_KEY(train, TrainSection, log_every, kNonNeg),
      SINKLAB_KEY(train, TrainSection, eval_every, kNonNeg),
      SINKLAB_KEY(train, TrainSection, eval_batches, kPos),
      SINKLAB_KEY(train, TrainSection, sample_every, kNonNeg),
      SINKLAB_KEY(train, TrainSection, sample_tokens, kNonNeg),
      SINKLAB_KEY(train, TrainSection, sample_temperature, kNonNeg),
      SINKLAB_KEY(train, TrainSection, max_skipped_steps, kPos),

      SINKLAB_KEY(optim, OptimSection, lr, kPos),
      SINKLAB_KEY(optim, OptimSection, min_lr, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, warmup_steps, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, decay_steps, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, beta1, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, beta2, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, eps, kPos),
      SINKLAB_KEY(optim, OptimSection, weight_decay, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, decay_embeddings),
      SINKLAB_KEY(optim, OptimSection, grad_clip, kNonNeg),
      SINKLAB_KEY(optim, OptimSection, zero1),

      SINKLAB_KEY(metrics, MetricsSection, every, kNonNeg),
      SINKLAB_KEY(metrics, MetricsSection, effective_rank_every, kNonNeg),
      SINKLAB_KEY(metrics, MetricsSection, sink_threshold, kPos),
      SINKLAB_KEY(metrics, MetricsSection, onset_threshold, kPos),
      SINKLAB_KEY(metrics, MetricsSection, rank_sequences, kNonNeg),
      SINKLAB_KEY(metrics, MetricsSection, order_statistics),
      SINKLAB_KEY(metrics, MetricsSection, jsonl),
      SINKLAB_KEY(metrics, MetricsSection, hdf5),
      SINKLAB_KEY(metrics, MetricsSection, tensorboard),

      SINKLAB_KEY(checkpoint, CheckpointSection, every, kNonNeg),
      SINKLAB_KEY(checkpoint, CheckpointSection, keep_last, kNonNeg),
      SINKLAB_KEY(checkpoint, CheckpointSection, keep_every, kNonNeg),
  };
  return table;
}

#undef SINKLAB_KEY

// Upper bounds of the size keys (README "Size bounds"): generous for research models, small
// enough that every size product below fits in int64 and a typo (an extra digit, a float) is
// refused here instead of becoming an allocation of exabytes or a loop that never ends.
// Kept apart from the key table so that rows stay as they are.
struct UpperBound {
  const char* key;
  int64_t most;
  const char* text;  // how the README writes it
};
const std::vector<UpperBound>& upper_bounds() {
  constexpr int64_t k2_16 = int64_t{1} << 16, k2_20 = int64_t{1} << 20, k2_24 = int64_t{1} << 24,
                    k2_32 = int64_t{1} << 32, k2_40 = int64_t{1} << 40;
  static const std::vector<UpperBound> table = {
      {"model.n_layer", 4096, "4096"},
      {"model.n_head", k2_16, "65536 (2^16)"},
      {"model.n_embd", k2_16, "65536 (2^16)"},
      {"model.ffn_hidden", k2_20, "1048576 (2^20)"},
      {"model.block_size", k2_20, "1048576 (2^20)"},
      {"model.vocab_size", k2_24, "16777216 (2^24)"},
      {"model.vocab_multiple", k2_16, "65536 (2^16)"},
      {"data.window_stride", k2_32, "4294967296 (2^32)"},
      {"prepare.vocab_size", k2_24, "16777216 (2^24)"},
      {"prepare.shard_tokens", k2_32, "4294967296 (2^32)"},
      {"prepare.val_unit_bytes", k2_32, "4294967296 (2^32)"},
      {"train.steps", k2_40, "1099511627776 (2^40)"},
      {"train.batch_size", k2_20, "1048576 (2^20)"},
      {"train.tokens_per_step", k2_32, "4294967296 (2^32)"},
      {"train.log_every", k2_40, "2^40"},
      {"train.eval_every", k2_40, "2^40"},
      {"train.eval_batches", k2_20, "1048576 (2^20)"},
      {"train.sample_every", k2_40, "2^40"},
      {"train.sample_tokens", k2_20, "1048576 (2^20)"},
      {"train.max_skipped_steps", k2_40, "2^40"},
      {"optim.warmup_steps", k2_40, "2^40"},
      {"optim.decay_steps", k2_40, "2^40"},
      {"metrics.every", k2_40, "2^40"},
      {"metrics.effective_rank_every", k2_40, "2^40"},
      {"metrics.rank_sequences", k2_20, "1048576 (2^20)"},
      {"checkpoint.every", k2_40, "2^40"},
      {"checkpoint.keep_last", k2_20, "1048576 (2^20)"},
      {"checkpoint.keep_every", k2_40, "2^40"},
  };
  return table;
}

constexpr const char* kVariantsKey = "variants";

const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Field& f : fields())
      if (std::find(out.begin(), out.end(), f.section) == out.end()) out.push_back(f.section);
    return out;
  }();
  return names;
}

bool is_section(std::string_view name) {
  const auto& s = section_names();
  return std::find(s.begin(), s.end(), name) != s.end();
}

std::vector<std::string> keys_of(std::string_view section) {
  std::vector<std::string> out;
  for (const Field& f : fields())
    if (section == f.section) out.push_back(f.key);
  return out;
}

const Field* find_field(std::string_view section, std::string_view key) {
  for (const Field& f : fields())
    if (section == f.section && key == f.key) return &f;
  return nullptr;
}

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, sep);) out.push_back(item);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Messages.

std::string file_label(const std::string& origin) {
  return origin.empty() ? "<inline config>" : origin;
}

// " in x.yaml (line 3)"
std::string in_file(const std::string& origin, const YAML::Node& node) {
  const std::string line = yu::line_of(node);
  return " in " + file_label(origin) + (line.empty() ? "" : " (" + line + ")");
}

std::string quoted_list(const std::vector<std::string>& names, size_t most = 3) {
  std::vector<std::string> q;
  for (size_t i = 0; i < names.size() && i < most; ++i) q.push_back("'" + names[i] + "'");
  return yu::join(q, " or ");
}

// "did you mean 'model.n_layer'? " for a key that is not in the table.
std::string key_suggestion(std::string_view section, std::string_view key) {
  std::vector<std::string> names;
  if (is_section(section)) {
    for (const std::string& k : yu::close_matches(key, keys_of(section)))
      names.push_back(std::string(section) + "." + k);
  }
  if (names.empty()) {  // the key may live in another section ("model.steps" -> train.steps)
    std::vector<std::string> exact, close;
    for (const Field& f : fields()) {
      if (key == f.key)
        exact.push_back(f.name());
      else if (!yu::close_matches(key, {f.key}).empty())
        close.push_back(f.name());
    }
    names = exact.empty() ? close : exact;
  }
  if (names.empty() && !is_section(section)) {
    const auto close = yu::close_matches(section, section_names());
    if (!close.empty()) names.push_back(close.front() + "." + std::string(key));
  }
  return names.empty() ? "" : "did you mean " + quoted_list(names) + "? ";
}

[[noreturn]] void unknown_key(std::string_view section, std::string_view key,
                              const std::string& where) {
  const std::string name = std::string(section) + "." + std::string(key);
  if (is_section(section))
    SINKLAB_FAIL(ConfigError, "unknown key '" << name << "'" << where,
                 key_suggestion(section, key) + "valid keys in " + std::string(section) + ": " +
                     yu::join(keys_of(section), ", "));
  SINKLAB_FAIL(ConfigError,
               "unknown key '" << name << "'" << where << ": there is no section '" << section
                               << "'",
               key_suggestion(section, key) + "keys are section.key with section one of " +
                   yu::join(section_names(), ", "));
}

[[noreturn]] void unknown_section(const std::string& section, const std::string& where) {
  std::vector<std::string> all = section_names();
  all.push_back(kVariantsKey);
  std::string hint;
  const auto close = yu::close_matches(section, all);
  if (!close.empty()) {
    hint = "did you mean " + quoted_list(close) + "? ";
  } else {
    std::vector<std::string> owners;  // a key written at the top level ("n_layer: 4")
    for (const Field& f : fields())
      if (section == f.key) owners.push_back(f.name());
    if (!owners.empty())
      hint = "keys go under their section: did you mean " + quoted_list(owners) + "? ";
  }
  SINKLAB_FAIL(ConfigError, "unknown section '" << section << "'" << where,
               hint + "valid sections: " + yu::join(all, ", "));
}

// ---------------------------------------------------------------------------------------------
// Values: YAML node -> field, field -> YAML.

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

void emit_value(YAML::Emitter& out, const Field& f, const RunConfig& c) {
  std::visit(Overloaded{
                 [&](const std::string* v) { yu::emit_string(out, *v); },
                 [&](const int64_t* v) { out << static_cast<long long>(*v); },
                 [&](const uint64_t* v) { out << static_cast<unsigned long long>(*v); },
                 [&](const double* v) { out << yu::format_double(*v); },
                 [&](const bool* v) { out << *v; },
                 [&](const std::vector<int64_t>* v) {
                   out << YAML::Flow << YAML::BeginSeq;
                   for (int64_t x : *v) out << static_cast<long long>(x);
                   out << YAML::EndSeq;
                 },
                 [&](const std::vector<std::string>* v) {
                   out << YAML::Flow << YAML::BeginSeq;
                   for (const std::string& x : *v) yu::emit_string(out, x);
                   out << YAML::EndSeq;
                 },
                 [&](const ChoiceRef& v) { yu::emit_string(out, v.text(v.field)); },
             },
             const_ref(f, c));
}

// The value as YAML text, as --set takes it ("4", "none", "[3, 7]").
std::string value_text(const Field& f, const RunConfig& c) {
  YAML::Emitter out;
  emit_value(out, f, c);
  return out.c_str();
}

std::string type_name(const Field& f) {
  static const RunConfig defaults;
  return std::visit(Overloaded{
                        [](std::string*) -> std::string { return "a string"; },
                        [](int64_t*) -> std::string { return "an integer"; },
                        [](uint64_t*) -> std::string { return "a non-negative integer"; },
                        [](double*) -> std::string { return "a number"; },
                        [](bool*) -> std::string { return "true or false"; },
                        [](std::vector<int64_t>*) -> std::string { return "a list of integers"; },
                        [](std::vector<std::string>*) -> std::string {
                          return "a list of strings";
                        },
                        [](const ChoiceRef& v) -> std::string {
                          return "one of " + yu::join(v.names(), ", ");
                        },
                    },
                    const_ref(f, defaults));
}

// "n_layer: 4 (under model:), or --set model.n_layer=4"
std::string example(const Field& f) {
  static const RunConfig defaults;
  std::string value = value_text(f, defaults);
  if (value == "[]")
    value = std::holds_alternative<std::vector<int64_t>*>(const_ref(f, defaults))
                ? "[3, 7]"
                : "[data/raw/moby_dick.txt]";
  else if (value == "\"\"")
    value = "some_text";
  return std::string("write it as e.g. ") + f.key + ": " + value + " (under " + f.section +
         ":), or --set " + f.name() + "=" + value;
}

[[noreturn]] void type_error(const Field& f, const std::string& what, const std::string& got,
                             const std::string& where) {
  SINKLAB_FAIL(ConfigError,
               "wrong type for " << what << where << ": expected " << type_name(f) << ", got "
                                 << got,
               example(f));
}

// An integer key given a float such as 1e12 or 4.0: YAML reads those as floats, never as
// integers; the message says so and how to write the integer.
void check_not_float(const Field& f, const std::string& what, const YAML::Node& node,
                     const std::string& where) {
  if (!node.IsScalar() || yu::parse_int(node.Scalar())) return;
  const std::optional<double> x = yu::parse_double(node.Scalar());
  if (!x) return;
  const bool whole = std::fabs(*x) < 9.0e18 && *x == std::floor(*x);
  SINKLAB_FAIL(ConfigError,
               "wrong type for " << what << where << ": expected " << type_name(f) << ", got '"
                                 << node.Scalar()
                                 << "', which YAML reads as a floating-point number",
               whole ? "write the integer as plain digits: " + std::string(f.key) + ": " +
                           std::to_string(static_cast<int64_t>(*x))
                     : example(f));
}

// `value` (of key f, read `where`) is none of `choices`.
[[noreturn]] void not_a_choice(const Field& f, const std::string& value, const std::string& where,
                               const std::vector<std::string>& choices) {
  static const RunConfig defaults;
  const auto close = yu::close_matches(value, choices);
  SINKLAB_FAIL(ConfigError,
               f.name() << " is '" << value << "'" << where << ": expected one of "
                        << yu::join(choices, ", "),
               (close.empty() ? "" : "did you mean " + quoted_list(close) + "? ") + "set " +
                   f.name() + " to one of " + yu::join(choices, " | ") + " (default " +
                   value_text(f, defaults) + ")");
}

template <class T, class Parse>
T scalar_as(const Field& f, const std::string& what, const YAML::Node& node,
            const std::string& where, Parse parse) {
  if (node.IsScalar())
    if (auto v = parse(node.Scalar())) return *v;
  type_error(f, what, yu::describe(node), where);
}

// Sets field `f` of `c` from `node`; throws ConfigError (key, value, type, where) on a mismatch.
void assign(const Field& f, RunConfig& c, const YAML::Node& node, const std::string& where) {
  const std::string name = f.name();
  std::visit(
      Overloaded{
          [&](std::string* v) {
            if (node.IsNull())
              *v = "";  // `key:` or `key: ~` with nothing after it
            else if (node.IsScalar())
              *v = node.Scalar();
            else
              type_error(f, name, yu::describe(node), where);
          },
          [&](int64_t* v) {
            check_not_float(f, name, node, where);
            *v = scalar_as<int64_t>(f, name, node, where, yu::parse_int);
          },
          [&](uint64_t* v) { *v = scalar_as<uint64_t>(f, name, node, where, yu::parse_uint); },
          [&](double* v) { *v = scalar_as<double>(f, name, node, where, yu::parse_double); },
          [&](bool* v) { *v = scalar_as<bool>(f, name, node, where, yu::parse_bool); },
          [&](std::vector<int64_t>* v) {
            if (!node.IsNull() && !node.IsSequence()) type_error(f, name, yu::describe(node), where);
            std::vector<int64_t> out;
            for (size_t i = 0; node.IsSequence() && i < node.size(); ++i) {
              const YAML::Node item = node[i];
              std::optional<int64_t> x;
              if (item.IsScalar()) x = yu::parse_int(item.Scalar());
              if (!x)
                type_error(f, name + "[" + std::to_string(i) + "]", yu::describe(item), where);
              out.push_back(*x);
            }
            *v = std::move(out);
          },
          [&](std::vector<std::string>* v) {
            if (!node.IsNull() && !node.IsSequence()) type_error(f, name, yu::describe(node), where);
            std::vector<std::string> out;
            for (size_t i = 0; node.IsSequence() && i < node.size(); ++i) {
              const YAML::Node item = node[i];
              if (!item.IsScalar())
                type_error(f, name + "[" + std::to_string(i) + "]", yu::describe(item), where);
              out.push_back(item.Scalar());
            }
            *v = std::move(out);
          },
          [&](const ChoiceRef& v) {
            std::string text;  // `key:` or `key: ~` with nothing after it: ''
            if (node.IsScalar())
              text = node.Scalar();
            else if (!node.IsNull())
              type_error(f, name, yu::describe(node), where);
            if (!v.set(v.field, text)) not_a_choice(f, text, where, v.names());
          },
      },
      f.ref(c));
}

// "model.n_layer" -> its row; throws (naming `where`) when there is no such key.
const Field& resolve(const std::string& dotted, const std::string& where) {
  const size_t dot = dotted.find('.');
  if (dot == std::string::npos) {
    if (is_section(dotted))
      SINKLAB_FAIL(ConfigError, "'" << dotted << "'" << where << " is a section, not a key",
                   "name one key as section.key, e.g. " + dotted + "." + keys_of(dotted).front());
    std::vector<std::string> owners;
    for (const Field& f : fields())
      if (dotted == f.key) owners.push_back(f.name());
    SINKLAB_FAIL(ConfigError, "unknown key '" << dotted << "'" << where,
                 (owners.empty() ? "" : "did you mean " + quoted_list(owners) + "? ") +
                     "keys are written section.key, e.g. model.n_layer");
  }
  const std::string section = dotted.substr(0, dot), key = dotted.substr(dot + 1);
  const Field* f = find_field(section, key);
  if (!f) unknown_key(section, key, where);
  return *f;
}

// Applies "section.key=value" (value read with YAML rules) and returns it canonical, e.g.
// "model.isolate_positions=[3,7]" -> "model.isolate_positions=[3, 7]".
std::string apply_override(RunConfig& c, const std::string& text, const std::string& source) {
  const size_t eq = text.find('=');
  SINKLAB_CHECK(eq != std::string::npos, ConfigError,
                "override '" << text << "' (" << source << ") is not key=value",
                "write section.key=value, e.g. --set train.steps=100");
  const std::string where = " in override '" + text + "' (" + source + ")";
  const Field& f = resolve(yu::trim(std::string_view(text).substr(0, eq)), where);
  const std::string value = text.substr(eq + 1);
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(ConfigError,
                 "override '" << text << "' (" << source << "): the value '" << value
                              << "' is not valid YAML: " << e.msg,
                 "lists are written [3, 7]; quote a string with special characters, e.g. "
                 "--set 'run.out_dir=\"my runs: 2\"'");
  }
  assign(f, c, node, where);
  return f.name() + "=" + value_text(f, c);
}

// ---------------------------------------------------------------------------------------------
// Variants.

// A name usable as one folder: [A-Za-z0-9_.-]+, not "." or "..".
bool filesystem_safe(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
             std::string::npos;
}

void check_variant_name(const std::string& name, const std::string& where) {
  SINKLAB_CHECK(filesystem_safe(name), ConfigError,
                "variant name '" << name << "'" << where
                                 << " is not a usable folder name (letters, digits, _ . - only)",
                "name it e.g. baseline or headwise_rmsnorm: it becomes runs/<run>/<variant>/");
  // runs/<run>/report/ is where `sinklab report` writes its plots and page.
  SINKLAB_CHECK(name != "report", ConfigError,
                "variant name 'report'" << where
                                        << " is the folder `sinklab report` writes into "
                                           "(runs/<run>/report/)",
                "give the variant another name");
}

void check_unique_variants(const std::vector<VariantSpec>& variants, const std::string& origin) {
  std::set<std::string> seen;
  for (const VariantSpec& v : variants)
    SINKLAB_CHECK(seen.insert(v.name).second, ConfigError,
                  "variant name '" << v.name << "' appears twice in variants of "
                                   << file_label(origin),
                  "give each variant its own name: each one trains into runs/<run>/<name>/");
}

// `set:` as a map ({model.attn_output_norm: none}, or nested {model: {attn_output_norm: none}})
// or as a list of "k=v" strings. Checks keys and types now; returns canonical "k=v" texts.
std::vector<std::string> parse_variant_set(const YAML::Node& set, const std::string& name,
                                           const std::string& origin) {
  RunConfig scratch;  // only for checking keys and types; applied later by apply_variant
  std::vector<std::string> out;
  const std::string source = "variant '" + name + "' of " + file_label(origin);
  if (set.IsNull()) return out;
  if (set.IsSequence()) {
    for (size_t i = 0; i < set.size(); ++i) {
      SINKLAB_CHECK(set[i].IsScalar(), ConfigError,
                    "variant '" << name << "' set[" << i << "]" << in_file(origin, set[i])
                                << ": expected a \"key=value\" string, got "
                                << yu::describe(set[i]),
                    "write set: [\"model.attn_output_norm=none\"] or set: "
                    "{model.attn_output_norm: none}");
      out.push_back(apply_override(scratch, set[i].Scalar(), source));
    }
    return out;
  }
  SINKLAB_CHECK(set.IsMap(), ConfigError,
                "variant '" << name << "' set" << in_file(origin, set)
                            << ": expected a map of key: value, got " << yu::describe(set),
                "write set: {model.attn_output_norm: none}");
  std::set<std::string> seen;
  auto add = [&](const std::string& dotted, const YAML::Node& key_node, const YAML::Node& value) {
    const std::string where = " in variant '" + name + "'" + in_file(origin, key_node);
    const Field& f = resolve(dotted, where);
    SINKLAB_CHECK(seen.insert(f.name()).second, ConfigError,
                  "key '" << f.name() << "' is set twice" << where, "keep one of them");
    assign(f, scratch, value, where);
    out.push_back(f.name() + "=" + value_text(f, scratch));
  };
  for (const auto& kv : set) {
    const std::string key = kv.first.Scalar();
    if (key.find('.') == std::string::npos && is_section(key) && kv.second.IsMap()) {
      for (const auto& inner : kv.second) add(key + "." + inner.first.Scalar(), inner.first, inner.second);
    } else {
      add(key, kv.first, kv.second);
    }
  }
  return out;
}

std::vector<VariantSpec> parse_variants(const YAML::Node& node, const std::string& origin) {
  std::vector<VariantSpec> out;
  if (node.IsNull()) return out;
  SINKLAB_CHECK(node.IsSequence(), ConfigError,
                "variants" << in_file(origin, node) << " must be a list, got "
                           << yu::describe(node),
                "write variants:\n  - {name: baseline, set: {model.attn_output_norm: none}}");
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    const std::string label = "variants[" + std::to_string(i) + "]";
    SINKLAB_CHECK(entry.IsMap(), ConfigError,
                  label << in_file(origin, entry) << ": expected a map with name and set, got "
                        << yu::describe(entry),
                  "write - {name: baseline, set: {model.attn_output_norm: none}}");
    std::optional<YAML::Node> name_node, set_node;
    for (const auto& kv : entry) {
      const std::string key = kv.first.Scalar();
      std::optional<YAML::Node>* slot =
          key == "name" ? &name_node : key == "set" ? &set_node : nullptr;
      SINKLAB_CHECK(slot, ConfigError,
                    "unknown key '" << key << "' in " << label << in_file(origin, kv.first),
                    "a variant has two keys: name and set (overrides, like --set)");
      SINKLAB_CHECK(!slot->has_value(), ConfigError,
                    "key '" << key << "' is set twice in " << label << in_file(origin, kv.first),
                    "keep one of them");
      slot->emplace(kv.second);
    }
    SINKLAB_CHECK(name_node && name_node->IsScalar() && !name_node->Scalar().empty(), ConfigError,
                  label << in_file(origin, entry) << " has no name",
                  "add name: baseline (it becomes the folder runs/<run>/<name>/)");
    VariantSpec v;
    v.name = name_node->Scalar();
    check_variant_name(v.name, in_file(origin, *name_node));
    if (set_node) v.overrides = parse_variant_set(*set_node, v.name, origin);
    out.push_back(std::move(v));
  }
  check_unique_variants(out, origin);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files.

void parse_section(RunConfig& c, const std::string& section, const YAML::Node& node,
                   const YAML::Node& key_node, const std::string& origin) {
  if (node.IsNull()) return;  // `model:` with nothing under it: defaults
  SINKLAB_CHECK(node.IsMap(), ConfigError,
                "section '" << section << "'" << in_file(origin, key_node)
                            << " must be a map of keys, got " << yu::describe(node),
                "write e.g. " + section + ":\n  " + keys_of(section).front() + ": ...");
  std::set<std::string> seen;
  for (const auto& kv : node) {
    const std::string where = in_file(origin, kv.first);
    SINKLAB_CHECK(kv.first.IsScalar(), ConfigError,
                  "a key of section '" << section << "'" << where << " is not a plain name",
                  "valid keys in " + section + ": " + yu::join(keys_of(section), ", "));
    const std::string key = kv.first.Scalar();
    const Field* f = find_field(section, key);
    if (!f) unknown_key(section, key, where);
    SINKLAB_CHECK(seen.insert(key).second, ConfigError,
                  "key '" << f->name() << "' is set twice" << where, "keep one of them");
    assign(*f, c, kv.second, where);
  }
}

RunConfig parse_tree(const YAML::Node& root, const std::string& origin) {
  RunConfig c;
  c.source_file = origin;
  if (root.IsNull()) return c;  // an empty file: all defaults
  SINKLAB_CHECK(root.IsMap(), ConfigError,
                "the top level of " << file_label(origin)
                                    << " must be a map of sections, got " << yu::describe(root),
                "sections: " + yu::join(section_names(), ", ") + ", variants");
  std::set<std::string> seen;
  for (const auto& kv : root) {
    const std::string where = in_file(origin, kv.first);
    SINKLAB_CHECK(kv.first.IsScalar(), ConfigError,
                  "a top-level key" << where << " is not a plain name",
                  "sections: " + yu::join(section_names(), ", ") + ", variants");
    const std::string name = kv.first.Scalar();
    SINKLAB_CHECK(seen.insert(name).second, ConfigError,
                  "section '" << name << "' appears twice" << where,
                  "merge the two into one " + name + ": block");
    if (name == kVariantsKey)
      c.variants = parse_variants(kv.second, origin);
    else if (is_section(name))
      parse_section(c, name, kv.second, kv.first, origin);
    else
      unknown_section(name, where);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Validation helpers.

template <class T>
bool within(T value, Bound bound) {
  if (bound == Bound::Positive) return value > 0;
  if (bound == Bound::NonNegative) return value >= 0;
  return true;
}

void check_bounds_and_choices(const RunConfig& c, const std::string& file) {
  static const RunConfig defaults;
  for (const Field& f : fields()) {
    const Ref ref = const_ref(f, c);
    const std::string dflt = value_text(f, defaults);
    if (f.choices) {
      const std::string& value = *std::get<std::string*>(ref);
      const std::vector<std::string> choices = split(f.choices, '|');
      if (std::find(choices.begin(), choices.end(), value) == choices.end())
        not_a_choice(f, value, " in " + file, choices);
    }
    if (f.bound == Bound::None) continue;
    const char* need = f.bound == Bound::Positive ? "positive" : "zero or more";
    if (auto* v = std::get_if<int64_t*>(&ref))
      SINKLAB_CHECK(within(**v, f.bound), ConfigError,
                    f.name() << " is " << **v << " in " << file << ": it must be " << need,
                    "set " + f.name() + " to e.g. " + dflt + " (the default)");
    if (auto* v = std::get_if<double*>(&ref))
      SINKLAB_CHECK(within(**v, f.bound), ConfigError,
                    f.name() << " is " << yu::format_double(**v) << " in " << file
                             << ": it must be " << need,
                    "set " + f.name() + " to e.g. " + dflt + " (the default)");
  }
  for (const UpperBound& b : upper_bounds()) {
    const std::string name = b.key;
    const size_t dot = name.find('.');
    const Field* f = find_field(name.substr(0, dot), name.substr(dot + 1));
    const int64_t value = *std::get<int64_t*>(const_ref(*f, c));
    if (value <= b.most) continue;
    // A size of the model or the batch: what it would take, in the message.
    const bool sized = name.rfind("model.", 0) == 0 || name == "train.batch_size";
    SINKLAB_FAIL(ConfigError,
                 name << " is " << value << " in " << file << ": the most it may be is "
                      << b.text
                      << (sized ? "; training this model would need about " +
                                      format_bytes(estimate_training_memory(c).total()) +
                                      " of memory"
                                : std::string()),
                 "set " + name + " to at most " + std::to_string(b.most) + ", e.g. " +
                     value_text(*f, defaults) + " (the default)");
  }
}

bool valid_device(const std::string& d) {
  if (d == "cpu" || d == "cuda") return true;
  if (d.rfind("cuda:", 0) != 0 || d.size() == 5 || d.size() > 9) return false;
  return d.find_first_not_of("0123456789", 5) == std::string::npos;
}

}  // namespace

// -----------------------------------------------------------------------------------------------

std::vector<KeyDifference> differing_keys(const RunConfig& a, const RunConfig& b,
                                          const std::string& section) {
  std::vector<KeyDifference> out;
  for (const Field& f : fields()) {
    if (section != f.section) continue;
    std::string x = value_text(f, a), y = value_text(f, b);
    if (x != y) out.push_back({f.name(), std::move(x), std::move(y)});
  }
  return out;
}

std::string format_bytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  size_t u = 0;
  while (u + 1 < std::size(units) && bytes >= 1024.0) {
    bytes /= 1024.0;
    ++u;
  }
  if (bytes >= 1024.0) return cat(std::scientific, std::setprecision(2), bytes, " EiB");
  return cat(std::fixed, std::setprecision(u == 0 ? 0 : 1), bytes, " ", units[u]);
}

MemoryEstimate estimate_training_memory(const RunConfig& c) {
  const ModelSection& m = c.model;
  // In double: any value of any key gives a finite (if absurd) number, never an overflow.
  const double L = static_cast<double>(m.n_layer), C = static_cast<double>(m.n_embd);
  const double NH = static_cast<double>(m.n_head), T = static_cast<double>(m.block_size);
  const double B = static_cast<double>(c.train.batch_size);
  // vocab_size 0 (from the tokenizer) is padded up to vocab_multiple: at least that.
  const double V = static_cast<double>(m.vocab_size > 0 ? m.vocab_size : m.vocab_multiple);
  const ArchDescription& arch = arch_description(m.arch);
  const bool gated = arch.ffn == FfnKind::SwiGlu;
  const double F = m.ffn_hidden > 0 ? static_cast<double>(m.ffn_hidden)
                                    : (gated ? 8.0 / 3.0 : 4.0) * C;
  const double ffn_matrices = gated ? 3 : 2;
  MemoryEstimate e;
  e.embedding_parameters = V * C * (m.tie_embeddings ? 1 : 2) +
                           (arch.positions == PositionKind::Learned ? T * C : 0);
  // q, k, v, out (4 C^2), the FFN's matrices, and norms and biases (a few C and F).
  e.layer_parameters = L * (4 * C * C + ffn_matrices * C * F + 10 * C + F);
  const double parameters = e.embedding_parameters + e.layer_parameters;
  e.parameter_bytes = 16 * parameters;  // fp32 weights, gradients, AdamW m and v
  // Kept for the backward per layer: the stream, norms, q/k/v, attention output, projections
  // (about 12 C) and the FFN's hidden values; the logits with their softmax and gradient; and one
  // layer's (B, NH, T, T) f32 attention weights where a kernel materialises them. Those values
  // are bf16 under bf16 precision on a GPU (2 bytes; the few f32 ones, such as the norms'
  // statistics, are within the count's slack), f32 otherwise. Against the pool's high-water
  // mark on an H100 this is 1.04 to 1.44 times what the runs took (tests/train/test_config.cpp).
  // run.release_forward_inputs writes the loss's gradient over the logits: one (B, T, V)
  // buffer fewer.
  const double value_bytes =
      c.run.device != "cpu" && resolved_precision(c.run) == Precision::BF16 ? 2 : 4;
  const double logit_buffers = c.run.release_forward_inputs ? 2 : 3;
  e.activation_bytes =
      value_bytes * B * T * (L * (12 * C + (ffn_matrices + 1) * F) + logit_buffers * V) +
      4 * B * NH * T * T;
  if (c.run.cuda_graph && c.run.device != "cpu" && c.metrics.every > 1)
    e.graph_bytes = e.activation_bytes;
  return e;
}

double side_by_side_bytes(const std::vector<MemoryEstimate>& variants) {
  double held = 0, activations = 0;
  for (const MemoryEstimate& e : variants) {
    held += e.held_bytes();
    activations = std::max(activations, e.activation_bytes);
  }
  return held + activations;
}

void check_fits_in_memory(const RunConfig& c, double needed_bytes, double device_bytes,
                          const std::string& device, int variants) {
  if (!(device_bytes > 0) || needed_bytes <= device_bytes) return;  // unknown: no check
  const ModelSection& m = c.model;
  const MemoryEstimate e = estimate_training_memory(c);
  const std::string largest =
      e.activation_bytes >= e.parameter_bytes
          ? "the activations (train.batch_size x model.block_size x model.n_layer)"
      : e.embedding_parameters >= e.layer_parameters
          ? "the embedding (model.vocab_size x model.n_embd)"
          : "the layers (model.n_layer x model.n_embd, model.ffn_hidden)";
  std::string side_by_side, apart;
  if (variants > 1) {
    side_by_side = std::to_string(variants) + " variants side by side, each ";
    apart = ", or train the variants apart (sinklab train --variant NAME, one at a time or one "
            "per GPU; run.variant_placement: split on several GPUs)";
  }
  SINKLAB_FAIL(ConfigError,
               "training " << side_by_side << choice_text(m.arch) << " with model.n_layer "
                           << m.n_layer
                           << ", model.n_embd " << m.n_embd << ", model.ffn_hidden " << m.ffn_hidden
                           << ", model.vocab_size " << m.vocab_size << ", model.block_size "
                           << m.block_size << " and train.batch_size " << c.train.batch_size
                           << " (" << file_label(c.source_file) << ") would need about "
                           << format_bytes(needed_bytes) << " ("
                           << format_bytes(e.parameter_bytes)
                           << (variants > 1 ? " per variant" : "")
                           << " for the parameters, their gradients and AdamW moments, "
                           << format_bytes(e.activation_bytes)
                           << " for one micro-batch's activations"
                           << (variants > 1 ? ", which the variants use in turn" : "")
                           << (e.graph_bytes > 0 ? ", and as much again" +
                                                       std::string(variants > 1 ? " per variant"
                                                                                : "") +
                                                       " for run.cuda_graph's recording of them"
                                                 : "")
                           << "), but " << device << " has " << format_bytes(device_bytes),
               "most of it is " + largest +
                   ": make those smaller (train.tokens_per_step keeps the global batch with a "
                   "smaller train.batch_size)" +
                   (e.graph_bytes > 0 ? std::string(", or set run.cuda_graph: false") : "") +
                   apart);
}

Precision resolved_precision(const RunSection& run) {
  if (run.precision == PrecisionSetting::FP32) return Precision::Exact;
  if (run.precision == PrecisionSetting::BF16) return Precision::BF16;
  return run.device == "cpu" ? Precision::Exact : Precision::BF16;
}

void validate(const RunConfig& c) {
  const std::string file = file_label(c.source_file);
  check_bounds_and_choices(c, file);

  const RunSection& run = c.run;
  SINKLAB_CHECK(filesystem_safe(run.name), ConfigError,
                "run.name '" << run.name << "' in " << file
                             << " is not a usable folder name (letters, digits, _ . - only)",
                "set run.name to e.g. quickstart: the run is written to <run.out_dir>/<run.name>/");
  SINKLAB_CHECK(!run.out_dir.empty(), ConfigError, "run.out_dir is empty in " << file,
                "set run.out_dir: runs (the parent folder of run folders)");
  SINKLAB_CHECK(valid_device(run.device), ConfigError,
                "run.device is '" << run.device << "' in " << file
                                  << ": expected cpu, cuda or cuda:N",
                "set run.device: cpu, or cuda / cuda:1 for a GPU");
  SINKLAB_CHECK(run.bucket_mib <= 1048576, ConfigError,
                "run.bucket_mib is " << yu::format_double(run.bucket_mib) << " in " << file
                                     << ": the most it may be is 1048576 (1 TiB)",
                "set run.bucket_mib to e.g. 25 (the default)");
  SINKLAB_CHECK(run.gemm_search <= 64, ConfigError,
                "run.gemm_search is " << run.gemm_search << " in " << file
                                      << ": the most it may be is 64 candidate algorithms",
                "set run.gemm_search to 8 (the default), another number up to 64, or 0 (the "
                "heuristic's first)");
  SINKLAB_CHECK(run.collective_timeout_s <= 1e7, ConfigError,
                "run.collective_timeout_s is " << yu::format_double(run.collective_timeout_s)
                                               << " in " << file
                                               << ": the most it may be is 10000000 (116 days)",
                "set run.collective_timeout_s to e.g. 600 (the default)");

  const ModelSection& m = c.model;
  SINKLAB_CHECK(m.n_embd % m.n_head == 0, ConfigError,
                "model.n_embd (" << m.n_embd << ") is not divisible by model.n_head ("
                                 << m.n_head << ") in " << file,
                cat("pick n_embd = n_head * head_size, e.g. n_embd ", m.n_head * 32, " for ",
                    m.n_head, " heads of 32"));
  SINKLAB_CHECK(m.arch != Arch::Llama || (m.n_embd / m.n_head) % 2 == 0, ConfigError,
                "model.n_embd / model.n_head = " << m.n_embd / m.n_head << " in " << file
                    << " is odd, but arch llama rotates pairs of channels (RoPE)",
                cat("use an even head size, e.g. n_embd ", m.n_head * 32, " for ", m.n_head,
                    " heads of 32"));
  for (size_t i = 0; i < m.isolate_positions.size(); ++i) {
    const int64_t p = m.isolate_positions[i];
    SINKLAB_CHECK(p >= 0 && p < m.block_size, ConfigError,
                  "model.isolate_positions[" << i << "] = " << p << " in " << file
                      << " is outside [0, model.block_size = " << m.block_size << ")",
                  cat("list positions between 0 and ", m.block_size - 1));
  }
  const auto check_layers = [&](const std::vector<int64_t>& layers, const char* key) {
    for (size_t i = 0; i < layers.size(); ++i)
      SINKLAB_CHECK(layers[i] >= 0 && layers[i] < m.n_layer, ConfigError,
                    "model." << key << "[" << i << "] = " << layers[i] << " in " << file
                             << " is outside [0, model.n_layer = " << m.n_layer << ")",
                    cat("list layers between 0 and ", m.n_layer - 1, ", or [] for all"));
  };
  check_layers(m.isolate_layers, "isolate_layers");
  check_layers(m.amplify_layers, "amplify_layers");
  SINKLAB_CHECK(m.amplify_position >= -1 && m.amplify_position < m.block_size, ConfigError,
                "model.amplify_position = " << m.amplify_position << " in " << file
                    << " is outside [0, model.block_size = " << m.block_size << ")",
                "set a position k between 0 and block_size - 1, or -1 for off");
  SINKLAB_CHECK(m.amplify_site == AmplifySite::BeforeNorm ||
                    m.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm,
                ConfigError,
                "model.amplify_site = after_norm in " << file << " but model.attn_output_norm is "
                    << choice_text(m.attn_output_norm)
                    << ": there is no head-wise norm to act after",
                "use after_norm with attn_output_norm: headwise_rmsnorm (without it the two "
                "sites are the same tensor: use before_norm)");

  SINKLAB_CHECK(!c.data.dir.empty(), ConfigError, "data.dir is empty in " << file,
                "set data.dir to the folder with the token shards, e.g. data/quickstart");
  SINKLAB_CHECK(!c.data.train_pattern.empty() && !c.data.val_pattern.empty(), ConfigError,
                "data.train_pattern or data.val_pattern is empty in " << file,
                "use the defaults train_*.bin and val_*.bin");
  SINKLAB_CHECK(c.data.window_stride == 0 || c.data.window_stride >= m.block_size + 1,
                ConfigError,
                "data.window_stride is " << c.data.window_stride << " in " << file
                    << ": windows of model.block_size + 1 = " << m.block_size + 1
                    << " tokens must fit in one stride",
                cat("use 0 (windows at any offset) or the document length, at least ",
                    m.block_size + 1, " (model.block_size + 1)"));

  const PrepareSection& p = c.prepare;
  {
    const std::vector<std::string> names = {"bpe", "byte", "gpt2"};
    const bool hf = p.tokenizer.rfind("hf:", 0) == 0;
    const auto close = yu::close_matches(p.tokenizer, names);
    SINKLAB_CHECK(std::find(names.begin(), names.end(), p.tokenizer) != names.end() ||
                      (hf && p.tokenizer.size() > 3),
                  ConfigError,
                  "prepare.tokenizer is '" << p.tokenizer << "' in " << file
                                           << ": expected one of bpe, byte, gpt2, hf:<path>",
                  (close.empty() ? "" : "did you mean " + quoted_list(close) + "? ") +
                      "set prepare.tokenizer to bpe (trained on prepare.inputs), byte, gpt2 "
                      "(GPT-2's vocabulary) or hf:<tokenizer.json> (default bpe)");
  }
  SINKLAB_CHECK(c.data.tokenizer != "hf:", ConfigError,
                "data.tokenizer is 'hf:' in " << file << " without a path",
                "write hf:<path to tokenizer.json or its folder>, or leave data.tokenizer empty "
                "(data.dir/tokenizer.json)");
  SINKLAB_CHECK(p.tokenizer != "bpe" || p.vocab_size >= 257, ConfigError,
                "prepare.vocab_size is " << p.vocab_size << " in " << file
                    << ": a BPE vocabulary needs the 256 byte tokens plus at least one merge",
                "set prepare.vocab_size to e.g. 512, or prepare.tokenizer: byte");
  SINKLAB_CHECK(p.val_fraction < 1.0, ConfigError,
                "prepare.val_fraction is " << yu::format_double(p.val_fraction) << " in " << file
                                           << ": it must be in [0, 1)",
                "set prepare.val_fraction to e.g. 0.05 (5% of each input)");

  const TrainSection& t = c.train;
  const int64_t bt = t.batch_size * m.block_size;
  SINKLAB_CHECK(t.tokens_per_step == 0 || t.tokens_per_step % bt == 0, ConfigError,
                "train.tokens_per_step (" << t.tokens_per_step << ") in " << file
                    << " is not a multiple of train.batch_size * model.block_size = "
                    << t.batch_size << " * " << m.block_size << " = " << bt,
                cat("use 0 (no accumulation) or a multiple of ", bt, ", e.g. ",
                    std::max<int64_t>(1, (t.tokens_per_step + bt / 2) / bt) * bt));

  const OptimSection& o = c.optim;
  SINKLAB_CHECK(o.min_lr <= o.lr, ConfigError,
                "optim.min_lr (" << yu::format_double(o.min_lr) << ") is above optim.lr ("
                                 << yu::format_double(o.lr) << ") in " << file,
                "the cosine schedule decays from lr down to min_lr: set min_lr <= lr, e.g. lr/10");
  // A warm-up longer than a short run (--set train.steps=20) is allowed: lr never peaks.
  if (o.decay_steps > 0)
    SINKLAB_CHECK(o.warmup_steps <= o.decay_steps, ConfigError,
                  "optim.warmup_steps (" << o.warmup_steps << ") is longer than optim.decay_steps ("
                                         << o.decay_steps << ") in " << file,
                  "shorten the warmup or lengthen decay_steps (0 = train.steps)");
  SINKLAB_CHECK(o.beta1 < 1.0 && o.beta2 < 1.0, ConfigError,
                "optim.beta1 (" << yu::format_double(o.beta1) << ") and optim.beta2 ("
                                << yu::format_double(o.beta2) << ") in " << file
                                << " must be in [0, 1)",
                "use e.g. beta1 0.9, beta2 0.95");

  SINKLAB_CHECK(c.metrics.sink_threshold <= 1.0, ConfigError,
                "metrics.sink_threshold is " << yu::format_double(c.metrics.sink_threshold)
                                             << " in " << file
                                             << ": it is an attention weight, in (0, 1]",
                "use 0.3 (Gu et al.)");
  SINKLAB_CHECK(c.metrics.onset_threshold <= 1.0, ConfigError,
                "metrics.onset_threshold is " << yu::format_double(c.metrics.onset_threshold)
                                              << " in " << file
                                              << ": it is an attention weight, in (0, 1]",
                "use 0.8 (the paper's onset rule)");

  for (const VariantSpec& v : c.variants) check_variant_name(v.name, " in " + file);
  check_unique_variants(c.variants, c.source_file);
}

RunConfig parse_config(const std::string& yaml_text, const std::string& origin,
                       const std::vector<std::string>& overrides) {
  YAML::Node root;
  yu::check_quotes_closed(yaml_text, file_label(origin));
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    const bool at = !e.mark.is_null();
    SINKLAB_FAIL(ConfigError,
                 "malformed YAML in " << file_label(origin)
                                      << (at ? " at line " + std::to_string(e.mark.line + 1) +
                                                   ", column " + std::to_string(e.mark.column + 1)
                                             : std::string())
                                      << ": " << e.msg,
                 "check the indentation (spaces, not tabs), colons and brackets near that line");
  }
  RunConfig c;
  try {
    c = parse_tree(root, origin);
  } catch (const YAML::Exception& e) {  // defensive: node access we did not expect to throw
    SINKLAB_FAIL(ConfigError, "cannot read " << file_label(origin) << ": " << e.what(),
                 "check the file against configs/quickstart.yaml");
  }
  const std::string source = "--set on " + file_label(origin);
  for (const std::string& o : overrides) apply_override(c, o, source);
  validate(c);
  for (const VariantSpec& v : c.variants) apply_variant(c, v);  // fail now, not mid-run
  return c;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SINKLAB_CHECK(fs::exists(path, ec), IOError, "config file '" << path << "' does not exist",
                "check the path; the configs shipped with sinklab are in configs/, e.g. "
                "configs/quickstart.yaml");
  SINKLAB_CHECK(!fs::is_directory(path, ec), IOError,
                "config path '" << path << "' is a folder, not a YAML file",
                "pass a file such as configs/quickstart.yaml");
  // A FIFO, socket or device would block the read (or never end): only regular files.
  SINKLAB_CHECK(fs::is_regular_file(path, ec), IOError,
                "config path '" << path << "' is not a regular file (a pipe, socket or device)",
                "write the config to a file and pass its path");
  std::ifstream in(path, std::ios::binary);
  SINKLAB_CHECK(in.good(), IOError, "cannot open config file '" << path << "'",
                "check that it is readable");
  std::ostringstream text;
  text << in.rdbuf();
  SINKLAB_CHECK(!in.bad(), IOError, "cannot read config file '" << path << "'",
                "check that it is readable");
  return parse_config(text.str(), path, overrides);
}

RunConfig apply_variant(const RunConfig& base, const VariantSpec& variant) {
  check_variant_name(variant.name, " in " + file_label(base.source_file));
  RunConfig c = base;
  c.variants.clear();
  const std::string source = "variant '" + variant.name + "' of " + file_label(base.source_file);
  for (const std::string& o : variant.overrides) apply_override(c, o, source);
  try {
    validate(c);
  } catch (const ConfigError& e) {
    throw ConfigError("variant '" + variant.name + "': " + e.message(), e.hint(), __FILE__,
                      __LINE__);
  }
  return c;
}

std::string to_yaml(const RunConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const std::string& section : section_names()) {
    out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    for (const Field& f : fields()) {
      if (section != f.section) continue;
      out << YAML::Key << f.key << YAML::Value;
      emit_value(out, f, config);
    }
    out << YAML::EndMap;
  }
  out << YAML::Key << kVariantsKey << YAML::Value;
  if (config.variants.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
  } else {
    out << YAML::BeginSeq;
    for (const VariantSpec& v : config.variants) {
      out << YAML::BeginMap << YAML::Key << "name" << YAML::Value;
      yu::emit_string(out, v.name);
      out << YAML::Key << "set" << YAML::Value;
      // As a map of typed values when every override reads; else the "k=v" strings as given.
      std::vector<std::pair<const Field*, RunConfig>> entries;
      std::set<std::string> keys;
      try {
        for (const std::string& o : v.overrides) {
          RunConfig scratch;
          apply_override(scratch, o, "to_yaml");
          const Field& f = resolve(yu::trim(o.substr(0, o.find('='))), "");
          if (!keys.insert(f.name()).second) throw std::runtime_error("repeated key");
          entries.emplace_back(&f, std::move(scratch));
        }
      } catch (const std::exception&) {
        entries.clear();
      }
      if (entries.size() == v.overrides.size()) {
        if (entries.empty()) out << YAML::Flow;
        out << YAML::BeginMap;
        for (const auto& [f, scratch] : entries) {
          out << YAML::Key << f->name() << YAML::Value;
          emit_value(out, *f, scratch);
        }
        out << YAML::EndMap;
      } else {
        out << YAML::BeginSeq;
        for (const std::string& o : v.overrides) yu::emit_string(out, o);
        out << YAML::EndSeq;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;

  // A header, and a blank line between sections for the reader.
  std::ostringstream text;
  text << "# sinklab run config, resolved: every key with its value (defaults filled in)\n";
  if (!config.source_file.empty()) text << "# from: " << config.source_file << "\n";
  std::istringstream lines(out.c_str());
  bool first = true;
  for (std::string line; std::getline(lines, line);) {
    if (!first && !line.empty() && line[0] != ' ' && line[0] != '-') text << "\n";
    text << line << "\n";
    first = false;
  }
  return text.str();
}

}  // namespace sinklab::train
