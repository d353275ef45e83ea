// run.variant_placement split: the side-by-side variants on separate groups of ranks
// (train/dist/variant_groups.h). The placement itself, then end to end on the CPU over TCP: 4
// ranks, 2 per variant, give each variant the numbers a 2-rank run of both variants gives
// (same slices, same batches: bit for bit) and those of one process (to summation order); they
// stop together on a signal to one rank, resume on one process, fail together, naming the rank,
// when one dies, and rank 0 prints every variant's row.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"
#include "train/dist/variant_groups.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

LaunchEnv world_of(int rank, int size) {
  LaunchEnv env;
  env.launcher = "torchrun";
  env.rank = env.local_rank = rank;
  env.world_size = size;
  env.id_port = 31001;
  return env;
}

// Every value of `key` (a JSON string, e.g. batch_hash) in a metrics.jsonl, in line order.
std::vector<std::string> strings_of(const fs::path& metrics, const std::string& key) {
  std::vector<std::string> out;
  std::ifstream in(metrics);
  const std::string tag = "\"" + key + "\":\"";
  for (std::string line; std::getline(in, line);) {
    const size_t p = line.find(tag);
    if (p != std::string::npos)
      out.push_back(line.substr(p + tag.size(), line.find('"', p + tag.size()) - p - tag.size()));
  }
  return out;
}

std::string text_of(const fs::path& file) { return test::read_bytes(file.string()); }

}  // namespace

TEST_CASE("variant placement: split gives each variant a group of consecutive ranks",
          "[distributed]") {
  // Together (the default), or one variant: the world is the group.
  for (VariantPlacement p : {VariantPlacement::Together, VariantPlacement::Split}) {
    const VariantGroups g = place_variants(world_of(5, 8), p == VariantPlacement::Split ? 1 : 3, p);
    REQUIRE_FALSE(g.split);
    REQUIRE(g.group_env.rank == 5);
    REQUIRE(g.group_env.world_size == 8);
    REQUIRE(g.group_env.id_port == 31001);
  }
  // 8 ranks, 2 variants: ranks 0-3 train the first, 4-7 the second, each its own job.
  LaunchEnv shared = world_of(6, 8);
  shared.id_file = "/shared/id";
  const VariantGroups g = place_variants(shared, 2, VariantPlacement::Split);
  REQUIRE(g.split);
  REQUIRE(g.groups == 2);
  REQUIRE(g.group == 1);
  REQUIRE(g.group_size == 4);
  REQUIRE(g.leader_of(1) == 4);
  REQUIRE(g.group_env.rank == 2);
  REQUIRE(g.group_env.world_size == 4);
  REQUIRE(g.group_env.local_rank == 6);  // the GPU stays the process's own
  REQUIRE(g.group_env.id_port == 31001 + 2);
  REQUIRE(g.group_env.id_file == "/shared/id.group1");
  REQUIRE(describe_group(g) == "ranks 4-7 (group 2 of 2)");
  // Messages name a group's ranks by their world rank.
  REQUIRE(rank_name(g.group_env, 1) == "rank 5 (rank 1 of its variant's group)");
  REQUIRE(rank_name(shared, 3) == "rank 3");
  const VariantGroups first = place_variants(world_of(0, 3), 3, VariantPlacement::Split);
  REQUIRE(first.group_env.world_size == 1);
  REQUIRE(first.group_env.id_port == 31001 + 1);
  REQUIRE(describe_group(first) == "rank 0 (group 1 of 3)");
  // Ranks that do not divide evenly, and ports past 65535, are refused by name.
  test::require_error<ConfigError>(
      [] { place_variants(world_of(0, 3), 2, VariantPlacement::Split); },
      {"run.variant_placement", "world size 3", "2 variants", "together"});
  LaunchEnv high = world_of(3, 4);
  high.id_port = 65534;
  test::require_error<ConfigError>([&] { place_variants(high, 2, VariantPlacement::Split); },
                                   {"port 65536", "SINKLAB_ID_PORT"});
}

