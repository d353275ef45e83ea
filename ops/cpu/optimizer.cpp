#include "ops/cpu/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"

namespace sinklab::cpu {

void adamw_update(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                  const ops::AdamWHyper& h) {
  float* pw = w.data<float>();  // (n) each
  const float* pg = g.data<float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  const int32_t* decay = decay_mask.data<int32_t>();
  const float wd_on = static_cast<float>(h.lr * h.weight_decay);
  const float lr = static_cast<float>(h.lr), b1 = static_cast<float>(h.beta1),
              b2 = static_cast<float>(h.beta2), eps = static_cast<float>(h.eps);
  const float bias1 = h.bias_correction1, bias2 = h.bias_correction2, scale = h.grad_scale;
  parallel_for(w.numel(), [&](int64_t i) {
    const float gi = pg[i] * scale;
    pm[i] = b1 * pm[i] + (1.0f - b1) * gi;
    pv[i] = b2 * pv[i] + (1.0f - b2) * gi * gi;
    const float m_hat = pm[i] / bias1, v_hat = pv[i] / bias2;
    const float wd = decay[i] ? wd_on : 0.0f;
    pw[i] -= lr * m_hat / (std::sqrt(v_hat) + eps) + wd * pw[i];
  }, 1 << 14);
}

double sum_of_squares(const Tensor& x) {
  const float* p = x.data<float>();  // (n)
  const int64_t n = x.numel();
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
  parallel_for(chunks, [&](int64_t c) {
    double acc = 0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
      acc += static_cast<double>(p[i]) * p[i];
    partial[c] = acc;
  });
  double total = 0;
  for (double v : partial) total += v;
  return total;
}

void sum_of_squares_into(const Tensor& x, Tensor& out) {
  out.data<double>()[0] = sum_of_squares(x);
}

void adamw_update_scheduled(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                            const Tensor& decay_mask, const ops::AdamWConstants& c,
                            const Tensor& schedule, const Tensor& results) {
  const float* s = schedule.data<float>();   // (3) lr, 1 - beta1^t, 1 - beta2^t
  const double* r = results.data<double>();  // (2) loss, sum of squares
  const double norm = std::sqrt(r[1]);
  if (!std::isfinite(r[0]) || !std::isfinite(norm)) return;
  const ops::AdamWHyper h{s[0], c.beta1, c.beta2, c.eps, c.weight_decay, s[1], s[2],
                          static_cast<float>(ops::clip_factor(norm, c.max_norm))};
  cpu::adamw_update(w, g, m, v, decay_mask, h);
}

void scale_in_place(Tensor& x, float factor) {
  float* p = x.data<float>();  // (n)
  parallel_for(x.numel(), [&](int64_t i) { p[i] *= factor; }, 1 << 14);
}

}  // namespace sinklab::cpu
