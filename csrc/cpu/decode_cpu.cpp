// CPU kernel of hgfast::argmax_decode: maps split over torch's threads; per map a two-pass SIMD first-maximum
// search (first_peak.h). float64 maps use the scalar search, float16/bfloat16 maps are converted to a float32 buffer.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../hg_math.h"
#include "first_peak.h"
#include "profiles.h"

namespace hgfast {
namespace {

template <typename T>
void decode(const at::Tensor& hm, bool quarter, float* coords, float* scores) {
  const int64_t H = hm.size(2), W = hm.size(3), HW = H * W;
  const T* base = hm.data_ptr<T>();
  constexpr bool is_float = std::is_same<T, float>::value, is_double = std::is_same<T, double>::value;
  at::parallel_for(0, hm.size(0) * hm.size(1), map_grain(HW), [&](int64_t begin, int64_t end) {
    std::vector<float> buf(is_float || is_double ? 0 : HW);
    for (int64_t m = begin; m < end; ++m) {
      const T* p = base + m * HW;
      int64_t idx;
      if constexpr (is_float) {
        idx = first_peak_f32(p, HW);
      } else if constexpr (is_double) {
        idx = first_peak_scalar(p, HW);
      } else {
        for (int64_t t = 0; t < HW; ++t) buf[t] = static_cast<float>(p[t]);
        idx = first_peak_f32(buf.data(), HW);
      }
      const int64_t y = idx / W, x = idx % W;
      float cx = (float)x, cy = (float)y;
      if (quarter && x > 0 && x < W - 1) cx += quarter_step(p[idx + 1], p[idx - 1]);
      if (quarter && y > 0 && y < H - 1) cy += quarter_step(p[idx + W], p[idx - W]);
      coords[2 * m] = cx;
      coords[2 * m + 1] = cy;
      scores[m] = (float)p[idx];
    }
  });
}

std::tuple<at::Tensor, at::Tensor> argmax_decode_cpu(const at::Tensor& hm, bool quarter) {
  check_heatmaps(hm);
  auto coords = at::empty({hm.size(0), hm.size(1), 2}, hm.options().dtype(at::kFloat));
  auto scores = at::empty({hm.size(0), hm.size(1)}, hm.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hm.scalar_type(), "argmax_decode_cpu", [&] {
    decode<scalar_t>(hm, quarter, coords.data_ptr<float>(), scores.data_ptr<float>());
  });
  return {coords, scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(hgfast, CPU, m) { m.impl("argmax_decode", &argmax_decode_cpu); }

}  // namespace hgfast
