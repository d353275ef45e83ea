#include "train/io/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>
#include <hdf5_hl.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <fstream>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "train/data/json_file.h"
#include "train/io/atomic_file.h"
#include "train/io/background_lines.h"
#include "train/io/hdf5.h"
#include "train/io/tensorboard_log.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// v as "%.9g" would print it (std::to_chars' general format with precision 9 is specified to
// match printf's), or null when it is not finite. to_chars into a string: a metrics record
// holds about 25,000 numbers at GPT-2's sizes (two (L, T) fields): snprintf through a string
// stream took 2.7 ms a record on a 2-core machine, to_chars 0.95 (tests/bench_metrics_log.cpp).
void json_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  const std::to_chars_result written =
      std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 9);
  out.append(buf, written.ptr);
}

void json_array(std::string& out, const std::vector<double>& v) {
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    json_number(out, v[i]);
  }
  out += ']';
}

void h5_check(herr_t status, const std::string& what, const std::string& file) {
  h5::check(status, "metrics ", file, what,
            "check disk space and that no other process holds the file");
}

int64_t step_of_json_line(const std::string& line) {
  const auto pos = line.find("\"step\":");
  if (pos == std::string::npos) return -1;
  return std::atoll(line.c_str() + pos + 7);
}

}  // namespace

namespace {

// The number after "key": in a metrics line, NaN when it is null; nullopt when the key is absent.
std::optional<double> logged_number(const std::string& line, std::string_view key) {
  const std::string field = ",\"" + std::string(key) + "\":";
  const size_t at = line.find(field);
  if (at == std::string::npos) return std::nullopt;
  const char* value = line.c_str() + at + field.size();
  return std::strncmp(value, "null", 4) == 0 ? kNaN : std::strtod(value, nullptr);
}

double json_double(const YAML::Node& n) { return n.IsNull() ? kNaN : n.as<double>(); }

// The summary's columns of a record with sink metrics (LoggedSteps::last_sink).
StepRecord summary_columns_of(const std::string& line, const std::string& file) {
  StepRecord r;
  try {
    const YAML::Node record = parse_json(line);
    r.step = record["step"].as<int64_t>();
    r.has_sink = true;
    r.sink.sink_rate = json_double(record["sink_rate"]);
    const YAML::Node sink_mass = record["sink_mass"], var_ratio = record["var_ratio"],
                     var_ratio_normed = record["var_ratio_normed"],
                     disparity = record["dim_disparity"], super_ratio = record["super_ratio"];
    r.sink.layers.resize(var_ratio.size());
    for (size_t l = 0; l < r.sink.layers.size(); ++l) {
      LayerMetrics& m = r.sink.layers[l];
      for (const YAML::Node& head : sink_mass[l]) m.sink_mass.push_back(json_double(head));
      m.var_ratio = json_double(var_ratio[l]);
      m.var_ratio_normed = json_double(var_ratio_normed[l]);
      m.dim_disparity = json_double(disparity[l]);
      m.super_ratio = json_double(super_ratio[l]);
    }
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(IOError,
                 "cannot read the last sink-metrics record of " << file << ": " << e.what(),
                 "the file was changed by hand or cut short; restore it or start afresh "
                 "without --resume");
  }
  return r;
}

}  // namespace

LoggedSteps read_logged_steps(const std::string& dir, size_t count) {
  const std::string file = dir + "/metrics.jsonl";
  std::ifstream in(file);
  LoggedSteps logged;
  std::string last_sink_line;  // of the last record with sink metrics
  for (std::string line; std::getline(in, line);) {
    const std::optional<double> loss = logged_number(line, "loss");
    if (!loss) continue;
    logged.recent_losses.push_back(*loss);
    if (logged.recent_losses.size() > count)
      logged.recent_losses.erase(logged.recent_losses.begin());
    if (step_of_json_line(line) > 0) {
      logged.tokens_per_s_sum += logged_number(line, "tokens_per_s").value_or(kNaN);
      ++logged.timed_steps;
    }
    if (line.find(",\"var_ratio\":[") != std::string::npos) last_sink_line = std::move(line);
  }
  if (!last_sink_line.empty()) logged.last_sink = summary_columns_of(last_sink_line, file);
  return logged;
}

