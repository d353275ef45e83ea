// The HDF5 metrics log: a field that an older run's log lacks (created on resume, after row 0)
// reads NaN, "not measured", in the rows written before it existed, not HDF5's default 0; and
// every dataset's chunk fits HDF5's default chunk cache, so appending a row stays cheap.
#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "tests/catch.h"
#include "tests/train/train_test_util.h"
#include "train/io/metrics_log.h"
#include "train/io/step_record.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {

StepRecord record_at(int64_t step) {
  StepRecord r;
  r.step = step;
  r.loss = 2.0 + static_cast<double>(step);
  r.val_loss = r.val_loss_se = std::nan("");
  return r;
}

// (rows) of a one-dimensional f64 dataset of an HDF5 file.
std::vector<double> read_column(const std::string& path, const char* name) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(file >= 0);
  const hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  REQUIRE(ds >= 0);
  const hid_t space = H5Dget_space(ds);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  std::vector<double> values(n);
  REQUIRE(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) >= 0);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(file);
  return values;
}

}  // namespace

TEST_CASE("metrics.h5: a field missing from a resumed log is NaN in its earlier rows",
          "[io]") {
  test::TempDir tmp;
  const std::string dir = tmp.path.string(), path = dir + "/metrics.h5";
  {
    MetricsLog log(dir, 2, 2, 8, false, true, false);
    log.write(record_at(0));
    log.write(record_at(1));
    log.flush();
  }
  {  // as a log written by a sinklab without the field "loss" would be
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(file >= 0);
    REQUIRE(H5Ldelete(file, "loss", H5P_DEFAULT) >= 0);
    H5Fclose(file);
  }
  {
    MetricsLog log(dir, 2, 2, 8, false, true, false, /*keep_before_step=*/2);
    log.write(record_at(2));
    log.flush();
  }
  const std::vector<double> loss = read_column(path, "loss");  // (3)
  REQUIRE(loss.size() == 3);
  REQUIRE(std::isnan(loss[0]));
  REQUIRE(std::isnan(loss[1]));
  REQUIRE(loss[2] == 4.0);
  const std::vector<double> lr = read_column(path, "lr");  // written every row: untouched
  REQUIRE(lr == std::vector<double>{0.0, 0.0, 0.0});
}

TEST_CASE("metrics.h5: every chunk fits HDF5's chunk cache, up to 64 rows", "[io]") {
  // GPT-2's shape: a (L, T) field is 12 x 1024 doubles a row (96 KiB), so 64 rows a chunk would
  // be 6 MiB, over the 1 MiB cache; a scalar field keeps 64 rows a chunk.
  test::TempDir tmp;
  const std::string dir = tmp.path.string(), path = dir + "/metrics.h5";
  {
    MetricsLog log(dir, 12, 12, 1024, false, true, false);
    log.write(record_at(0));
  }
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(file >= 0);
  for (const char* name : {"var_pos", "sink_mass", "loss"}) {
    INFO(name);
    const hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    REQUIRE(ds >= 0);
    const hid_t plist = H5Dget_create_plist(ds);
    hsize_t chunk[3] = {0, 1, 1};
    const int rank = H5Pget_chunk(plist, 3, chunk);
    REQUIRE(rank >= 1);
    const hsize_t bytes = chunk[0] * (rank > 1 ? chunk[1] : 1) * (rank > 2 ? chunk[2] : 1) * 8;
    REQUIRE(bytes <= (hsize_t{1} << 19));
    REQUIRE(chunk[0] >= 1);
    if (rank == 1) REQUIRE(chunk[0] == 64);
    H5Pclose(plist);
    H5Dclose(ds);
  }
  H5Fclose(file);
}

