#include "train/io/step_record.h"

#include <limits>

namespace sinklab::train {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const ScalarField kScalarFields[] = {
    {"loss", "train", [](const StepRecord& r) { return r.loss; }},
    {"lr", "train", [](const StepRecord& r) { return r.lr; }},
    {"grad_norm", "train", [](const StepRecord& r) { return r.grad_norm; }},
    {"tokens_per_s", "train", [](const StepRecord& r) { return r.tokens_per_s; }},
    {"step_ms", "train", [](const StepRecord& r) { return r.step_ms; }},
    {"mfu", "train", [](const StepRecord& r) { return r.mfu; }},
    {"memory_mib", "train", [](const StepRecord& r) { return r.memory_mib; }},
    {"val_loss", "val", [](const StepRecord& r) { return r.val_loss; }},
    {"skipped", "train", [](const StepRecord& r) { return r.skipped ? 1.0 : 0.0; }},
    {"sink_rate", "sinks", [](const StepRecord& r) { return r.has_sink ? r.sink.sink_rate : kNaN; }},
    {"val_loss_se", "val", [](const StepRecord& r) { return r.val_loss_se; }},
    {"sink_onset", "sinks",
     [](const StepRecord& r) { return r.has_sink ? r.sink.sink_onset : kNaN; }},
    {"dim_disparity_mean", "sinks",
     [](const StepRecord& r) { return r.has_sink ? r.sink.dim_disparity_mean : kNaN; }},
    {"dim_disparity_normed_mean", "sinks",
     [](const StepRecord& r) { return r.has_sink ? r.sink.dim_disparity_normed_mean : kNaN; }},
    {"effective_rank_output_mean", "sinks",
     [](const StepRecord& r) { return r.has_sink ? r.sink.effective_rank_output_mean : kNaN; }},
    {"memory_peak_mib", "train", [](const StepRecord& r) { return r.memory_peak_mib; }},
};

const LayerField kLayerFields[] = {
    {"var_ratio", [](const LayerMetrics& m) { return m.var_ratio; }},
    {"var_ratio_normed", [](const LayerMetrics& m) { return m.var_ratio_normed; }},
    {"dim_disparity", [](const LayerMetrics& m) { return m.dim_disparity; }},
    {"dim_argmax", [](const LayerMetrics& m) { return static_cast<double>(m.dim_argmax); }},
    {"norm_ratio", [](const LayerMetrics& m) { return m.norm_ratio; }},
    {"super_neuron", [](const LayerMetrics& m) { return static_cast<double>(m.super_neuron); }},
    {"super_value", [](const LayerMetrics& m) { return m.super_value; }},
    {"super_ratio", [](const LayerMetrics& m) { return m.super_ratio; }},
    {"massive_median", [](const LayerMetrics& m) { return m.massive_median; }},
    {"effective_rank", [](const LayerMetrics& m) { return m.effective_rank; }},
    {"sink_score", [](const LayerMetrics& m) { return m.sink_score; }},
    {"dim_disparity_normed", [](const LayerMetrics& m) { return m.dim_disparity_normed; }},
    {"effective_rank_output", [](const LayerMetrics& m) { return m.effective_rank_output; }},
};

const LayerVectorField kLayerVectorFields[] = {
    {"sink_mass", "head", [](const LayerMetrics& m) { return m.sink_mass; }},
    {"alpha0", "head", [](const LayerMetrics& m) { return m.alpha0; }},
    {"var_pos", "position", [](const LayerMetrics& m) { return m.var_pos; }},
    {"var_pos_normed", "position", [](const LayerMetrics& m) { return m.var_pos_normed; }},
    {"massive_top", "rank",
     [](const LayerMetrics& m) {
       return std::vector<double>(m.massive_top, m.massive_top + 3);
     }},
};

}  // namespace

std::span<const ScalarField> scalar_fields() { return kScalarFields; }
std::span<const LayerField> layer_fields() { return kLayerFields; }
std::span<const LayerVectorField> layer_vector_fields() { return kLayerVectorFields; }

}  // namespace sinklab::train
