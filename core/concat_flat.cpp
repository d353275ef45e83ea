#include "core/concat_flat.h"

#include "core/error.h"

namespace sinklab {

namespace {
ConcatFlatFn g_concat_flat = nullptr;
}  // namespace

void install_cuda_concat_flat(ConcatFlatFn fn) { g_concat_flat = fn; }

Tensor concat_flat(const std::vector<Tensor>& parts) {
  SINKLAB_CHECK(!parts.empty(), ShapeError, "concat_flat: no parts", "pass at least one tensor");
  int64_t total = 0;
  for (const Tensor& t : parts) {
    SINKLAB_CHECK(t.dtype() == parts[0].dtype() && t.device() == parts[0].device(), DTypeError,
                  "concat_flat: part " << t.str() << " and the first part "
                                       << parts[0].str() << " differ in dtype or device",
                  "gather tensors of one dtype on one device");
    total += t.numel();
  }
  Tensor flat = Tensor::empty({total}, parts[0].dtype(), parts[0].device());  // (total)
  if (flat.device().is_cuda() && g_concat_flat != nullptr && g_concat_flat(parts, flat))
    return flat;
  int64_t at = 0;
  for (const Tensor& t : parts) {
    if (t.numel() > 0) flat.narrow_view(0, at, t.numel()).reshape_view(t.shape()).copy_from(t);
    at += t.numel();
  }
  return flat;
}

}  // namespace sinklab
