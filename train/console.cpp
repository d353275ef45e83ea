#include "train/console.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <ostream>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "train/paper_metrics.h"

namespace sinklab::train {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean_layer(const SinkMetrics& m, double (*get)(const LayerMetrics&)) {
  double s = 0;
  for (const auto& l : m.layers) s += get(l);
  return m.layers.empty() ? kNaN : s / m.layers.size();
}

// The largest of the layers' values that are not NaN; NaN when none is (no layers, or a metric
// left out: metrics.order_statistics false makes super_ratio NaN in every layer).
double max_layer(const SinkMetrics& m, double (*get)(const LayerMetrics&)) {
  double s = kNaN;
  for (const auto& l : m.layers) {
    const double v = get(l);
    if (!std::isnan(v) && (std::isnan(s) || v > s)) s = v;
  }
  return s;
}

double mean_sink_mass(const LayerMetrics& l) {
  double s = 0;
  for (double v : l.sink_mass) s += v;
  return l.sink_mass.empty() ? kNaN : s / l.sink_mass.size();
}

}  // namespace

std::string format_count(double v) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(0) << v;
  std::string digits = out.str(), grouped;
  int n = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (n && n % 3 == 0 && *it != '-') grouped.insert(grouped.begin(), ',');
    grouped.insert(grouped.begin(), *it);
    ++n;
  }
  return grouped;
}

std::string format_duration(double seconds) {
  char buf[32];
  const int s = static_cast<int>(seconds + 0.5);
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", s / 3600, (s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  return buf;
}


void Console::step_line(const std::string& variant, int64_t steps, const StepRecord& r) {
  char line[320];
  std::snprintf(line, sizeof line,
                "step %5lld/%lld | %-16s | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %s "
                "tok/s",
                static_cast<long long>(r.step + 1), static_cast<long long>(steps),
                variant.c_str(), r.loss, r.lr, r.grad_norm, r.step_ms,
                format_count(r.tokens_per_s).c_str());
  out_ << clear_bar() << line;
  if (std::isfinite(r.mfu)) {
    std::snprintf(line, sizeof line, " | MFU %.1f%% | %.1f GiB", 100 * r.mfu,
                  r.memory_mib / 1024);
    out_ << line;
  }
  if (r.has_sink) {
    std::snprintf(line, sizeof line, " | sink %.3f | var_ratio %.2f | disparity %.1f",
                  mean_layer(r.sink, mean_sink_mass),
                  mean_layer(r.sink, [](const LayerMetrics& l) { return l.var_ratio; }),
                  max_layer(r.sink, [](const LayerMetrics& l) { return l.dim_disparity; }));
    out_ << line;
  }
  out_ << "\n";
}

void Console::skipped_step(const std::string& variant, const StepRecord& r, int64_t in_a_row,
                           int64_t limit) {
  out_ << "step " << r.step << " " << variant << ": non-finite loss (" << r.loss
       << ") or grad norm (" << r.grad_norm << "), update skipped (" << in_a_row
       << " in a row, limit train.max_skipped_steps = " << limit << ")\n";
}

void Console::eval_line(const std::string& variant, int64_t step, int64_t steps, double val_loss,
                        double val_loss_se, const SinkMetrics& metrics,
                        int64_t output_rank_sequences, double seconds) {
  char line[280];
  std::snprintf(line, sizeof line,
                "step %5lld/%lld | %-16s | val loss %.4f ± %.4f (s.e.) | eff. rank %.1f "
                "(outputs, %lld seq.: %.1f) | %.1f s",
                static_cast<long long>(step), static_cast<long long>(steps), variant.c_str(),
                val_loss, val_loss_se,
                mean_layer(metrics, [](const LayerMetrics& l) { return l.effective_rank; }),
                static_cast<long long>(output_rank_sequences),
                metrics.effective_rank_output_mean, seconds);
  out_ << clear_bar() << line << "\n";
}

void Console::sample(const std::string& variant, const std::string& text) {
  out_ << "  sample (" << variant << "): " << text << "\n";
}

void Console::progress(int64_t step_done, int64_t steps, double fraction, double elapsed_s) {
  if (!progress_bar_) return;
  const double eta = elapsed_s / fraction * (1 - fraction);
  const int width = 30, filled = static_cast<int>(fraction * width);
  out_ << "\r\033[K[" << std::string(filled, '#') << std::string(width - filled, '.') << "] "
       << static_cast<int>(100 * fraction) << "% step " << step_done << "/" << steps << " ETA "
       << format_duration(eta) << std::flush;
}

void Console::stopped(const std::string& why, int64_t done_steps, const std::string& folder) {
  out_ << clear_bar() << why << " after step " << done_steps << "; checkpoint written to "
       << folder << "/<variant>/ckpt/; continue with --resume auto\n"
       << std::flush;
}

void Console::summary(const std::vector<ComparisonRow>& rows) {
  out_ << "\n" << comparison_table(rows);
}

void Console::val_differences(const std::vector<VariantSummary>& summaries) {
  if (summaries.size() < 2) return;
  const VariantSummary& first = summaries[0];
  for (size_t i = 1; i < summaries.size(); ++i) {
    const VariantSummary& s = summaries[i];
    if (s.val_losses.empty() || first.val_losses.empty()) continue;  // not evaluated
    char line[320];
    if (s.val_batches_hash != first.val_batches_hash ||
        s.val_losses.size() != first.val_losses.size()) {
      std::snprintf(line, sizeof line,
                    "val loss, %s - %s: other validation batches (data, seed, batch or block "
                    "size differ), no paired standard error\n",
                    s.name.c_str(), first.name.c_str());
    } else {
      std::snprintf(line, sizeof line,
                    "val loss, %s - %s: %+.4f ± %.4f (paired s.e. over the same %zu validation "
                    "batches)\n",
                    s.name.c_str(), first.name.c_str(), s.val_loss - first.val_loss,
                    paired_standard_error(s.val_losses, first.val_losses), s.val_losses.size());
    }
    out_ << line;
  }
}

