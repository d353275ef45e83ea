#include "train/io/read_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace sinklab::train {

std::string read_file(const std::string& path, const std::string& what, const std::string& hint) {
  std::error_code ec;
  SINKLAB_CHECK(!std::filesystem::is_directory(path, ec), IOError,
                path << ": " << what << " is a folder, not a file",
                "name the files inside it, one by one");
  SINKLAB_CHECK(std::filesystem::is_regular_file(path, ec), IOError,
                path << ": " << what << " not found", hint);
  std::ifstream in(path, std::ios::binary);
  SINKLAB_CHECK(in.good(), IOError, path << ": cannot open for reading", "check permissions");
  std::ostringstream buf;
  buf << in.rdbuf();
  SINKLAB_CHECK(!in.bad(), IOError, path << ": read failed", "check the file");
  return buf.str();
}

}  // namespace sinklab::train
