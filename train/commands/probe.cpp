#include "train/commands/probe.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/device_runtime.h"
#include "core/error.h"
#include "core/random.h"
#include "train/io/atomic_file.h"
#include "train/stored_model.h"
#include "train/io/json_text.h"
#include "train/io/model_source.h"
#include "train/config.h"
#include "train/data/data_loader.h"
#include "train/io/metrics_log.h"
#include "train/model.h"
#include "train/phase_clock.h"
#include "train/process_settings.h"

namespace sinklab::train {

namespace {

constexpr uint64_t kValStream = 2;  // the trainer's validation stream
constexpr uint64_t kRandomStream = 41;  // the random tokens of --random-tokens

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? NAN : s / static_cast<double>(v.size());
}

std::string json_array(const std::vector<double>& v) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) o << ",";
    if (std::isfinite(v[i])) o << v[i]; else o << "null";
  }
  return o.str() + "]";
}

// The key whose scores the probe reads: --amplify / --scale's, else --isolate's first, else 0.
int64_t scored_key(const ProbeOptions& opt) {
  return opt.amplify >= 0 ? opt.amplify : (opt.isolate.empty() ? 0 : opt.isolate[0]);
}

// The model's config (a checkpoint's stored one, or a Hugging Face config.json's) with --set and
// the probe's interventions applied.
RunConfig probed_config(const RunConfig& source, const ProbeOptions& opt) {
  RunConfig cfg = opt.overrides.empty() ? source : apply_variant(source, {"probe", opt.overrides});
  ModelSection& m = cfg.model;
  // Named as the options, before the model's own checks name model.* keys of the stored config.
  for (int64_t l : opt.layers)
    SINKLAB_CHECK(l < m.n_layer, ConfigError,
                  "probe: --layers " << l << " but the model has " << m.n_layer << " layers",
                  "pass layers in [0, " + std::to_string(m.n_layer - 1) + "]");
  // The intervention's keys lie in the positions probed (--window's, when it fits the model),
  // or the scores would read another key.
  const bool windowed = opt.window > 0 && opt.window <= m.block_size;
  const int64_t T = windowed ? opt.window : m.block_size;
  std::vector<int64_t> keys = opt.isolate;
  if (opt.amplify >= 0) keys.push_back(opt.amplify);
  for (int64_t k : keys)
    SINKLAB_CHECK(k < T, ConfigError,
                  "probe: key " << k << " (--isolate / --amplify / --scale) is outside the " << T
                                << " positions probed"
                                << (windowed ? " (--window " + std::to_string(opt.window) + ")"
                                             : std::string(" (the model's block_size)")),
                  "pass keys below " + std::to_string(T) +
                      (windowed ? ", or a longer --window" : ""));
  // The key whose scores are read needs a query after it: the paper's score averages over t > k.
  const int64_t read_key = scored_key(opt);
  SINKLAB_CHECK(read_key < T - 1, ConfigError,
                "probe: key " << read_key << " is the last of the " << T
                              << " positions probed: no query comes after it, so its score over "
                                 "queries t > k (key_score_after) has nothing to average",
                "pass a key below " + std::to_string(T - 1) +
                    (windowed ? ", or a longer --window" : ""));
  if (!opt.isolate.empty()) {
    m.isolate_positions = opt.isolate;
    m.isolate_layers = opt.layers;
  }
  if (opt.amplify >= 0) {
    m.amplify_position = opt.amplify;
    m.amplify_lambda = opt.lambda;
    m.amplify_layers = opt.layers;
    m.amplify_mode = opt.plain_scaling ? AmplifyMode::Plain : AmplifyMode::Centered;
    m.amplify_site = *choice_from_text<AmplifySite>(opt.amplify_site);  // checked: a name
    SINKLAB_CHECK(m.amplify_site == AmplifySite::BeforeNorm ||
                      m.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm,
                  ConfigError,
                  "probe: --amplify-site after_norm but the model has no head-wise RMSNorm "
                  "(model.attn_output_norm "
                      << choice_text(m.attn_output_norm) << ")",
                  "leave --amplify-site out: without the norm both sites are the attention "
                  "output");
  }
  cfg.run.device = resolve_device(opt.device).str();
  validate(cfg);
  return cfg;
}

