// Data-parallel plumbing that needs no GPU: the launcher environment (torchrun, Open MPI, Slurm)
// the batch slicing that keeps the global batch the same whatever the world size, and the
// rank-0 bootstrap of the NCCL id (TCP and shared file), with threads standing in for ranks.
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/op_checks.h"
#include "train/dist/bootstrap.h"
#include "train/data/batch_slice.h"
#include "train/data/data_loader.h"
#include "train/dist/launcher.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {

LaunchEnv parse(const std::map<std::string, std::string>& vars) {
  return parse_launch_env([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

TEST_CASE("launcher: no variables is one process", "[distributed]") {
  LaunchEnv env = parse({});
  REQUIRE(env.launcher == "none");
  REQUIRE(env.rank == 0);
  REQUIRE(env.world_size == 1);
  REQUIRE_FALSE(env.distributed());
  REQUIRE(env.master_addr == "127.0.0.1");
  REQUIRE(env.id_port == 29501);
}

TEST_CASE("launcher: torchrun, mpirun and srun variables", "[distributed]") {
  LaunchEnv t = parse({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                       {"MASTER_ADDR", "node07"}, {"MASTER_PORT", "29400"}});
  REQUIRE(t.launcher == "torchrun");
  REQUIRE((t.rank == 3 && t.world_size == 8 && t.local_rank == 1));
  REQUIRE(t.master_addr == "node07");
  REQUIRE(t.id_port == 29401);  // MASTER_PORT + 1: torchrun's agent owns MASTER_PORT
  LaunchEnv m = parse({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"SINKLAB_ID_PORT", "40000"}});
  REQUIRE(m.launcher == "mpirun");
  REQUIRE((m.rank == 1 && m.world_size == 2 && m.local_rank == 1));
  REQUIRE(m.id_port == 40000);
  LaunchEnv s = parse({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
                       {"SINKLAB_ID_FILE", "/shared/job42.id"}});
  REQUIRE(s.launcher == "slurm");
  REQUIRE((s.rank == 5 && s.world_size == 16 && s.local_rank == 1));
  REQUIRE(s.id_file == "/shared/job42.id");
  // torchrun inside an srun allocation: torchrun's variables win.
  LaunchEnv both = parse({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "1"},
                          {"SLURM_NTASKS", "4"}});
  REQUIRE(both.launcher == "torchrun");
  REQUIRE(both.world_size == 2);
}

TEST_CASE("launcher: malformed or inconsistent variables name the variable", "[distributed]") {
  test::require_error<ConfigError>([] { parse({{"RANK", "2"}, {"WORLD_SIZE", "2"}}); },
                                   {"RANK=2", "WORLD_SIZE=2", "outside"});
  test::require_error<ConfigError>([] { parse({{"RANK", "x"}, {"WORLD_SIZE", "2"}}); },
                                   {"RANK='x'", "whole number"});
  test::require_error<ConfigError>([] { parse({{"OMPI_COMM_WORLD_RANK", "0"}}); },
                                   {"OMPI_COMM_WORLD_SIZE", "not set"});
  test::require_error<ConfigError>([] { parse({{"MASTER_PORT", "65535"}}); },
                                   {"65536", "SINKLAB_ID_PORT"});
  test::require_error<ConfigError>(
      [] { parse({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "-1"}}); },
      {"SLURM_LOCALID=-1", "negative"});
}

