#include "train/io/json_text.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "train/yaml_util.h"

namespace sinklab::train {

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (byte < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double value) {
  SINKLAB_CHECK(std::isfinite(value), ValueError, "JSON cannot hold the number " << value,
                "a non-finite value reached a JSON file; check what produced it");
  return yaml_util::format_double(value);
}

}  // namespace sinklab::train
