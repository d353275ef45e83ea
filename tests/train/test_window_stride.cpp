// data.window_stride: windows that start only at multiples of a stride (documents with a BOS token
// at position 0, e.g. scripts/make_bigram_backcopy.py), stride 0 = the unchanged any-offset
// loader, and the config key's validation.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "tests/catch.h"
#include "train/config.h"
#include "train/data/data_loader.h"
#include "train/data/shards.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;
using test::iota_tokens;
using test::ints;
namespace fs = std::filesystem;

namespace {


// The window start of draw i before window_stride existed: floor(r * (N - T) / 2^64), with r the
// 64-bit value of Philox lanes 0 and 1 of block (seed, stream, i).
uint64_t legacy_start(uint64_t seed, uint64_t stream, uint64_t draw, uint64_t n_tokens,
                      uint64_t T) {
  const PhiloxBlock blk = philox4x32_10(seed, stream, draw);
  const uint64_t r = (static_cast<uint64_t>(blk.v[1]) << 32) | blk.v[0];
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * (n_tokens - T)) >> 64);
}


bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("window stride: every window starts at a multiple of the stride", "[data][stride]") {
  const int64_t B = 8, T = 16;
  for (const int64_t S : {T + 1, T + 9}) {
    INFO("stride " << S);
    const int32_t docs = 40;
    const int32_t N = static_cast<int32_t>(S) * docs + 5;  // a partial document at the end
    DataLoader a(iota_tokens(N), B, T, 1234, 1, S), b(iota_tokens(N), B, T, 1234, 1, S);
    REQUIRE(a.window_stride() == S);
    REQUIRE(a.num_window_starts() == static_cast<uint64_t>((N - T - 1) / S + 1));
    std::set<int32_t> starts;
    std::vector<std::vector<int32_t>> seen;
    for (int step = 0; step < 60; ++step) {
      const Batch x = a.next();
      REQUIRE(ints(x.inputs) == ints(b.next().inputs));  // deterministic
      const auto in = ints(x.inputs), tg = ints(x.targets);
      for (int64_t r = 0; r < B; ++r) {
        const int32_t s = in[r * T];
        REQUIRE(s % S == 0);
        REQUIRE(s + T + 1 <= N);  // the whole window (inputs and targets) is inside the data
        starts.insert(s);
        for (int64_t t = 0; t < T; ++t) {
          REQUIRE(in[r * T + t] == s + t);       // one contiguous window
          REQUIRE(tg[r * T + t] == s + t + 1);   // targets = inputs shifted
        }
      }
      seen.push_back(in);
    }
    // 480 draws over <= 41 documents: every whole document is drawn, no other start.
    REQUIRE(static_cast<uint64_t>(starts.size()) == a.num_window_starts());
    REQUIRE(a.cursor() == 60u * B);  // the cursor still counts windows

    // Resume from the cursor continues identically.
    DataLoader resumed(iota_tokens(N), B, T, 1234, 1, S);
    resumed.set_cursor(25u * B);
    for (int step = 25; step < 60; ++step) REQUIRE(ints(resumed.next().inputs) == seen[step]);

    // Data parallel: the rounds of 2 ranks are the batches of one loader, in order.
    DataLoader r0(iota_tokens(N), B / 2, T, 1234, 1, S), r1(iota_tokens(N), B / 2, T, 1234, 1, S);
    for (int step = 0; step < 5; ++step) {
      std::vector<int32_t> joined = ints(r0.next_slice(0, 2).inputs);
      const std::vector<int32_t> second = ints(r1.next_slice(1, 2).inputs);
      joined.insert(joined.end(), second.begin(), second.end());
      REQUIRE(joined == seen[step]);
    }
    REQUIRE(r0.cursor() == 5u * B);
  }

  // Exactly one document of T + 1 tokens: every window is that document.
  DataLoader one(iota_tokens(T + 1), 3, T, 5, 3, T + 1);
  REQUIRE(one.num_window_starts() == 1);
  for (int32_t v : ints(one.next().inputs)) REQUIRE(v < T);
}

