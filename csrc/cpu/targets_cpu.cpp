// CPU kernel of hgfast::gaussian_heatmaps: maps split over torch's threads, rows from separable profiles.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "profiles.h"

namespace hgfast {
namespace {

template <typename T>
void render(const at::Tensor& kp, const at::Tensor& vis, const at::Tensor& sigma, bool integer_centre,
            at::Tensor& out) {
  const int64_t B = kp.size(0), N = kp.size(1), K = kp.size(2), H = out.size(2), W = out.size(3);
  const float* kp_p = kp.data_ptr<float>();
  const bool* vis_p = vis.data_ptr<bool>();
  const float* sig_p = sigma.data_ptr<float>();
  T* out_p = out.data_ptr<T>();
  at::parallel_for(0, B * K, map_grain(H * W), [&](int64_t begin, int64_t end) {
    MapProfiles prof(H, W, N);
    std::vector<float> row(W);
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / K, k = m % K;
      prof.build(kp_p + b * N * K * 2, vis_p + b * N * K, N, K, k, sig_p[k], integer_centre);
      // Each map is written once: zero rows above and below the Gaussian's rows as whole blocks, the rows in
      // between from the separable profiles (straight into the output when it is float32).
      T* o = out_p + m * H * W;
      const int64_t r0 = std::min(prof.first_row(), H), r1 = std::max(prof.end_row(), r0);
      std::fill(o, o + r0 * W, T(0));
      for (int64_t i = r0; i < r1; ++i) {
        T* orow = o + i * W;
        if constexpr (std::is_same<T, float>::value) {
          if (!prof.row(i, orow)) std::fill(orow, orow + W, T(0));
        } else if (prof.row(i, row.data())) {
          for (int64_t j = 0; j < W; ++j) orow[j] = static_cast<T>(row[j]);
        } else {
          std::fill(orow, orow + W, T(0));
        }
      }
      std::fill(o + r1 * W, o + H * W, T(0));
    }
  });
}

at::Tensor gaussian_heatmaps_cpu(const at::Tensor& kp, const at::Tensor& vis, const at::Tensor& sigma,
                                 int64_t height, int64_t width, bool integer_centre, at::ScalarType dtype) {
  check_targets(kp, vis, sigma);
  check_target_output(height, width, dtype);
  auto out = at::empty({kp.size(0), kp.size(2), height, width}, kp.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gaussian_heatmaps_cpu",
                                  [&] { render<scalar_t>(kp, vis, sigma, integer_centre, out); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hgfast, CPU, m) { m.impl("gaussian_heatmaps", &gaussian_heatmaps_cpu); }

}  // namespace hgfast
