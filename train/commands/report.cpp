#include "train/commands/report.h"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "core/error.h"

namespace sinklab::train {

namespace {

// Single-quotes text for the shell.
std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

int run_report(const std::string& run, const std::string& out, const std::string& scripts_dir) {
  const char* dir = std::getenv("SINKLAB_SCRIPTS");
  const std::string script = std::string(dir ? dir : scripts_dir) + "/report.py";
  SINKLAB_CHECK(std::ifstream(script).good(), IOError,
                "report: " << script << " is missing",
                "run from a sinklab checkout, or set SINKLAB_SCRIPTS to its scripts/ folder");
  std::string command = "python3 " + shell_quote(script) + " " + shell_quote(run);
  if (!out.empty()) command += " --out " + shell_quote(out);
  std::cout << std::flush;
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace sinklab::train
