#include "train/io/hdf5.h"

#include "core/error.h"

namespace sinklab::train::h5 {

void quiet() {
  // No HDF5 shutdown at exit: after a failed write (a full disk) H5Fclose fails and the file stays
  // in HDF5's table, and closing it again from HDF5's atexit handler crashed the process
  // (SIGSEGV in H5F__close_cb) after our error was printed. H5dont_atexit must precede every
  // other HDF5 call (later calls fail harmlessly); the OS releases the files at exit.
  static const bool no_atexit = [] {
    H5dont_atexit();
    return true;
  }();
  (void)no_atexit;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

void check(herr_t status, const std::string& prefix, const std::string& file,
           const std::string& what, const std::string& hint) {
  SINKLAB_CHECK(status >= 0, IOError, prefix << file << ": HDF5 failed to " << what, hint);
}

Handle space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>& max) {
  if (dims.empty()) return Handle(H5Screate(H5S_SCALAR), H5Sclose);
  return Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(),
                                 max.empty() ? nullptr : max.data()),
                H5Sclose);
}

}  // namespace sinklab::train::h5
