// `sinklab report`: plots of every variant's metrics and an index.html, drawn by
// scripts/report.py (matplotlib, h5py).
#pragma once
#include <string>

namespace sinklab::train {

// Runs scripts/report.py on the run folder `run` (output in `out`, default <run>/report).
// The script is looked up in $SINKLAB_SCRIPTS, else in `scripts_dir` (the source tree's
// scripts/ folder, known at build time): where this installation keeps its scripts, not
// something a run's config could say. Returns the script's exit code.
int run_report(const std::string& run, const std::string& out, const std::string& scripts_dir);

}  // namespace sinklab::train