// The line after a probe's tables: the seconds of each of its stages (phase_ms, milliseconds
// per stage name). On the GPU machine a probe of the 152M shape took about 20 s.
std::string stage_seconds_line(const std::map<std::string, double>& phase_ms) {
  std::ostringstream o;
  o << "  seconds:";
  char v[32];
  for (auto it = phase_ms.begin(); it != phase_ms.end(); ++it) {
    std::snprintf(v, sizeof v, " %.2f", it->second / 1000.0);
    o << (it == phase_ms.begin() ? "" : ",") << " " << it->first << v;
  }
  return o.str() + "\n";
}

}  // namespace

void check_probe_options(const ProbeOptions& opt) {
  // Before the probe's work (a model's load and forwards), not at its end.
  if (!opt.out.empty()) {
    const std::filesystem::path folder = std::filesystem::path(opt.out).parent_path();
    std::error_code ec;
    SINKLAB_CHECK(folder.empty() || std::filesystem::is_directory(folder, ec), IOError,
                  "probe: --out " << opt.out << ": the folder " << folder.string()
                                  << " does not exist",
                  "create it first, or pass --out in an existing folder");
  }
  // A non-finite factor would also make the result file invalid JSON (nan, inf).
  SINKLAB_CHECK(std::isfinite(opt.lambda), ConfigError,
                "probe: --lambda is " << opt.lambda << "; it must be a finite number",
                "pass a number such as --lambda 10");
  SINKLAB_CHECK(opt.batches >= 1, ConfigError, "probe: --batches is " << opt.batches,
                "probe at least one batch");
  SINKLAB_CHECK(opt.amplify_mean == "random" || opt.amplify_mean == "batch", ConfigError,
                "probe: --amplify-mean is '" << opt.amplify_mean << "'",
                "use random (the paper: mu over uniform-random tokens) or batch (mu of the "
                "probed batch)");
  SINKLAB_CHECK(opt.window == 0 || opt.window >= 2, ConfigError,
                "probe: --window is " << opt.window
                                      << "; a window needs a query after key 0 (the scores "
                                         "average over t >= 1)",
                "pass a window of at least 2 positions, or 0 for the model's T (the paper: 64)");
  SINKLAB_CHECK(opt.random_tokens == 0 || opt.random_tokens >= 2, ConfigError,
                "probe: --random-tokens is " << opt.random_tokens,
                "a variance across samples needs at least 2 sequences (the paper: ~50,000 "
                "tokens, e.g. 200 sequences of 256)");
  // Options of an intervention given without it had run none, silently, and the result file
  // still recorded them.
  const ProbeOptions defaults;
  const bool intervenes = !opt.isolate.empty() || opt.amplify >= 0;
  const bool centered = opt.amplify >= 0 && !opt.plain_scaling;
  SINKLAB_CHECK(opt.amplify >= 0 || opt.lambda == defaults.lambda, ConfigError,
                "probe: --lambda " << opt.lambda << " without --amplify or --scale",
                "add --amplify k or --scale k, or leave --lambda out");
  SINKLAB_CHECK(intervenes || opt.layers.empty(), ConfigError,
                "probe: --layers without an intervention",
                "add --isolate, --amplify or --scale, or leave --layers out");
  SINKLAB_CHECK(choice_from_text<AmplifySite>(opt.amplify_site).has_value(), ConfigError,
                "probe: --amplify-site is '" << opt.amplify_site << "'",
                "use before_norm (on the attention output, the paper's) or after_norm (on "
                "head-wise RMSNorm's output)");
  SINKLAB_CHECK(opt.amplify >= 0 || opt.amplify_site == defaults.amplify_site, ConfigError,
                "probe: --amplify-site " << opt.amplify_site << " without --amplify or --scale",
                "add --amplify k or --scale k, or leave --amplify-site out");
  SINKLAB_CHECK(centered || (opt.amplify_mean == defaults.amplify_mean &&
                             opt.mean_tokens == defaults.mean_tokens),
                ConfigError,
                "probe: --amplify-mean / --mean-tokens without --amplify"
                    << (opt.plain_scaling ? " (--scale takes no mean)" : ""),
                "they set the mean of --amplify's centered intervention: add --amplify k, or "
                "leave them out");
}

