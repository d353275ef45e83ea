#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>

#include <atomic>
#include <csignal>
#include <unistd.h>

#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/runtime.h"
#endif
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/precision.h"
#include "core/random.h"
#include "ops/cpu/blas_gemm.h"
#include "ops/elementwise.h"
#include "train/data_loader.h"
#include "train/model.h"
#include "train/optimizer.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/sampler.h"
#include "train/tokenizer.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr uint64_t kTrainStream = 1, kValStream = 2, kSampleStream = 3;

using Clock = std::chrono::steady_clock;

// Set by SIGINT/SIGTERM (a cluster pre-empting the job); the loop checkpoints and returns.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// SINKLAB_PROFILE=1: the device is synchronised at every phase boundary of a step (forward,
// backward, optimizer, metrics) and the time of each phase is summed per variant and printed at
// the end. Off by default: the synchronisations cost a little.
class PhaseClock {
 public:
  PhaseClock(std::map<std::string, double>& totals, Device device)
      : totals_(totals), device_(device), last_(Clock::now()) {}
  static bool enabled() {
    static const bool on = std::getenv("SINKLAB_PROFILE") != nullptr;
    return on;
  }
  void mark(const char* phase) {
    if (!enabled()) return;
#if defined(SINKLAB_HAVE_CUDA)
    if (device_.is_cuda()) cuda::synchronize();
#endif
    const auto now = Clock::now();
    totals_[phase] += 1000.0 * std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  std::map<std::string, double>& totals_;
  Device device_;
  Clock::time_point last_;
};

// A step's sink metrics. Made at the end of the forward whose capture they read (on a GPU that
// marks where the side stream will start), queued once the backward is queued (the host queues
// the backward first, so the compute stream never waits for the host's metrics work): on a GPU
// they run on the side stream while the compute stream works through that backward and the
// update (low priority, in the SMs the training kernels leave idle); the host reads them at the
// step's end. The backward writes no captured activation. On the CPU they are computed where
// they are queued. The compute stream waits for the side work before anything it read or made
// can be freed.
class OverlappedMetrics {
 public:
  explicit OverlappedMetrics(Device device) : device_(device) {
#if defined(SINKLAB_HAVE_CUDA)
    if (device_.is_cuda()) start_.emplace(cuda::mark_side_stream_start());
#endif
  }
  ~OverlappedMetrics() {  // no throw while unwinding from another error: report and go on
    try {
      join();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sinklab: joining the metrics' stream failed: %s\n", e.what());
    }
  }
  OverlappedMetrics(const OverlappedMetrics&) = delete;
  OverlappedMetrics& operator=(const OverlappedMetrics&) = delete;

  void queue(const ForwardCapture& capture) {
#if defined(SINKLAB_HAVE_CUDA)
    if (device_.is_cuda()) {
      joined_ = false;  // before queueing: whatever got queued is joined, even on a throw
      cuda::SideStreamScope side(*start_);
      queued_ = queue_sink_metrics(capture);
      return;
    }
#endif
    queued_ = queue_sink_metrics(capture);
  }

  SinkMetrics finish(double sink_threshold, RankExchange* ranks) {
    join();
    return finish_sink_metrics(std::move(queued_), sink_threshold, false, ranks);
  }

