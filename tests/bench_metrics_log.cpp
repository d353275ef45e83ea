// What writing one step's record costs the host, per file kind (JSONL, HDF5, TensorBoard events),
// at a model's sizes: the time falls between a step's last read-back and the next step's first
// kernel on a GPU. A benchmark, not a test:
//   ninja -C build bench_metrics_log && build/tests/bench_metrics_log [L NH T steps]
// (defaults: GPT-2's 12 layers, 12 heads, T=1024; 200 records, with and without sink metrics).
// The JSONL lines are formatted on a thread of their own (train/io/background_lines.h): the
// figure is what write() costs the caller; the flush after the loop waits for the rest.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "train/io/metrics_log.h"
#include "train/io/step_record.h"

using namespace sinklab::train;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const int64_t L = argc > 1 ? std::atoll(argv[1]) : 12, NH = argc > 2 ? std::atoll(argv[2]) : 12;
  const int64_t T = argc > 3 ? std::atoll(argv[3]) : 1024, steps = argc > 4 ? std::atoll(argv[4]) : 200;
  const fs::path dir = fs::temp_directory_path() / ("sinklab_bench_log_" + std::to_string(::getpid()));
  const char* kinds[] = {"jsonl", "hdf5", "tensorboard"};
  std::printf("MetricsLog::write at L=%lld, NH=%lld, T=%lld, %lld records (us a record)\n",
              static_cast<long long>(L), static_cast<long long>(NH), static_cast<long long>(T),
              static_cast<long long>(steps));
  for (const bool sink : {false, true}) {
    StepRecord r;
    r.has_sink = sink;
    r.sink.layers.resize(sink ? L : 0);  // as the trainer's records: layers on metrics steps only
    for (LayerMetrics& m : r.sink.layers) {
      m.sink_mass.assign(NH, 0.1);
      m.alpha0.assign(NH, 0.2);
      m.var_pos.assign(T, 1.0);
      m.var_pos_normed.assign(T, 1.0);
    }
    for (int kind = 0; kind < 3; ++kind) {
      fs::remove_all(dir);
      MetricsLog log(dir.string(), L, NH, T, kind == 0, kind == 1, kind == 2);
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < steps; ++i) {
        r.step = i;
        log.write(r);
      }
      const double us =  // write() alone: the flush (fsync) comes at checkpoints only
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      const auto t1 = std::chrono::steady_clock::now();
      log.flush();  // JSONL: waits for the lines still being formatted on the writer's thread
      const double flush_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
      std::printf("  %-12s %s sink metrics: %8.1f   (then flush: %.1f ms)\n", kinds[kind],
                  sink ? "with   " : "without", us / static_cast<double>(steps), flush_ms);
    }
  }
  fs::remove_all(dir);
  return 0;
}