LoadedProbeModel load_probe_model(const std::string& model_path, const ProbeOptions& opt) {
  LoadedProbeModel loaded;
  // A folder given with a trailing slash names its result file as the folder does.
  loaded.checkpoint = model_path;
  while (loaded.checkpoint.size() > 1 && loaded.checkpoint.back() == '/')
    loaded.checkpoint.pop_back();
  loaded.source = load_model_source(loaded.checkpoint);
  // The model without interventions, on the probe's device: each probe's model shares its
  // weights (GPT(cfg, weights)), and the paper's mu of --amplify is read from it.
  ProbeOptions clean_options;
  clean_options.device = opt.device;
  clean_options.overrides = opt.overrides;
  const RunConfig cfg = probed_config(loaded.source.config, clean_options);
  loaded.clean = open_stored_model(cfg, loaded.source.params, loaded.checkpoint);
  loaded.source.params.clear();  // a CPU copy of every weight (600 MB at 152M), now on the device
  loaded.device = opt.device;
  loaded.overrides = opt.overrides;
  return loaded;
}

ProbeResult probe_checkpoint(const std::string& model_path, const ProbeOptions& opt,
                             std::ostream& console) {
  check_probe_options(opt);
  return probe_loaded(load_probe_model(model_path, opt), opt, console);
}

RunConfig probe_run_config(const LoadedProbeModel& loaded, const ProbeOptions& opt) {
  const RunConfig cfg = probed_config(loaded.source.config, opt);
  SINKLAB_CHECK(opt.window <= cfg.model.block_size, ConfigError,
                "probe: --window is " << opt.window << " but " << loaded.checkpoint
                                      << "'s model has block_size " << cfg.model.block_size,
                "pass a window in [2, " + std::to_string(cfg.model.block_size) +
                    "] (0 = the model's T)");
  // The random mu of --amplify is taken over windows of the model's T.
  SINKLAB_CHECK(opt.amplify < 0 || opt.plain_scaling || opt.amplify_mean != "random" ||
                    opt.mean_tokens >= cfg.model.block_size,
                ConfigError,
                "probe: --mean-tokens " << opt.mean_tokens << " is less than one window of "
                                        << loaded.checkpoint << "'s model (block_size "
                                        << cfg.model.block_size << ")",
                "pass --mean-tokens of at least " + std::to_string(cfg.model.block_size) +
                    " (the paper: about 50,000)");
  return cfg;
}

