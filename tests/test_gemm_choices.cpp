// run.gemm_search's choices as text (ops/gemm_choices.h): the round trip, and text that is not
// that format refused with the line named.
#include "core/error.h"
#include "ops/gemm_choices.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;

TEST_CASE("gemm choices: written and read back exactly, none as empty text", "[ops]") {
  REQUIRE(ops::format_gemm_choices({}).empty());
  REQUIRE(ops::parse_gemm_choices("", "x").choices.empty());
  ops::GemmChoices c;
  c.library = "cublasLt 130000 on NVIDIA H100 80GB HBM3";
  for (int i = 0; i < 3; ++i) {
    ops::GemmChoice g;
    g.shape = {1, 32768, 2304 + i, 768, 0, -5, 0, 1, i, 1};  // a negative value survives too
    for (size_t b = 0; b < g.algorithm.size(); ++b)
      g.algorithm[b] = static_cast<uint8_t>(37 * b + 11 * i);  // every byte value class
    c.choices.push_back(g);
  }
  const std::string text = ops::format_gemm_choices(c);
  REQUIRE(text.rfind("sinklab gemm choices 1\nlibrary cublasLt 130000 on NVIDIA H100 80GB HBM3\n"
                     "shape 1 32768 2304 768 0 -5 0 1 0 1 algo 00254a",
                     0) == 0);
  const ops::GemmChoices back = ops::parse_gemm_choices(text, "x");
  REQUIRE(back.library == c.library);
  REQUIRE(back.choices.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(back.choices[i].shape == c.choices[i].shape);
    REQUIRE(back.choices[i].algorithm == c.choices[i].algorithm);
  }
  REQUIRE(ops::format_gemm_choices(back) == text);
}

TEST_CASE("gemm choices: text that is not the format names its source, the line and what it "
          "expected", "[ops]") {
  const std::string head = "sinklab gemm choices 1\nlibrary L\n";
  const std::string algo = std::string(128, 'f');
  struct Case {
    std::string text, line, expected;
  };
  for (const Case& c : {
           Case{"sinklab gemm choices 2\n", "line 1", "'sinklab gemm choices 1'"},
           Case{"sinklab gemm choices 1\nlib L\n", "line 2", "'library <name and card>'"},
           Case{head + "shape 1 2 3\n", "line 3", "10 integers after 'shape'"},
           Case{head + "shapes 1 2 3 4 5 6 7 8 9 10 algo " + algo + "\n", "line 3", "'shape"},
           Case{head + "shape 1 2 3 4 5 6 7 8 9 10 algo abc\n", "line 3", "128 hex digits"},
           Case{head + "shape 1 2 3 4 5 6 7 8 9 10 algo " + algo + " more\n", "line 3",
                "nothing more"},
           Case{head + "shape 1 2 3 4 5 6 7 8 9 10 algo " + std::string(127, 'f') + "G\n",
                "line 3", "lowercase hex digits"},
           Case{head + "shape 1 2 3 4 5 6 7 8 9 10 algo " + algo + "\n\n", "line 4", "'shape"},
       }) {
    INFO(c.text);
    test::require_error<ValueError>([&] { ops::parse_gemm_choices(c.text, "ckpt/step_1.h5"); },
                                    {"ckpt/step_1.h5", c.line, c.expected});
  }
}
