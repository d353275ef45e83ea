#include "train/stored_model.h"

#include "train/io/hf_weights.h"
#include "train/process_settings.h"

namespace sinklab::train {

std::unique_ptr<GPT> open_stored_model(const RunConfig& cfg, const NamedTensors& weights,
                                       const std::string& origin) {
  apply_stored_model_settings(cfg.run);  // as the run computed: precision, kernels
  auto model = std::make_unique<GPT>(cfg.model, cfg.run.seed, DType::F32,
                                     parse_device(cfg.run.device), InitialValues::Zeros);
  load_weights(model->params(), weights, origin);
  return model;
}

}  // namespace sinklab::train
