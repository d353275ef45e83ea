// Shared by the fuzz targets: the bytes libFuzzer hands over, as text or as a file on disk (the
// readers under test take paths), and the one outcome that is acceptable for a bad input.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.h"

namespace sinklab::fuzz {

// A file holding the input for the reader under test, rewritten for every input (one per
// process: libFuzzer runs inputs one after another).
inline const std::string& input_file(const char* suffix) {
  static const std::string path =
      "/tmp/sinklab_fuzz_" + std::to_string(getpid()) + "_input" + suffix;
  return path;
}

inline std::string write_input(const uint8_t* data, size_t size, const char* suffix) {
  const std::string& path = input_file(suffix);
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs `read` on one input: a sinklab::Error (a clear message naming the file or key) is the
// accepted answer to bad bytes; anything else escapes, and libFuzzer reports it as a crash: a
// signal, a sanitizer report, or an exception that is not sinklab's (std::bad_alloc from a size
// read from the file, std::out_of_range, a library's own exception type).
template <class Fn>
int accept_errors(Fn&& read) {
  try {
    read();
  } catch (const sinklab::Error&) {
  }
  return 0;
}

}  // namespace sinklab::fuzz
