#include "train/data/json_file.h"

#include <cstdio>
#include <optional>

#include "train/data/byte_level.h"

namespace sinklab::train {

namespace {

std::optional<uint32_t> hex4(std::string_view text, size_t pos) {
  if (pos + 4 > text.size()) return std::nullopt;
  uint32_t v = 0;
  for (size_t i = pos; i < pos + 4; ++i) {
    const char c = text[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return std::nullopt;
  }
  return v;
}

}  // namespace

YAML::Node parse_json(std::string_view text) {
  // Copy, replacing each escaped surrogate pair inside a string by the character's UTF-8.
  std::string fixed;
  fixed.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!in_string) {
      in_string = c == '"';
      fixed += c;
      continue;
    }
    if (c == '"') {
      in_string = false;
    } else if (c == '\\' && i + 1 < text.size()) {
      if (text[i + 1] == 'u') {
        const auto high = hex4(text, i + 2);
        // A low half needs "\\u" at i + 6 (compare would throw past the end of the text).
        const bool second = i + 8 <= text.size() && text.compare(i + 6, 2, "\\u") == 0;
        const auto low = second ? hex4(text, i + 8) : std::nullopt;
        if (high && low && *high >= 0xD800 && *high <= 0xDBFF && *low >= 0xDC00 &&
            *low <= 0xDFFF) {
          append_utf8(fixed, 0x10000 + ((*high - 0xD800) << 10) + (*low - 0xDC00));
          i += 11;
          continue;
        }
      }
      fixed += c;
      fixed += text[++i];  // the escaped character, so an escaped quote does not end the string
      continue;
    }
    fixed += c;
  }
  return YAML::Load(fixed);
}

}  // namespace sinklab::train