void Console::phase_profile(const std::string& variant,
                            const std::map<std::string, double>& phase_ms,
                            int64_t steps_profiled) {
  out_ << "profile " << variant << " (ms per step, device synchronised per phase):";
  for (const auto& [phase, ms] : phase_ms)
    out_ << " " << phase << " " << std::fixed << std::setprecision(2) << ms / steps_profiled;
  out_ << std::defaultfloat << "\n";
}

void Console::op_profile(const char* pass, const std::map<std::string, double>& totals,
                         int64_t steps_profiled) {
  std::vector<std::pair<double, std::string>> ops;
  for (const auto& [name, ms] : totals) ops.emplace_back(ms, name);
  std::sort(ops.rbegin(), ops.rend());
  out_ << "profile " << pass << " by op (ms per step, all variants):";
  for (const auto& [ms, name] : ops)
    out_ << " " << name << " " << std::fixed << std::setprecision(2) << ms / steps_profiled;
  out_ << std::defaultfloat << "\n";
}

void Console::wall_time(double seconds, const std::string& folder, double peak_bytes,
                        double estimated_bytes, const std::string& metric_files) {
  out_ << "wall time " << format_duration(seconds);
  if (std::isfinite(peak_bytes))
    out_ << "; peak memory " << format_bytes(peak_bytes)
         << " (the check before the first step estimated " << format_bytes(estimated_bytes)
         << " for parameters and activations)";
  if (!metric_files.empty()) out_ << "; metrics in " << folder << "/<variant>/" << metric_files;
  out_ << "\n";
}

void Console::flush() { out_ << std::flush; }

std::vector<double> ComparisonRow::numbers() const {
  return {train_loss, val_loss,  sink_mass, sink_rate,   var_ratio,
          var_ratio_normed, disparity, super_x, tokens_per_s};  // (kNumbers)
}

ComparisonRow ComparisonRow::from_numbers(std::string name, const std::vector<double>& numbers) {
  SINKLAB_CHECK(numbers.size() == kNumbers, InternalError,
                "a comparison row of " << name << " came with " << numbers.size()
                                       << " numbers, not " << kNumbers,
                "every rank must run the same sinklab build");
  ComparisonRow r;
  r.name = std::move(name);
  r.train_loss = numbers[0];
  r.val_loss = numbers[1];
  r.sink_mass = numbers[2];
  r.sink_rate = numbers[3];
  r.var_ratio = numbers[4];
  r.var_ratio_normed = numbers[5];
  r.disparity = numbers[6];
  r.super_x = numbers[7];
  r.tokens_per_s = numbers[8];
  return r;
}

ComparisonRow comparison_row(const VariantSummary& s) {
  const SinkMetrics& m = s.last_metrics.sink;
  const bool have = s.last_metrics.has_sink;
  auto get = [&](double v) { return have ? v : kNaN; };
  ComparisonRow r;
  r.name = s.name;
  r.train_loss = s.final_loss;
  r.val_loss = s.val_loss;
  r.sink_mass = get(mean_layer(m, mean_sink_mass));
  r.sink_rate = get(m.sink_rate);
  r.var_ratio = get(mean_layer(m, [](const LayerMetrics& l) { return l.var_ratio; }));
  r.var_ratio_normed = get(mean_layer(m, [](const LayerMetrics& l) { return l.var_ratio_normed; }));
  r.disparity = get(max_layer(m, [](const LayerMetrics& l) { return l.dim_disparity; }));
  r.super_x = get(max_layer(m, [](const LayerMetrics& l) { return l.super_ratio; }));
  r.tokens_per_s = s.tokens_per_s;
  return r;
}

std::string comparison_table(const std::vector<ComparisonRow>& rows) {
  std::ostringstream out;
  char line[400];
  std::snprintf(line, sizeof line, "%-18s %10s %9s %10s %10s %10s %11s %11s %10s %12s\n",
                "variant", "train loss", "val loss", "sink mass", "sink rate", "var_ratio",
                "var_ratio*", "disparity", "super x", "tok/s");
  out << line;
  for (const ComparisonRow& r : rows) {
    std::snprintf(line, sizeof line,
                  "%-18s %10.4f %9.4f %10.4f %9.1f%% %10.2f %11.2f %11.1f %10.1f %12s\n",
                  r.name.c_str(), r.train_loss, r.val_loss, r.sink_mass, r.sink_rate, r.var_ratio,
                  r.var_ratio_normed, r.disparity, r.super_x, format_count(r.tokens_per_s).c_str());
    out << line;
  }
  out << "sink mass: attention on key 0 (mean over layers, heads, queries t>=1); var_ratio: "
         "position-0 variance of the attention output over the rest (mean over layers; * after "
         "head-wise RMSNorm); disparity: max over layers of max|x0|/mean|x0|; super x: max over "
         "layers of the first-token super-neuron activation over the median.\n";
  // Metrics taken (the disparity is there) but no super x: no median at the last metrics step.
  std::string without_median;
  for (const ComparisonRow& r : rows)
    if (std::isnan(r.super_x) && !std::isnan(r.disparity))
      without_median += (without_median.empty() ? "" : ", ") + r.name;
  if (!without_median.empty())
    out << "super x is nan for " << without_median
        << ": no median at the last metrics step (metrics.order_statistics: false, or a median "
           "of 0); the final evaluation's record in metrics.jsonl has super_ratio.\n";
  return out.str();
}

}  // namespace sinklab::train