 private:
  void join() {
#if defined(SINKLAB_HAVE_CUDA)
    if (device_.is_cuda() && !joined_) cuda::join_side_stream();
#endif
    joined_ = true;
  }
  Device device_;
#if defined(SINKLAB_HAVE_CUDA)
  std::optional<cuda::SideStreamStart> start_;  // the end of the forward the metrics read
#endif
  QueuedSinkMetrics queued_;
  bool joined_ = true;  // nothing queued yet
};

// Dense bf16 peak of the device in TFLOP/s (0 when unknown: the CPU, unlisted GPUs).
double peak_tflops(Device device) {
#if defined(SINKLAB_HAVE_CUDA)
  if (device.is_cuda()) return cuda::peak_bf16_tflops();
#endif
  (void)device;
  return 0.0;
}

// MiB in use: the GPU pool's tensors, or the process's resident set on the CPU.
double memory_in_use_mib(Device device) {
  (void)device;  // only read where CUDA is built
#if defined(SINKLAB_HAVE_CUDA)
  if (device.is_cuda()) return cuda::memory_in_use_mib();
#endif
  std::ifstream statm("/proc/self/statm");
  double pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return kNaN;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

uint64_t hash_tokens(uint64_t h, const Tensor& ids) {
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i) {
    h ^= static_cast<uint32_t>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

// Writes text to path atomically (temporary file, then rename).
void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    SINKLAB_CHECK(out.good(), IOError, "cannot write " << tmp, "check permissions and disk space");
    out << text;
    out.flush();
    SINKLAB_CHECK(out.good(), IOError, "failed writing " << tmp, "check disk space");
  }
  fs::rename(tmp, path);
}

std::unique_ptr<Tokenizer> tokenizer_for(const DataSection& data) {
  if (data.tokenizer == "byte") return make_byte_tokenizer();
  const std::string path = data.tokenizer.empty() ? data.dir + "/tokenizer.json" : data.tokenizer;
  SINKLAB_CHECK(fs::exists(path), IOError,
                "tokenizer file " << path << " does not exist (data.tokenizer)",
                "run `sinklab prepare <config>` first, or set data.tokenizer: byte");
  return load_tokenizer(path);
}

double mean_layer(const SinkMetrics& m, double (*get)(const LayerMetrics&)) {
  double s = 0;
  for (const auto& l : m.layers) s += get(l);
  return m.layers.empty() ? kNaN : s / m.layers.size();
}

double max_layer(const SinkMetrics& m, double (*get)(const LayerMetrics&)) {
  double s = -std::numeric_limits<double>::infinity();
  for (const auto& l : m.layers) s = std::max(s, get(l));
  return m.layers.empty() ? kNaN : s;
}

double mean_sink_mass(const LayerMetrics& l) {
  double s = 0;
  for (double v : l.sink_mass) s += v;
  return l.sink_mass.empty() ? kNaN : s / l.sink_mass.size();
}

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

}  // namespace

struct Run::Variant {
  std::string name;
  RunConfig config;
  std::string dir;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<GPT> model;
  std::unique_ptr<AdamW> optimizer;
  bool zero1 = false;  // AdamW moments sharded over the ranks (optim.zero1, world size > 1)
  std::unique_ptr<DataLoader> train_data, val_data;
  std::unique_ptr<MetricsLog> log;
  std::vector<double> recent_losses;
  double tokens_per_s_sum = 0;
  int64_t timed_steps = 0;
  double last_val = kNaN;
  StepRecord last_sink;
  std::string sample;
  int64_t accumulation = 1;
  int64_t skipped_in_a_row = 0;
  std::map<std::string, double> phase_ms;  // SINKLAB_PROFILE: ms per phase, summed over steps
  int64_t profiled_steps = 0;
};

