// Writing JSON by hand: strings escaped as RFC 8259 requires, numbers that read back exactly.
// (Reading goes through yaml-cpp, whose flow syntax takes JSON.)
#pragma once
#include <string>
#include <string_view>

namespace sinklab::train {

// `text` as a JSON string literal, quotes included: ", \ and control bytes (DEL included)
// escaped; other bytes (UTF-8) pass through unchanged. Every JSON file sinklab writes quotes its
// strings with it (config.json, safetensors headers, tokenizer.json, metric and probe files).
std::string json_string(std::string_view text);

// A finite double as the shortest JSON number that reads back to it ("1e-05", "10000.0");
// throws ValueError for NaN and infinities, which JSON cannot hold.
std::string json_number(double value);

}  // namespace sinklab::train
