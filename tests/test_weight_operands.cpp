// ops/weight_operands.h: an open scope serves the bf16 view of any contiguous, 128-element-aligned
// view that lies wholly inside its flat buffer, with the values one rounding of the buffer gives;
// nothing else, nothing once the scope is closed, and nothing from an inactive scope. (The CPU's
// products never ask, since they read f32 weights as they are: the model-level cases are
// "run.flat_weight_operands changes no bit ..." here and its [cuda] twin.)
#include "ops/weight_operands.h"
#include "tests/helpers.h"

using namespace sinklab;
using test::random_tensor;

TEST_CASE("a weight operand scope serves aligned views inside its buffer, while it is open",
          "[ops]") {
  const Tensor storage = random_tensor({520}, 31, DType::F32);  // (520) the whole storage
  const Tensor flat = storage.narrow_view(0, 8, 384);           // (384) the scope's buffer
  const Tensor rounded = flat.to_dtype(DType::BF16);            // (384) what one rounding gives
  const int64_t open = ops::weight_operand_scopes_open();
  const int64_t taken = ops::weight_operand_views_taken();
  {
    const ops::WeightOperandScope inactive(flat, false);
    REQUIRE(ops::weight_operand_scopes_open() == open);
    REQUIRE_FALSE(ops::weight_operand_view(flat.narrow_view(0, 128, 12)).defined());
  }
  {
    const ops::WeightOperandScope scope(flat, true);
    REQUIRE(ops::weight_operand_scopes_open() == open + 1);
    // Elements 128..139 of the buffer as (3, 4): its bf16 values, in that shape.
    const Tensor w = flat.narrow_view(0, 128, 12).reshape_view({3, 4});  // (3, 4)
    const Tensor view = ops::weight_operand_view(w);
    REQUIRE(view.defined());
    REQUIRE(view.dtype() == DType::BF16);
    REQUIRE(view.shape() == Shape{3, 4});
    REQUIRE(view.to_doubles() == rounded.narrow_view(0, 128, 12).to_doubles());
    REQUIRE(ops::weight_operand_view(flat).to_doubles() == rounded.to_doubles());  // all of it
    REQUIRE(ops::weight_operand_views_taken() == taken + 2);
    // Not served: views 8 and 64 elements (16 and 128 bytes of the copy) off the 256-byte
    // alignment cuBLASLt's plans take, one reaching outside the buffer or lying before it, a
    // transpose, another tensor, a bf16 tensor.
    REQUIRE_FALSE(ops::weight_operand_view(flat.narrow_view(0, 8, 8)).defined());
    REQUIRE_FALSE(ops::weight_operand_view(flat.narrow_view(0, 64, 8)).defined());
    REQUIRE_FALSE(ops::weight_operand_view(storage.narrow_view(0, 264, 256)).defined());
    REQUIRE_FALSE(ops::weight_operand_view(storage.narrow_view(0, 0, 8)).defined());
    REQUIRE_FALSE(ops::weight_operand_view(w.transpose_view(0, 1)).defined());
    REQUIRE_FALSE(ops::weight_operand_view(random_tensor({8}, 32, DType::F32)).defined());
    REQUIRE_FALSE(ops::weight_operand_view(rounded.narrow_view(0, 0, 8)).defined());
    {
      // A second buffer's scope beside it (compare's two variants): each serves its own.
      const Tensor other = random_tensor({16}, 33, DType::F32);  // (16)
      const ops::WeightOperandScope second(other, true);
      REQUIRE(ops::weight_operand_scopes_open() == open + 2);
      REQUIRE(ops::weight_operand_view(other).to_doubles() ==
              other.to_dtype(DType::BF16).to_doubles());
      REQUIRE(ops::weight_operand_view(w).to_doubles() == view.to_doubles());
    }
    REQUIRE(ops::weight_operand_scopes_open() == open + 1);
  }
  REQUIRE(ops::weight_operand_scopes_open() == open);
  REQUIRE_FALSE(ops::weight_operand_view(flat).defined());  // closed
}

TEST_CASE("a weight operand scope refuses a buffer that is not contiguous f32", "[ops]") {
  const Tensor t = random_tensor({4, 6}, 34, DType::F32);  // (4, 6)
  const int64_t open = ops::weight_operand_scopes_open();
  REQUIRE_THROWS_AS(ops::WeightOperandScope(t.transpose_view(0, 1), true), ValueError);
  REQUIRE_THROWS_AS(ops::WeightOperandScope(t.to_dtype(DType::BF16), true), ValueError);
  REQUIRE(ops::weight_operand_scopes_open() == open);
}
