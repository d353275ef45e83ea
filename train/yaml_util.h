// Small YAML helpers for the config layer: strict scalar parsing (YAML 1.2 core schema rules, so
// "3.5" is not an integer and "yes please" is not a bool), value formatting that reads back to the
// same value, and "did you mean" suggestions. Only yaml-cpp APIs present in 0.7 and 0.8.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sinklab::train::yaml_util {

// Throws a ConfigError naming `origin`, the line and the column of a quoted scalar (' or ")
// that does not end on the line it starts on. Multi-line quoted scalars are valid YAML, but no
// config value needs one, and an unclosed quote otherwise swallows the rest of the file into one
// value (reported as a bad value of the wrong key).
void check_quotes_closed(std::string_view text, const std::string& origin);

// Scalar text -> value; nullopt when the text is not exactly one value of that type.
std::optional<int64_t> parse_int(std::string_view text);     // [-+]?[0-9]+, no overflow
std::optional<uint64_t> parse_uint(std::string_view text);   // [+]?[0-9]+, no overflow
std::optional<double> parse_double(std::string_view text);   // decimal/exponent, finite only
std::optional<bool> parse_bool(std::string_view text);       // true/false, yes/no, on/off

// Shortest text that reads back to exactly `value` and always reads as a float ("1.0", "1e-08").
std::string format_double(double value);
// True when a plain scalar with this text would be read as null, a bool or a number.
bool resolves_as_non_string(std::string_view text);
// Writes a string scalar, double-quoted when YAML would otherwise read it as something else.
void emit_string(YAML::Emitter& out, const std::string& value);

// How a node reads in an error message: "'3.5'", "a map", "a list", "nothing (null)".
std::string describe(const YAML::Node& node);
// 1-based "line N" of a node's mark, or "" when yaml-cpp has no position for it.
std::string line_of(const YAML::Node& node);

// Levenshtein distance, and the candidates close enough to `word` to suggest (best first).
size_t edit_distance(std::string_view a, std::string_view b);
std::vector<std::string> close_matches(std::string_view word,
                                       const std::vector<std::string>& candidates);

std::string join(const std::vector<std::string>& items, std::string_view separator);
std::string trim(std::string_view text);

}  // namespace sinklab::train::yaml_util