std::string step_to_json(const StepRecord& r) {
  std::string out;
  out.reserve(r.has_sink ? 16 * 1024 * r.sink.layers.size() : 1024);
  out += "{\"step\":";
  out += std::to_string(r.step);
  for (const ScalarField& f : scalar_fields()) {
    out += ",\"";
    out += f.name;
    out += "\":";
    json_number(out, f.get(r));
  }
  char hash[17];
  out += ",\"batch_hash\":\"";
  out.append(hash, std::to_chars(hash, hash + sizeof hash, r.batch_hash, 16).ptr);
  out += '"';
  if (r.has_sink) {
    for (const LayerField& f : layer_fields()) {
      out += ",\"";
      out += f.name;
      out += "\":[";
      for (size_t l = 0; l < r.sink.layers.size(); ++l) {
        if (l) out += ',';
        json_number(out, f.get(r.sink.layers[l]));
      }
      out += ']';
    }
    for (const LayerVectorField& f : layer_vector_fields()) {
      out += ",\"";
      out += f.name;
      out += "\":[";
      for (size_t l = 0; l < r.sink.layers.size(); ++l) {
        if (l) out += ',';
        json_array(out, f.get(r.sink.layers[l]));
      }
      out += ']';
    }
  }
  out += '}';
  return out;
}

struct MetricsLog::Impl {
  std::string dir;
  int64_t n_layer, n_head, seq_len;
  std::ofstream jsonl;
  std::string jsonl_path;
  std::unique_ptr<BackgroundLines> jsonl_lines;  // writes jsonl's lines; closes before it
  h5::Handle file;
  std::string h5_path;
  std::map<std::string, h5::Handle> datasets;
  std::unique_ptr<TensorBoardLog> events;

  // Opens or creates an extendible dataset (step, inner...) of doubles (or int64 for "step").
  hid_t dataset(const std::string& name, const std::vector<hsize_t>& inner,
                const std::vector<const char*>& labels, hid_t type) {
    auto it = datasets.find(name);
    if (it != datasets.end()) return it->second.get();
    h5::Handle ds;
    if (H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) > 0) {
      ds = h5::Handle(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    } else {
      // A chunk holds up to 64 rows and at most half of HDF5's default chunk cache (1 MiB a
      // dataset), so that appending a row updates a cached chunk; a row over 512 KiB gets a
      // chunk of its own (each append then writes whole chunks). A (64, L, T) chunk of doubles
      // (6 MiB at GPT-2's L and T) had made a step's write take 0.2 to 0.7 ms instead of about
      // 0.15 on this project's 2-core machine (tests/bench_metrics_log.cpp).
      hsize_t row_bytes = H5Tget_size(type);
      for (hsize_t d : inner) row_bytes *= std::max<hsize_t>(1, d);
      std::vector<hsize_t> dims{0}, maxdims{H5S_UNLIMITED},
          chunk{std::clamp<hsize_t>((hsize_t{1} << 19) / row_bytes, 1, 64)};
      for (hsize_t d : inner) {
        dims.push_back(d);
        maxdims.push_back(d);
        chunk.push_back(std::max<hsize_t>(1, d));
      }
      h5::Handle space = h5::space(dims, maxdims);
      h5::Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      H5Pset_chunk(props.get(), static_cast<int>(chunk.size()), chunk.data());
      // A dataset created after row 0 (a field this version adds, on resuming an older run's
      // log) has rows before it that were never written: NaN (not measured), not HDF5's 0.
      const double not_measured = kNaN;
      if (type == H5T_NATIVE_DOUBLE)
        h5_check(H5Pset_fill_value(props.get(), H5T_NATIVE_DOUBLE, &not_measured),
                 "fill value of " + name, h5_path);
      ds = h5::Handle(H5Dcreate2(file.get(), name.c_str(), type, space.get(), H5P_DEFAULT,
                                 props.get(), H5P_DEFAULT),
                      H5Dclose);
      h5_check(ds.get(), "create dataset " + name, h5_path);
      for (size_t i = 0; i < labels.size(); ++i)
        h5_check(H5DSset_label(ds.get(), static_cast<unsigned>(i), labels[i]), "label " + name,
                 h5_path);
    }
    return datasets.emplace(name, std::move(ds)).first->second.get();
  }

