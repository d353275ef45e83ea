#include "train/io/gemm_choices_file.h"

#include <cctype>
#include <filesystem>

#include "ops/gemm_choices.h"
#include "train/io/atomic_file.h"
#include "train/io/read_file.h"

namespace sinklab::train {

namespace fs = std::filesystem;

std::string gemm_choices_path(const std::string& folder, const std::string& library) {
  std::string name = library;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
  return folder + "/gemm_choices/" + name + ".txt";
}

std::string read_stored_gemm_choices(const std::string& folder, const std::string& library) {
  if (library.empty()) return "";
  const std::string path = gemm_choices_path(folder, library);
  if (!fs::exists(path)) return "";
  return read_file(path, "run.gemm_search's stored choices",
                   "remove the file: the next run searches again and writes it");
}

bool store_gemm_choices(const std::string& folder, const std::string& text) {
  if (text.empty()) return false;
  const std::string library =
      ops::parse_gemm_choices(text, "the gemm choices to store in " + folder).library;
  const std::string path = gemm_choices_path(folder, library);
  if (read_stored_gemm_choices(folder, library) == text) return false;
  fs::create_directories(fs::path(path).parent_path());
  write_file_atomic(path, text, "check that " + folder + " is writable");
  return true;
}

}  // namespace sinklab::train
