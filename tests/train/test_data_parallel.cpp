// Data-parallel training end to end: 2 ranks launched with mpirun and with torchrun-style
// variables follow the 1-process loss curve of the same config (same global batch:
// accumulation adapts to the world size). On the CPU the ranks talk over TCP and the test runs
// everywhere; on GPUs over NCCL ([cuda][distributed], needs 2 GPUs, skipped otherwise). The TCP
// collectives themselves are checked between threads.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/dist/bootstrap.h"
#include "train/dist/data_parallel.h"
#include "train/dist/handshake.h"
#include "train/dist/socket.h"
#include "train/dist/tcp_collective.h"
#if defined(SINKLAB_HAVE_CUDA)
#include <cuda_runtime.h>

#include "cuda/communicator.h"
#endif

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

int gpu_count() {
#if defined(SINKLAB_HAVE_CUDA)
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
#else
  return 0;
#endif
}

using test::losses;
using test::shell;
using test::test_port;

}  // namespace

TEST_CASE("tcp collectives: mean, sum and all-gather in rank order; a dead rank is named",
          "[distributed]") {
  const int port = test_port(1);
  auto env_of = [&](int rank) {
    LaunchEnv env;
    env.launcher = "torchrun";
    env.rank = rank;
    env.local_rank = rank;
    env.world_size = 3;
    env.id_port = port;
    return env;
  };
  auto rank_job = [&](int rank) {
    TcpCollective collective(env_of(rank), 600);
    Tensor t = Tensor::from_doubles({1.0 * rank, 10.0 + rank, -3.0}, {3}, DType::F32);  // (3)
    collective.all_reduce_mean(t, "test mean");
    const double total = collective.sum(rank + 0.5, "test sum");
    const std::vector<double> all = collective.all_gather({100.0 * rank, 7.0}, "test gather");
    std::vector<double> result = t.to_doubles();
    result.push_back(total);
    result.insert(result.end(), all.begin(), all.end());
    return result;
  };
  auto r1 = std::async(std::launch::async, rank_job, 1);
  auto r2 = std::async(std::launch::async, rank_job, 2);
  const std::vector<double> r0 = rank_job(0);
  const std::vector<double> expected = {1.0, 11.0, -3.0, 4.5, 0, 7, 100, 7, 200, 7};
  REQUIRE(r0 == expected);
  REQUIRE(r1.get() == expected);
  REQUIRE(r2.get() == expected);

  // Rank 2 leaves after connecting: rank 0's next collective fails naming it, and so does
  // rank 1's, which rank 0 tells before it fails.
  const int port2 = test_port(2);
  LaunchEnv e0 = env_of(0), e1 = env_of(1), e2 = env_of(2);
  e0.id_port = e1.id_port = e2.id_port = port2;
  auto quitter = std::async(std::launch::async, [&] { TcpCollective c(e2, 600); });
  auto survivor = std::async(std::launch::async, [&] {
    TcpCollective c(e1, 600);
    std::string error;
    try {
      c.sum(1.0, "loss all-reduce");
    } catch (const IOError& e) {
      error = e.what();
    }
    return error;
  });
  TcpCollective root(e0, 600);
  quitter.get();
  test::require_error<IOError>([&] { root.sum(1.0, "loss all-reduce"); },
                               {"rank 2", "loss all-reduce"});
  const std::string told = survivor.get();
  INFO(told);
  REQUIRE(told.find("rank 1: rank 0 lost rank 2 during loss all-reduce") != std::string::npos);
}

namespace {

// A small config on `device` in a fresh directory (30 steps of 256 tokens), trained by any
// launcher: run(name, launch, extra) returns the run's loss curve.
struct SmallRun {
  fs::path dir;
  std::string bin = std::string(SINKLAB_BINARY_DIR) + "/sinklab", cfg;

