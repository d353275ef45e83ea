#include "train/commands/reference_export.h"

#include <sstream>

#include "autograd/engine.h"
#include "core/random.h"
#include "train/model.h"
#include "train/optimizer.h"
#include "train/io/safetensors.h"

namespace sinklab::train {

void export_reference(const RunConfig& config, int64_t batch_size, const std::string& path) {
  ModelSection m = config.model;
  SINKLAB_CHECK(m.vocab_size > 0, ConfigError,
                "export-reference needs model.vocab_size > 0 (" << config.source_file << ")",
                "pass --set model.vocab_size=N");
  GPT model(m, config.run.seed, DType::F32, Device::cpu());
  const int64_t T = m.block_size;
  const int32_t V = static_cast<int32_t>(m.vocab_size);
  OptimSection optim = config.optim;
  AdamW adam(model.params(), optim);
  for (uint64_t step = 0; step < 3; ++step) {  // move weights off their init
    Tensor ids = rand_ints({batch_size, T}, RngKey{config.run.seed, 1000 + step, 0}, V);
    Tensor tg = rand_ints({batch_size, T}, RngKey{config.run.seed, 2000 + step, 0}, V);
    model.params().zero_grad();
    autograd::backward(model.forward(ids, tg).loss);
    adam.step(model.params(), 1e-2);
  }
  Tensor ids = rand_ints({batch_size, T}, RngKey{config.run.seed, 1, 0}, V);
  Tensor targets = rand_ints({batch_size, T}, RngKey{config.run.seed, 2, 0}, V);
  model.params().zero_grad();
  ForwardResult out = model.forward(ids, targets);
  autograd::backward(out.loss);

  NamedTensors tensors;
  for (const Param& p : model.params().params()) tensors.push_back({p.spec.name, p.value});
  for (const Param& p : model.params().params())
    tensors.push_back({"grad." + p.spec.name, p.grad});
  tensors.push_back({"input.ids", ids});
  tensors.push_back({"input.targets", targets});
  tensors.push_back({"output.logits", out.logits.detach()});
  tensors.push_back({"output.loss", out.loss.detach()});
  std::ostringstream isolate;
  for (size_t i = 0; i < m.isolate_positions.size(); ++i)
    isolate << (i ? "," : "") << m.isolate_positions[i];
  std::map<std::string, std::string> meta{
      {"format", "sinklab-reference"},
      {"arch", choice_text(m.arch)},
      {"n_layer", std::to_string(m.n_layer)},
      {"n_head", std::to_string(m.n_head)},
      {"n_embd", std::to_string(m.n_embd)},
      {"ffn_hidden", std::to_string(GPT::resolved_ffn_width(m))},
      {"vocab_size", std::to_string(m.vocab_size)},
      {"block_size", std::to_string(m.block_size)},
      {"tie_embeddings", m.tie_embeddings ? "1" : "0"},
      {"attn_output_norm", choice_text(m.attn_output_norm)},
      {"attention", choice_text(m.attention)},
      {"norm_eps", std::to_string(GPT::resolved_norm_eps(m))},
      {"rope_theta", std::to_string(m.rope_theta)},
      {"isolate_positions", isolate.str()},
  };
  write_safetensors(path, tensors, meta);
}

}  // namespace sinklab::train
