#include "train/commands/generate.h"

#include <cmath>

#include "core/device_runtime.h"
#include "core/error.h"
#include "core/precision.h"
#include "train/data/tokenizer_spec.h"
#include "train/io/model_source.h"
#include "train/model.h"
#include "train/stored_model.h"
#include "train/sampler.h"

namespace sinklab::train {

namespace {
constexpr uint64_t kGenerateStream = 51;  // Philox stream of `sinklab generate`'s draws
}  // namespace

Generation generate(const std::string& model_path, const GenerateOptions& options) {
  SINKLAB_CHECK(std::isfinite(options.temperature) && options.temperature >= 0, ConfigError,
                "generate: --temperature is " << options.temperature,
                "use 0 (greedy) or a positive number such as 0.8");
  SINKLAB_CHECK(options.top_k >= 0, ConfigError, "generate: --top-k is " << options.top_k,
                "use 0 (all tokens) or a positive count such as 50");
  SINKLAB_CHECK(options.tokens >= 0, ConfigError, "generate: --tokens is " << options.tokens,
                "ask for zero or more tokens");
  ModelSource source = load_model_source(model_path);
  RunConfig config = source.config;
  if (!options.tokenizer.empty()) config.data.tokenizer = options.tokenizer;
  config.run.device = resolve_device(options.device).str();
  const std::unique_ptr<Tokenizer> tokenizer = open_data_tokenizer(config.data);
  const std::unique_ptr<GPT> model = open_stored_model(config, source.params, source.path);

  Generation out;
  out.prompt_ids = tokenizer->encode(options.prompt);
  if (out.prompt_ids.empty() && source.special.eos)
    out.prompt_ids.push_back(static_cast<int32_t>(*source.special.eos));
  SINKLAB_CHECK(!out.prompt_ids.empty(), ConfigError,
                "generate: the prompt is empty and " << describe(source)
                                                     << " has no end-of-text token to start from",
                "give --prompt TEXT");
  for (size_t i = 0; i < out.prompt_ids.size(); ++i)
    SINKLAB_CHECK(out.prompt_ids[i] < config.model.vocab_size, ConfigError,
                  "generate: the tokenizer gives id " << out.prompt_ids[i] << " but the model's "
                                                      << "vocabulary has " << config.model.vocab_size,
                  "the tokenizer is not the model's (--tokenizer)");
  SamplingOptions sampling;
  sampling.count = options.tokens;
  sampling.temperature = options.temperature;
  sampling.top_k = options.top_k;
  sampling.vocab_limit = std::min(tokenizer->vocab_size(), config.model.vocab_size);
  sampling.seed = options.seed;
  sampling.stream = kGenerateStream;
  out.ids = sample_tokens(*model, out.prompt_ids, sampling);
  out.text = tokenizer->decode(out.ids);
  return out;
}

}  // namespace sinklab::train
