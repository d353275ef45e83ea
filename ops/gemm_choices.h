// run.gemm_search's choices as text, so that a resumed process multiplies with the algorithms the
// process before it chose (the trainer keeps the text in each checkpoint, train/io/checkpoint.h).
// The text names the library and the card they were chosen on, then one line a product shape:
//
//   sinklab gemm choices 1
//   library cublasLt 130000 on NVIDIA H100 80GB HBM3
//   shape 1 32768 2304 768 0 0 0 1 0 1 algo <128 hex digits>
//
// A shape is the ten numbers that make a product's plan (cuda/matmul.cu's LtKey: batch, M, N, K,
// the operands' batch strides, their transposes, the epilogue and whether C is bf16); an
// algorithm is cuBLASLt's 64 opaque bytes (cublasLtMatmulAlgo_t), meaningful only to the same
// library on the same card.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sinklab::ops {

struct GemmChoice {
  std::array<int64_t, 10> shape{};
  std::array<uint8_t, 64> algorithm{};
};

struct GemmChoices {
  std::string library;  // e.g. "cublasLt 130000 on NVIDIA H100 80GB HBM3" (one line)
  std::vector<GemmChoice> choices;
};

// The text above; "" when there are no choices.
std::string format_gemm_choices(const GemmChoices& c);

// The choices of format_gemm_choices's text ("" gives none). Throws ValueError naming the line
// and what it expected where the text is not that format (`where` names the text's source).
GemmChoices parse_gemm_choices(const std::string& text, const std::string& where);

}  // namespace sinklab::ops
