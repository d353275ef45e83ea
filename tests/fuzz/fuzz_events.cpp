// libFuzzer target: the TensorBoard events reader that a resume runs over a variant's events file
// (TFRecord framing with both CRCs, then each record's Event protobuf) on arbitrary bytes, and the
// Event decoder alone on the raw bytes (a CRC check never lets most of them reach it).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/fuzz_input.h"
#include "train/io/tensorboard_log.h"
#include "train/io/tf_event.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sinklab::fuzz::write_input(data, size, ".tfevents.sinklab");
  return sinklab::fuzz::accept_errors([&] {
    sinklab::train::decode_event(std::string_view(reinterpret_cast<const char*>(data), size));
    sinklab::train::cut_back_events_file(path, 3);  // cuts the file in place: read it last
  });
}
