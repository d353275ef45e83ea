#include "train/commands/forward.h"

#include "autograd/grad_mode.h"
#include "core/device_runtime.h"
#include "core/error.h"
#include "core/precision.h"
#include "train/data/tokenizer_spec.h"
#include "train/io/model_source.h"
#include "train/io/safetensors.h"
#include "train/model.h"
#include "train/stored_model.h"

namespace sinklab::train {

ForwardOutput forward_to_file(const std::string& model_path, const ForwardOptions& options) {
  SINKLAB_CHECK(options.ids.empty() != options.text.empty(), ConfigError,
                "forward: give either --ids or --text",
                "e.g. --ids 464,3290,318 or --text \"The sea\"");
  ModelSource source = load_model_source(model_path);
  RunConfig config = source.config;
  if (!options.tokenizer.empty()) config.data.tokenizer = options.tokenizer;
  config.run.device = resolve_device(options.device).str();
  ForwardOutput out;
  out.ids = options.ids.empty() ? open_data_tokenizer(config.data)->encode(options.text)
                                : options.ids;
  const int64_t T = static_cast<int64_t>(out.ids.size());
  SINKLAB_CHECK(T >= 2 && T <= config.model.block_size, ConfigError,
                "forward: the sequence has " << T << " tokens",
                "give 2 to " + std::to_string(config.model.block_size) +
                    " tokens (the model's block_size)");
  for (int32_t id : out.ids)
    SINKLAB_CHECK(id >= 0 && id < config.model.vocab_size, ConfigError,
                  "forward: id " << id << " is outside the vocabulary of "
                                 << config.model.vocab_size,
                  "the ids are for another model");
  const Device device = parse_device(config.run.device);
  const std::unique_ptr<GPT> model = open_stored_model(config, source.params, source.path);

  autograd::NoGradGuard no_grad;
  // One pass: position t predicts ids[t + 1], the last position nothing (-1 is ignored), so the
  // loss is transformers' with labels = ids.
  std::vector<int32_t> targets(out.ids.begin() + 1, out.ids.end());
  targets.push_back(-1);
  const Tensor ids = Tensor::from_ints(out.ids, {1, T});  // (1, T)
  const ForwardResult result =
      model->forward(ids.to_device(device), Tensor::from_ints(targets, {1, T}).to_device(device));
  const Tensor logits = result.logits;  // (1, T, V)
  out.loss = result.loss.item();
  if (!options.out.empty()) {
    Tensor loss = Tensor::full({}, out.loss);
    write_safetensors(options.out,
                      {{"ids", ids},
                       {"logits", logits.to_device(Device::cpu()).to_dtype(DType::F32)},
                       {"loss", loss}});
  }
  return out;
}

}  // namespace sinklab::train