TEST_CASE("window stride 0: the same windows as before for the same seed", "[data][stride]") {
  const int64_t B = 4, T = 16;
  const int32_t N = 5000;
  DataLoader dflt(iota_tokens(N), B, T, 1234, 1), zero(iota_tokens(N), B, T, 1234, 1, 0);
  REQUIRE(dflt.window_stride() == 0);
  REQUIRE(dflt.num_window_starts() == static_cast<uint64_t>(N - T));
  for (uint64_t step = 0; step < 20; ++step) {
    const auto a = ints(dflt.next().inputs), b = ints(zero.next().inputs);
    REQUIRE(a == b);
    for (int64_t r = 0; r < B; ++r)
      REQUIRE(static_cast<uint64_t>(a[r * T]) == legacy_start(1234, 1, step * B + r, N, T));
  }
  // Stride 0 still reaches offsets that are not document starts.
  std::set<int32_t> residues;
  DataLoader any(iota_tokens(N), 64, T, 7, 2);
  for (int step = 0; step < 4; ++step)
    for (int32_t v : ints(any.next().inputs)) residues.insert(v % (T + 1));
  REQUIRE(residues.size() == static_cast<size_t>(T + 1));
}

TEST_CASE("window stride: from_files passes it, bad strides are refused", "[data][stride]") {
  const int64_t T = 8;
  test::TempDir dir;
  write_shard((dir.path / "train_000000.bin").string(), iota_tokens(9 * 30));
  DataLoader loader = DataLoader::from_files(dir.path.string(), "train_*.bin", 16, T, 1, 1, T + 1);
  REQUIRE(loader.window_stride() == T + 1);
  for (int32_t v : ints(loader.next().inputs)) REQUIRE(v % (T + 1) < T);  // never a last token
  REQUIRE(DataLoader::from_files(dir.path.string(), "train_*.bin", 2, T, 1, 1).window_stride() ==
          0);

  for (const int64_t bad : {int64_t{1}, T, int64_t{-1}}) {
    INFO("stride " << bad);
    const std::string m =
        test::error_message<ValueError>([&] { DataLoader(iota_tokens(100), 2, T, 1, 1, bad); });
    REQUIRE(has(m, "window_stride"));
    REQUIRE(has(m, std::to_string(T + 1)));
  }
}

TEST_CASE("config: data.window_stride is read, written back and validated", "[config][stride]") {
  test::TempDir dir;
  const std::string head = "model:\n  block_size: 32\ndata:\n  window_stride: ";
  {
    const std::string path = dir.write("good.yaml", head + "33\n");
    const RunConfig c = load_config(path);
    REQUIRE(c.data.window_stride == 33);
    REQUIRE(has(to_yaml(c), "window_stride: 33"));
    REQUIRE(parse_config(to_yaml(c), "back.yaml").data.window_stride == 33);
    REQUIRE(load_config(path, {"data.window_stride=0"}).data.window_stride == 0);
    REQUIRE(RunConfig{}.data.window_stride == 0);
  }
  for (const char* bad : {"10", "32", "-33"}) {
    INFO("window_stride " << bad);
    const std::string path = dir.write(std::string("bad_") + bad + ".yaml", head + bad + "\n");
    const std::string m = test::error_message<ConfigError>([&] { load_config(path); });
    REQUIRE(has(m, "data.window_stride"));
    REQUIRE(has(m, path));
  }
  {  // through --set and through a variant that shrinks the stride below block_size + 1
    const std::string path = dir.write("set.yaml", head + "33\n");
    const std::string m =
        test::error_message<ConfigError>([&] { load_config(path, {"model.block_size=64"}); });
    REQUIRE(has(m, "data.window_stride"));
    REQUIRE(has(m, "set.yaml"));
    const std::string vpath = dir.write(
        "variant.yaml",
        head + "33\nvariants:\n  - name: small\n    set: {data.window_stride: 20}\n");
    const std::string v = test::error_message<ConfigError>([&] { load_config(vpath); });
    REQUIRE(has(v, "data.window_stride"));
    REQUIRE(has(v, "variant.yaml"));
  }
}