Run::Run(const RunConfig& config, std::ostream& console, RunOptions options)
    : base_(config), console_(console), options_(std::move(options)) {
  std::vector<VariantSpec> specs = base_.variants;
  if (specs.empty()) specs.push_back({"main", {}});
  set_cuda_precision(resolved_precision(base_.run));
  parallel_ = std::make_unique<DataParallel>(options_.launch, parse_device(base_.run.device));
  const bool writer = parallel_->writer();  // only rank 0 writes files
  if (writer) {
    fs::create_directories(folder());
    write_file_atomic(folder() + "/config.yaml", to_yaml(base_));
  }
  for (const VariantSpec& spec : specs) {
    if (!options_.only_variants.empty() &&
        std::find(options_.only_variants.begin(), options_.only_variants.end(), spec.name) ==
            options_.only_variants.end())
      continue;
    auto v = std::make_unique<Variant>();
    v->name = spec.name;
    v->config = apply_variant(base_, spec);
    RunConfig& c = v->config;
    v->dir = folder() + "/" + spec.name;
    if (writer) fs::create_directories(v->dir);
    v->tokenizer = tokenizer_for(c.data);
    if (c.model.vocab_size == 0) {
      const int64_t m = std::max<int64_t>(1, c.model.vocab_multiple);
      c.model.vocab_size = (v->tokenizer->vocab_size() + m - 1) / m * m;
    }
    const int64_t B = c.train.batch_size, T = c.model.block_size;
    v->train_data = std::make_unique<DataLoader>(DataLoader::from_files(
        c.data.dir, c.data.train_pattern, B, T, c.run.seed, kTrainStream, c.data.window_stride));
    v->val_data = std::make_unique<DataLoader>(DataLoader::from_files(
        c.data.dir, c.data.val_pattern, B, T, c.run.seed, kValStream, c.data.window_stride));
    const int32_t max_token = std::max(v->train_data->max_token(), v->val_data->max_token());
    SINKLAB_CHECK(max_token < c.model.vocab_size, ConfigError,
                  "token id " << max_token << " in " << c.data.dir
                              << " does not fit model.vocab_size " << c.model.vocab_size
                              << " (" << c.source_file << ")",
                  "set model.vocab_size to 0 (from the tokenizer) or re-run sinklab prepare");
    if (writer) write_file_atomic(v->dir + "/config.yaml", to_yaml(c));
    const Device device = parse_device(c.run.device);
    SINKLAB_CHECK(resolved_precision(c.run) == resolved_precision(base_.run), ConfigError,
                  "variant " << v->name << " sets run.precision to " << c.run.precision
                             << " but the run uses " << base_.run.precision << " ("
                             << c.source_file << ")",
                  "the precision is one per process: set run.precision at the top level only");
    v->model = std::make_unique<GPT>(c.model, c.run.seed, DType::F32, device);
    // ZeRO-1: each rank keeps the AdamW moments of its shard only (one process: all of them).
    const bool zero1 = c.optim.zero1 && parallel_->world_size() > 1;
    v->zero1 = zero1;  // one decision for every rank (a tiny model's shards can be empty)
    const int64_t numel = v->model->params().numel();
    v->optimizer = std::make_unique<AdamW>(
        v->model->params(), c.optim, zero1 ? parallel_->optimizer_shard(numel) : Shard{});
    v->accumulation = accumulation_steps(c.train.tokens_per_step, B, T, parallel_->world_size());
    console_ << "variant " << v->name << ": " << c.model.arch << " " << c.model.n_layer << "x"
             << c.model.n_embd << " (" << c.model.n_head << " heads, T=" << T
             << ", V=" << c.model.vocab_size << "), attn_output_norm=" << c.model.attn_output_norm
             << ", " << format_count(static_cast<double>(v->model->params().numel()))
             << " parameters, "
             << format_count(B * T * v->accumulation * parallel_->world_size())
             << " tokens/step, train " << format_count(v->train_data->num_tokens())
             << " tokens, val " << format_count(v->val_data->num_tokens())
             << (zero1 ? ", AdamW moments sharded over the ranks (ZeRO-1)" : "") << "\n";
    variants_.push_back(std::move(v));
  }
  if (!parse_device(base_.run.device).is_cuda())
    console_ << "CPU matmuls: " << cpu::cpu_gemm_description() << "\n";
  SINKLAB_CHECK(!variants_.empty(), ConfigError,
                "no variant selected in " << base_.source_file,
                "check the variant names given on the command line");
  if (!options_.resume.empty()) resume_from_checkpoints();
  for (auto& vp : variants_) {  // metric files continue from the resumed step (no duplicates)
    if (!writer) break;
    Variant& v = *vp;
    const RunConfig& c = v.config;
    v.log = std::make_unique<MetricsLog>(v.dir, c.model.n_layer, c.model.n_head,
                                         c.model.block_size, c.metrics.jsonl, c.metrics.hdf5,
                                         options_.resume.empty() ? -1 : start_step_);
  }
}

std::string Run::checkpoint_dir(const Variant& v) const { return v.dir + "/ckpt"; }

