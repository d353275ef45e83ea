// ops/remembered_operands.h: a remembered bf16 copy is taken by any contiguous view of all of its
// tensor, once; not by another tensor, a part of it, or a tensor that is gone; the oldest entries
// go past a few. And the norms' CPU backward kernels write the rounded copy of grad_x they are
// asked for (the CUDA kernels' is tested in [cuda], through the fold).
#include <vector>

#include "ops/layernorm.h"
#include "ops/remembered_operands.h"
#include "ops/rmsnorm.h"
#include "tests/helpers.h"

using namespace sinklab;
using test::random_tensor;

TEST_CASE("a remembered operand copy is taken once, by a view of all of its tensor", "[ops]") {
  const Tensor t = random_tensor({2, 3, 4}, 11, DType::F32);      // (2, 3, 4)
  const Tensor rounded = t.to_dtype(DType::BF16);                 // (2, 3, 4) bf16
  const int64_t taken = ops::remembered_operands_taken();
  ops::remember_operand(t, rounded);
  REQUIRE_FALSE(ops::take_remembered_operand(random_tensor({2, 3, 4}, 12, DType::F32)).defined());
  REQUIRE_FALSE(ops::take_remembered_operand(t.narrow_view(0, 1, 1)).defined());  // a part
  const Tensor copy = ops::take_remembered_operand(t.reshape_view({1, 6, 4}));
  REQUIRE(copy.defined());
  REQUIRE(copy.shape() == Shape{1, 6, 4});
  REQUIRE(copy.dtype() == DType::BF16);
  REQUIRE(copy.to_doubles() == rounded.to_doubles());
  REQUIRE(ops::remembered_operands_taken() == taken + 1);
  REQUIRE_FALSE(ops::take_remembered_operand(t).defined());  // taken once
}

TEST_CASE("a remembered operand copy of a tensor that is gone is dropped, and old entries go",
          "[ops]") {
  while (ops::remembered_operands_held() > 0)  // entries other tests left: taken or dropped
    ops::remember_operand(random_tensor({1}, 9, DType::F32), Tensor::zeros({1}, DType::BF16));
  Tensor first = random_tensor({8}, 13, DType::F32);  // (8)
  ops::remember_operand(first, first.to_dtype(DType::BF16));
  REQUIRE(ops::remembered_operands_held() == 1);
  first = Tensor();  // its storage is freed: the entry and its copy go at the next call
  REQUIRE(ops::remembered_operands_held() == 0);
  std::vector<Tensor> kept;
  for (int i = 0; i < 6; ++i) {
    kept.push_back(random_tensor({4}, 40 + i, DType::F32));
    ops::remember_operand(kept.back(), kept.back().to_dtype(DType::BF16));
  }
  REQUIRE(ops::remembered_operands_held() == 4);  // the newest four
  REQUIRE_FALSE(ops::take_remembered_operand(kept[0]).defined());  // dropped: the oldest
  REQUIRE(ops::take_remembered_operand(kept[5]).defined());
  REQUIRE(ops::remembered_operands_held() == 3);
  ops::forget_remembered_operands();  // a graph recording's bounds: every entry goes
  REQUIRE(ops::remembered_operands_held() == 0);
  REQUIRE_FALSE(ops::take_remembered_operand(kept[4]).defined());
}

TEST_CASE("the norms' CPU backward writes grad_x's rounded copy when asked", "[ops]") {
  const Tensor x = random_tensor({3, 16}, 21, DType::F32);     // (3, 16)
  const Tensor dy = random_tensor({3, 16}, 22, DType::F32);    // (3, 16)
  const Tensor res = random_tensor({3, 16}, 23, DType::F32);   // (3, 16) a folded gradient
  const Tensor w = random_tensor({16}, 24, DType::F32);        // (16)
  const Tensor b = random_tensor({16}, 25, DType::F32);        // (16)
  Tensor y = Tensor::empty({3, 16}), mean = Tensor::empty({3}), rstd = Tensor::empty({3});
  Tensor gx = Tensor::empty({3, 16}), gx16 = Tensor::empty({3, 16}, DType::BF16);
  ops::layernorm_kernels.cpu_forward(x, w, b, 1e-5, y, mean, rstd);
  ops::layernorm_kernels.cpu_backward(dy, x, w, mean, rstd, &res, &gx, &gx16, nullptr, nullptr);
  REQUIRE(gx16.to_doubles() == gx.to_dtype(DType::BF16).to_doubles());
  Tensor gx_rms = Tensor::empty({3, 16}), gx16_rms = Tensor::empty({3, 16}, DType::BF16);
  ops::rmsnorm_kernels.cpu_forward(x, w, 1e-6, y, rstd, nullptr);
  ops::rmsnorm_kernels.cpu_backward(dy, x, w, rstd, &res, &gx_rms, &gx16_rms, nullptr);
  REQUIRE(gx16_rms.to_doubles() == gx_rms.to_dtype(DType::BF16).to_doubles());
  REQUIRE(gx_rms.to_doubles() != gx.to_doubles());
}
