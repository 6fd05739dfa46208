// CPU kernels of hgfast::heatmap_mse_loss and its backward: targets are recomputed per row, never stored.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "profiles.h"

namespace hgfast {
namespace {

// Calls fn(m, s, i, target_row, pred_row) for every row of every stack of every (b,k) map, maps in parallel.
// target_row is all zero when the row has no Gaussian.
template <typename T, typename Fn>
void for_each_row(const at::Tensor& pred, const at::Tensor& kp, const at::Tensor& vis, const at::Tensor& sigma,
                  bool integer_centre, const Fn& fn) {
  const int64_t B = pred.size(0), S = pred.size(1), K = pred.size(2), H = pred.size(3), W = pred.size(4);
  const int64_t N = kp.size(1);
  const float* kp_p = kp.data_ptr<float>();
  const bool* vis_p = vis.data_ptr<bool>();
  const float* sig_p = sigma.data_ptr<float>();
  at::parallel_for(0, B * K, map_grain(S * H * W), [&](int64_t begin, int64_t end) {
    MapProfiles prof(H, W, N);
    std::vector<float> row(W);
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / K, k = m % K;
      prof.build(kp_p + b * N * K * 2, vis_p + b * N * K, N, K, k, sig_p[k], integer_centre);
      for (int64_t i = 0; i < H; ++i) {
        if (!prof.row(i, row.data())) std::fill(row.begin(), row.end(), 0.0f);
        for (int64_t s = 0; s < S; ++s) fn(m, s, i, row.data(), pred.data_ptr<T>() + (((b * S + s) * K + k) * H + i) * W);
      }
    }
  });
}

at::Tensor loss_forward_cpu(const at::Tensor& pred, const at::Tensor& kp, const at::Tensor& vis,
                            const at::Tensor& weights, const at::Tensor& sigma, bool integer_centre) {
  check_loss(pred, kp, vis, weights, sigma);
  const int64_t B = pred.size(0), K = pred.size(2), W = pred.size(4);
  std::vector<double> partial(B * K, 0.0);  // one slot per map: deterministic final sum
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "heatmap_mse_loss_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for_each_row<scalar_t>(pred, kp, vis, sigma, integer_centre,
                           [&](int64_t m, int64_t, int64_t, const float* t, const scalar_t* p) {
                             acc_t acc = 0;
                             for (int64_t j = 0; j < W; ++j) {
                               const acc_t d = static_cast<acc_t>(p[j]) - static_cast<acc_t>(t[j]);
                               acc += d * d;
                             }
                             partial[m] += acc;
                           });
  });
  double total = 0.0;
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "heatmap_mse_loss_weights", [&] {
    const scalar_t* w = weights.data_ptr<scalar_t>();
    for (int64_t m = 0; m < B * K; ++m) total += partial[m] * static_cast<double>(w[m]);
  });
  return at::scalar_tensor(total / static_cast<double>(stack_count(pred)), weights.options());
}

at::Tensor loss_backward_cpu(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& kp,
                             const at::Tensor& vis, const at::Tensor& weights, const at::Tensor& sigma,
                             bool integer_centre) {
  check_loss(pred, kp, vis, weights, sigma);
  check_loss_grad(grad, pred);
  auto out = at::empty_like(pred);
  const int64_t W = pred.size(4);
  const double scale = 2.0 * grad.item<double>() / static_cast<double>(stack_count(pred));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "heatmap_mse_loss_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto* w = weights.data_ptr<acc_t>();
    const scalar_t* pred_p = pred.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    for_each_row<scalar_t>(pred, kp, vis, sigma, integer_centre,
                           [&](int64_t m, int64_t, int64_t, const float* t, const scalar_t* p) {
                             const acc_t c = static_cast<acc_t>(scale) * w[m];
                             scalar_t* o = out_p + (p - pred_p);
                             for (int64_t j = 0; j < W; ++j)
                               o[j] = static_cast<scalar_t>(c * (static_cast<acc_t>(p[j]) - static_cast<acc_t>(t[j])));
                           });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hgfast, CPU, m) {
  m.impl("heatmap_mse_loss", &loss_forward_cpu);
  m.impl("heatmap_mse_loss_backward", &loss_backward_cpu);
}

}  // namespace hgfast
