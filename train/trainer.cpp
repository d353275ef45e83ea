#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <utility>

#include <atomic>
#include <csignal>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/device_runtime.h"
#include "core/precision.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "train/fault_point.h"
#include "train/io/val_losses_file.h"
#include "core/random.h"
#include "ops/cpu/blas_gemm.h"
#include "ops/elementwise.h"
#include "train/data/batch_slice.h"
#include "train/data/data_loader.h"
#include "train/model.h"
#include "train/optimizer.h"
#include "train/phase_clock.h"
#include "train/paper_metrics.h"
#include "train/console.h"
#include "train/io/atomic_file.h"
#include "train/io/checkpoint.h"
#include "train/io/gemm_choices_file.h"
#include "train/dist/data_parallel.h"
#include "train/dist/handshake.h"
#include "train/process_settings.h"
#include "train/sampler.h"
#include "train/step_graph.h"
#include "train/data/tokenizer.h"
#include "train/data/tokenizer_spec.h"
#include "train/io/hf_weights.h"
#include "train/io/model_source.h"
#include "train/yaml_util.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr uint64_t kTrainStream = 1, kValStream = 2, kSampleStream = 3;
constexpr size_t kRecentLosses = 10;  // the summary's train loss: their mean

// Set by SIGINT/SIGTERM (a cluster pre-empting the job); the loop checkpoints and returns.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }
// Asked inside evaluation's batch loop and sampling's token loop too: with many eval batches or
// sample tokens they would otherwise hold a stop signal for as long as they run.
bool stop_requested() { return g_stop_signal.load() != 0; }

// The run keys that hold for the whole process (apply_process_settings, DataParallel): a
// variant may not set them apart from the run. run.precision is compared once resolved.
// run.cuda_graph is each variant's own graph, but a setting of how the steps run, like the
// rest: variants compared side by side run their steps the same way (README).
constexpr const char* kProcessKeys[] = {"run.attention_kernels", "run.profile", "run.bucket_mib",
                                        "run.collective_timeout_s", "run.bf16_gemm",
                                        "run.metrics_priority", "run.cpu_gemm",
                                        "run.gemm_epilogues", "run.bias_grad_columns",
                                        "run.gemm_search",
                                        "run.fused_cross_entropy",
                                        "run.fold_residual_grads", "run.rope_in_place",
                                        "run.bf16_branch_outputs",
                                        "run.fused_norm_param_grads",
                                        "run.flat_weight_operands",
                                        "run.head_norm_statistics", "run.sigmoid_row_sums",
                                        "run.one_pass_order_statistics", "run.deterministic",
                                        "run.release_forward_inputs",
                                        "run.metrics_exchange_on_side",
                                        "run.variant_placement", "run.cuda_graph"};

// A step's sink metrics. Made at the end of the forward whose capture they read (on a GPU that
// marks where the side stream will start), queued once the backward is queued (the host queues
// the backward first, so the compute stream never waits for the host's metrics work): on a GPU
// they run on the side stream while the compute stream works through that backward and the
// update (low priority, in the SMs the training kernels leave idle); the host reads them at the
// step's end, on the side stream (waiting for them alone, not for the update). The backward
// writes no captured activation. On the CPU they are computed where they are queued. The
// compute stream waits for the side work before anything it read or made can be freed.
class OverlappedMetrics {
 public:
  explicit OverlappedMetrics(Device device)
      : runtime_(device_runtime(device)), start_(runtime_.mark_side_start()) {}
  ~OverlappedMetrics() {  // no throw while unwinding from another error: report and go on
    try {
      join();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sinklab: joining the metrics' stream failed: %s\n", e.what());
    }
  }
  OverlappedMetrics(const OverlappedMetrics&) = delete;
  OverlappedMetrics& operator=(const OverlappedMetrics&) = delete;

  // order_statistics: metrics.order_statistics.
  void queue(const ForwardCapture& capture, bool order_statistics) {
    joined_ = false;  // before queueing: whatever got queued is joined, even on a throw
    runtime_.run_on_side(*start_,
                         [&] { queued_ = queue_sink_metrics(capture, order_statistics); });
  }

  // The results come to the host on the side queue, so the host waits for the metrics alone
  // and finishes them while the update queued on the main queue still runs. Fetched on the main
  // queue, the host had waited for the update too, and the device then idled while the host
  // finished the metrics and queued the next step: 2.1% of GPT-2's tokens/s and 2.4% of
  // LLaMA's with head-wise RMSNorm on an H100 (docs/PERFORMANCE.md, twenty-second session).
  // The ranks of a data-parallel job exchange the results on the compute stream, where the
  // host waits for the update, unless exchange_on_side (run.metrics_exchange_on_side, off
  // until measured on several GPUs): then on the side stream too. By then no other collective
  // is in flight (the gradients' reduction and ZeRO-1's gathers were waited for).
  SinkMetrics finish(double sink_threshold, RankExchange* ranks, bool exchange_on_side) {
    if (!joined_)
      runtime_.run_on_side(*start_,
                           [&] { fetch_sink_metrics(queued_, exchange_on_side ? ranks : nullptr); });
    join();
    return finish_sink_metrics(std::move(queued_), sink_threshold, false, ranks);
  }

 private:
  void join() {
    if (!joined_) runtime_.join_side();
    joined_ = true;
  }
  DeviceRuntime& runtime_;
  std::unique_ptr<DeviceRuntime::SideMark> start_;  // the end of the forward the metrics read
  QueuedSinkMetrics queued_;
  bool joined_ = true;  // nothing queued yet
};

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
  std::vector<double> last_val_losses;  // (eval_batches) the last evaluation's, batch by batch
  uint64_t last_val_hash = 0;           // hash_tokens over those batches' inputs
  StepRecord last_sink;
  std::string resumed_from;  // the checkpoint file this variant resumed from ("" when fresh)
  std::string sample;
  int64_t accumulation = 1;
  int64_t skipped_in_a_row = 0;
  std::map<std::string, double> phase_ms;  // run.profile: ms per phase, summed over steps
  int64_t profiled_steps = 0;
  std::unique_ptr<StepGraph> graph;  // run.cuda_graph: the step's recordings
  int64_t eager_steps = 0;  // steps this process ran without the recording (one comes first)
};