namespace {
// The first model key whose value differs between two configs (shape-defining or not).
std::string first_model_difference(const ModelSection& a, const ModelSection& b) {
  if (a.arch != b.arch) return "model.arch";
  if (a.n_layer != b.n_layer) return "model.n_layer";
  if (a.n_head != b.n_head) return "model.n_head";
  if (a.n_embd != b.n_embd) return "model.n_embd";
  if (GPT::resolved_ffn_width(a) != GPT::resolved_ffn_width(b)) return "model.ffn_hidden";
  if (a.block_size != b.block_size) return "model.block_size";
  if (a.vocab_size != b.vocab_size) return "model.vocab_size";
  if (a.tie_embeddings != b.tie_embeddings) return "model.tie_embeddings";
  if (a.attn_output_norm != b.attn_output_norm) return "model.attn_output_norm";
  if (a.gamma_shared != b.gamma_shared) return "model.gamma_shared";
  return "";
}
}  // namespace

void Run::resume_from_checkpoints() {
  const bool automatic = options_.resume == "auto";
  SINKLAB_CHECK(automatic || variants_.size() == 1, ConfigError,
                "--resume " << options_.resume << " names one file but the run has "
                            << variants_.size() << " variants",
                "use --resume auto (each variant resumes from its own ckpt/ folder), or "
                "--variant NAME");
  // Lockstep: every variant resumes at the same step, the newest one all of them have.
  std::vector<std::string> paths;
  int64_t common = -1;
  for (auto& vp : variants_) {
    std::string path = automatic ? find_latest_good_checkpoint(checkpoint_dir(*vp), console_)
                                 : options_.resume;
    if (path.empty()) {
      console_ << "resume auto: no checkpoint in " << checkpoint_dir(*vp) << "; starting fresh\n";
      common = 0;
    } else {
      const int64_t step = read_checkpoint_state(path).step;
      common = common < 0 ? step : std::min(common, step);
    }
    paths.push_back(path);
  }
  if (common <= 0) return;
  for (size_t i = 0; i < variants_.size(); ++i) {
    Variant& v = *variants_[i];
    std::string path = paths[i];
    if (read_checkpoint_state(path).step != common) path = checkpoint_path(checkpoint_dir(v), common);
    TrainState peek = read_checkpoint_state(path);
    RunConfig saved = parse_config(peek.config_yaml, path + " (saved config)");
    const std::string key = first_model_difference(saved.model, v.config.model);
    SINKLAB_CHECK(key.empty(), ConfigError,
                  "checkpoint " << path << " was trained with a different " << key
                                << " than " << base_.source_file << " gives variant " << v.name,
                  "resume with the config the checkpoint was written with (its config is stored "
                  "in the file and in " + v.dir + "/config.yaml)");
    TrainState state;
    if (v.zero1) {  // ZeRO-1: read whole moments (on the host), keep this rank's shard
      AdamW whole = AdamW::on_host(v.model->params(), v.config.optim);
      state = load_checkpoint(path, v.model->params(), whole);
      const Shard& shard = v.optimizer->shard();
      v.optimizer->m().copy_from(whole.m().narrow_view(0, shard.begin, shard.end - shard.begin));
      v.optimizer->v().copy_from(whole.v().narrow_view(0, shard.begin, shard.end - shard.begin));
      v.optimizer->set_steps_taken(whole.steps_taken());
    } else {
      state = load_checkpoint(path, v.model->params(), *v.optimizer);
    }
    v.train_data->set_cursor(state.train_cursor);
    v.skipped_in_a_row = state.nonfinite_in_a_row;
    console_ << "resumed " << v.name << " from " << path << " at step " << state.step << "\n";
  }
  start_step_ = common;
}

void Run::save_checkpoints(int64_t steps_done) {
  for (auto& vp : variants_) {
    Variant& v = *vp;
    // Checkpoints hold whole moments: under ZeRO-1 every rank takes part in gathering them.
    const std::unique_ptr<AdamW> whole = whole_optimizer(v);
    if (!parallel_->writer()) continue;  // the weights are identical on every rank
    const CheckpointSection& ck = v.config.checkpoint;
    const std::string dir = checkpoint_dir(v);
    fs::create_directories(dir);
    TrainState state;
    state.step = steps_done;
    state.train_cursor = v.train_data->cursor();
    state.seed = v.config.run.seed;
    state.nonfinite_in_a_row = v.skipped_in_a_row;
    state.config_yaml = to_yaml(v.config);
    state.variant = v.name;
    state.world_size = parallel_->world_size();
    const std::string path = checkpoint_path(dir, steps_done);
    save_checkpoint(path, v.model->params(), whole ? *whole : *v.optimizer, state);
    write_latest_pointer(dir, path);  // the pointer moves only once the file is complete
    prune_checkpoints(dir, ck.keep_last, ck.keep_every);
    if (v.log) v.log->flush();
  }
}