TEST_CASE("batch slicing: W ranks draw exactly the windows of one rank's micro-batches",
          "[distributed]") {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 5000; ++i) tokens.push_back((i * 7919) % 251);
  const int64_t b = 3, T = 8;
  const int world = 4, rounds = 5;
  DataLoader single(tokens, b, T, 21, 1);
  std::vector<std::vector<int32_t>> expected;  // one rank, world * rounds micro-batches
  for (int i = 0; i < world * rounds; ++i) {
    std::vector<double> v = single.next().inputs.to_doubles();
    expected.emplace_back(v.begin(), v.end());
  }
  std::vector<DataLoader> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(tokens, b, T, 21, 1);
  for (int round = 0; round < rounds; ++round)
    for (int r = 0; r < world; ++r) {
      std::vector<double> v = ranks[r].next_slice(r, world).inputs.to_doubles();
      INFO("round " << round << " rank " << r);
      REQUIRE(std::vector<int32_t>(v.begin(), v.end()) == expected[round * world + r]);
    }
  for (int r = 0; r < world; ++r) REQUIRE(ranks[r].cursor() == single.cursor());  // resumable
  // The global batch's hash: over every rank's windows of a round, it is the hash of one rank's
  // micro-batches, whichever rank (or world size) asks; the windows read are the batch's inputs.
  uint64_t whole = kTokenHashStart;
  for (int i = 0; i < world; ++i) {
    const std::vector<int32_t>& batch = expected[world + i];  // round 1
    whole = hash_tokens(whole, batch.data(), static_cast<int64_t>(batch.size()));
  }
  REQUIRE(ranks[3].hash_windows(kTokenHashStart, world * b, world * b) == whole);
  REQUIRE(single.hash_windows(kTokenHashStart, world * b, world * b) == whole);
  REQUIRE(single.hash_windows(kTokenHashStart, world * b, b) != whole);
  const std::vector<int32_t> one(expected[0].begin(), expected[0].begin() + T);  // window 0
  REQUIRE(single.hash_windows(7, 0, 1) == hash_tokens(7, one.data(), T));
  const BatchSlice s = batch_slice(100, 2, 4, 3);
  REQUIRE((s.first == 106 && s.count == 3));
  test::require_error<ValueError>([] { batch_slice(0, 4, 4, 3); }, {"rank 4 of 4"});
}

TEST_CASE("accumulation adapts to the world size; uneven splits are refused", "[distributed]") {
  // Global batch 16 x 32 tokens: one rank accumulates 4 micro-batches of 4, two ranks 2 each.
  REQUIRE(accumulation_steps(16 * 32, 4, 32, 1) == 4);
  REQUIRE(accumulation_steps(16 * 32, 4, 32, 2) == 2);
  REQUIRE(accumulation_steps(16 * 32, 4, 32, 4) == 1);
  REQUIRE(accumulation_steps(0, 4, 32, 2) == 1);
  test::require_error<ConfigError>([] { accumulation_steps(16 * 32, 4, 32, 3); },
                                   {"train.tokens_per_step = 512", "4 x 32 x 3 = 384", "use 384 or 768"});
}

TEST_CASE("bootstrap: rank 0's blob reaches every rank over TCP and through a file",
          "[distributed]") {
  const std::string id(128, '\x07');
  for (bool file : {false, true}) {
    const int world = 3;
    std::vector<LaunchEnv> envs(world);
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("sinklab_id_" + std::to_string(::getpid()))).string();
    std::filesystem::remove(path);
    for (int r = 0; r < world; ++r) {
      envs[r].rank = r;
      envs[r].world_size = world;
      envs[r].id_port = 20000 + ::getpid() % 20000;
      if (file) envs[r].id_file = path;
    }
    std::vector<std::string> got(world);
    std::vector<std::thread> threads;
    for (int r = world - 1; r >= 0; --r)  // the fetching ranks start first and retry
      threads.emplace_back([&, r] { got[r] = share_from_rank0(envs[r], r == 0 ? id : "", 30); });
    for (auto& t : threads) t.join();
    for (int r = 0; r < world; ++r) REQUIRE(got[r] == id);
    std::filesystem::remove(path);
  }
}

TEST_CASE("bootstrap: a missing rank 0 is an IOError naming the address and port",
          "[distributed]") {
  LaunchEnv env;
  env.rank = 1;
  env.world_size = 2;
  env.id_port = 1;  // nothing listens there
  test::require_error<IOError>([&] { share_from_rank0(env, "", 0.3); },
                               {"rank 1", "127.0.0.1:1", "SINKLAB_ID_PORT"});
}
