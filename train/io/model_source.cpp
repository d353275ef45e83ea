#include "train/io/model_source.h"

#include <filesystem>

#include "core/error.h"
#include "train/io/checkpoint.h"
#include "train/io/hf_weights.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

struct HfFiles {
  fs::path config, weights, tokenizer;  // tokenizer empty when the folder has none
};

// The files of a Hugging Face model at `path` (a folder or a .safetensors file in one), or
// nullopt when `path` is no such model.
std::optional<HfFiles> hf_files(const std::string& path) {
  const fs::path p(path);
  HfFiles files;
  if (fs::is_directory(p)) {
    files.config = p / "config.json";
    files.weights = p / "model.safetensors";
  } else if (p.extension() == ".safetensors") {
    files.config = p.parent_path() / "config.json";
    files.weights = p;
  } else {
    return std::nullopt;
  }
  SINKLAB_CHECK(fs::exists(files.config), IOError,
                "no config.json beside " << files.weights.string(),
                "a Hugging Face model needs its config.json in the same folder "
                "(save_pretrained writes both)");
  SINKLAB_CHECK(fs::exists(files.weights), IOError, "no " << files.weights.string(),
                "sinklab reads one model.safetensors (save_pretrained(..., "
                "safe_serialization=True) with no sharding: max_shard_size large enough)");
  const fs::path tokenizer = files.config.parent_path() / "tokenizer.json";
  if (fs::exists(tokenizer)) files.tokenizer = tokenizer;
  return files;
}

RunConfig hf_run_config(const HfFiles& files) {
  RunConfig config;
  config.model = model_from_hf_config(files.config.string());
  if (!files.tokenizer.empty()) config.data.tokenizer = "hf:" + files.tokenizer.string();
  config.source_file = files.config.string();
  validate(config);
  return config;
}

}  // namespace

ModelSource load_model_source(const std::string& path) {
  ModelSource source;
  source.path = path;
  if (auto files = hf_files(path)) {
    source.kind = ModelSourceKind::HuggingFace;
    source.config = hf_run_config(*files);
    source.special = special_tokens_from_hf_config(files->config.string());
    source.params = from_hf_state_dict(read_safetensors(files->weights.string()),
                                       source.config.model, files->weights.string());
    return source;
  }
  SINKLAB_CHECK(fs::is_regular_file(path), IOError, path << " does not exist",
                "give a checkpoint (step_XXXXXXXX.h5), a Hugging Face model folder or a "
                ".safetensors file with its config.json");
  CheckpointWeights checkpoint = read_checkpoint_weights(path);  // one read of the file
  source.config = parse_config(checkpoint.state.config_yaml, path + " (stored config)");
  source.step = checkpoint.state.step;
  source.params = std::move(checkpoint.params);
  return source;
}

RunConfig model_source_config(const std::string& path) {
  if (auto files = hf_files(path)) return hf_run_config(*files);
  SINKLAB_CHECK(fs::is_regular_file(path), IOError, path << " does not exist",
                "give a checkpoint (step_XXXXXXXX.h5) or a Hugging Face model folder");
  return parse_config(read_checkpoint_state(path).config_yaml, path + " (stored config)");
}

std::string describe(const ModelSource& source) {
  if (source.kind == ModelSourceKind::HuggingFace) return "the Hugging Face model " + source.path;
  return "the checkpoint " + source.path + " (step " + std::to_string(source.step) + ")";
}

}  // namespace sinklab::train
