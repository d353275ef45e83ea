// `sinklab bench-attention` on the CPU: it times a real forward and backward (both paths, with an
// isolated position), and refuses bad options with the option named.
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "tests/catch.h"
#include "train/commands/bench_attention.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {

AttentionBenchOptions tiny() {
  AttentionBenchOptions o;
  o.batch = 2;
  o.seq = 33;
  o.heads = 2;
  o.head_size = 8;
  o.iters = 2;
  o.warmup = 1;
  o.device = "cpu";
  return o;
}

}  // namespace

TEST_CASE("bench-attention times the packed and separate paths on the CPU", "[bench]") {
  for (bool packed : {true, false}) {
    INFO("packed " << packed);
    AttentionBenchOptions o = tiny();
    o.packed = packed;
    o.isolate = {0, 5};
    const AttentionBenchResult r = bench_attention(o);
    REQUIRE(r.forward_ms > 0);
    REQUIRE(r.backward_ms > 0);
    REQUIRE(std::isfinite(r.forward_tflops));
    REQUIRE(r.backward_tflops > 0);
    std::ostringstream line;
    print_attention_bench(o, r, line);
    REQUIRE(line.str().find("B=2 T=33 NH=2 HS=8 softmax isolate=2: forward_ms ") !=
            std::string::npos);
  }
}

TEST_CASE("bench-attention refuses bad options, naming them", "[bench]") {
  auto message = [](AttentionBenchOptions o) {
    try {
      bench_attention(o);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  AttentionBenchOptions o = tiny();
  o.seq = 0;
  REQUIRE(message(o).find("--seq is 0") != std::string::npos);
  o = tiny();
  o.head_size = -1;
  REQUIRE(message(o).find("--head-size is -1") != std::string::npos);
  o = tiny();
  o.precision = "fp8";
  REQUIRE(message(o).find("--precision 'fp8'") != std::string::npos);
  o.precision = "bf16";
  o.kernels = "flash";
  REQUIRE(message(o).find("--kernels 'flash'") != std::string::npos);
  o.kernels = "own";
  o = tiny();
  o.isolate = {33};
  REQUIRE(message(o).find("--isolate 33 is outside [0, 33)") != std::string::npos);
  o = tiny();
  o.device = "tpu";
  REQUIRE(message(o).find("--device") != std::string::npos);
}
