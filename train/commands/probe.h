// `sinklab probe <checkpoint | Hugging Face folder>`: runs validation batches through a trained model and reports every
// sink metric per layer and head, optionally under the paper's interventions (SINKS.md):
//   isolate k        query k attends only to itself (no keys before k), in `layers` (all if empty)
//   amplify k, X     o_k <- mu + X (o_k - mu) in `layers`, mu the layer's mean value vector
//   scale k, X       o_k <- X o_k in `layers` (the plain-scaling control)
// and the sink score at key k per layer: alpha_k = mean over queries t >= k of A[t, k], and the
// paper's (docs/METRICS.md): over t > k, the sink onset, super neurons from the weights, on
// `--window` T-token windows, and the across-sample variance on `--random-tokens` sequences.
#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "train/io/model_source.h"
#include "train/metrics/sink_metrics.h"
#include "train/model.h"
#include "train/paper_metrics.h"

namespace sinklab::train {

struct ProbeOptions {
  int64_t batches = 4;                // validation batches of the run's batch size, in one pass
  std::vector<int64_t> isolate;       // positions to isolate
  int64_t amplify = -1;               // k for amplify (centered) or scale (plain); -1 = off
  bool plain_scaling = false;         // scale instead of amplify
  double lambda = 1.0;
  std::string amplify_mean = "random";  // mu of amplify: over uniform-random tokens (the paper)
                                        // or "batch" (the probed batch's, as before)
  int64_t mean_tokens = 50000;        // tokens of the random-token mu
  std::string amplify_site = "before_norm";  // where --amplify / --scale act: on the attention
                                             // output (the paper's) or after head-wise RMSNorm
  std::vector<int64_t> layers;        // layers of the interventions; empty = all
  int64_t window = 0;                 // T of the probed windows; 0 = the model's block_size
  int64_t random_tokens = 0;          // N uniform-random sequences for var_across; 0 = off
  std::string device = "cpu";  // cpu, cuda[:N], or auto: cuda where a GPU is present
  std::string out;                    // JSON file; default <checkpoint>.probe.json
  std::vector<std::string> overrides; // --set key=value on the model's config (data.dir for a
                                      // Hugging Face model, whose config has no data section)
};

struct ProbeResult {
  double loss = 0;                       // mean validation loss of the probed batches
  int64_t key = 0;                       // the key whose sink score is reported
  std::vector<std::vector<double>> key_score;  // (L, NH) alpha_key
  std::vector<std::vector<double>> key_score_after;  // (L, NH) over queries t > key (paper)
  std::vector<std::vector<double>> var_across;  // (L, T) on random tokens; empty when off
  std::vector<SuperNeuron> super;               // (L) found from the weights (paper)
  SinkMetrics metrics;
  std::string json_path;
};

// `model_path`: a checkpoint or a Hugging Face model (train/io/model_source.h). Throws IOError /
// ConfigError naming the file or the option when something is wrong.
ProbeResult probe_checkpoint(const std::string& model_path, const ProbeOptions& options,
                             std::ostream& console);

// ConfigError naming the option when one of options' values cannot be probed.
void check_probe_options(const ProbeOptions& options);

// A model read once (its checkpoint is 1.8 GB at 152M parameters, AdamW moments included) and
// its weights on the probe's device, in the model without interventions: each probe's model
// shares them (GPT(cfg, weights)).
struct LoadedProbeModel {
  std::string checkpoint;  // model_path without a trailing '/'
  ModelSource source;      // its config and step as read (the parameters dropped once loaded)
  std::string device;                  // the options it was loaded with: each probe's must match
  std::vector<std::string> overrides;
  std::shared_ptr<const GPT> clean;  // overrides and device applied; shares its weights with
                                     // each probe's model, which only reads them
};
// Reads model_path; of options only the device and the overrides (--set) count.
LoadedProbeModel load_probe_model(const std::string& model_path, const ProbeOptions& options);
// The config one probe of the loaded model runs: the stored one with options' interventions.
// ConfigError naming the option (a position, layer or window outside the model) otherwise.
RunConfig probe_run_config(const LoadedProbeModel& model, const ProbeOptions& options);
// One probe of the loaded model, as probe_checkpoint does (options.device and .overrides must be
// those it was loaded with; ValueError otherwise).
ProbeResult probe_loaded(const LoadedProbeModel& model, const ProbeOptions& options,
                         std::ostream& console);

}  // namespace sinklab::train