std::unique_ptr<AdamW> Run::whole_optimizer(Variant& v) {
  if (!v.zero1) return nullptr;
  ParameterSet& params = v.model->params();
  // Whole moments on the host (the checkpoint writer copies there anyway): the device holds
  // one gathered buffer at a time.
  auto whole = std::make_unique<AdamW>(AdamW::on_host(params, v.config.optim));
  whole->m().copy_from(parallel_->gather_moments(v.optimizer->m(), params.numel()));
  whole->v().copy_from(parallel_->gather_moments(v.optimizer->v(), params.numel()));
  whole->set_steps_taken(v.optimizer->steps_taken());
  return whole;
}

Run::~Run() = default;

std::string Run::folder() const { return base_.run.out_dir + "/" + base_.run.name; }

void Run::step_all(int64_t step, bool evaluate_first) {
  for (auto& vp : variants_) {
    Variant& v = *vp;
    const RunConfig& c = v.config;
    // Validation before the update, so the record shows the model after `step` updates.
    Evaluation eval;
    if (evaluate_first) eval = evaluate(v, step, false);
    const auto t0 = Clock::now();
    const bool metrics_step = c.metrics.every > 0 && step % c.metrics.every == 0;
    StepRecord record;
    record.step = step;
    record.lr = learning_rate(c.optim, c.train.steps, step);
    ParameterSet& params = v.model->params();
    params.zero_grad();
    ForwardCapture capture;
    std::optional<OverlappedMetrics> metrics;
    PhaseClock clock(v.phase_ms, v.model->params().flat_values().device());
    double loss_sum = 0;
    uint64_t hash = 1469598103934665603ull;
    for (int64_t micro = 0; micro < v.accumulation; ++micro) {
      Batch batch = v.train_data->next_slice(parallel_->rank(), parallel_->world_size());
      hash = hash_tokens(hash, batch.inputs);
      autograd::restart_forward_profile();
      ForwardResult out = v.model->forward(batch.inputs, batch.targets,
                                           metrics_step && micro == 0 ? &capture : nullptr);
      if (metrics_step && micro == 0) metrics.emplace(params.flat_values().device());
      loss_sum += out.loss.item();
      clock.mark("forward");
      // The last backward of the step reduces gradient buckets across ranks as it goes.
      const bool last = micro + 1 == v.accumulation;
      if (last) parallel_->start_gradient_reduction(params);
      autograd::backward(ops::scale(out.loss, 1.0 / static_cast<double>(v.accumulation)));
      if (metrics_step && micro == 0) metrics->queue(capture);
      if (last) parallel_->finish_gradient_reduction(params);
      clock.mark("backward");
    }
    record.batch_hash = hash;
    record.loss = parallel_->average(loss_sum / static_cast<double>(v.accumulation));
    record.grad_norm = global_grad_norm(params);
    record.skipped = !std::isfinite(record.loss) || !std::isfinite(record.grad_norm);
    if (!record.skipped) {
      clip_gradients(params, record.grad_norm, c.optim.grad_clip);
      v.optimizer->step(params, record.lr);
      if (v.zero1) parallel_->gather_parameter_shards(params);
    }
    clock.mark("grad norm, clip, AdamW");
    if (metrics_step) {
      // Every rank's slice of the batch: the metrics of the global batch, on every rank.
      record.sink = metrics->finish(c.metrics.sink_threshold,
                                    parallel_->world_size() > 1 ? parallel_.get() : nullptr);
      record.has_sink = true;
      for (size_t l = 0; l < eval.effective_rank.size(); ++l)
        record.sink.layers[l].effective_rank = eval.effective_rank[l];
      v.last_sink = record;
      clock.mark("sink metrics");
    }
    ++v.profiled_steps;
    record.step_ms = 1000.0 * seconds_since(t0);
    const double tokens = static_cast<double>(c.train.batch_size * c.model.block_size *
                                              v.accumulation * parallel_->world_size());
    record.tokens_per_s = tokens / (record.step_ms / 1000.0);  // metrics included: they cost
    const Device device = params.flat_values().device();
    const double peak = peak_tflops(device);
    record.mfu = peak > 0 ? record.tokens_per_s * v.model->flops_per_token(c.model.block_size) /
                                (peak * 1e12)
                          : kNaN;
    record.memory_mib = memory_in_use_mib(device);
    record.val_loss = evaluate_first ? eval.loss : kNaN;
    if (step > 0) {
      v.tokens_per_s_sum += record.tokens_per_s;
      ++v.timed_steps;
    }
    v.recent_losses.push_back(record.loss);
    if (v.recent_losses.size() > 10) v.recent_losses.erase(v.recent_losses.begin());
    v.skipped_in_a_row = record.skipped ? v.skipped_in_a_row + 1 : 0;
    if (record.skipped)
      console_ << "step " << step << " " << v.name << ": non-finite loss (" << record.loss
               << ") or grad norm (" << record.grad_norm << "), update skipped ("
               << v.skipped_in_a_row << " in a row, limit train.max_skipped_steps = "
               << c.train.max_skipped_steps << ")\n";
    const bool log_line = c.train.log_every > 0 &&
                          (step % c.train.log_every == 0 || step + 1 == c.train.steps);
    if (log_line) {
      char line[320];
      std::snprintf(line, sizeof line,
                    "step %5lld/%lld | %-16s | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %s "
                    "tok/s",
                    static_cast<long long>(step + 1), static_cast<long long>(c.train.steps),
                    v.name.c_str(), record.loss, record.lr, record.grad_norm, record.step_ms,
                    format_count(record.tokens_per_s).c_str());
      console_ << (options_.progress_bar ? "\r\033[K" : "") << line;
      if (std::isfinite(record.mfu)) {
        std::snprintf(line, sizeof line, " | MFU %.1f%% | %.1f GiB", 100 * record.mfu,
                      record.memory_mib / 1024);
        console_ << line;
      }
      if (record.has_sink) {
        std::snprintf(line, sizeof line, " | sink %.3f | var_ratio %.2f | disparity %.1f",
                      mean_layer(record.sink, mean_sink_mass),
                      mean_layer(record.sink, [](const LayerMetrics& l) { return l.var_ratio; }),
                      max_layer(record.sink,
                                [](const LayerMetrics& l) { return l.dim_disparity; }));
        console_ << line;
      }
      console_ << "\n";
    }
    if (v.log) v.log->write(record);
  }
  console_ << std::flush;  // line by line also when piped (tee, a cluster log)
}

