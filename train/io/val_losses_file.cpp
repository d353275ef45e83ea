#include "train/io/val_losses_file.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <limits>

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

std::optional<ValLosses> read_val_losses(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  auto number = [](const YAML::Node& n) {
    return n.IsNull() ? std::numeric_limits<double>::quiet_NaN() : n.as<double>();
  };
  try {
    const YAML::Node file = YAML::LoadFile(path);  // JSON is YAML's flow syntax
    ValLosses out;
    out.step = file["step"].as<int64_t>();
    out.batches_hash = std::stoull(file["batches_hash"].as<std::string>(), nullptr, 16);
    out.loss = number(file["loss"]);
    for (const YAML::Node& l : file["losses"]) out.losses.push_back(number(l));
    return out;
  } catch (const std::exception&) {  // not such a file (a partial one is never written)
    return std::nullopt;
  }
}

}  // namespace sinklab::train