TEST_CASE("metrics.jsonl writes each number as printf's %.9g would, and null for NaN", "[io]") {
  // step_to_json formats with std::to_chars (precision 9, general); the files read the same as
  // when it used snprintf("%.9g").
  const std::vector<double> values = {0.0,      -0.0,    1.0,       -2.5,         1e-5,
                                      1.0 / 3,  123456789.0, 1234567890123.0, 6.02214076e23,
                                      4.9e-324, 1e300,   -7.25e-12, 0.1 + 0.2,    100.0};
  StepRecord r = record_at(7);
  r.loss = 0.1 + 0.2;
  r.batch_hash = 0xfedcba9876543210ULL;
  r.has_sink = true;
  r.sink.layers.resize(1);
  r.sink.layers[0].var_pos = values;
  r.sink.layers[0].var_pos_normed = {std::nan(""), 2.0};
  const std::string json = step_to_json(r);
  INFO(json);
  auto printf_g = [](double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return std::string(buf);
  };
  std::string expected = "\"var_pos\":[[";
  for (size_t i = 0; i < values.size(); ++i) expected += (i ? "," : "") + printf_g(values[i]);
  REQUIRE(test::contains(json, expected + "]]"));
  REQUIRE(test::contains(json, "\"var_pos_normed\":[[null,2]]"));
  REQUIRE(test::contains(json, "{\"step\":7,\"loss\":" + printf_g(0.1 + 0.2) + ","));
  REQUIRE(test::contains(json, "\"batch_hash\":\"fedcba9876543210\""));
  REQUIRE(json.back() == '}');
}

TEST_CASE("a resume reads back the summary's columns from metrics.jsonl as written", "[io]") {
  // Three records through MetricsLog: step 0 (not timed), step 1 with sink metrics (a NaN
  // among them), step 2 without; the last `count` = 2 losses, tokens/s over steps 1 and 2.
  test::TempDir tmp;
  const std::string dir = tmp.path.string();
  {
    MetricsLog log(dir, 2, 2, 8, true, false, false);
    for (int64_t step = 0; step < 3; ++step) {
      StepRecord r = record_at(step);
      r.tokens_per_s = 100.0 * (step + 1);
      if (step == 1) {
        r.has_sink = true;
        r.sink.sink_rate = 25.0;
        r.sink.layers.resize(2);
        r.sink.layers[0].sink_mass = {0.5, 0.25};
        r.sink.layers[1].sink_mass = {0.125, 1.0 / 3};
        r.sink.layers[0].var_ratio = 3.5;
        r.sink.layers[1].var_ratio = 1.5;
        r.sink.layers[0].var_ratio_normed = r.sink.layers[1].var_ratio_normed = std::nan("");
        r.sink.layers[0].dim_disparity = 7.0;
        r.sink.layers[1].super_ratio = 1234.5;
      }
      log.write(r);
    }
    log.flush();
  }
  const LoggedSteps logged = read_logged_steps(dir, 2);
  REQUIRE(logged.recent_losses == std::vector<double>{3.0, 4.0});
  REQUIRE(logged.timed_steps == 2);
  REQUIRE(logged.tokens_per_s_sum == 500.0);
  const StepRecord& s = logged.last_sink;
  REQUIRE(s.has_sink);
  REQUIRE(s.step == 1);
  REQUIRE(s.sink.sink_rate == 25.0);
  REQUIRE(s.sink.layers.size() == 2);
  REQUIRE(s.sink.layers[0].sink_mass == std::vector<double>{0.5, 0.25});
  REQUIRE(s.sink.layers[1].sink_mass[1] == Approx(1.0 / 3).epsilon(1e-8));  // 9 digits
  REQUIRE(s.sink.layers[0].var_ratio == 3.5);
  REQUIRE(s.sink.layers[1].var_ratio == 1.5);
  REQUIRE(std::isnan(s.sink.layers[1].var_ratio_normed));
  REQUIRE(s.sink.layers[0].dim_disparity == 7.0);
  REQUIRE(s.sink.layers[1].super_ratio == 1234.5);

  // No file: nothing read. A sink record cut short: an IOError naming the file.
  const LoggedSteps none = read_logged_steps(dir + "/absent", 10);
  REQUIRE(none.recent_losses.empty());
  REQUIRE(!none.last_sink.has_sink);
  {
    std::ofstream cut(dir + "/metrics.jsonl", std::ios::app);
    cut << "{\"step\":3,\"loss\":1,\"var_ratio\":[1,\n";
  }
  std::string error;
  try {
    read_logged_steps(dir, 2);
  } catch (const IOError& e) {
    error = e.what();
  }
  REQUIRE(test::contains(error, dir + "/metrics.jsonl"));
}
