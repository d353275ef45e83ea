// The few fields of TensorFlow's Event and Summary protobuf messages that a TensorBoard scalar
// needs, written and read by hand in protobuf's wire format (no protobuf library, no .proto):
//   Event          wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
//                  summary = 5 (Summary); file_version and summary are one oneof
//   Summary        value = 1 (repeated Summary.Value)
//   Summary.Value  tag = 1 (string), simple_value = 2 (float, in the oneof of value kinds)
// Encoding follows proto3 as protobuf's own serializers do: fields in number order, a scalar at
// its default (0, "") left out, a oneof member always written (simple_value 0 included).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sinklab::train {

inline constexpr const char* kEventFileVersion = "brain.Event:2";

struct ScalarValue {
  std::string tag;
  float value = 0;
};

struct Event {
  double wall_time = 0;      // seconds since the Unix epoch
  int64_t step = 0;
  std::string file_version;  // set in a file's first event only
  std::vector<ScalarValue> scalars;  // the summary's simple values (when no file_version)
};

// The serialized Event: file_version when set, else a summary of `scalars` (none when empty).
std::string encode_event(const Event& event);

// Parses a serialized Event. Fields this header does not list are skipped (so are summary
// values that are not simple scalars: images, histograms, tensors); malformed bytes throw
// IOError saying where.
Event decode_event(std::string_view bytes);

}  // namespace sinklab::train