namespace {
// dir (below run.out_dir) and its parents, or an IOError that names run.out_dir.
void create_run_folder(const std::string& dir, const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SINKLAB_CHECK(!ec, IOError,
                "cannot create the run's folder " << dir << " (run.out_dir " << out_dir
                                                  << "): " << ec.message(),
                "set run.out_dir to a folder you can write (a path, not a file)");
}

// The variants a run trains, in config order: all of them, or those --variant names ("main"
// alone when the config lists none).
std::vector<VariantSpec> selected_specs(const RunConfig& config,
                                        const std::vector<std::string>& only) {
  std::vector<VariantSpec> specs = config.variants;
  if (specs.empty()) specs.push_back({"main", {}});
  // A name that matches none (a typo) would train the others without a word.
  std::vector<std::string> known;
  for (const VariantSpec& spec : specs) known.push_back(spec.name);
  const std::string names = yaml_util::join(known, ", ");
  for (const std::string& name : only) {
    SINKLAB_CHECK(std::find(known.begin(), known.end(), name) != known.end(),
                  ConfigError,
                  "--variant " << name << ": " << config.source_file << " has no variant of that "
                               << "name (its variants: " << names << ")",
                  "pass one of " + names);
  }
  std::erase_if(specs, [&](const VariantSpec& spec) {
    return !only.empty() && std::find(only.begin(), only.end(), spec.name) == only.end();
  });
  return specs;
}
}  // namespace