ProbeResult probe_loaded(const LoadedProbeModel& loaded, const ProbeOptions& opt,
                         std::ostream& console) {
  check_probe_options(opt);
  SINKLAB_CHECK(opt.device == loaded.device && opt.overrides == loaded.overrides, ValueError,
                "probe: " << loaded.checkpoint << " was loaded for --device " << loaded.device
                          << " with " << loaded.overrides.size() << " --set overrides; this "
                          << "probe asks for --device " << opt.device << " with "
                          << opt.overrides.size(),
                "load the model again for other devices or overrides");
  const std::string& checkpoint = loaded.checkpoint;
  const ModelSource& source = loaded.source;
  const RunConfig cfg = probe_run_config(loaded, opt);
  const Device device = parse_device(cfg.run.device);
  std::map<std::string, double> phase_ms;  // the stages' times, for the line after the tables
  PhaseClock stages(true, phase_ms, device);
  apply_stored_model_settings(cfg.run);  // as the run computed: precision, kernels
  GPT model(cfg.model, *loaded.clean);  // the interventions over the loaded weights
  if (opt.amplify >= 0 && !opt.plain_scaling && opt.lambda != 1.0 &&
      opt.amplify_mean == "random") {
    // The paper's mu: each layer's mean value vector over uniform-random tokens, read from the
    // model without the intervention.
    model.set_amplify_mean(random_token_value_means(*loaded.clean, opt.mean_tokens,
                                                    cfg.model.block_size, cfg.train.batch_size,
                                                    cfg.run.seed, device, cfg.model.amplify_site));
  }
  stages.mark("model and mu");
  const int64_t B = cfg.train.batch_size * opt.batches;
  const int64_t T = opt.window > 0 ? opt.window : cfg.model.block_size;
  DataLoader val = DataLoader::from_files(cfg.data.dir, cfg.data.val_pattern, B, T,
                                          cfg.run.seed, kValStream, cfg.data.window_stride);
  const Batch batch = val.next();
  stages.mark("data");
  autograd::NoGradGuard no_grad;
  ForwardCapture capture;
  ForwardResult out = model.forward(batch.inputs.to_device(device),
                                    batch.targets.to_device(device), &capture);
  ProbeResult result;
  result.loss = out.loss.item();
  stages.mark("forward");
  result.metrics = compute_sink_metrics(capture, cfg.metrics.sink_threshold, false);
  summarise_paper_metrics(result.metrics, cfg.metrics.onset_threshold);
  stages.mark("sink metrics");
  result.super = super_neurons(model, capture);
  stages.mark("super neurons");
  result.key = scored_key(opt);
  const int64_t key = result.key;  // below T - 1: probe_run_config checked it
  for (const LayerCapture& cap : capture.layers) {
    Tensor mass = ops::attention_key_mass(cap.q, cap.k, cap.lse, key, cap.attention);  // (B,NH,T)
    std::vector<double> a = mass.to_doubles();
    if (cap.attention.sigmoid) {  // rows not normalised: the key's share of each row
      const std::vector<double> rows =
          attention_row_means(cap.q, cap.k, cap.attention).to_doubles();  // (B, NH, T)
      a = row_shares(a.data(), rows.data(), a.size(), T);
    }
    const int64_t NH = mass.size(1);
    result.key_score.push_back(key_score(a, B, NH, T, key));
    result.key_score_after.push_back(key_score_after(a, B, NH, T, key));
  }
  stages.mark("key scores");
  if (opt.random_tokens > 0) {
    // The 1/(t+1) law: uniform-random tokens, the input to W_O (after head-wise RMSNorm).
    const Tensor ids = rand_ints({opt.random_tokens, T}, RngKey{cfg.run.seed, kRandomStream, 0},
                                 static_cast<int32_t>(cfg.model.vocab_size));  // (N, T)
    ForwardCapture random_capture;
    model.forward(ids.to_device(device), Tensor(), &random_capture);
    for (const LayerCapture& cap : random_capture.layers)
      result.var_across.push_back(across_sample_variance(
          cap.attn_out_normed.defined() ? cap.attn_out_normed : cap.attn_out));
    stages.mark("random tokens");
  }
  // Console table: one row per layer (means over heads).
  char line[256];
  console << "probe " << checkpoint << ": " << B << " sequences of " << T << " tokens, loss "
          << result.loss << "\n";
  // Uniform causal attention gives key 0 alpha0 = (1/T) sum_t 1/(t+1), the self term included:
  // above the sink threshold on short windows (0.3: T <= 9), every head counts as a sink there.
  double uniform_alpha0 = 0;
  for (int64_t t = 0; t < T; ++t) uniform_alpha0 += 1.0 / static_cast<double>(t + 1);
  uniform_alpha0 /= static_cast<double>(T);
  if (uniform_alpha0 > cfg.metrics.sink_threshold)
    console << "  warning: on " << T << " positions uniform attention alone gives key 0 alpha0 "
            << uniform_alpha0 << ", above metrics.sink_threshold " << cfg.metrics.sink_threshold
            << ": sink_rate counts every head as a sink; use a longer --window\n";
  if (!opt.isolate.empty()) {
    console << "  isolate positions";
    for (int64_t k : opt.isolate) console << " " << k;
    console << "\n";
  }
  if (opt.amplify >= 0)
    console << "  " << (opt.plain_scaling ? "scale" : "amplify") << " o_" << opt.amplify
            << " by lambda " << opt.lambda
            << (cfg.model.amplify_site == AmplifySite::AfterNorm ? " after head-wise RMSNorm" : "")
            << (opt.plain_scaling ? "" : opt.amplify_mean == "random"
                                             ? " (mu over " + std::to_string(opt.mean_tokens) +
                                                   " uniform-random tokens)"
                                             : " (mu of the probed batch)")
            << "\n";
  std::snprintf(line, sizeof line, "%5s %10s %10s %12s %10s %10s %10s\n", "layer", "sink mass",
                "alpha_0", "score@key", "var_ratio", "disparity", "super x");
  console << line;
  for (size_t l = 0; l < capture.layers.size(); ++l) {
    const LayerMetrics& m = result.metrics.layers[l];
    std::snprintf(line, sizeof line, "%5zu %10.4f %10.4f %12.4f %10.3f %10.2f %10.1f\n", l,
                  mean_of(m.sink_mass), mean_of(m.alpha0), mean_of(result.key_score[l]),
                  m.var_ratio, m.dim_disparity, m.super_ratio);
    console << line;
  }
  // The paper's readings (docs/METRICS.md).
  console << "  paper: sink onset (score > " << cfg.metrics.onset_threshold << ") at layer "
          << result.metrics.sink_onset << "; disparity layer mean "
          << result.metrics.dim_disparity_mean << " before, "
          << result.metrics.dim_disparity_normed_mean << " after the input norm\n";
  std::snprintf(line, sizeof line, "%5s %10s %12s %10s %8s %10s %8s %8s\n", "layer", "score",
                "score@key>k", "disp.norm", "neuron", "fires@0 x", "kurt.", "ch/disp");
  console << line;
  for (size_t l = 0; l < capture.layers.size(); ++l) {
    const LayerMetrics& m = result.metrics.layers[l];
    const SuperNeuron& sn = result.super[l];
    std::snprintf(line, sizeof line, "%5zu %10.4f %12.4f %10.2f %8lld %10.1f %8.1f %4lld/%-4lld\n",
                  l, m.sink_score, mean_of(result.key_score_after[l]), m.dim_disparity_normed,
                  static_cast<long long>(sn.neuron), sn.first_token_ratio, sn.down_kurtosis,
                  static_cast<long long>(sn.down_channel),
                  static_cast<long long>(sn.disparity_channel));
    console << line;
  }
  if (!result.var_across.empty()) {
    console << "  across-sample variance of the input to W_O, " << opt.random_tokens
            << " random sequences (t = 0, 1, 3, 15; 1/(t+1) law: 1, .5, .25, .0625 of t = 0):\n";
    for (size_t l = 0; l < result.var_across.size(); ++l) {
      const std::vector<double>& v = result.var_across[l];
      console << "  layer " << l << ":";
      for (int64_t t : {0, 1, 3, 15})
        if (t < T) console << " " << v[t] / v[0];
      console << "\n";
    }
  }
  // JSON: the interventions, the score at the key, and every metric as a metrics.jsonl record.
  StepRecord record;
  record.step = source.step;
  record.loss = result.loss;
  record.lr = record.grad_norm = record.tokens_per_s = record.step_ms = record.mfu =
      record.memory_mib = record.memory_peak_mib = record.val_loss = record.val_loss_se = NAN;
  record.has_sink = true;
  record.sink = result.metrics;
  std::ostringstream json;
  json << "{\"checkpoint\":" << json_string(checkpoint) << ",\"isolate\":"
       << json_array(std::vector<double>(opt.isolate.begin(), opt.isolate.end()))
       << ",\"amplify\":" << opt.amplify << ",\"mode\":\""
       << (opt.plain_scaling ? "plain" : "centered") << "\",\"amplify_mean\":\""
       << opt.amplify_mean << "\",\"amplify_site\":\"" << choice_text(cfg.model.amplify_site)
       << "\",\"lambda\":" << opt.lambda
       << ",\"layers\":" << json_array(std::vector<double>(opt.layers.begin(), opt.layers.end()))
       << ",\"key\":" << result.key << ",\"key_score\":[";
  for (size_t l = 0; l < result.key_score.size(); ++l)
    json << (l ? "," : "") << json_array(result.key_score[l]);
  json << "],\"key_score_after\":[";
  for (size_t l = 0; l < result.key_score_after.size(); ++l)
    json << (l ? "," : "") << json_array(result.key_score_after[l]);
  json << "],\"window\":" << T << ",\"random_tokens\":" << opt.random_tokens
       << ",\"var_across\":[";
  for (size_t l = 0; l < result.var_across.size(); ++l)
    json << (l ? "," : "") << json_array(result.var_across[l]);
  json << "],\"super\":{";
  const char* fields[] = {"neuron", "weight_norm", "first_token_ratio", "down_kurtosis",
                          "down_channel", "disparity_channel"};
  for (int f = 0; f < 6; ++f) {
    std::vector<double> column;
    for (const SuperNeuron& sn : result.super) {
      const double v[6] = {static_cast<double>(sn.neuron), sn.weight_norm, sn.first_token_ratio,
                           sn.down_kurtosis, static_cast<double>(sn.down_channel),
                           static_cast<double>(sn.disparity_channel)};
      column.push_back(v[f]);
    }
    json << (f ? "," : "") << "\"" << fields[f] << "\":" << json_array(column);
  }
  json << "},\"metrics\":" << step_to_json(record) << "}\n";
  result.json_path = opt.out.empty() ? checkpoint + ".probe.json" : opt.out;
  write_file_atomic(result.json_path, json.str(),
                    "check the folder exists and is writable, or pass --out");
  stages.mark("tables and file");
  console << "wrote " << result.json_path << "\n" << stage_seconds_line(phase_ms);
  return result;
}

}  // namespace sinklab::train
