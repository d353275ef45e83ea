// libFuzzer target: the checkpoint reader (HDF5 container, magic, format version, structure,
// checksum, then every tensor) on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_input.h"
#include "train/io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sinklab::fuzz::write_input(data, size, ".h5");
  return sinklab::fuzz::accept_errors([&] {
    sinklab::train::read_checkpoint_state(path);
    sinklab::train::read_checkpoint_params(path);
  });
}
