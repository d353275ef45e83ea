// JSON text through yaml-cpp (a JSON document is YAML): parsing, with the UTF-16 surrogate pairs
// that JSON writers use for characters above U+FFFF ("\ud83d\ude00", which yaml-cpp refuses)
// turned into UTF-8 first. (Writing: json_string in train/io/json_text.h.)
#pragma once
#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

namespace sinklab::train {

// Parses JSON text. Throws YAML::Exception on malformed text (a lone surrogate included).
YAML::Node parse_json(std::string_view text);

}  // namespace sinklab::train
