// The probe's measurement options, defined once for `sinklab probe` and for the lines of a probe
// plan (`sinklab probe CHECKPOINT --plan FILE`): one probe per line, the checkpoint read and its
// weights loaded once for all of them (a 152M checkpoint with its AdamW moments is 1.8 GB).
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "train/commands/probe.h"

namespace sinklab::train {

// What a probe measures, as options of app into opt: --isolate, --amplify / --scale (into
// scale_position; resolve_scale applies it), --lambda, --layers, --amplify-mean, --mean-tokens,
// --window, --random-tokens. Returns the options added (a caller may exclude them).
std::vector<CLI::Option*> add_probe_measure_options(CLI::App& app, ProbeOptions& opt,
                                                    int64_t& scale_position);
// --scale k: amplify k with plain scaling (scale_position -1: not given).
void resolve_scale(ProbeOptions& opt, int64_t scale_position);

// One line of a probe plan: its options over the command line's (batches, device, --set).
struct ProbePlanLine {
  std::string file;   // the plan's path, for errors
  int64_t line = 0;   // 1-based line number in the file
  std::string text;   // the line as written
  ProbeOptions options;
};

// The probes of the plan file at path: one per line of measurement options; `none` probes
// without an intervention; blank lines and '#' comments are skipped. ConfigError names the file,
// the line and what is wrong (an unknown option, one a plan line may not set, a bad value).
std::vector<ProbePlanLine> read_probe_plan(const std::string& path, const ProbeOptions& base);

// Every probe of plan on the model at model_path, which is read once; the i-th probe's JSON goes
// to <out_prefix>_<i>.json (i from 1, its place in the plan; out_prefix empty:
// <checkpoint>.probe). Every line's config is checked against the model before the first probe
// (ConfigError naming the file and the line). Prints each probe's tables under a header naming
// its line, and the seconds each took.
std::vector<ProbeResult> probe_plan(const std::string& model_path,
                                    const std::vector<ProbePlanLine>& plan,
                                    const std::string& out_prefix, std::ostream& console);

}  // namespace sinklab::train