  void append(const std::string& name, const std::vector<hsize_t>& inner,
              const std::vector<const char*>& labels, const void* data, hid_t type,
              hsize_t row) {
    hid_t ds = dataset(name, inner, labels, type);
    std::vector<hsize_t> size{row + 1}, start{row}, count{1};
    for (hsize_t d : inner) {
      size.push_back(d);
      start.push_back(0);
      count.push_back(d);
    }
    h5_check(H5Dset_extent(ds, size.data()), "extend " + name, h5_path);
    h5::Handle filespace(H5Dget_space(ds), H5Sclose);
    H5Sselect_hyperslab(filespace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                        nullptr);
    h5::Handle memspace = h5::space(count);
    h5_check(H5Dwrite(ds, type, memspace.get(), filespace.get(), H5P_DEFAULT, data),
             "write " + name, h5_path);
  }

  hsize_t rows() {
    if (H5Lexists(file.get(), "step", H5P_DEFAULT) <= 0) return 0;
    h5::Handle space(H5Dget_space(dataset("step", {}, {"step"}, H5T_NATIVE_INT64)), H5Sclose);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space.get(), &n, nullptr);
    return n;
  }

  // Keeps the first rows whose step < keep_before (steps are written in increasing order).
  void truncate_h5(int64_t keep_before) {
    const hsize_t n = rows();
    if (n == 0) return;
    std::vector<int64_t> steps(n);
    hid_t step_ds = dataset("step", {}, {"step"}, H5T_NATIVE_INT64);
    H5Dread(step_ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps.data());
    hsize_t keep = 0;
    while (keep < n && steps[keep] < keep_before) ++keep;
    H5G_info_t info;
    H5Gget_info(file.get(), &info);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256];
      H5Lget_name_by_idx(file.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                         H5P_DEFAULT);
      h5::Handle ds(H5Dopen2(file.get(), name, H5P_DEFAULT), H5Dclose);
      h5::Handle space(H5Dget_space(ds.get()), H5Sclose);
      const int rank = H5Sget_simple_extent_ndims(space.get());
      std::vector<hsize_t> dims(rank);
      H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
      dims[0] = std::min(dims[0], keep);
      h5_check(H5Dset_extent(ds.get(), dims.data()), std::string("truncate ") + name, h5_path);
    }
  }
};

