#include "train/io/export.h"

#include <filesystem>

#include "core/error.h"
#include "train/data/hf_tokenizer_json.h"
#include "train/data/tokenizer_spec.h"
#include "train/io/atomic_file.h"
#include "train/io/checkpoint.h"
#include "train/io/hf_config.h"
#include "train/io/hf_modeling_source.h"
#include "train/io/hf_weights.h"
#include "train/io/safetensors.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

std::string checkpoint_stem(const std::string& checkpoint) {
  std::string stem = fs::path(checkpoint).filename().string();
  if (stem.size() > 3 && stem.compare(stem.size() - 3, 3, ".h5") == 0) stem.resize(stem.size() - 3);
  return stem;
}

std::map<std::string, std::string> sinklab_metadata(const RunConfig& config,
                                                    const TrainState& state) {
  return {{"format", "pt"},
          {"sinklab_arch", choice_text(config.model.arch)},
          {"sinklab_step", std::to_string(state.step)},
          {"sinklab_attn_output_norm", choice_text(config.model.attn_output_norm)}};
}

NamedTensors checkpoint_state_dict(const std::string& checkpoint) {
  return to_hf_state_dict(read_checkpoint_params(checkpoint));
}

std::string export_safetensors(const std::string& checkpoint, const RunConfig& config,
                               const TrainState& state, const std::string& out) {
  // Default: beside the checkpoint with its name; an existing folder as --out: inside it.
  const std::string stem = checkpoint_stem(checkpoint);
  std::string path = out;
  if (path.empty())
    path = (fs::path(checkpoint).parent_path() / (stem + ".safetensors")).string();
  else if (fs::is_directory(path))
    path = (fs::path(path) / (stem + ".safetensors")).string();
  write_safetensors(path, checkpoint_state_dict(checkpoint), sinklab_metadata(config, state));
  return path;
}

// bos and eos: GPT-2's <|endoftext|> where the tokenizer has it as a special token; sinklab's
// own tokenizers have none (their models were trained without one).
HfSpecialTokens special_tokens_of(const Tokenizer& tokenizer) {
  HfSpecialTokens special;
  for (const AddedToken& token : tokenizer.byte_level_bpe().added_tokens)
    if (token.special && token.content == "<|endoftext|>") special.bos = special.eos = token.id;
  return special;
}

std::string export_hf_folder(const std::string& checkpoint, const RunConfig& config,
                             const TrainState& state, const ExportOptions& options) {
  // The run's tokenizer (or --tokenizer): it must fit the model's vocabulary.
  const std::unique_ptr<Tokenizer> tokenizer =
      options.tokenizer.empty() ? open_data_tokenizer(config.data)
                                : open_tokenizer(options.tokenizer, "--tokenizer");
  SINKLAB_CHECK(tokenizer->vocab_size() <= config.model.vocab_size, ConfigError,
                "export: the tokenizer has " << tokenizer->vocab_size() << " ids but the model's "
                                             << "vocabulary is " << config.model.vocab_size,
                "pass the run's tokenizer with --tokenizer");
  const HfSpecialTokens special = special_tokens_of(*tokenizer);
  // The config first: a model no class computes is refused before anything is written.
  const std::string config_json = hf_config_json(config.model, special);
  const fs::path dir = options.out.empty()
                           ? fs::path(checkpoint).parent_path() / (checkpoint_stem(checkpoint) + "-hf")
                           : fs::path(options.out);
  std::error_code ec;
  fs::create_directories(dir, ec);
  SINKLAB_CHECK(!ec, IOError, "cannot create the folder " << dir.string() << ": " << ec.message(),
                "check the path and its permissions (--out)");
  write_safetensors((dir / "model.safetensors").string(), checkpoint_state_dict(checkpoint),
                    sinklab_metadata(config, state));
  save_hf_tokenizer_files(*tokenizer, dir.string(), config.model.block_size);
  if (needs_sinklab_modeling(config.model))  // config.json names SinklabForCausalLM
    write_file_atomic((dir / "modeling_sinklab.py").string(), sinklab_modeling_py());
  write_file_atomic((dir / "generation_config.json").string(),
                    hf_generation_config_json(special, config.train.sample_temperature, 0));
  // config.json last: a folder without it is not a model, so an interrupted export is no
  // half-written model.
  write_file_atomic((dir / "config.json").string(), config_json);
  return dir.string();
}

}  // namespace

std::string export_checkpoint(const std::string& checkpoint, const ExportOptions& options) {
  const TrainState state = read_checkpoint_state(checkpoint);
  const RunConfig config = parse_config(state.config_yaml, checkpoint + " (saved config)");
  if (options.format == ExportFormat::Safetensors)
    return export_safetensors(checkpoint, config, state, options.out);
  return export_hf_folder(checkpoint, config, state, options);
}

}  // namespace sinklab::train
