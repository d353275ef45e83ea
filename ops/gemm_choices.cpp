#include "ops/gemm_choices.h"

#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace sinklab::ops {

namespace {

constexpr const char* kFirstLine = "sinklab gemm choices 1";

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string format_gemm_choices(const GemmChoices& c) {
  if (c.choices.empty()) return "";
  std::ostringstream out;
  out << kFirstLine << "\nlibrary " << c.library << "\n";
  for (const GemmChoice& g : c.choices) {
    out << "shape";
    for (int64_t v : g.shape) out << " " << v;
    out << " algo ";
    for (uint8_t b : g.algorithm) {
      char hex[3];
      std::snprintf(hex, sizeof hex, "%02x", b);
      out << hex;
    }
    out << "\n";
  }
  return out.str();
}

GemmChoices parse_gemm_choices(const std::string& text, const std::string& where) {
  GemmChoices c;
  if (text.empty()) return c;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  auto fail = [&](const std::string& what) {
    SINKLAB_FAIL(ValueError,
                 "gemm choices in " << where << ", line " << number << " ('" << line
                                    << "'): expected " << what,
                 "the text is written by run.gemm_search (ops/gemm_choices.h): delete a run "
                 "folder's gemm_choices file (the run searches again), or resume from another "
                 "checkpoint or with run.gemm_search: 0");
  };
  ++number;
  if (!std::getline(in, line) || line != kFirstLine) fail(std::string("'") + kFirstLine + "'");
  ++number;
  if (!std::getline(in, line) || line.rfind("library ", 0) != 0 || line.size() == 8)
    fail("'library <name and card>'");
  c.library = line.substr(8);
  while (std::getline(in, line)) {
    ++number;
    std::istringstream words(line);
    std::string word, hex, rest;
    GemmChoice g;
    if (!(words >> word) || word != "shape") fail("'shape <10 integers> algo <128 hex digits>'");
    for (int64_t& v : g.shape)
      if (!(words >> v)) fail("10 integers after 'shape'");
    if (!(words >> word) || word != "algo" || !(words >> hex) || hex.size() != 128 ||
        (words >> rest))
      fail("'algo' and 128 hex digits after the 10 integers, and nothing more");
    for (size_t i = 0; i < g.algorithm.size(); ++i) {
      const int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) fail("lowercase hex digits (0-9, a-f) after 'algo'");
      g.algorithm[i] = static_cast<uint8_t>(16 * hi + lo);
    }
    c.choices.push_back(g);
  }
  return c;
}

}  // namespace sinklab::ops
