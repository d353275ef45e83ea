#include "train/yaml_util.h"

#include "core/error.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace sinklab::train::yaml_util {

void check_quotes_closed(std::string_view text, const std::string& origin) {
  size_t line_no = 0, start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    ++line_no;
    // A quote opens a scalar only where a token starts: at the line's start or after one of
    // ": ", "- ", "? ", "[", "{" or "," and spaces (an apostrophe inside a plain word, as in don't, opens nothing).
    char previous = ' ';
    bool token_start = true;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (c == '#' && (previous == ' ' || previous == '\t' || i == 0)) break;  // a comment
      if ((c == '"' || c == '\'') && token_start) {
        size_t j = i + 1;
        for (; j < line.size(); ++j) {
          if (c == '"' && line[j] == '\\') {
            ++j;  // an escaped character
          } else if (line[j] == c) {
            if (c == '\'' && j + 1 < line.size() && line[j + 1] == '\'') {
              ++j;  // '' is a quote inside a single-quoted scalar
            } else {
              break;
            }
          }
        }
        SINKLAB_CHECK(j < line.size(), ConfigError,
                      "malformed YAML in " << origin << " at line " << line_no << ", column "
                                           << i + 1 << ": the quoted value starting with " << c
                                           << " is not closed on its line",
                      "close the quote on the same line (quoted values cannot span lines here)");
        i = j;
        previous = c;
        token_start = false;
        continue;
      }
      if (c != ' ' && c != '\t') {
        // ": ", "- " and "? " are indicators only before a space (or the line's end).
        const bool spaced = i + 1 >= line.size() || line[i + 1] == ' ' || line[i + 1] == '\t';
        token_start = ((c == ':' || c == '-' || c == '?') && spaced) || c == '[' || c == '{' ||
                      c == ',';
      }
      previous = c;
    }
    start = end + 1;
  }
}


namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool one_of(std::string_view text, std::initializer_list<std::string_view> words) {
  return std::find(words.begin(), words.end(), text) != words.end();
}

}  // namespace

std::optional<int64_t> parse_int(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty() || !(is_digit(text[0]) || (text[0] == '-' && text.size() > 1))) return {};
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return {};
  return value;
}

std::optional<uint64_t> parse_uint(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty() || !is_digit(text[0])) return {};
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return {};
  return value;
}

std::optional<double> parse_double(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  // Decimal notation only: no inf/nan/hex (from_chars would take "inf" and "nan").
  if (text.empty() || !std::any_of(text.begin(), text.end(), is_digit)) return {};
  for (char c : text)
    if (!(is_digit(c) || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E')) return {};
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return {};
  return value;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (one_of(text, {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})) return true;
  if (one_of(text, {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}))
    return false;
  return {};
}

std::string format_double(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);  // shortest round-trip form
  std::string text(buf, end);
  // Always a float to a YAML 1.1 reader too (PyYAML wants a dot: "1.0e-08", not "1e-08").
  const size_t e = text.find('e');
  const std::string mantissa = text.substr(0, e);
  if (mantissa.find('.') == std::string::npos)
    text = mantissa + ".0" + (e == std::string::npos ? "" : text.substr(e));
  return text;
}

bool resolves_as_non_string(std::string_view text) {
  if (text.empty() || one_of(text, {"~", "null", "Null", "NULL", "y", "Y", "n", "N"})) return true;
  if (parse_bool(text) || parse_int(text) || parse_double(text)) return true;
  std::string_view rest = text;
  if (!rest.empty() && (rest[0] == '-' || rest[0] == '+')) rest.remove_prefix(1);
  if (one_of(rest, {".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"})) return true;
  // Hex/octal integers and YAML 1.1 forms with '_' or ':' separators start with a digit.
  return !rest.empty() && (is_digit(rest[0]) || rest[0] == '.');
}

void emit_string(YAML::Emitter& out, const std::string& value) {
  if (resolves_as_non_string(value))
    out << YAML::DoubleQuoted << value;
  else
    out << value;  // yaml-cpp quotes it when a plain scalar would not read back
}

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined()) return "nothing";
  switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing (null)";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar: {
      std::string text = node.Scalar();
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      return "'" + text + "'";
    }
    default: return "nothing";
  }
}

std::string line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0) return "";
  return "line " + std::to_string(mark.line + 1);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment: insert, delete, substitute, swap two neighbours (cost 1 each).
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::vector<std::string> close_matches(std::string_view word,
                                       const std::vector<std::string>& candidates) {
  const size_t limit = std::clamp<size_t>(word.size() / 3, 1, 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    // A fragment of a longer name ("layer" for "n_layer") also counts as close.
    if (word.size() >= 3 && c.find(word) != std::string::npos) d = std::min(d, limit);
    if (d <= limit) scored.emplace_back(d, c);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (auto& [d, c] : scored) out.push_back(c);
  return out;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

std::string trim(std::string_view text) {
  const size_t b = text.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(b, e - b + 1));
}

}  // namespace sinklab::train::yaml_util
