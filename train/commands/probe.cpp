#include "train/commands/probe.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "train/io/atomic_file.h"
#include "train/io/checkpoint.h"
#include "train/config.h"
#include "train/data/data_loader.h"
#include "train/io/metrics_log.h"
#include "train/model.h"

namespace sinklab::train {

namespace {

constexpr uint64_t kValStream = 2;  // the trainer's validation stream

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

// The checkpoint's resolved config with the probe's interventions applied to the model.
RunConfig probed_config(const std::string& checkpoint, const ProbeOptions& opt) {
  const TrainState state = read_checkpoint_state(checkpoint);
  RunConfig cfg = parse_config(state.config_yaml, checkpoint + " (stored config)");
  ModelSection& m = cfg.model;
  if (!opt.isolate.empty()) {
    m.isolate_positions = opt.isolate;
    m.isolate_layers = opt.layers;
  }
  if (opt.amplify >= 0) {
    m.amplify_position = opt.amplify;
    m.amplify_lambda = opt.lambda;
    m.amplify_layers = opt.layers;
    m.amplify_mode = opt.plain_scaling ? "plain" : "centered";
  }
  cfg.run.device = opt.device;
  validate(cfg);
  return cfg;
}

}  // namespace

ProbeResult probe_checkpoint(const std::string& checkpoint, const ProbeOptions& opt,
                             std::ostream& console) {
  SINKLAB_CHECK(opt.batches >= 1, ConfigError, "probe: --batches is " << opt.batches,
                "probe at least one batch");
  const RunConfig cfg = probed_config(checkpoint, opt);
  const Device device = parse_device(cfg.run.device);
  set_cuda_precision(resolved_precision(cfg.run));
  GPT model(cfg.model, cfg.run.seed, DType::F32, device);
  for (auto& [name, value] : read_checkpoint_params(checkpoint)) {
    SINKLAB_CHECK(model.params().contains(name), ConfigError,
                  "probe: " << checkpoint << " holds " << name << ", which its config's model "
                            << "does not have",
                  "the checkpoint and its stored config disagree: re-export it");
    Tensor target = model.params()[name];
    target.copy_from(value.to_device(device));
  }
  const int64_t B = cfg.train.batch_size * opt.batches, T = cfg.model.block_size;
  DataLoader val = DataLoader::from_files(cfg.data.dir, cfg.data.val_pattern, B, T,
                                          cfg.run.seed, kValStream, cfg.data.window_stride);
  const Batch batch = val.next();
  autograd::NoGradGuard no_grad;
  ForwardCapture capture;
  ForwardResult out = model.forward(batch.inputs.to_device(device),
                                    batch.targets.to_device(device), &capture);
  ProbeResult result;
  result.loss = out.loss.item();
  result.metrics = compute_sink_metrics(capture, cfg.metrics.sink_threshold, false);
  result.key = opt.amplify >= 0 ? opt.amplify : (opt.isolate.empty() ? 0 : opt.isolate[0]);
  const int64_t key = std::min<int64_t>(result.key, T - 1);
  for (const LayerCapture& cap : capture.layers) {
    Tensor mass = ops::attention_key_mass(cap.q, cap.k, cap.lse, key, cap.attention);  // (B,NH,T)
    const std::vector<double> a = mass.to_doubles();
    const int64_t NH = mass.size(1);
    std::vector<double> per_head(NH, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h)
        for (int64_t t = key; t < T; ++t)
          per_head[h] += a[(b * NH + h) * T + t] / static_cast<double>(B * (T - key));
    result.key_score.push_back(per_head);
  }
  // Console table: one row per layer (means over heads).
  char line[256];
  console << "probe " << checkpoint << ": " << B << " sequences of " << T << " tokens, loss "
          << result.loss << "\n";
  if (!opt.isolate.empty()) console << "  isolate positions at key " << result.key << "\n";
  if (opt.amplify >= 0)
    console << "  " << (opt.plain_scaling ? "scale" : "amplify") << " o_" << opt.amplify
            << " by lambda " << opt.lambda << "\n";
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
  // JSON: the interventions, the score at the key, and every metric as a metrics.jsonl record.
  StepRecord record;
  record.step = read_checkpoint_state(checkpoint).step;
  record.loss = result.loss;
  record.lr = record.grad_norm = record.tokens_per_s = record.step_ms = record.mfu =
      record.memory_mib = record.val_loss = NAN;
  record.has_sink = true;
  record.sink = result.metrics;
  std::ostringstream json;
  json << "{\"checkpoint\":\"" << checkpoint << "\",\"isolate\":" 
       << json_array(std::vector<double>(opt.isolate.begin(), opt.isolate.end()))
       << ",\"amplify\":" << opt.amplify << ",\"mode\":\""
       << (opt.plain_scaling ? "plain" : "centered") << "\",\"lambda\":" << opt.lambda
       << ",\"layers\":" << json_array(std::vector<double>(opt.layers.begin(), opt.layers.end()))
       << ",\"key\":" << result.key << ",\"key_score\":[";
  for (size_t l = 0; l < result.key_score.size(); ++l)
    json << (l ? "," : "") << json_array(result.key_score[l]);
  json << "],\"metrics\":" << step_to_json(record) << "}\n";
  result.json_path = opt.out.empty() ? checkpoint + ".probe.json" : opt.out;
  write_file_atomic(result.json_path, json.str(),
                    "check the folder exists and is writable, or pass --out");
  console << "wrote " << result.json_path << "\n";
  return result;
}

}  // namespace sinklab::train