  SmallRun(const std::string& device, const std::string& tag)
      : dir(test::fresh_dir(tag + "_" + device)), cfg((dir / "dp.yaml").string()) {
    const std::vector<int32_t> tokens = test::letter_tokens(9, 1, 60000, 20, 3);
    test::write_train_val(dir, tokens, {tokens.begin(), tokens.begin() + 6000});
    std::ofstream(dir / "dp.yaml")
        << "run: {name: dp, out_dir: " << dir.string() << ", device: " << device
        << ", precision: fp32}\n"
        << "model: {arch: gpt2, n_layer: 2, n_head: 2, n_embd: 64, block_size: 32}\n"
        << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
        << "train: {steps: 30, batch_size: 4, tokens_per_step: 256, eval_every: 0, "
        << "sample_tokens: 0}\n";
  }
  std::vector<double> run(const std::string& name, const std::string& launch,
                          const std::string& extra = "") const {
    const std::string cmd = launch + " " + bin + " train " + cfg + " --no-progress --set run.name=" +
                            name + extra + " > " + (dir / (name + ".log")).string() + " 2>&1";
    INFO(cmd);
    REQUIRE(shell(cmd) == 0);
    return losses(dir / name / "main" / "metrics.jsonl");
  }
};

// Each curve follows the 1-process one step by step, within rtol.
void require_curves_follow(const std::vector<double>& single,
                           const std::map<std::string, std::vector<double>>& curves,
                           const std::string& device, double rtol) {
  for (const auto& [launcher, curve] : curves) {
    REQUIRE(curve.size() == single.size());
    for (size_t i = 0; i < curve.size(); ++i) {
      INFO(device << ", " << launcher << ", step " << i << ": 1 process " << single[i]
                  << ", 2 ranks " << curve[i]);
      // Same global batch and fp32 math: only the summation order of the gradient differs
      // (a tied embedding's two contributions are added in another order).
      REQUIRE(std::fabs(curve[i] - single[i]) <= rtol * std::fabs(single[i]));
    }
  }
}

using test::untimed_lines;

// Trains the small config on `device` as 1 process, then as 2 ranks launched by Open MPI's
// mpirun, and compares the loss curves step by step, within `rtol`.
void mpirun_follows_one(const std::string& device, double rtol) {
  const SmallRun small(device, "mpi");
  const std::vector<double> single = small.run("one", "");
  REQUIRE(single.size() == 30);
  require_curves_follow(
      single, {{"mpirun", small.run("mpi", "mpirun -np 2 --allow-run-as-root --oversubscribe")}},
      device, rtol);
  // one job of 2 ranks (not two 1-rank jobs writing one curve): rank 0's header says so
  std::ifstream log(small.dir / "mpi.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  INFO(text);
  REQUIRE(text.find("256 tokens/step over 2 ranks (128 each)") != std::string::npos);
  fs::remove_all(small.dir);
}

// Trains the small config on `device` as 1 process, then as 2 ranks with torchrun-style
// variables (buckets, resume on another world size, ZeRO-1, and on the CPU a stop by signal
// and a dead rank), and compares the loss curves step by step, within `rtol`.
void two_ranks_follow_one(const std::string& device, double rtol) {
  const SmallRun small(device, "dp");
  const fs::path& dir = small.dir;
  const std::string &bin = small.bin, &cfg = small.cfg;
  auto run = [&](const std::string& name, const std::string& launch,
                 const std::string& extra = "") { return small.run(name, launch, extra); };
  const std::vector<double> single = run("one", "");
  REQUIRE(single.size() == 30);
  std::map<std::string, std::vector<double>> curves;
  // torchrun-style: two processes with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_*.
  const std::string port = std::to_string(test_port(device == "cpu" ? 3 : 5));
  const std::string vars = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port;
  // Two ranks with torchrun-style variables: `extra` arguments for both, run name `name`.
  auto two_ranks = [&](const std::string& name, const std::string& extra,
                       const std::string& env = "") {
    const std::string log = (dir / (name + ".log")).string();
    const std::string args = " train " + cfg + " --no-progress --set run.name=" + name + extra;
    const std::string both = env + " " + vars + " " + bin + args;
    const std::string two = "(RANK=1 LOCAL_RANK=1 " + both + " > " + log +
                            ".1 2>&1 &) ; RANK=0 LOCAL_RANK=0 " + both +
                            " > " + log + " 2>&1; st=$?; wait; exit $st";
    INFO(two);
    REQUIRE(shell("bash -c '" + two + "'") == 0);
  };
  two_ranks("tr", "");
  curves["torchrun"] = losses(dir / "tr" / "main" / "metrics.jsonl");
  {  // only rank 0 writes the events file: one file, each step once, rank 0's losses
    const std::vector<train::Event> events = test::events_in(dir / "tr" / "main");
    REQUIRE(test::event_steps(events).size() == curves["torchrun"].size() + 1);  // + final eval
    for (size_t i = 0; i < curves["torchrun"].size(); ++i) {
      REQUIRE(events[i + 1].step == static_cast<int64_t>(i));
      REQUIRE(events[i + 1].scalars[0].tag == "train/loss");
      REQUIRE(events[i + 1].scalars[0].value ==
              Approx(curves["torchrun"][i]).epsilon(1e-6));
    }
  }
  {  // rank 0's header gives the world size and the global tokens per step (issue 20)
    std::ifstream log(dir / "tr.log");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    INFO(text);
    REQUIRE(text.find("256 tokens/step over 2 ranks (128 each)") != std::string::npos);
    // Without train.tokens_per_step each rank takes batch_size x block_size: the global batch
    // doubles, and the header says so. run.gemm_search is off with several processes on GPUs,
    // and the header says that too (on CPUs it never applies: no line).
    two_ranks("per_rank",
              " --set train.tokens_per_step=0 --set train.steps=2 --set run.gemm_search=8");
    std::ifstream per_rank(dir / "per_rank.log");
    const std::string header((std::istreambuf_iterator<char>(per_rank)), {});
    INFO(header);
    REQUIRE(header.find("256 tokens/step over 2 ranks (128 each: train.tokens_per_step 0") !=
            std::string::npos);
    REQUIRE((header.find("run.gemm_search: off with several processes") != std::string::npos) ==
            (device == "cuda"));
  }
  // Many small gradient buckets (each reduced as soon as backward completes it).
  two_ranks("buckets", " --set run.bucket_mib=0.02");
  curves["torchrun, 0.02 MiB buckets"] = losses(dir / "buckets" / "main" / "metrics.jsonl");
  // Resume on another world size: 2 ranks stop after 15 steps, 1 process finishes the run.
  two_ranks("moved", " --stop-after 15");
  run("moved", "", " --resume auto");
  curves["2 ranks, resumed on 1"] = losses(dir / "moved" / "main" / "metrics.jsonl");
  // ZeRO-1: moments sharded over the 2 ranks, then resumed (whole moments in the checkpoint)
  // by 2 ranks again after 10 steps and by 1 process after 20.
  two_ranks("zero1", " --set optim.zero1=true --stop-after 10");
  two_ranks("zero1", " --set optim.zero1=true --stop-after 20 --resume auto");
  run("zero1", "", " --set optim.zero1=true --resume auto");
  curves["ZeRO-1, 2 ranks, resumed twice"] = losses(dir / "zero1" / "main" / "metrics.jsonl");
  {  // run.metrics_exchange_on_side (on GPUs the ranks exchange a metrics step's results on the
     // metrics' side stream): every metric of every step the same as exchanged at the finish.
     // On the CPU the side "stream" runs its work at once, so only the 2-GPU run (NCCL on the
     // side stream) can tell the two apart; here it checks that the switch changes nothing.
    const std::string every = " --set metrics.every=1 --set train.steps=4";
    two_ranks("exchange_finish", every);
    two_ranks("exchange_side", every + " --set run.metrics_exchange_on_side=true");
    const std::vector<std::string> a = untimed_lines(dir / "exchange_finish" / "main" / "metrics.jsonl");
    const std::vector<std::string> b = untimed_lines(dir / "exchange_side" / "main" / "metrics.jsonl");
    REQUIRE(a.size() == 5);  // 4 steps and the final evaluation
    REQUIRE(test::contains(a[0], "\"sink_mass\""));  // metrics were taken
    REQUIRE(b == a);
  }
  if (device == "cpu") {
    // SIGTERM to rank 0 only (a pre-emption seen by one rank first): both ranks agree to stop
    // on the same step, write one checkpoint (ZeRO-1 gathers the moments) and exit 0.
    const std::string sig = (dir / "sig.log").string();
    const std::string args = " train " + cfg +
                             " --no-progress --set run.name=sig --set train.steps=100000 "
                             "--set optim.zero1=true";
    const std::string metrics = (dir / "sig" / "main" / "metrics.jsonl").string();
    const std::string script =
        "env RANK=1 LOCAL_RANK=1 " + vars + " " + bin + args + " > " + sig + ".1 2>&1 & p1=$!; " +
        "env RANK=0 LOCAL_RANK=0 " + vars + " " + bin + args + " > " + sig + " 2>&1 & p0=$!; " +
        "for i in $(seq 1 600); do [ $(wc -l < " + metrics + " 2>/dev/null || echo 0) -ge 3 ] " +
        "&& break; sleep 0.05; done; kill -TERM $p0; wait $p0; s0=$?; wait $p1; s1=$?; " +
        "exit $((s0 * 10 + s1))";
    INFO(script);
    REQUIRE(shell("bash -c '" + script + "'") == 0);
    std::ifstream log(sig);
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    REQUIRE(text.find("interrupted by signal") != std::string::npos);
    REQUIRE(fs::exists(dir / "sig" / "main" / "ckpt" / "latest"));

    // A rank that dies (SIGKILL to rank 1): rank 0 fails at once, naming it, instead of hanging.
    const std::string dead = (dir / "dead.log").string();
    const std::string dead_args = " train " + cfg +
                                  " --no-progress --set run.name=dead --set train.steps=100000";
    const std::string dead_metrics = (dir / "dead" / "main" / "metrics.jsonl").string();
    const std::string kill_script =
        "env RANK=1 LOCAL_RANK=1 " + vars + " " + bin + dead_args + " > " + dead + ".1 2>&1 & " +
        "p1=$!; env RANK=0 LOCAL_RANK=0 " + vars + " " + bin + dead_args + " > " + dead +
        " 2>&1 & p0=$!; for i in $(seq 1 600); do [ $(wc -l < " + dead_metrics +
        " 2>/dev/null || echo 0) -ge 3 ] && break; sleep 0.05; done; kill -KILL $p1; " +
        "wait $p0; exit $?";
    INFO(kill_script);
    REQUIRE(shell("bash -c '" + kill_script + "'") != 0);
    std::ifstream dead_log(dead);
    const std::string dead_text((std::istreambuf_iterator<char>(dead_log)), {});
    INFO(dead_text);
    REQUIRE(dead_text.find("rank 1") != std::string::npos);
  }
  require_curves_follow(single, curves, device, rtol);
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("tcp join: a silent client and a forged join are dropped and named; the job joins",
          "[distributed]") {
  // A stranger that connects and says nothing used to block rank 0 for up to 30 s, and a join
  // with a valid rank number was accepted from anyone. Now each connection has
  // kHandshakeTimeoutS to send a join carrying this job's token, and strangers are dropped and
  // named on stderr while the real ranks join. Both exchanges (CPU collectives, NCCL id) use it.
  const int port = test_port(3);
  LaunchEnv e0, e1;
  e0.world_size = e1.world_size = 2;
  e0.id_port = e1.id_port = port;
  e1.rank = 1;
  e0.job_token = e1.job_token = job_token("model: {n_layer: 2}\n", e0);
  LaunchEnv other = e1;
  other.job_token = job_token("model: {n_layer: 3}\n", e0);  // another config's job
  REQUIRE(other.job_token != e1.job_token);
  auto strangers_then_rank = std::async(std::launch::async, [&] {
    std::string error;
    const Socket silent = connect_retrying("127.0.0.1", port, 10, error);  // never speaks
    REQUIRE(silent.valid());
    const Socket forged = connect_retrying("127.0.0.1", port, 10, error);
    REQUIRE(send_join(forged.fd(), 1, other.job_token));
    TcpCollective rank1(e1, 600);
    return rank1.sum(2.0, "join test");
  });
  const auto t0 = std::chrono::steady_clock::now();
  TcpCollective rank0(e0, 600);
  REQUIRE(rank0.sum(1.0, "join test") == 3.0);
  REQUIRE(strangers_then_rank.get() == 3.0);
  // The silent one costs at most one handshake timeout, not the collective timeout (600 s).
  REQUIRE(std::chrono::steady_clock::now() - t0 <
          std::chrono::duration<double>(3 * kHandshakeTimeoutS));

  // The NCCL id exchange: the forged join gets no blob, and rank 1 gets it.
  const int port2 = test_port(4);
  e0.id_port = e1.id_port = other.id_port = port2;
  auto fetchers = std::async(std::launch::async, [&] {
    std::string error;
    const Socket forged = connect_retrying("127.0.0.1", port2, 10, error);
    REQUIRE(send_join(forged.fd(), 1, other.job_token));
    uint64_t size = 0;
    const bool got_blob = recv_all(forged.fd(), &size, sizeof size);
    return std::make_pair(got_blob, share_from_rank0(e1, "", 10));
  });
  REQUIRE(share_from_rank0(e0, "the id", 10) == "the id");
  const auto [forged_got_blob, blob] = fetchers.get();
  REQUIRE_FALSE(forged_got_blob);
  REQUIRE(blob == "the id");
}

TEST_CASE("data parallel: run.bucket_mib sizes the gradient buckets and "
          "run.collective_timeout_s bounds the wait for the other ranks",
          "[distributed]") {
  ModelSection m = test::tiny_model(Arch::Llama, AttnOutputNorm::None);
  m.n_embd = 64;
  m.vocab_size = 256;
  GPT model(m, 1);
  const int64_t numel = model.params().numel();  // about 120,000 floats
  auto buckets = [&](const std::vector<std::string>& overrides) {
    const RunConfig c = parse_config("", "b.yaml", overrides);
    DataParallel dp(LaunchEnv{}, Device::cpu(), {c.run.bucket_mib, c.run.collective_timeout_s});
    return dp.gradient_buckets(model.params());
  };
  const auto whole = buckets({});  // 25 MiB: the whole model in one bucket
  REQUIRE(whole.size() == 1);
  REQUIRE(whole[0] == std::make_pair(int64_t{0}, numel));
  const auto small = buckets({"run.bucket_mib=0.02"});  // about 5,000 floats each
  INFO("buckets: " << small.size());
  REQUIRE(small.size() > 4);
  int64_t end = numel;  // whole parameters, from the last, covering the buffer once
  for (const auto& [begin, stop] : small) {
    REQUIRE(stop == end);
    REQUIRE(begin < stop);
    end = begin;
  }
  REQUIRE(end == 0);

  // Rank 0 of 2, whose peer never comes, gives up after run.collective_timeout_s.
  const RunConfig c = parse_config("", "t.yaml", {"run.collective_timeout_s=0.5"});
  LaunchEnv env;
  env.launcher = "torchrun";
  env.world_size = 2;
  env.id_port = test_port(6);
  const auto t0 = std::chrono::steady_clock::now();
  test::require_error<IOError>(
      [&] { DataParallel dp(env, Device::cpu(), {c.run.bucket_mib, c.run.collective_timeout_s}); },
      {"rank 0", "within 0.5 s", "run.collective_timeout_s"});
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
}

TEST_CASE("data parallel: 2 CPU ranks over TCP follow the 1-process loss curve",
          "[distributed]") {
  // The CPU GEMM sums in a fixed order: the curves agree to the logged precision but for the
  // summation order of a tied embedding's two gradient contributions.
  two_ranks_follow_one("cpu", 1e-5);
}

TEST_CASE("data parallel: 2 CPU ranks launched by mpirun follow the 1-process loss curve",
          "[mpi][distributed]") {
  SINKLAB_REQUIRE_DEPENDENCY(test::mpirun_present(),
                             "Open MPI's mpirun is not installed (apt-get install openmpi-bin)");
  mpirun_follows_one("cpu", 1e-5);
}

TEST_CASE("data parallel: 2 GPU ranks over NCCL follow the 1-GPU loss curve",
          "[cuda][distributed]") {
  if (gpu_count() < 2) {
    WARN("fewer than 2 GPUs: the 2-rank runs are skipped");
    return;
  }
  two_ranks_follow_one("cuda", 1e-3);
  SINKLAB_REQUIRE_DEPENDENCY(test::mpirun_present(),
                             "Open MPI's mpirun is not installed (apt-get install openmpi-bin)");
  mpirun_follows_one("cuda", 1e-3);
}

#if defined(SINKLAB_HAVE_CUDA)
TEST_CASE("nccl on one rank: started bucket reductions, all-gather and sum on the GPU",
          "[cuda][distributed]") {
  if (gpu_count() < 1 || !cuda::nccl_available()) {
    WARN("no GPU or no NCCL: skipped");
    return;
  }
  cuda::Communicator comm(cuda::Communicator::unique_id(), 0, 1, 600);
  Tensor host = Tensor::from_doubles({1, 2, 3, 4, 5, 6, 7}, {7}, DType::F32);  // (7)
  Tensor flat = host.to_device(Device::cuda());
  Tensor first = flat.narrow_view(0, 0, 3), rest = flat.narrow_view(0, 3, 4);  // two buckets
  comm.start_all_reduce_mean(rest, "test bucket 1");
  comm.start_all_reduce_mean(first, "test bucket 0");
  comm.wait_started("test buckets");
  REQUIRE(flat.to_doubles() == host.to_doubles());  // the mean over one rank
  REQUIRE(comm.all_gather({1.5, -2}, "test gather") == std::vector<double>{1.5, -2});
  REQUIRE(comm.sum(2.25, "test sum") == 2.25);
}
#endif