Run::Evaluation Run::evaluate(Variant& v, int64_t step, bool final) {
  const RunConfig& c = v.config;
  autograd::NoGradGuard no_grad;
  v.val_data->set_cursor(0);  // the same validation batches at every evaluation
  double total = 0;
  ForwardCapture capture;
  for (int64_t i = 0; i < c.train.eval_batches; ++i) {
    Batch batch = v.val_data->next();
    total += v.model->forward(batch.inputs, batch.targets, i == 0 ? &capture : nullptr)
                 .loss.item();
  }
  Evaluation eval;
  eval.loss = total / static_cast<double>(std::max<int64_t>(1, c.train.eval_batches));
  v.last_val = eval.loss;
  // Sink metrics of the first validation batch, with the (costly) effective rank.
  eval.metrics = compute_sink_metrics(capture, c.metrics.sink_threshold, true);
  for (const LayerMetrics& l : eval.metrics.layers) eval.effective_rank.push_back(l.effective_rank);
  char line[200];
  std::snprintf(line, sizeof line, "step %5lld/%lld | %-16s | val loss %.4f | eff. rank %.1f",
                static_cast<long long>(step), static_cast<long long>(c.train.steps),
                v.name.c_str(), eval.loss,
                mean_layer(eval.metrics, [](const LayerMetrics& l) { return l.effective_rank; }));
  console_ << (options_.progress_bar ? "\r\033[K" : "") << line << "\n";
  const bool sample = final || (c.train.sample_every > 0 && step % c.train.sample_every == 0);
  if (sample && c.train.sample_tokens > 0) {
    std::vector<int32_t> prompt(
        v.val_data->tokens().begin(),
        v.val_data->tokens().begin() + std::min<int64_t>(8, v.val_data->num_tokens()));
    std::vector<int32_t> out =
        sample_tokens(*v.model, prompt, c.train.sample_tokens, c.train.sample_temperature,
                      c.run.seed, rng_stream_id({kSampleStream, static_cast<uint64_t>(step)}));
    v.sample = v.tokenizer->decode(out);
    console_ << "  sample (" << v.name << "): " << v.sample << "\n";
  }
  return eval;
}

