#include "train/io/export.h"

#include <filesystem>

#include "train/io/checkpoint.h"
#include "train/config.h"
#include "train/io/safetensors.h"

namespace sinklab::train {

namespace {
bool is_conv1d(const std::string& name) {  // GPT-2's Conv1D weights, stored (in, out) by HF
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return name.rfind("transformer.h.", 0) == 0 &&
         (ends_with("attn.c_attn.weight") || ends_with("attn.c_proj.weight") ||
          ends_with("mlp.c_fc.weight") || ends_with("mlp.c_proj.weight"));
}
}  // namespace

std::string export_checkpoint(const std::string& checkpoint, const std::string& out) {
  TrainState state = read_checkpoint_state(checkpoint);
  RunConfig config = parse_config(state.config_yaml, checkpoint + " (saved config)");
  // Default: beside the checkpoint with its name; an existing folder as --out: inside it.
  std::string stem = std::filesystem::path(checkpoint).filename().string();
  if (stem.size() > 3 && stem.compare(stem.size() - 3, 3, ".h5") == 0) stem.resize(stem.size() - 3);
  std::string path = out;
  if (path.empty())
    path = (std::filesystem::path(checkpoint).parent_path() / (stem + ".safetensors")).string();
  else if (std::filesystem::is_directory(path))
    path = (std::filesystem::path(path) / (stem + ".safetensors")).string();
  NamedTensors tensors;
  for (auto& [name, value] : read_checkpoint_params(checkpoint)) {
    if (is_conv1d(name))
      tensors.push_back({name, value.transpose_view(0, 1).copy_contiguous()});
    else
      tensors.push_back({name, value});
  }
  write_safetensors(path, tensors,
                    {{"format", "pt"},
                     {"sinklab_arch", choice_text(config.model.arch)},
                     {"sinklab_step", std::to_string(state.step)},
                     {"sinklab_attn_output_norm", choice_text(config.model.attn_output_norm)}});
  return path;
}

}  // namespace sinklab::train
