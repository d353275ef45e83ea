// run.gemm_search's choices kept beside a run, so that a fresh run of the same config in the same
// folder multiplies with the algorithms the first one timed fastest, and so computes the same
// bits (as a resume does from its checkpoint's choices, train/io/checkpoint.h):
//
//   <run folder>/gemm_choices/<library>.txt
//
// one file a library and card, in ops/gemm_choices.h's text; <library> is the text's library line
// ("cublasLt 130000 on NVIDIA H200 (sm_90, 132 SMs)") with every character but letters, digits,
// '.' and '-' written '_'. The trainer takes the file for its own library before the first step
// and writes it with each checkpoint save.
#pragma once
#include <string>

namespace sinklab::train {

// The file of `library`'s choices in the run folder `folder`.
std::string gemm_choices_path(const std::string& folder, const std::string& library);

// The text stored for `library` in `folder`, or "" where there is none (or no library: no GPU).
// Throws IOError naming the file where it exists and cannot be read.
std::string read_stored_gemm_choices(const std::string& folder, const std::string& library);

// Writes `text` (ops::gemm_choices's) to the file of the library it names, atomically, unless
// that file holds the same text already; "" writes nothing. Returns whether it wrote. Throws
// ValueError naming `folder` for text that is not ops/gemm_choices.h's format.
bool store_gemm_choices(const std::string& folder, const std::string& text);

}  // namespace sinklab::train
