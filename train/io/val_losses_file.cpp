#include "train/io/val_losses_file.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>

#include "train/io/atomic_file.h"
#include "train/io/json_text.h"

namespace sinklab::train {

namespace {

std::string number_or_null(double x) { return std::isfinite(x) ? json_number(x) : "null"; }

}  // namespace

void write_val_losses(const std::string& path, int64_t step, uint64_t batches_hash, double loss,
                      const std::vector<double>& losses) {
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016" PRIx64, batches_hash);
  std::string text = "{\"step\": " + std::to_string(step) + ", \"batches_hash\": " +
                     json_string(hash) + ", \"loss\": " + number_or_null(loss) + ", \"losses\": [";
  for (size_t i = 0; i < losses.size(); ++i)
    text += (i ? ", " : "") + number_or_null(losses[i]);
  text += "]}\n";
  write_file_atomic(path, text, "check that the run folder is writable");
}

}  // namespace sinklab::train
