// run.gemm_search's choices kept in the run folder (train/io/gemm_choices_file.h): one file a
// library and card, written only when its text changes, read back exactly, none without a GPU.
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "ops/gemm_choices.h"
#include "train/io/gemm_choices_file.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

// Choices of `shapes` product shapes made with `library`.
std::string choices_text(const std::string& library, int shapes) {
  ops::GemmChoices c;
  c.library = library;
  for (int i = 0; i < shapes; ++i) {
    ops::GemmChoice g;
    g.shape = {1, 4096, 768 + 64 * i, 768, 0, 0, 0, 1, 0, 1};
    for (size_t b = 0; b < g.algorithm.size(); ++b) g.algorithm[b] = static_cast<uint8_t>(b + i);
    c.choices.push_back(g);
  }
  return ops::format_gemm_choices(c);
}

}  // namespace

TEST_CASE("gemm choices file: one a library and card in the run folder, its name the library's "
          "with unsafe characters as '_'",
          "[train][checkpoint]") {
  REQUIRE(gemm_choices_path("runs/r", "cublasLt 130000 on NVIDIA H200 (sm_90, 132 SMs)") ==
          "runs/r/gemm_choices/cublasLt_130000_on_NVIDIA_H200__sm_90__132_SMs_.txt");
  REQUIRE(gemm_choices_path("f", "a/b\\c:d.e-f") == "f/gemm_choices/a_b_c_d.e-f.txt");
}

TEST_CASE("gemm choices file: stored and read back exactly, rewritten only when the text changes, "
          "each library in its own file",
          "[train][checkpoint]") {
  const fs::path folder = test::fresh_dir("gemm_choices_file");
  const std::string h100 = "cublasLt 130000 on NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)";
  const std::string h200 = "cublasLt 130000 on NVIDIA H200 (sm_90, 132 SMs)";
  REQUIRE(read_stored_gemm_choices(folder.string(), h100).empty());  // none yet
  REQUIRE_FALSE(store_gemm_choices(folder.string(), ""));              // nothing chosen: no file
  REQUIRE_FALSE(fs::exists(folder / "gemm_choices"));

  const std::string first = choices_text(h100, 2);
  REQUIRE(store_gemm_choices(folder.string(), first));
  REQUIRE(read_stored_gemm_choices(folder.string(), h100) == first);
  const fs::path file = gemm_choices_path(folder.string(), h100);
  const auto written = fs::last_write_time(file);
  REQUIRE_FALSE(store_gemm_choices(folder.string(), first));  // the same text: not rewritten
  REQUIRE(fs::last_write_time(file) == written);

  const std::string other_card = choices_text(h200, 1);
  REQUIRE(store_gemm_choices(folder.string(), other_card));
  REQUIRE(read_stored_gemm_choices(folder.string(), h200) == other_card);
  REQUIRE(read_stored_gemm_choices(folder.string(), h100) == first);  // untouched

  const std::string more = choices_text(h100, 3);  // a later run met one shape more
  REQUIRE(store_gemm_choices(folder.string(), more));
  REQUIRE(read_stored_gemm_choices(folder.string(), h100) == more);
  for (const auto& entry : fs::directory_iterator(folder))  // atomic: no .tmp left over
    REQUIRE(entry.path().extension() != ".tmp");
  REQUIRE(read_stored_gemm_choices(folder.string(), "").empty());  // no GPU: no library, none
}

TEST_CASE("gemm choices file: text that is not the choices' format is refused, naming the folder",
          "[train][checkpoint]") {
  const fs::path folder = test::fresh_dir("gemm_choices_file_bad");
  try {
    store_gemm_choices(folder.string(), "sinklab gemm choices 1\nshape 1 2 3\n");
    FAIL("expected a ValueError");
  } catch (const ValueError& e) {
    REQUIRE(test::contains(e.what(), folder.string()));
    REQUIRE(test::contains(e.what(), "line 2"));
  }
  REQUIRE_FALSE(fs::exists(folder / "gemm_choices"));
}
