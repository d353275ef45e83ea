// A variant's final evaluation, batch by batch: <variant>/val_losses.json, written atomically at
// the end of a run. Two variants of one run that were evaluated on the same batches (equal
// batches_hash and count) pair batch by batch, so the difference of their validation losses
// gets a paired standard error after the run too (scripts/report.py), not only in the console
// line the run prints at its end (docs/METRICS.md, "val_losses.json").
//   {"step": 500, "batches_hash": "0123456789abcdef", "loss": 2.0868, "losses": [2.1, 2.0, ...]}
// A non-finite loss (a diverged run) is written as null.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sinklab::train {

// Writes `path` atomically: the evaluation after `step` updates, of the validation batches whose
// token ids hash to `batches_hash` (train/data: hash_tokens), `losses` (eval_batches) one per
// batch, and their mean `loss`.
void write_val_losses(const std::string& path, int64_t step, uint64_t batches_hash, double loss,
                      const std::vector<double>& losses);

// What write_val_losses wrote (a null loss read back as NaN).
struct ValLosses {
  int64_t step = 0;
  uint64_t batches_hash = 0;
  double loss = 0;
  std::vector<double> losses;  // (eval_batches)
};
// The file at `path`, or nothing where it is missing or not such a file.
std::optional<ValLosses> read_val_losses(const std::string& path);

}  // namespace sinklab::train
