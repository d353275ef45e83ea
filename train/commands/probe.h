// `sinklab probe <checkpoint>`: runs validation batches through a trained model and reports every
// sink metric per layer and head, optionally under the paper's interventions (SINKS.md):
//   isolate k        query k attends only to itself (no keys before k), in `layers` (all if empty)
//   amplify k, X     o_k <- mu + X (o_k - mu) in `layers`, mu the layer's mean value vector
//   scale k, X       o_k <- X o_k in `layers` (the plain-scaling control)
// and the sink score at key k per layer: alpha_k = mean over queries t >= k of A[t, k].
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "train/metrics/sink_metrics.h"

namespace sinklab::train {

struct ProbeOptions {
  int64_t batches = 4;                // validation batches of the run's batch size, in one pass
  std::vector<int64_t> isolate;       // positions to isolate
  int64_t amplify = -1;               // k for amplify (centered) or scale (plain); -1 = off
  bool plain_scaling = false;         // scale instead of amplify
  double lambda = 1.0;
  std::vector<int64_t> layers;        // layers of the interventions; empty = all
  std::string device = "cpu";
  std::string out;                    // JSON file; default <checkpoint>.probe.json
};

struct ProbeResult {
  double loss = 0;                       // mean validation loss of the probed batches
  int64_t key = 0;                       // the key whose sink score is reported
  std::vector<std::vector<double>> key_score;  // (L, NH) alpha_key
  SinkMetrics metrics;
  std::string json_path;
};

// Throws IOError / ConfigError naming the checkpoint or the option when something is wrong.
ProbeResult probe_checkpoint(const std::string& checkpoint, const ProbeOptions& options,
                             std::ostream& console);

}  // namespace sinklab::train
