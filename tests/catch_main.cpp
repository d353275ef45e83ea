// main() for Catch2 2.x; Catch2 3.x brings its own (Catch2::Catch2WithMain), whose SKIP makes
// a run of [cuda] tests without a GPU exit 4 (ctest's SKIP_RETURN_CODE for the `cuda` entry).
// Catch2 2 has no SKIP: its [cuda] tests return early with a warning, so a run of only "[cuda]"
// on a machine without a GPU is answered here with exit 4 as well, and ctest shows it skipped.
// The same for a run of only "[gpt2]" without GPT-2's vocabulary or the corpora, and of only
// "[mpi]" without Open MPI's mpirun (except on CI, CI=true, where the tests run and fail).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <iostream>
#include <string>

#include "tests/helpers.h"

int main(int argc, char* argv[]) {
  if (argc == 2 && std::string(argv[1]) == "[cuda]" && !sinklab::test::cuda_device_present()) {
    std::cout << "skipped: no CUDA device present (every [cuda] test needs one)\n";
    return 4;
  }
  if (argc == 2 && std::string(argv[1]) == "[gpt2]" && !sinklab::test::on_ci() &&
      (sinklab::test::gpt2_vocab_dir().empty() || sinklab::test::corpora_dir().empty() ||
       !sinklab::test::pcre2_built())) {
    std::cout << "skipped: GPT-2's vocabulary or the corpora are not installed (bash "
                 "scripts/get_data.sh), or this build has no PCRE2\n";
    return 4;
  }
  if (argc == 2 && std::string(argv[1]) == "[mpi]" && !sinklab::test::on_ci() &&
      !sinklab::test::mpirun_present()) {
    std::cout << "skipped: Open MPI's mpirun is not installed (apt-get install openmpi-bin)\n";
    return 4;
  }
  return Catch::Session().run(argc, argv);
}
