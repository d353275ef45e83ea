#include "train/io/tensorboard_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "train/io/tf_record.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "events.out.tfevents.";
constexpr const char* kSuffix = ".sinklab";

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Mean of the finite values; NaN when there is none.
double finite_mean(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values)
    if (std::isfinite(v)) {
      sum += v;
      ++n;
    }
  return n ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

std::vector<ScalarValue> tensorboard_scalars(const StepRecord& r) {
  std::vector<ScalarValue> out;
  auto add = [&out](std::string tag, double v) {
    if (std::isfinite(v)) out.push_back({std::move(tag), static_cast<float>(v)});
  };
  for (const ScalarField& f : scalar_fields()) add(std::string(f.group) + "/" + f.name, f.get(r));
  if (!r.has_sink) return out;
  const size_t L = r.sink.layers.size();
  const size_t width = std::max<size_t>(2, std::to_string(L > 0 ? L - 1 : 0).size());
  auto layer_tag = [width](const char* name, size_t l) {
    const std::string index = std::to_string(l);
    return std::string(name) + "/layer_" + std::string(width - index.size(), '0') + index;
  };
  for (const LayerField& f : layer_fields())
    for (size_t l = 0; l < L; ++l) add(layer_tag(f.name, l), f.get(r.sink.layers[l]));
  for (const LayerVectorField& f : layer_vector_fields()) {
    const std::string inner = f.inner_label;
    if (inner != "head" && inner != "rank") continue;  // a profile over positions: no scalar
    for (size_t l = 0; l < L; ++l) {
      const std::vector<double> v = f.get(r.sink.layers[l]);
      add(layer_tag(f.name, l), inner == "head" ? finite_mean(v)
                                : v.empty()       ? std::numeric_limits<double>::quiet_NaN()
                                                  : v.front());  // rank 1: the largest
    }
  }
  return out;
}

std::string events_file_name(int64_t unix_seconds, const std::string& host) {
  return kPrefix + std::to_string(unix_seconds) + "." + host + kSuffix;
}

std::vector<std::string> sinklab_events_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.starts_with(kPrefix) && name.ends_with(kSuffix))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t cut_back_events_file(const std::string& path, int64_t keep_before_step) {
  uint64_t keep = 0;
  {
    std::ifstream in(path, std::ios::binary);
    SINKLAB_CHECK(in.good(), IOError, "cannot open " << path << " to resume its events",
                  "check the run folder's permissions");
    RecordReader reader(in, fs::file_size(path));
    std::string data;
    bool first = true;
    while (reader.next(data)) {
      Event event;
      try {
        event = decode_event(data);
      } catch (const IOError& e) {
        SINKLAB_FAIL(IOError,
                     path << ": the record at byte " << keep << " has good CRCs but "
                          << e.message(),
                     "move the file away: the resumed run starts a new events file");
      }
      if (first ? event.file_version != kEventFileVersion : event.step >= keep_before_step) break;
      first = false;
      keep = reader.good_bytes();
    }
  }
  std::error_code ec;
  fs::resize_file(path, keep, ec);  // shorter only: needs no space, never half done
  SINKLAB_CHECK(!ec, IOError, "cannot cut " << path << " back to " << keep << " bytes ("
                                            << ec.message() << ")",
                "check the run folder's permissions");
  return keep;
}

TensorBoardLog::TensorBoardLog(const std::string& dir, int64_t keep_before_step) {
  std::vector<std::string> existing = sinklab_events_files(dir);
  uint64_t kept = 0;
  for (const std::string& file : existing) {
    if (keep_before_step < 0) {  // a fresh run replaces them, as it does metrics.jsonl
      std::error_code ec;
      fs::remove(file, ec);
      SINKLAB_CHECK(!ec, IOError, "cannot remove the earlier events file " << file << " ("
                                                                            << ec.message() << ")",
                    "check the run folder's permissions, or move the file away");
    } else {
      kept = cut_back_events_file(file, keep_before_step);
      path_ = file;  // the newest (last by name) is continued
    }
  }
  const double now = unix_time_now();
  if (path_.empty())
    path_ = dir + "/" + events_file_name(static_cast<int64_t>(now), host_name());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  SINKLAB_CHECK(fd_ >= 0, IOError,
                "cannot open " << path_ << " for writing (" << std::strerror(errno) << ")",
                "check the run folder's permissions and disk space, or set "
                "metrics.tensorboard: false");
  if (kept == 0) {
    Event header;
    header.wall_time = now;
    header.file_version = kEventFileVersion;
    append(frame_record(encode_event(header)));
  }
}

TensorBoardLog::~TensorBoardLog() {
  if (fd_ >= 0) ::close(fd_);
}

void TensorBoardLog::append(const std::string& framed) {
  size_t done = 0;
  while (done < framed.size()) {
    const ssize_t n = ::write(fd_, framed.data() + done, framed.size() - done);
    if (n < 0 && errno == EINTR) continue;
    SINKLAB_CHECK(n > 0, IOError, "cannot write " << path_ << " (" << std::strerror(errno) << ")",
                  "check the disk's free space");
    done += static_cast<size_t>(n);
  }
}

void TensorBoardLog::write(const StepRecord& record) {
  Event event;
  event.wall_time = unix_time_now();
  event.step = record.step;
  event.scalars = tensorboard_scalars(record);
  append(frame_record(encode_event(event)));
}

void TensorBoardLog::flush() {
  SINKLAB_CHECK(::fsync(fd_) == 0, IOError,
                "cannot sync " << path_ << " to disk (" << std::strerror(errno) << ")",
                "check the disk's free space and health");
}

}  // namespace sinklab::train
