#include "train/io/json_text.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "train/yaml_util.h"

namespace sinklab::train {

std::string json_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (byte < 0x20 || byte == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string json_number(double value) {
  SINKLAB_CHECK(std::isfinite(value), ValueError, "JSON cannot hold the number " << value,
                "a non-finite value reached a JSON file; check what produced it");
  return yaml_util::format_double(value);
}

}  // namespace sinklab::train
