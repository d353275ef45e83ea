// The HDF5 wrapper of the checkpoint (train/io/checkpoint.h) and of metrics.h5
// (train/io/metrics_log.h): identifiers that close themselves, one status check that names the
// file, and HDF5's own error printing turned off (our checks report, with a hint).
#pragma once
#include <hdf5.h>

#include <string>
#include <vector>

namespace sinklab::train::h5 {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  // Closes now and reports whether closing succeeded.
  bool close() {
    if (id_ < 0) return true;
    const herr_t status = close_(id_);
    id_ = -1;
    return status >= 0;
  }

 private:
  void reset() {
    if (id_ >= 0) close_(id_);
    id_ = -1;
  }
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5 prints nothing itself; the callers' checks throw with the file and a hint. Also turns
// off HDF5's shutdown at exit (see hdf5.cpp). Call before any other HDF5 function.
void quiet();

// Throws IOError "<prefix> <file>: HDF5 failed to <what>" with `hint` when status < 0 (an
// identifier counts as a status: negative on failure).
void check(herr_t status, const std::string& prefix, const std::string& file,
           const std::string& what, const std::string& hint);

// A dataspace of these dimensions (none: a scalar); `max` empty = fixed size.
Handle space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>& max = {});

}  // namespace sinklab::train::h5