void Run::finish(int64_t steps) {
  for (auto& vp : variants_) {
    Variant& v = *vp;
    Evaluation eval = evaluate(v, steps, true);
    StepRecord record;  // after the last update: validation only
    record.step = steps;
    record.val_loss = eval.loss;
    record.loss = record.lr = record.grad_norm = record.tokens_per_s = record.step_ms =
        record.mfu = record.memory_mib = kNaN;
    record.has_sink = v.config.metrics.every > 0;
    record.sink = eval.metrics;
    if (v.log) {
      v.log->write(record);
      v.log->flush();
    }
  }
}

std::vector<VariantSummary> Run::train() {
  const int64_t steps = base_.train.steps;
  const auto t0 = Clock::now();
  g_stop_signal.store(0);
  auto previous_int = std::signal(SIGINT, on_stop_signal);
  auto previous_term = std::signal(SIGTERM, on_stop_signal);
  struct RestoreSignals {
    decltype(previous_int) i, t;
    ~RestoreSignals() {
      std::signal(SIGINT, i);
      std::signal(SIGTERM, t);
    }
  } restore{previous_int, previous_term};
  end_ = RunEnd::Finished;
  for (int64_t step = start_step_; step < steps; ++step) {
    const int64_t every = base_.train.eval_every;
    step_all(step, every > 0 && step > 0 && step % every == 0);
    const int64_t done_steps = step + 1;
    for (auto& vp : variants_)
      if (vp->skipped_in_a_row >= vp->config.train.max_skipped_steps) end_ = RunEnd::TooManySkipped;
    // Every rank stops on the same step when any rank got the signal: the checkpoint save
    // below takes part in collectives (ZeRO-1) and the next step in the gradient all-reduce.
    if (parallel_->any(g_stop_signal.load() != 0, "stop-signal agreement"))
      end_ = RunEnd::Interrupted;
    if (options_.stop_after >= 0 && done_steps >= options_.stop_after && done_steps < steps)
      end_ = RunEnd::Stopped;
    const int64_t ck_every = base_.checkpoint.every;
    if (end_ != RunEnd::Finished || (ck_every > 0 && done_steps % ck_every == 0 && done_steps < steps))
      save_checkpoints(done_steps);
    if (end_ != RunEnd::Finished) {
      console_ << (options_.progress_bar ? "\r\033[K" : "")
               << (end_ == RunEnd::Interrupted  ? "interrupted by signal"
                   : end_ == RunEnd::Stopped    ? "stopped as asked (--stop-after)"
                                                : "too many non-finite steps in a row")
               << " after step " << done_steps << "; checkpoint written to " << folder()
               << "/<variant>/ckpt/; continue with --resume auto\n" << std::flush;
      return {};
    }
    if (options_.progress_bar) {
      const double done = static_cast<double>(step + 1 - start_step_) / (steps - start_step_);
      const double eta = seconds_since(t0) / done * (1 - done);
      const int width = 30, filled = static_cast<int>(done * width);
      console_ << "\r\033[K[" << std::string(filled, '#') << std::string(width - filled, '.')
               << "] " << static_cast<int>(100 * done) << "% step " << step + 1 << "/" << steps
               << " ETA " << format_duration(eta) << std::flush;
    }
  }
  finish(steps);
  save_checkpoints(steps);
  std::vector<VariantSummary> summaries;
  for (auto& vp : variants_) {
    Variant& v = *vp;
    if (v.log) v.log->flush();
    VariantSummary s;
    s.name = v.name;
    s.steps = steps;
    double sum = 0;
    for (double l : v.recent_losses) sum += l;
    s.final_loss = v.recent_losses.empty() ? kNaN : sum / v.recent_losses.size();
    s.val_loss = v.last_val;
    s.tokens_per_s = v.timed_steps ? v.tokens_per_s_sum / v.timed_steps : kNaN;
    s.last_metrics = v.last_sink;
    s.sample = v.sample;
    summaries.push_back(std::move(s));
  }
  print_summary(summaries);
  for (auto& vp : variants_) {
    if (!PhaseClock::enabled() || vp->profiled_steps == 0) continue;
    console_ << "profile " << vp->name << " (ms per step, device synchronised per phase):";
    for (const auto& [phase, ms] : vp->phase_ms)
      console_ << " " << phase << " " << std::fixed << std::setprecision(2)
               << ms / vp->profiled_steps;
    console_ << std::defaultfloat << "\n";
  }
  if (PhaseClock::enabled() && !variants_.empty() && variants_[0]->profiled_steps > 0) {
    int64_t steps_profiled = 0;
    for (auto& vp : variants_) steps_profiled += vp->profiled_steps;
    auto print_by_op = [&](const char* pass, const std::map<std::string, double>& totals) {
      std::vector<std::pair<double, std::string>> ops;
      for (const auto& [name, ms] : totals) ops.emplace_back(ms, name);
      std::sort(ops.rbegin(), ops.rend());
      console_ << "profile " << pass << " by op (ms per step, all variants):";
      for (const auto& [ms, name] : ops)
        console_ << " " << name << " " << std::fixed << std::setprecision(2) << ms / steps_profiled;
      console_ << std::defaultfloat << "\n";
    };
    print_by_op("forward", autograd::forward_profile());
    print_by_op("backward", autograd::backward_profile());
  }
  console_ << "wall time " << format_duration(seconds_since(t0)) << "; metrics in " << folder()
           << "/<variant>/metrics.{jsonl,h5}\n";
  return summaries;
}