MetricsLog::MetricsLog(const std::string& dir, int64_t n_layer, int64_t n_head, int64_t seq_len,
                       bool jsonl, bool hdf5, bool tensorboard, int64_t keep_before_step)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  impl_->n_layer = n_layer;
  impl_->n_head = n_head;
  impl_->seq_len = seq_len;
  fs::create_directories(dir);
  const bool resume = keep_before_step >= 0;
  if (jsonl) {
    const std::string path = dir + "/metrics.jsonl";
    if (resume && fs::exists(path)) {  // keep earlier steps, atomically
      std::ifstream in(path);
      std::string kept;
      for (std::string line; std::getline(in, line);)
        if (!line.empty() && step_of_json_line(line) < keep_before_step) kept += line + '\n';
      write_file_atomic(path, kept, "check the run folder's permissions and disk space");
    }
    impl_->jsonl_path = path;
    impl_->jsonl.open(path, resume ? std::ios::app : std::ios::trunc);
    SINKLAB_CHECK(impl_->jsonl.good(), IOError, "cannot open " << path << " for writing",
                  "check the run folder's permissions and disk space");
    impl_->jsonl_lines = std::make_unique<BackgroundLines>(impl_->jsonl, path);
  }
  if (tensorboard) impl_->events = std::make_unique<TensorBoardLog>(dir, keep_before_step);
  if (hdf5) {
    impl_->h5_path = dir + "/metrics.h5";
    h5::quiet();
    if (resume && fs::exists(impl_->h5_path)) {
      impl_->file = h5::Handle(H5Fopen(impl_->h5_path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT),
                               H5Fclose);
      SINKLAB_CHECK(impl_->file.ok(), IOError, "cannot open " << impl_->h5_path,
                    "the file may be corrupt: move it away to start fresh metrics");
      impl_->truncate_h5(keep_before_step);
    } else {
      impl_->file = h5::Handle(
          H5Fcreate(impl_->h5_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
      SINKLAB_CHECK(impl_->file.ok(), IOError, "cannot create " << impl_->h5_path,
                    "check the run folder's permissions and disk space");
    }
  }
}

MetricsLog::~MetricsLog() {
  if (impl_) impl_->datasets.clear();  // the datasets close before the file
}

void MetricsLog::write(const StepRecord& r) {
  // The record's line is formatted on the writer's thread, from a copy.
  if (impl_->jsonl_lines) impl_->jsonl_lines->append([r] { return step_to_json(r); });
  if (impl_->events) impl_->events->write(r);
  if (!impl_->file.ok()) return;
  Impl& h = *impl_;
  const hsize_t row = h.rows();
  const hsize_t L = h.n_layer, NH = h.n_head, T = h.seq_len;
  h.append("step", {}, {"step"}, &r.step, H5T_NATIVE_INT64, row);
  for (const ScalarField& f : scalar_fields()) {
    const double v = f.get(r);
    h.append(f.name, {}, {"step"}, &v, H5T_NATIVE_DOUBLE, row);
  }
  for (const LayerField& f : layer_fields()) {
    std::vector<double> v(L, kNaN);
    if (r.has_sink)
      for (hsize_t l = 0; l < L; ++l) v[l] = f.get(r.sink.layers[l]);
    h.append(f.name, {L}, {"step", "layer"}, v.data(), H5T_NATIVE_DOUBLE, row);
  }
  for (const LayerVectorField& f : layer_vector_fields()) {
    const std::string inner = f.inner_label;
    const hsize_t width = inner == "head" ? NH : inner == "position" ? T : 3;
    std::vector<double> v(L * width, kNaN);
    if (r.has_sink)
      for (hsize_t l = 0; l < L; ++l) {
        std::vector<double> values = f.get(r.sink.layers[l]);
        for (hsize_t i = 0; i < std::min<hsize_t>(width, values.size()); ++i)
          v[l * width + i] = values[i];
      }
    h.append(f.name, {L, width}, {"step", "layer", f.inner_label}, v.data(), H5T_NATIVE_DOUBLE,
             row);
  }
}

namespace {

// fsync(2) of a file by path: its written data reaches the disk (any descriptor of the file
// flushes its pages).
void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  SINKLAB_CHECK(fd >= 0, IOError, "cannot open " << path << " to sync it",
                "check the run folder's permissions");
  const int status = ::fsync(fd);
  ::close(fd);
  SINKLAB_CHECK(status == 0, IOError, "cannot sync " << path << " to disk",
                "check the disk's free space and health");
}

}  // namespace

void MetricsLog::flush() {
  if (impl_->jsonl.is_open()) {
    impl_->jsonl_lines->drain();  // every line written so far is in the stream
    impl_->jsonl.flush();
    SINKLAB_CHECK(impl_->jsonl.good(), IOError, "cannot write " << impl_->jsonl_path,
                  "check the disk's free space");
    sync_file(impl_->jsonl_path);
  }
  if (impl_->events) impl_->events->flush();
  if (impl_->file.ok()) {
    h5_check(H5Fflush(impl_->file.get(), H5F_SCOPE_LOCAL), "flush", impl_->h5_path);
    sync_file(impl_->h5_path);
  }
}

}  // namespace sinklab::train