TEST_CASE("variant placement split: 4 CPU ranks, 2 per variant, match 2 ranks and 1 process",
          "[distributed]") {
  const fs::path dir = test::fresh_dir("split");
  const std::vector<int32_t> tokens = test::letter_tokens(9, 1, 40000, 20, 3);
  test::write_train_val(dir, tokens, {tokens.begin(), tokens.begin() + 4000});
  std::ofstream(dir / "split.yaml")
      << "run: {name: split, out_dir: " << dir.string() << ", device: cpu, precision: fp32}\n"
      << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}\n"
      << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
      << "train: {steps: 12, batch_size: 4, tokens_per_step: 256, eval_every: 6, "
      << "eval_batches: 2, sample_tokens: 0}\n"
      << "metrics: {every: 4, hdf5: false, tensorboard: false}\n"
      << "checkpoint: {every: 6}\n"
      << "variants:\n"
      << "  - {name: baseline, set: {model.attn_output_norm: none}}\n"
      << "  - {name: headwise, set: {model.attn_output_norm: headwise_rmsnorm}}\n";
  const std::string bin = std::string(SINKLAB_BINARY_DIR) + "/sinklab";
  const std::string cfg = (dir / "split.yaml").string();
  // `ranks` processes with torchrun-style variables (ranks > 1), all in the background but the
  // last; returns its exit status. `extra` goes to every rank.
  auto launch = [&](const std::string& name, int ranks, const std::string& extra, int port) {
    const std::string args = " compare " + cfg + " --no-progress --set run.name=" + name + extra;
    const std::string log = (dir / (name + ".log")).string();
    if (ranks == 1) return test::shell("OMP_NUM_THREADS=1 " + bin + args + " > " + log + " 2>&1");
    const std::string vars = "OMP_NUM_THREADS=1 WORLD_SIZE=" + std::to_string(ranks) +
                             " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
    std::string script;
    for (int r = ranks - 1; r >= 1; --r)
      script += "env RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) + " " + vars +
                " " + bin + args + " > " + log + "." + std::to_string(r) + " 2>&1 & ";
    script += "env RANK=0 LOCAL_RANK=0 " + vars + " " + bin + args + " > " + log +
              " 2>&1; st=$?; wait; exit $st";
    INFO(script);
    return test::shell("bash -c '" + script + "'");
  };
  auto curve = [&](const std::string& run, const std::string& variant) {
    return test::losses(dir / run / variant / "metrics.jsonl");
  };
  auto hashes = [&](const std::string& run, const std::string& variant) {
    return strings_of(dir / run / variant / "metrics.jsonl", "batch_hash");
  };
  const std::string split = " --set run.variant_placement=split";
  REQUIRE(launch("one", 1, "", 0) == 0);
  REQUIRE(launch("pair", 2, "", test::test_port(20)) == 0);
  REQUIRE(launch("split", 4, split, test::test_port(30)) == 0);
  const std::string log = text_of(dir / "split.log");
  INFO(log);
  // Each group's first rank prints its variant (rank 2 into split.log.2); rank 0 prints the
  // table with both variants' rows.
  REQUIRE(log.find("variant baseline: ") != std::string::npos);
  REQUIRE(log.find("ranks 0-1 (group 1 of 2)") != std::string::npos);
  REQUIRE(log.find("variant headwise: ") == std::string::npos);
  REQUIRE(text_of(dir / "split.log.2").find("ranks 2-3 (group 2 of 2)") != std::string::npos);
  REQUIRE(text_of(dir / "split.log.1").empty());
  REQUIRE(log.find("\nbaseline ") != std::string::npos);
  REQUIRE(log.find("\nheadwise ") != std::string::npos);
  // Rank 0 pairs the groups' final evaluations from their val_losses.json files: the line a
  // 2-rank run of both variants prints (the same batches, the same numbers).
  auto paired_line = [&](const std::string& text) {
    const size_t at = text.find("val loss, headwise - baseline: ");
    return at == std::string::npos ? std::string() : text.substr(at, text.find('\n', at) - at);
  };
  REQUIRE(paired_line(log).find("paired s.e. over the same 2 validation batches") !=
          std::string::npos);
  REQUIRE(paired_line(log) == paired_line(text_of(dir / "pair.log")));
  for (const std::string variant : {"baseline", "headwise"}) {
    INFO(variant);
    const std::vector<double> one = curve("one", variant), pair = curve("pair", variant),
                              apart = curve("split", variant);
    REQUIRE(one.size() == 12);
    // The same 2-rank slices of the same batches and the same math: the same numbers as when
    // both variants share the 2 ranks, and the same batches (rank 0's slice) in the same order.
    REQUIRE(apart == pair);
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("step " << i << ": 1 process " << one[i] << ", split " << apart[i]);
      REQUIRE(std::fabs(apart[i] - one[i]) <= 1e-5 * std::fabs(one[i]));
    }
  }
  // Both variants drew the same global batches, those of one process and of 2 ranks.
  REQUIRE(hashes("split", "baseline") == hashes("split", "headwise"));
  REQUIRE(hashes("split", "baseline") == hashes("one", "baseline"));
  REQUIRE(hashes("pair", "headwise") == hashes("one", "headwise"));
  REQUIRE(hashes("split", "baseline").size() == 13);  // 12 steps and the final evaluation

  // Stopped after 5 steps by split ranks, resumed and finished by one process: the same curve.
  REQUIRE(launch("moved", 4, split + " --stop-after 5", test::test_port(30)) == 0);
  REQUIRE(launch("moved", 1, " --resume auto", 0) == 0);
  for (const std::string variant : {"baseline", "headwise"}) {
    const std::vector<double> one = curve("one", variant), moved = curve("moved", variant);
    REQUIRE(moved.size() == one.size());
    for (size_t i = 0; i < one.size(); ++i) {
      INFO(variant << ", step " << i << ": 1 process " << one[i] << ", resumed " << moved[i]);
      REQUIRE(std::fabs(moved[i] - one[i]) <= 1e-5 * std::fabs(one[i]));
    }
  }

  // A long split run of 4 ranks in the background (pids $p0 to $p3, logs <name>.log.<rank>);
  // once headwise has logged 3 steps, `then` runs (it signals a rank and waits); returns the
  // script's exit status.
  auto four_ranks_then = [&](const std::string& name, const std::string& then) {
    const std::string args = " compare " + cfg + " --no-progress --set run.name=" + name +
                             " --set train.steps=100000 --set run.collective_timeout_s=60" + split;
    const std::string vars = "OMP_NUM_THREADS=1 WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                             std::to_string(test::test_port(30));
    const std::string log = (dir / (name + ".log")).string();
    const std::string metrics = (dir / name / "headwise" / "metrics.jsonl").string();
    std::string script;
    for (int r = 0; r < 4; ++r)
      script += "env RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) + " " + vars +
                " " + bin + args + " > " + log + "." + std::to_string(r) + " 2>&1 & p" +
                std::to_string(r) + "=$!; ";
    script += "for i in $(seq 1 600); do [ $(cat " + metrics +
              " 2>/dev/null | wc -l) -ge 3 ] && break; sleep 0.05; done; " + then;
    INFO(script);
    return test::shell("bash -c '" + script + "'");
  };
  // SIGTERM to the last rank only: all four agree to stop on the same step, both variants
  // checkpoint that step, and every rank exits 0.
  REQUIRE(four_ranks_then("sig", "kill -TERM $p3; st=0; for p in $p0 $p1 $p2 $p3; do wait $p; "
                                 "st=$((st * 10 + $?)); done; exit $st") == 0);
  REQUIRE(text_of(dir / "sig.log.0").find("interrupted by signal") != std::string::npos);
  const std::string latest = text_of(dir / "sig" / "baseline" / "ckpt" / "latest");
  REQUIRE_FALSE(latest.empty());
  REQUIRE(latest == text_of(dir / "sig" / "headwise" / "ckpt" / "latest"));
  // SIGKILL to the last rank: no rank hangs, and the dead rank is named by its world rank: by
  // its group's first rank (in the group's gradient all-reduce), or by rank 0 (in the stop
  // agreement) when that rank had reached it first.
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(four_ranks_then("dead", "kill -KILL $p3; failed=0; for p in $p0 $p1 $p2; do "
                                  "wait $p || failed=$((failed + 1)); done; exit $failed") == 3);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(50));  // not a timeout
  const std::string group_leader = text_of(dir / "dead.log.2"),
                    world_leader = text_of(dir / "dead.log.0");
  INFO(group_leader << "\n" << world_leader);
  REQUIRE((group_leader.find("rank 3 (rank 1 of its variant's group)") != std::string::npos ||
           world_leader.find("rank 3 ") != std::string::npos));
  fs::remove_all(dir);
}