void Run::print_summary(const std::vector<VariantSummary>& summaries) {
  console_ << "\n" << comparison_table(summaries);
}

std::string comparison_table(const std::vector<VariantSummary>& summaries) {
  std::ostringstream out;
  char line[400];
  std::snprintf(line, sizeof line, "%-18s %10s %9s %10s %10s %10s %11s %11s %10s %12s\n",
                "variant", "train loss", "val loss", "sink mass", "sink rate", "var_ratio",
                "var_ratio*", "disparity", "super x", "tok/s");
  out << line;
  for (const VariantSummary& s : summaries) {
    const SinkMetrics& m = s.last_metrics.sink;
    const bool have = s.last_metrics.has_sink;
    auto get = [&](double v) { return have ? v : kNaN; };
    std::snprintf(
        line, sizeof line, "%-18s %10.4f %9.4f %10.4f %9.1f%% %10.2f %11.2f %11.1f %10.1f %12s\n",
        s.name.c_str(), s.final_loss, s.val_loss, get(mean_layer(m, mean_sink_mass)),
        get(m.sink_rate),
        get(mean_layer(m, [](const LayerMetrics& l) { return l.var_ratio; })),
        get(mean_layer(m, [](const LayerMetrics& l) { return l.var_ratio_normed; })),
        get(max_layer(m, [](const LayerMetrics& l) { return l.dim_disparity; })),
        get(max_layer(m, [](const LayerMetrics& l) { return l.super_ratio; })),
        format_count(s.tokens_per_s).c_str());
    out << line;
  }
  out << "sink mass: attention on key 0 (mean over layers, heads, queries t>=1); var_ratio: "
         "position-0 variance of the attention output over the rest (mean over layers; * after "
         "head-wise RMSNorm); disparity: max over layers of max|x0|/mean|x0|; super x: max over "
         "layers of the first-token super-neuron activation over the median.\n";
  return out.str();
}

}  // namespace sinklab::train