Run::Run(const RunConfig& config, std::ostream& console, RunOptions options)
    : base_(config),
      options_(std::move(options)),
      selected_(selected_specs(config, options_.only_variants)),
      groups_(place_variants(options_.launch, static_cast<int>(selected_.size()),
                             config.run.variant_placement)),
      console_(groups_.group_env.rank == 0 ? console : quiet_,
               options_.progress_bar && options_.launch.rank == 0) {
  std::vector<VariantSpec> specs = selected_;
  if (groups_.split) specs = {selected_[groups_.group]};  // this rank's group trains one variant
  apply_process_settings(base_.run);
  if (parse_device(base_.run.device).is_cuda())
    console_.stream() << "attention: " << ops::attention_kernels_description() << "\n";
  if (asks_gemm_search() && !searches_gemms()) {
    // Each rank would choose by its own timings (the step waits for the slowest anyway), and
    // neither a second run nor a resume could multiply on every rank as the first did.
    ops::gemm_search = 0;
    console_.stream() << "run.gemm_search: off with several processes (each rank would choose "
                         "its own algorithms); the products take cuBLASLt's heuristic's first\n";
  }
  const DataParallelOptions reduction{base_.run.bucket_mib, base_.run.collective_timeout_s};
  // Every connection to rank 0 must carry this job's token (train/dist/handshake.h).
  LaunchEnv launch = groups_.group_env;
  launch.job_token = job_token(to_yaml(base_), launch);
  parallel_ = std::make_unique<DataParallel>(launch, parse_device(base_.run.device), reduction);
  if (groups_.split) {  // host values only (one agreement per step): TCP whatever the device
    LaunchEnv whole = options_.launch;
    whole.job_token = job_token(to_yaml(base_), whole);
    world_ = std::make_unique<DataParallel>(whole, Device::cpu(), reduction);
  }
  const bool writer = parallel_->writer();  // the group's rank 0 writes its variants' files
  if (options_.launch.rank == 0) create_run_folder(folder(), base_.run.out_dir);
  std::vector<MemoryEstimate> estimates;  // of the variants so far (one device holds them all)
  std::optional<ModelSource> init_source;  // --init-from, read once for every variant
  for (const VariantSpec& spec : specs) {
    auto v = std::make_unique<Variant>();
    v->name = spec.name;
    v->config = apply_variant(base_, spec);
    RunConfig& c = v->config;
    v->dir = folder() + "/" + spec.name;
    if (writer) create_run_folder(v->dir, base_.run.out_dir);
    v->tokenizer = open_data_tokenizer(c.data);  // samples are decoded with it
    if (c.model.vocab_size == 0) {
      const int64_t m = std::max<int64_t>(1, c.model.vocab_multiple);
      c.model.vocab_size = (v->tokenizer->vocab_size() + m - 1) / m * m;
    }
    {  // before anything large is allocated: every variant's model, optimizer and activations
      const Device device = parse_device(c.run.device);
      estimates.push_back(estimate_training_memory(c));
      estimated_bytes_ = side_by_side_bytes(estimates);
      check_fits_in_memory(c, estimated_bytes_,
                           device_runtime(device).memory_capacity_mib() * 1024.0 * 1024.0,
                           device.is_cpu() ? "this machine's RAM" : device.str(),
                           static_cast<int>(variants_.size()) + 1);
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
    const Device device = parse_device(c.run.device);
    SINKLAB_CHECK(resolved_precision(c.run) == resolved_precision(base_.run), ConfigError,
                  "variant " << v->name << " sets run.precision to "
                             << choice_text(c.run.precision) << " but the run uses "
                             << choice_text(base_.run.precision) << " ("
                             << c.source_file << ")",
                  "the precision is one per process: set run.precision at the top level only");
    for (const KeyDifference& d : differing_keys(base_, c, "run"))
      SINKLAB_CHECK(std::find(std::begin(kProcessKeys), std::end(kProcessKeys), d.key) ==
                        std::end(kProcessKeys),
                    ConfigError,
                    "variant " << v->name << " sets " << d.key << " to " << d.b
                               << " but the run uses " << d.a << " (" << c.source_file << ")",
                    d.key + " is one per process: set it at the top level only");
    v->model = std::make_unique<GPT>(c.model, c.run.seed, DType::F32, device);
    if (!options_.init_from.empty()) {  // the same weights for every variant; resume wins
      if (!init_source) init_source = load_model_source(options_.init_from);
      load_weights(v->model->params(), init_source->params, options_.init_from);
      console_.stream() << "variant " << v->name << ": weights from " << describe(*init_source)
                        << "\n";
    }
    // ZeRO-1: each rank keeps the AdamW moments of its shard only (one process: all of them).
    const bool zero1 = c.optim.zero1 && parallel_->world_size() > 1;
    v->zero1 = zero1;  // one decision for every rank (a tiny model's shards can be empty)
    const int64_t numel = v->model->params().numel();
    v->optimizer = std::make_unique<AdamW>(
        v->model->params(), c.optim, zero1 ? parallel_->optimizer_shard(numel) : Shard{});
    v->accumulation = accumulation_steps(c.train.tokens_per_step, B, T, parallel_->world_size());
    const std::string no_graph = StepGraph::unavailable_because(c, parallel_->world_size());
    if (no_graph.empty())
      v->graph = std::make_unique<StepGraph>(*v->model, *v->optimizer, v->accumulation,
                                             c.optim.grad_clip, logits_after_loss(c.run));
    else if (c.run.cuda_graph)
      console_.stream() << "variant " << v->name << ": cuda graph off: " << no_graph << "\n";
    console_.stream() << "variant " << v->name << ": " << choice_text(c.model.arch) << " "
             << c.model.n_layer << "x"
             << c.model.n_embd << " (" << c.model.n_head << " heads, T=" << T
             << ", V=" << c.model.vocab_size
             << "), attn_output_norm=" << choice_text(c.model.attn_output_norm)
             << ", " << format_count(static_cast<double>(v->model->params().numel()))
             << " parameters, "
             << format_count(B * T * v->accumulation * parallel_->world_size())
             << " tokens/step"
             << (parallel_->world_size() > 1  // the global batch: every rank's share
                     ? " over " + std::to_string(parallel_->world_size()) + " ranks (" +
                           format_count(B * T * v->accumulation) + " each" +
                           (c.train.tokens_per_step == 0
                                ? ": train.tokens_per_step 0 takes batch_size x block_size per "
                                  "rank"
                                : "") +
                           ")"
                     : "")
             << ", train " << format_count(v->train_data->num_tokens())
             << " tokens, val " << format_count(v->val_data->num_tokens())
             << (zero1 ? ", AdamW moments sharded over the ranks (ZeRO-1)" : "")
             << (groups_.split ? ", on " + describe_group(groups_) : "") << "\n";
    variants_.push_back(std::move(v));
  }
  const Device run_device = parse_device(base_.run.device);
  if (!run_device.is_cuda())
    console_.stream() << "CPU matmuls: " << cpu::cpu_gemm_description() << "\n";
  // A key that no step reads (kept so that the configs stored in checkpoints still read).
  if (base_.metrics.effective_rank_every != 0)
    console_.stream() << "warning: metrics.effective_rank_every is "
                      << base_.metrics.effective_rank_every
                      << " but nothing reads it: the effective ranks are computed at evaluation "
                         "steps (train.eval_every; metrics.rank_sequences sequences)\n";
  SINKLAB_CHECK(!variants_.empty(), ConfigError,
                "no variant selected in " << base_.source_file,
                "check the variant names given on the command line");
  if (run_device.is_cuda())  // before any side work
    device_runtime(run_device).set_side_priority(base_.run.metrics_priority);
  if (searches_gemms()) take_stored_gemm_choices();
  if (!options_.resume.empty()) {
    // Every rank agrees before anything is written: under run.variant_placement split each
    // group checks its own variant, and a group that refuses must leave the others' files too.
    std::exception_ptr refused;
    try {
      resume_from_checkpoints();
    } catch (const Error&) {
      refused = std::current_exception();
    }
    const bool any_refused = world().any(refused != nullptr, "resume acceptance");
    if (refused) std::rethrow_exception(refused);
    SINKLAB_CHECK(!any_refused, ConfigError,
                  "--resume: another rank's variant group refused the resume of " << folder(),
                  "its error (in that rank's output) names the reason");
  }
  // A fresh start (no checkpoint resumed, asked or not) begins the variants' files anew, with an
  // earlier run's files set aside: its metric files, and the checkpoints it left in ckpt/, which
  // a later --resume auto would otherwise take for this run's (and pruning would keep over this
  // run's own). A resume sets aside the checkpoints after its step, for the same reason.
  // Then the .tmp files a killed earlier process of this host left beside the files it wrote.
  if (writer) {
    if (options_.launch.rank == 0) remove_stale_tmp_files(folder());
    for (auto& vp : variants_) {
      if (resumed())
        retire_later_checkpoints(*vp);
      else
        retire_earlier_run(*vp);
      remove_stale_tmp_files(vp->dir);
    }
  }
  // The configs are written once the run is accepted: a refused resume leaves the folder's
  // files as the checkpoints' run wrote them (its error points the user there).
  if (options_.launch.rank == 0) write_file_atomic(folder() + "/config.yaml", to_yaml(base_));
  for (auto& vp : variants_) {  // metric files continue from the resumed step (no duplicates)
    if (!writer) break;
    Variant& v = *vp;
    const RunConfig& c = v.config;
    write_file_atomic(v.dir + "/config.yaml", to_yaml(c));
    v.log = std::make_unique<MetricsLog>(v.dir, c.model.n_layer, c.model.n_head,
                                         c.model.block_size, c.metrics.jsonl, c.metrics.hdf5,
                                         c.metrics.tensorboard, resumed() ? start_step_ : -1);
    // The summary's train loss (the mean of the last 10 steps' losses), tokens/s (the mean over
    // the steps after 0) and sink columns (the last metrics step's) take the steps before the
    // checkpoint from the file, so that a resumed run prints the uninterrupted run's.
    if (resumed() && c.metrics.jsonl) {
      LoggedSteps logged = read_logged_steps(v.dir, kRecentLosses);
      v.recent_losses = std::move(logged.recent_losses);
      v.tokens_per_s_sum = logged.tokens_per_s_sum;
      v.timed_steps = logged.timed_steps;
      v.last_sink = std::move(logged.last_sink);
    }
  }
}

void Run::retire_earlier_run(const Variant& v) {
  // An earlier run with checkpoints is a generation worth keeping, with its records: its
  // checkpoints (ckpt/), metric files, TensorBoard events and config. One without any (killed
  // before its first save, or a stray .tmp of an interrupted save) is not: its metric files
  // start anew as before, and the generation kept from the run before stays where it is.
  // A replaced.new/ left by a start that failed or was killed while setting a run aside stops
  // every later fresh start, whatever ckpt/ holds now (ckpt/ is the first thing it moves).
  const fs::path staged = v.dir + "/replaced.new";
  std::error_code exists_ec;
  SINKLAB_CHECK(!fs::exists(staged, exists_ec), IOError,
                staged.string() << " exists: an earlier start failed or was killed while moving "
                                   "an earlier run's files aside, and what it moved is there",
                "if it holds the whole earlier run (ckpt/ and its metric files), remove " +
                    v.dir + "/replaced and rename " + staged.string() +
                    " to it; otherwise move its files back into " + v.dir +
                    " (or away), remove it, and start again");
  if (!holds_checkpoints(checkpoint_dir(v))) return;
  std::vector<fs::path> items{checkpoint_dir(v)};
  std::error_code ec;
  for (const char* name : {"metrics.jsonl", "metrics.h5", "val_losses.json", "config.yaml"})
    if (fs::exists(v.dir + "/" + name, ec)) items.push_back(v.dir + "/" + name);
  for (const auto& entry : fs::directory_iterator(v.dir, ec))
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      items.push_back(entry.path());
  keep_generation(v, items);
}

void Run::retire_later_checkpoints(const Variant& v) {
  // Written after the step resumed from, by a continuation this run replaces: --resume auto
  // would take them (or fall back to them) for this run's. Renamed in place, beside the others
  // (same folder, same file system), to names no resume or pruning reads; nothing is deleted.
  std::vector<std::string> later;
  for (const auto& [step, path] : list_checkpoints(checkpoint_dir(v)))
    if (step > start_step_) later.push_back(path);
  if (later.empty()) return;
  // First `latest`, which may name one of them: the checkpoint resumed from when that is the
  // file ckpt/ holds for its step, else none (the list's newest is taken until the next save
  // writes it). A file of that name from another run (a resume from replaced/ or from an
  // .abandoned file) is not pointed at.
  const std::string at_step = checkpoint_path(checkpoint_dir(v), start_step_);
  std::error_code ec;
  if (fs::is_regular_file(at_step, ec) && fs::equivalent(at_step, v.resumed_from, ec) && !ec)
    write_latest_pointer(checkpoint_dir(v), at_step);
  else
    fs::remove(fs::path(checkpoint_dir(v)) / "latest", ec);
  std::vector<std::string> names;
  for (const std::string& path : later) {
    std::string to = path + ".abandoned";
    for (int n = 1; fs::exists(to, ec); ++n) to = path + ".abandoned." + std::to_string(n);
    fs::rename(path, to, ec);
    SINKLAB_CHECK(!ec, IOError,
                  "cannot rename " << path << " to " << to << ": " << ec.message(),
                  "check the permissions of " + checkpoint_dir(v) +
                      ", or move the checkpoints after step " + std::to_string(start_step_) +
                      " away by hand");
    names.push_back(fs::path(to).filename().string());
  }
  console_.stream() << "variant " << v.name << ": resumed at step " << start_step_
                    << ": the later checkpoints renamed in " << checkpoint_dir(v) << " ("
                    << yaml_util::join(names, ", ") << "), which no resume takes\n";
}

void Run::keep_generation(const Variant& v, const std::vector<fs::path>& items) {
  // One generation kept, in <variant>/replaced/. The new one is gathered in replaced.new/ first
  // (renames inside the variant's folder: ckpt/ moves as one entry, a link to another file
  // system included); only once it is whole is the one kept before removed and the new one
  // put in its place, so a failure on the way deletes nothing.
  const fs::path kept = v.dir + "/replaced", staged = v.dir + "/replaced.new";
  std::error_code ec;
  // (retire_earlier_run refused a replaced.new/ left before)
  fs::create_directories(staged, ec);
  SINKLAB_CHECK(!ec, IOError, "cannot create " << staged.string() << ": " << ec.message(),
                "check the run folder's permissions and free space");
  std::vector<std::string> names;
  for (const fs::path& item : items) {
    const fs::path to = staged / item.filename();
    fs::rename(item, to, ec);
    SINKLAB_CHECK(!ec, IOError,
                  "cannot move " << item.string() << " to " << to.string() << ": "
                                 << ec.message(),
                  "what moved so far is in " + staged.string() +
                      ": move it back into " + v.dir + ", remove " + staged.string() +
                      " and start again");
    names.push_back(item.filename().string());
  }
  fs::remove_all(kept, ec);
  SINKLAB_CHECK(!ec, IOError,
                "cannot remove the generation kept before, " << kept.string() << ": "
                                                             << ec.message(),
                "the earlier run's files are in " + staged.string() + "; remove " +
                    kept.string() + " and rename " + staged.string() + " to it");
  fs::rename(staged, kept, ec);
  SINKLAB_CHECK(!ec, IOError,
                "cannot rename " << staged.string() << " to " << kept.string() << ": "
                                 << ec.message(),
                "the earlier run's files are in " + staged.string());
  console_.stream() << "variant " << v.name << ": a fresh start: the earlier run's files ("
                    << yaml_util::join(names, ", ") << ") moved to " << kept.string()
                    << " (one generation kept; --resume auto would have taken its checkpoints)\n";
}

std::string Run::checkpoint_dir(const Variant& v) const { return v.dir + "/ckpt"; }

bool Run::asks_gemm_search() const {
  return base_.run.gemm_search > 1 && parse_device(base_.run.device).is_cuda();
}

bool Run::searches_gemms() const { return asks_gemm_search() && !options_.launch.distributed(); }

std::string Run::gemm_choices_folder() const { return variants_.front()->dir; }

void Run::take_stored_gemm_choices() {
  // The algorithms an earlier run in this folder chose on this library and card (a resume's
  // checkpoint, read after, has the last word where the two differ).
  const std::string library = ops::gemm_library();
  const std::string stored = read_stored_gemm_choices(gemm_choices_folder(), library);
  if (stored.empty()) return;
  const std::string path = gemm_choices_path(gemm_choices_folder(), library);
  const size_t taken = ops::use_gemm_choices(stored, path + " (remove it to search again)");
  if (taken > 0)
    console_.stream() << "gemm choices: " << taken << " product shapes from " << path
                      << " (run.gemm_search)\n";
}

namespace {
// The first model key whose value differs between a checkpoint's config and this run's: every
// key of the model section (the function trained, its shapes, the interventions) but those that
// only initialise (README "Checkpoints and resume"). Defaults resolved alike compare equal.
std::optional<KeyDifference> first_model_difference(const RunConfig& saved, const RunConfig& now) {
  for (KeyDifference& d : differing_keys(saved, now, "model")) {
    if (d.key == "model.init_std" || d.key == "model.gamma_init" ||
        d.key == "model.gamma_init_scale")
      continue;  // they only initialise weights, which the checkpoint replaces
    if (d.key == "model.ffn_hidden" &&
        GPT::resolved_ffn_width(saved.model) == GPT::resolved_ffn_width(now.model))
      continue;
    if (d.key == "model.norm_eps" &&
        GPT::resolved_norm_eps(saved.model) == GPT::resolved_norm_eps(now.model))
      continue;
    return std::move(d);
  }
  return std::nullopt;
}

// Keys that decide which batches a step sees: resumed with another value, the steps after the
// checkpoint would train on another run's batches (the data cursor counts windows of the saved
// size in the saved order).
// The global batch (sequences a step) is compared as resolved instead: a resume may change the
// micro-batch (train.batch_size) or the world size where train.tokens_per_step keeps it.
constexpr const char* kBatchKeys[] = {"run.seed", "data.window_stride", "data.train_pattern"};

// Sequences a step over every rank: the windows the data cursor advances by.
int64_t sequences_per_step(const RunConfig& c, int64_t world_size) {
  const TrainSection& t = c.train;
  return t.batch_size * world_size *
         accumulation_steps(t.tokens_per_step, t.batch_size, c.model.block_size, world_size);
}
}  // namespace

void Run::resume_from_checkpoints() {
  const bool automatic = options_.resume == "auto";
  SINKLAB_CHECK(automatic || selected_.size() == 1, ConfigError,
                "--resume " << options_.resume << " names one file but the run has "
                            << selected_.size() << " variants",
                "use --resume auto (each variant resumes from its own ckpt/ folder), or "
                "--variant NAME");
  // Lockstep: every variant resumes at the same step, the newest one all of them have.
  // Each state is read once (a read checks the whole file: 1.8 GB at the 152M shape), by the
  // search for the newest good one or for the named file, and kept for the resume below.
  std::vector<std::string> paths;  // (this rank's variants) its newest good checkpoint, or ""
  std::vector<TrainState> states;  // (this rank's variants) their newest's
  for (auto& vp : variants_) {
    std::optional<GoodCheckpoint> found =
        automatic ? latest_good_checkpoint(checkpoint_dir(*vp), console_.stream())
                  : GoodCheckpoint{options_.resume, read_checkpoint_state(options_.resume)};
    if (!found)
      console_.stream() << "resume auto: no checkpoint in " << checkpoint_dir(*vp) << "; starting fresh\n";
    paths.push_back(found ? found->path : std::string());
    states.push_back(found ? std::move(found->state) : TrainState{});
  }
  // (every selected variant) the step of its newest good checkpoint, -1 when it has none. Under
  // split each group knows its own variant only: the groups' first ranks tell theirs.
  std::vector<int64_t> newest;
  for (size_t i = 0; i < paths.size(); ++i) newest.push_back(paths[i].empty() ? -1 : states[i].step);
  if (groups_.split) {
    const std::vector<std::vector<double>> told =
        world().all_gather({static_cast<double>(newest.at(0))},
                           "resume agreement");  // (world size) x 1
    newest.clear();
    for (int g = 0; g < groups_.groups; ++g)
      newest.push_back(static_cast<int64_t>(told.at(groups_.leader_of(g)).at(0)));
  }
  // The step every variant resumes at: 0 (a fresh start) when one has no checkpoint.
  const int64_t common = std::max<int64_t>(0, *std::min_element(newest.begin(), newest.end()));
  // Lockstep from step 0 would cut the other variants' metrics and prune their checkpoints: when
  // some variants have checkpoints and some have none, refuse and say what would be lost.
  std::vector<std::string> missing, have;
  int64_t have_common = -1;  // the step the variants with checkpoints would resume at
  for (size_t i = 0; i < newest.size(); ++i) {
    if (newest[i] < 0) {
      missing.push_back(selected_[i].name);
      continue;
    }
    have_common = have_common < 0 ? newest[i] : std::min(have_common, newest[i]);
    have.push_back(selected_[i].name + " (step " + std::to_string(newest[i]) + ")");
  }
  if (!missing.empty() && !have.empty()) {
    const std::string& first_missing = missing.front();
    std::ostringstream missing_list, have_list;
    for (size_t i = 0; i < missing.size(); ++i) missing_list << (i ? ", " : "") << missing[i];
    for (size_t i = 0; i < have.size(); ++i) have_list << (i ? ", " : "") << have[i];
    SINKLAB_FAIL(ConfigError,
                 "--resume auto: variant(s) " << missing_list.str() << " of " << folder()
                     << " have no usable checkpoint, but " << have_list.str()
                     << " do: variants resume in lockstep, so going on would restart all of them "
                        "from step 0, cutting their metric files and pruning their checkpoints",
                 "train the variant(s) without one up to step " + std::to_string(have_common) +
                     " first (`sinklab train " + base_.source_file + " --variant " +
                     first_missing + " --stop-after " + std::to_string(have_common) +
                     "`: the same batches as in compare), resume only the others (`sinklab train " +
                     base_.source_file + " --variant NAME ... --resume auto`), or start every "
                     "variant afresh without --resume");
  }
  if (common <= 0) return;
  // Past the run's end, the final checkpoint would be written over the one at train.steps (with
  // these later weights) and the metrics would go on from an earlier step.
  SINKLAB_CHECK(common <= base_.train.steps, ConfigError,
                "--resume: the checkpoints of " << folder() << " are at step " << common
                                                << ", past train.steps " << base_.train.steps,
                "resume with train.steps of at least " + std::to_string(common) +
                    ", or start a new run (another run.name) from these weights with "
                    "--init-from");
  for (size_t i = 0; i < variants_.size(); ++i) {
    Variant& v = *variants_[i];
    std::string path = paths[i];
    TrainState& peek = states[i];
    const int64_t own = peek.step;  // this variant's newest
    if (own != common) {
      // Ahead of the others: its checkpoint at the common step, unless pruning took it.
      path = checkpoint_path(checkpoint_dir(v), common);
      std::error_code ec;
      std::ostringstream behind;  // the variants whose newest is the common step
      for (size_t j = 0; j < newest.size(); ++j)
        if (newest[j] == common) behind << (behind.tellp() > 0 ? ", " : "") << selected_[j].name;
      SINKLAB_CHECK(fs::exists(path, ec), ConfigError,
                    "--resume auto: variants resume in lockstep at step "
                        << common << ", the newest step every variant has (" << behind.str()
                        << " stop there), but variant " << v.name << " has no checkpoint at step "
                        << common << " (its newest is step " << own
                        << "; checkpoint.keep_last pruned the others)",
                    "train " + behind.str() + " up to step " + std::to_string(own) +
                        " first (`sinklab train " + base_.source_file + " --variant NAME "
                        "--resume auto --stop-after " + std::to_string(own) +
                        "`), or resume each variant alone (`sinklab train " + base_.source_file +
                        " --variant NAME --resume auto`)");
      peek = read_checkpoint_state(path);
    }
    RunConfig saved = parse_config(peek.config_yaml, path + " (saved config)");
    const std::optional<KeyDifference> diff = first_model_difference(saved, v.config);
    SINKLAB_CHECK(!diff, ConfigError,
                  "checkpoint " << path << " was trained with " << diff->key << " " << diff->a
                                << " but " << base_.source_file << " gives variant " << v.name
                                << " " << diff->key << " " << diff->b,
                  "resume with the config the checkpoint was written with (its config is stored "
                  "in the file and in " + v.dir + "/config.yaml)");
    // The keys of the sections that shape the batches, the updates and the records: those that
    // pick the batches are refused; the others (more steps, another lr) may change on purpose,
    // but the continuation is then not the uninterrupted run's, so they are named below.
    std::vector<KeyDifference> changed;
    for (const char* section : {"run", "train", "optim", "data", "metrics"})
      for (KeyDifference& d : differing_keys(saved, v.config, section)) {
        SINKLAB_CHECK(std::find(std::begin(kBatchKeys), std::end(kBatchKeys), d.key) ==
                          std::end(kBatchKeys),
                      ConfigError,
                      "checkpoint " << path << " was trained with " << d.key << " " << d.a
                                    << " but " << base_.source_file << " gives variant "
                                    << v.name << " " << d.key << " " << d.b
                                    << ": the steps after it would see another run's batches",
                      "resume with the value the checkpoint was written with (its config is "
                      "stored in the file and in " + v.dir + "/config.yaml), or start afresh");
        if (std::string(section) != "run") changed.push_back(std::move(d));
      }
    const int64_t saved_batch = sequences_per_step(saved, peek.world_size),
                  batch = sequences_per_step(v.config, parallel_->world_size());
    // Another world size alone is a deliberate relaunch (the ranks a machine has left): said,
    // not refused. The same keys giving another batch on the same ranks is a config's change.
    const bool same_keys = saved.train.batch_size == v.config.train.batch_size &&
                           saved.train.tokens_per_step == v.config.train.tokens_per_step;
    SINKLAB_CHECK(saved_batch == batch || same_keys, ConfigError,
                  "checkpoint " << path << " was trained on " << saved_batch
                                << " sequences a step (train.batch_size x ranks x accumulation) "
                                   "but variant " << v.name << " would take " << batch
                                << ": the steps after it would see another run's batches",
                  "resume with the checkpoint's train.tokens_per_step (or train.batch_size, "
                  "when tokens_per_step is 0), or start afresh");
    if (saved_batch != batch)
      console_.stream() << "resume " << v.name << ": " << batch << " sequences a step on "
                        << parallel_->world_size() << " rank(s); the checkpoint's run took "
                        << saved_batch << " on " << peek.world_size
                        << " (train.tokens_per_step keeps the global batch at any world size)\n";
    for (const KeyDifference& d : changed)
      console_.stream() << "resume " << v.name << ": " << d.key << " " << d.b
                        << " (the checkpoint's run: " << d.a << ")\n";
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
    // The algorithms the stopped process's products chose (one process, one set for every
    // variant): the same ones again, so that the continuation is bit for bit.
    if (i == 0 && searches_gemms()) ops::use_gemm_choices(state.gemm_choices, path);
    v.resumed_from = path;
    console_.stream() << "resumed " << v.name << " from " << path << " at step " << state.step << "\n";
  }
  start_step_ = common;
}

void Run::save_checkpoints(int64_t steps_done) {
  // The process's products: one set of run.gemm_search's choices for every variant ("" unless
  // it chose).
  const std::string gemm_choices = ops::gemm_choices();
  // And beside the run, for a fresh run of it in this folder (train/io/gemm_choices_file.h).
  if (searches_gemms()) store_gemm_choices(gemm_choices_folder(), gemm_choices);
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
    state.gemm_choices = gemm_choices;
    const std::string path = checkpoint_path(dir, steps_done);
    // The metrics up to this step reach the disk first: a crash after the checkpoint is durable
    // must not leave it newer than metrics.jsonl / metrics.h5 (resume cuts them back to it).
    if (v.log) v.log->flush();
    save_checkpoint(path, v.model->params(), whole ? *whole : *v.optimizer, state);
    write_latest_pointer(dir, path);  // the pointer moves only once the file is complete
    fault_point("checkpoint-durable");
    prune_checkpoints(dir, ck.keep_last, ck.keep_every);
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

RunEnd Run::agree_on_stop(bool signal, bool too_many_skipped) {
  // One collective a step: every rank's two flags.
  const std::vector<std::vector<double>> flags =
      world().all_gather({signal ? 1.0 : 0.0, too_many_skipped ? 1.0 : 0.0},
                         "stop agreement");  // (world size) x 2
  bool any_signal = false, any_skipped = false;
  for (const std::vector<double>& f : flags) {
    any_signal |= f.at(0) != 0;
    any_skipped |= f.at(1) != 0;
  }
  return any_signal ? RunEnd::Interrupted : any_skipped ? RunEnd::TooManySkipped : RunEnd::Finished;
}

std::vector<ComparisonRow> Run::every_row(const std::vector<VariantSummary>& own) {
  std::vector<ComparisonRow> rows;
  for (const VariantSummary& s : own) rows.push_back(comparison_row(s));
  if (!groups_.split) return rows;
  // Every rank sends its row (a group's ranks hold the same numbers); the leaders' are kept.
  const std::vector<std::vector<double>> told =  // (world size) x ComparisonRow::kNumbers
      world().all_gather(rows.at(0).numbers(), "comparison table all-gather");
  rows.clear();
  for (int g = 0; g < groups_.groups; ++g)
    rows.push_back(ComparisonRow::from_numbers(selected_[g].name, told.at(groups_.leader_of(g))));
  return rows;
}

std::vector<VariantSummary> Run::final_evaluations_on_disk(int64_t steps) const {
  std::vector<VariantSummary> out;
  for (const VariantSpec& spec : selected_) {
    const std::optional<ValLosses> file =
        read_val_losses(folder() + "/" + spec.name + "/val_losses.json");
    if (!file || file->step != steps) return {};  // pairs with the first variant only
    VariantSummary s;
    s.name = spec.name;
    s.val_loss = file->loss;
    s.val_losses = file->losses;
    s.val_batches_hash = file->batches_hash;
    out.push_back(std::move(s));
  }
  return out;
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
    // An evaluation step is a metrics step too: its effective ranks are written with the
    // step's sink metrics, and would be lost where train.eval_every is not a multiple of
    // metrics.every.
    const bool metrics_step =
        c.metrics.every > 0 && (step % c.metrics.every == 0 || evaluate_first);
    StepRecord record;
    record.step = step;
    record.lr = learning_rate(c.optim, c.train.steps, step);
    ParameterSet& params = v.model->params();
    params.zero_grad();
    ForwardCapture capture;
    std::optional<OverlappedMetrics> metrics;
    // run.profile: the time of each phase of a step (forward, backward, optimizer, metrics),
    // summed per variant and printed at the end. Off by default: the synchronisations cost.
    PhaseClock clock(c.run.profile, v.phase_ms, v.model->params().flat_values().device());
    double loss_sum = 0;
    uint64_t hash = kTokenHashStart;  // of the global batch: every rank's windows, in order
    std::vector<Batch> batches;  // (accumulation) this rank's micro-batches
    for (int64_t micro = 0; micro < v.accumulation; ++micro) {
      const uint64_t round = v.train_data->cursor();
      batches.push_back(v.train_data->next_slice(parallel_->rank(), parallel_->world_size()));
      if (parallel_->writer())  // only it records the hash
        hash = v.train_data->hash_windows(
            hash, round, static_cast<uint64_t>(c.train.batch_size * parallel_->world_size()));
    }
    record.batch_hash = hash;
    // run.cuda_graph: after one eager step, the steps without metrics replay their recordings
    // (train/step_graph.h): the micro-batches and the update, read back once.
    std::optional<StepGraph::Result> replayed;
    if (v.graph && !v.graph->given_up() && !metrics_step && v.eager_steps > 0) {
      const bool first = v.graph->replays() == 0;
      replayed = v.graph->run(batches, record.lr);
      if (replayed && first)
        console_.stream() << "variant " << v.name << ": cuda graph recorded at step " << step
                          << " (" << v.graph->nodes()
                          << " device operations: the micro-batches' forward and backward, "
                             "clipping and AdamW)\n";
      if (!replayed)
        console_.stream() << "variant " << v.name << ": cuda graph off from step " << step
                          << ": " << v.graph->off_reason() << "\n";
    }
    if (replayed) {  // world size 1: the loss is this rank's
      record.loss = replayed->loss_sum / static_cast<double>(v.accumulation);
      record.grad_norm = std::sqrt(replayed->sum_of_squares);
    } else {
      ++v.eager_steps;
      for (int64_t micro = 0; micro < v.accumulation; ++micro) {
        const Batch& batch = batches[micro];
        autograd::restart_forward_profile();
        ForwardResult out = v.model->forward(batch.inputs, batch.targets,
                                             metrics_step && micro == 0 ? &capture : nullptr,
                                             logits_after_loss(c.run));
        if (metrics_step && micro == 0) metrics.emplace(params.flat_values().device());
        loss_sum += out.loss.item();
        clock.mark("forward");
        // The last backward of the step reduces gradient buckets across ranks as it goes.
        const bool last = micro + 1 == v.accumulation;
        if (last) parallel_->start_gradient_reduction(params);
        autograd::backward(ops::scale(out.loss, 1.0 / static_cast<double>(v.accumulation)));
        if (metrics_step && micro == 0) metrics->queue(capture, c.metrics.order_statistics);
        if (last) parallel_->finish_gradient_reduction(params);
        clock.mark("backward");
      }
      record.loss = parallel_->average(loss_sum / static_cast<double>(v.accumulation));
      record.grad_norm = global_grad_norm(params);
    }
    record.skipped = !std::isfinite(record.loss) || !std::isfinite(record.grad_norm);
    if (replayed) {  // never under run.profile (StepGraph::unavailable_because): no phase
      if (!record.skipped) v.optimizer->count_step();  // the device skipped its update too
    } else {
      if (!record.skipped) {
        v.optimizer->step(params, record.lr, clip_factor(record.grad_norm, c.optim.grad_clip));
        if (v.zero1) parallel_->gather_parameter_shards(params);
      }
      clock.mark("grad norm, clip, AdamW");
    }
    if (metrics_step) {
      // Every rank's slice of the batch: the metrics of the global batch, on every rank.
      record.sink = metrics->finish(c.metrics.sink_threshold,
                                    parallel_->world_size() > 1 ? parallel_.get() : nullptr,
                                    c.run.metrics_exchange_on_side);
      record.has_sink = true;
      for (size_t l = 0; l < eval.effective_rank.size(); ++l) {
        record.sink.layers[l].effective_rank = eval.effective_rank[l];
        record.sink.layers[l].effective_rank_output = eval.effective_rank_output[l];
      }
      summarise_paper_metrics(record.sink, c.metrics.onset_threshold);
      v.last_sink = record;
      clock.mark("sink metrics");
    }
    ++v.profiled_steps;
    record.step_ms = 1000.0 * seconds_since(t0);
    const double tokens = static_cast<double>(c.train.batch_size * c.model.block_size *
                                              v.accumulation * parallel_->world_size());
    record.tokens_per_s = tokens / (record.step_ms / 1000.0);  // metrics included: they cost
    const Device device = params.flat_values().device();
    DeviceRuntime& runtime = device_runtime(device);
    const double peak = runtime.peak_bf16_tflops();
    record.mfu = peak > 0 ? record.tokens_per_s * v.model->flops_per_token(c.model.block_size) /
                                (peak * 1e12)
                          : kNaN;
    record.memory_mib = runtime.memory_in_use_mib();
    record.memory_peak_mib = runtime.memory_peak_mib();
    record.val_loss = evaluate_first ? eval.loss : kNaN;
    record.val_loss_se = evaluate_first ? eval.loss_se : kNaN;
    if (step > 0) {
      v.tokens_per_s_sum += record.tokens_per_s;
      ++v.timed_steps;
    }
    v.recent_losses.push_back(record.loss);
    if (v.recent_losses.size() > kRecentLosses) v.recent_losses.erase(v.recent_losses.begin());
    v.skipped_in_a_row = record.skipped ? v.skipped_in_a_row + 1 : 0;
    if (record.skipped)
      console_.skipped_step(v.name, record, v.skipped_in_a_row, c.train.max_skipped_steps);
    const bool log_line = c.train.log_every > 0 &&
                          (step % c.train.log_every == 0 || step + 1 == c.train.steps);
    if (log_line) console_.step_line(v.name, c.train.steps, record);
    if (v.log) v.log->write(record);
  }
  console_.flush();  // line by line also when piped (tee, a cluster log)
}

Run::Evaluation Run::evaluate(Variant& v, int64_t step, bool final) {
  const RunConfig& c = v.config;
  const auto started = Clock::now();
  autograd::NoGradGuard no_grad;
  v.val_data->set_cursor(0);  // the same validation batches at every evaluation
  double total = 0;
  std::vector<double> losses;  // (eval_batches) for the standard error
  uint64_t batches_hash = kTokenHashStart;  // which batches: variants' losses pair only if equal
  ForwardCapture capture;
  OutputRanks output_ranks;  // the paper's effective rank: layer outputs, over sequences
  output_ranks.limit = c.metrics.rank_sequences;
  for (int64_t i = 0; i < c.train.eval_batches; ++i) {
    if (stop_requested()) {  // a partial mean is not the validation loss: record none
      console_.stream() << "evaluation of " << v.name << " at step " << step
                        << " interrupted by signal after " << i << " of "
                        << c.train.eval_batches << " batches: not recorded\n";
      Evaluation cut;
      cut.loss = cut.loss_se = kNaN;
      cut.interrupted = true;
      return cut;
    }
    Batch batch = v.val_data->next();
    batches_hash = hash_tokens(batches_hash, batch.inputs.data<int32_t>(), batch.inputs.numel());
    ForwardCapture more;  // batches after the first: captured for the output ranks only
    const bool ranks = !output_ranks.full();
    losses.push_back(v.model
                         ->forward(batch.inputs, batch.targets,
                                   i == 0 ? &capture : ranks ? &more : nullptr)
                         .loss.item());
    total += losses.back();
    if (ranks) output_ranks.add(i == 0 ? capture : more);
  }
  Evaluation eval;
  eval.loss = total / static_cast<double>(std::max<int64_t>(1, c.train.eval_batches));
  eval.loss_se = standard_error(losses);
  v.last_val = eval.loss;
  v.last_val_losses = std::move(losses);  // the final one goes to val_losses.json
  v.last_val_hash = batches_hash;
  // Sink metrics of the first validation batch, with the (costly) effective rank.
  eval.metrics = compute_sink_metrics(capture, c.metrics.sink_threshold, true);
  output_ranks.store(eval.metrics);
  summarise_paper_metrics(eval.metrics, c.metrics.onset_threshold);
  for (const LayerMetrics& l : eval.metrics.layers) {
    eval.effective_rank.push_back(l.effective_rank);
    eval.effective_rank_output.push_back(l.effective_rank_output);
  }
  console_.eval_line(v.name, step, c.train.steps, eval.loss, eval.loss_se, eval.metrics,
                     output_ranks.sequences, seconds_since(started));
  if (final) {  // once per run: is the validation loss precise enough to compare variants?
    const int64_t window = c.train.batch_size * c.model.block_size;
    const std::string advice =
        val_se_advice(eval.loss_se, c.train.eval_batches, v.val_data->num_tokens() / window);
    if (!advice.empty()) console_.stream() << "  " << v.name << ": " << advice << "\n";
  }
  const bool sample = final || (c.train.sample_every > 0 && step % c.train.sample_every == 0);
  if (sample && c.train.sample_tokens > 0) {
    std::vector<int32_t> prompt(
        v.val_data->tokens().begin(),
        v.val_data->tokens().begin() + std::min<int64_t>(8, v.val_data->num_tokens()));
    SamplingOptions sampling;
    sampling.count = c.train.sample_tokens;
    sampling.temperature = c.train.sample_temperature;
    sampling.vocab_limit = v.tokenizer->vocab_size();  // padded ids no tokenizer decodes
    sampling.seed = c.run.seed;
    sampling.stream = rng_stream_id({kSampleStream, static_cast<uint64_t>(step)});
    std::vector<int32_t> out = sample_tokens(*v.model, prompt, sampling, stop_requested);
    if (stop_requested()) {
      console_.stream() << "sampling of " << v.name << " at step " << step
                        << " interrupted by signal after "
                        << out.size() - prompt.size() << " tokens\n";
      eval.interrupted = final;  // the final record is rewritten on resume
    } else {
      v.sample = v.tokenizer->decode(out);
      console_.sample(v.name, v.sample);
    }
  }
  return eval;
}

bool Run::finish(int64_t steps) {
  bool interrupted = false;
  for (auto& vp : variants_) {
    Variant& v = *vp;
    Evaluation eval = evaluate(v, steps, true);
    if (eval.interrupted) {  // no final record: `--resume auto` evaluates again
      interrupted = true;
      continue;
    }
    StepRecord record;  // after the last update: validation only
    record.step = steps;
    record.val_loss = eval.loss;
    record.val_loss_se = eval.loss_se;
    record.loss = record.lr = record.grad_norm = record.tokens_per_s = record.step_ms =
        record.mfu = record.memory_mib = record.memory_peak_mib = kNaN;
    record.has_sink = v.config.metrics.every > 0;
    record.sink = eval.metrics;
    if (v.log) {
      v.log->write(record);
      v.log->flush();
      write_val_losses(v.dir + "/val_losses.json", steps, v.last_val_hash, eval.loss,
                       v.last_val_losses);
    }
  }
  return interrupted;
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
  if (options_.stop_after >= 0 && start_step_ >= options_.stop_after && start_step_ < steps) {
    // --stop-after counts done steps: already there (0 on a fresh run), no step runs.
    console_.stream() << "already " << start_step_ << " steps done (--stop-after " << options_.stop_after
             << "): no step run\n";
    end_ = RunEnd::Stopped;
    return {};
  }
  for (int64_t step = start_step_; step < steps; ++step) {
    const int64_t every = base_.train.eval_every;
    step_all(step, every > 0 && step > 0 && step % every == 0);
    const int64_t done_steps = step + 1;
    // Every training shape has been met once: a run stopped before its first checkpoint leaves
    // its choices too (the later saves add the evaluation's).
    if (step == start_step_ && searches_gemms())
      store_gemm_choices(gemm_choices_folder(), ops::gemm_choices());
    bool too_many_skipped = false;
    for (auto& vp : variants_)
      too_many_skipped |= vp->skipped_in_a_row >= vp->config.train.max_skipped_steps;
    // Every rank stops on the same step when any rank got the signal: the checkpoint save
    // below takes part in collectives (ZeRO-1) and the next step in the gradient all-reduce.
    end_ = agree_on_stop(g_stop_signal.load() != 0, too_many_skipped);
    if (options_.stop_after >= 0 && done_steps >= options_.stop_after && done_steps < steps)
      end_ = RunEnd::Stopped;
    const int64_t ck_every = base_.checkpoint.every;
    if (end_ != RunEnd::Finished || (ck_every > 0 && done_steps % ck_every == 0 && done_steps < steps))
      save_checkpoints(done_steps);
    if (end_ != RunEnd::Finished) {
      console_.stopped(end_ == RunEnd::Interrupted  ? "interrupted by signal"
                       : end_ == RunEnd::Stopped    ? "stopped as asked (--stop-after)"
                                                    : "too many non-finite steps in a row",
                       done_steps, folder());
      return {};
    }
    const double done = static_cast<double>(step + 1 - start_step_) / (steps - start_step_);
    console_.progress(step + 1, steps, done, seconds_since(t0));
  }
  // Every rank agrees (a collective), as at a step's end.
  const bool interrupted = finish(steps);
  save_checkpoints(steps);
  fault_point("final-checkpoints-written");
  // Only an evaluation (or sample) the signal cut short makes the run unfinished: a signal
  // after every final record was written (during the checkpoints' save, say) loses nothing,
  // and the run ends as finished, with its summary and paired differences.
  if (world().any(interrupted, "stop-signal agreement")) {
    end_ = RunEnd::Interrupted;
    console_.stopped("interrupted by signal during the final evaluation", steps, folder());
    return {};
  }
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
    s.val_losses = v.last_val_losses;
    s.val_batches_hash = v.last_val_hash;
    s.tokens_per_s = v.timed_steps ? v.tokens_per_s_sum / v.timed_steps : kNaN;
    s.last_metrics = v.last_sink;
    s.sample = v.sample;
    summaries.push_back(std::move(s));
  }
  const std::vector<ComparisonRow> rows = every_row(summaries);
  if (options_.launch.rank == 0) {
    console_.summary(rows);
    // Under split placement each group holds its own variant's losses; every group's leader
    // wrote them to its val_losses.json before the all-gather in every_row.
    console_.val_differences(groups_.split ? final_evaluations_on_disk(steps) : summaries);
  }
  int64_t steps_profiled = 0;
  for (auto& vp : variants_) {
    if (!base_.run.profile || vp->profiled_steps == 0) continue;
    console_.phase_profile(vp->name, vp->phase_ms, vp->profiled_steps);
    steps_profiled += vp->profiled_steps;
  }
  if (base_.run.profile && !variants_.empty() && variants_[0]->profiled_steps > 0) {
    console_.op_profile("forward", autograd::forward_profile(), steps_profiled);
    console_.op_profile("backward", autograd::backward_profile(), steps_profiled);
  }
  const double peak_mib = variants_.empty()
                              ? std::numeric_limits<double>::quiet_NaN()
                              : device_runtime(variants_[0]->model->params().flat_values().device())
                                    .memory_peak_mib();
  // The files the metrics went to (none, with metrics.jsonl and metrics.hdf5 off)
  const MetricsSection& m = base_.metrics;
  const std::string metric_files = m.jsonl && m.hdf5 ? "metrics.{jsonl,h5}"
                                   : m.jsonl         ? "metrics.jsonl"
                                   : m.hdf5          ? "metrics.h5"
                                                     : "";
  console_.wall_time(seconds_since(t0), folder(), peak_mib * 1024.0 * 1024.0, estimated_bytes_,
                     metric_files);
  return summaries;
}

}  // namespace sinklab::train
