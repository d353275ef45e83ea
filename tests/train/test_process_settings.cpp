// The run keys that hold for a process reach the ops (train/process_settings.h); a command that
// runs a stored model keeps them, but its products never search cuBLASLt's candidates.
#include "ops/matmul.h"
#include "train/config.h"
#include "train/process_settings.h"
#include "tests/helpers.h"

using namespace sinklab;
using namespace sinklab::train;

TEST_CASE("process settings: run.gemm_search reaches the products; a stored model's never "
          "search", "[config]") {
  const ops::GemmSearchGuard restore(ops::gemm_search);  // as it was, after the case
  const RunConfig c = parse_config("run: {gemm_search: 5, bias_grad_columns: false}", "s.yaml");
  apply_process_settings(c.run);
  REQUIRE(ops::gemm_search == 5);
  REQUIRE_FALSE(ops::bias_grad_columns);
  apply_stored_model_settings(c.run);  // probe, generate, forward
  REQUIRE(ops::gemm_search == 0);
  REQUIRE_FALSE(ops::bias_grad_columns);  // the rest as the run computed
  apply_process_settings(RunConfig{}.run);  // the defaults again, as the other cases expect
  REQUIRE(ops::gemm_search == 8);
  REQUIRE(ops::bias_grad_columns);
}
