// BackgroundLines (train/io/background_lines.h): the JSONL writer's thread. Lines arrive in the
// order they were appended, drain() waits for all of them, a line's error reaches the caller
// once, and destruction writes what is still queued.
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "tests/catch.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"
#include "train/io/background_lines.h"
#include "train/io/metrics_log.h"
#include "train/io/step_record.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("background lines: in order, drained, errors once, the rest written at the end",
          "[io]") {
  test::TempDir tmp;
  const std::string path = (tmp.path / "lines.txt").string();
  std::ofstream out(path);
  {
    BackgroundLines lines(out, path);
    for (int i = 0; i < 2000; ++i)
      lines.append([i] {
        if (i % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        return std::to_string(i);
      });
    lines.drain();
    out.flush();
    const std::vector<std::string> got = lines_of(path);
    REQUIRE(got.size() == 2000);
    for (int i = 0; i < 2000; ++i) REQUIRE(got[i] == std::to_string(i));

    lines.append([]() -> std::string {
      SINKLAB_FAIL(IOError, "disk full (test)", "free some space");
    });
    REQUIRE(test::contains(test::caught<IOError>([&] { lines.drain(); }).what(),
                           "disk full (test)"));
    lines.drain();  // reported once
    lines.append([] { return std::string("after the error"); });
    lines.append([] { return std::string("last, slow"); });
    lines.append([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return std::string("queued at destruction");
    });
  }  // no drain: the destructor writes what is queued
  out.flush();
  const std::vector<std::string> got = lines_of(path);
  REQUIRE(got.size() == 2003);
  REQUIRE(got[2000] == "after the error");
  REQUIRE(got[2001] == "last, slow");
  REQUIRE(got[2002] == "queued at destruction");
}

TEST_CASE("metrics.jsonl from the writer's thread: each record's line, in step order", "[io]") {
  test::TempDir tmp;
  const std::string dir = tmp.path.string();
  std::vector<StepRecord> records(50);
  for (int i = 0; i < 50; ++i) {
    records[i].step = i;
    records[i].loss = 1.0 / (i + 1);
    records[i].has_sink = i % 10 == 0;
    records[i].sink.layers.resize(records[i].has_sink ? 2 : 0);
    for (LayerMetrics& m : records[i].sink.layers) m.var_pos.assign(8, 0.5 * i);
  }
  MetricsLog log(dir, 2, 2, 8, true, false, false);
  for (const StepRecord& r : records) log.write(r);
  log.flush();  // waits for the writer's thread
  const std::vector<std::string> got = lines_of(dir + "/metrics.jsonl");
  REQUIRE(got.size() == records.size());
  for (size_t i = 0; i < records.size(); ++i) REQUIRE(got[i] == step_to_json(records[i]));
}
