// CPU kernel of hgfast::argmax_decode: one task per (b,k) map, one SIMD pass over float32 maps.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../hg_math.h"
#include "profiles.h"

namespace hgfast {
namespace {

// Index of the first maximum of p[0, n) (n > 0) in row-major order; NaN counts as the maximum (torch.argmax).
template <typename F>
int64_t first_peak_scalar(const F* p, int64_t n) {
  int64_t idx = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] != p[i]) return i;
    if (p[i] > p[idx]) idx = i;
  }
  return idx;
}

template <typename F>
int64_t first_peak(const F* p, int64_t n) { return first_peak_scalar(p, n); }

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

// float32 specialisation in one pass: 16 lanes track their running maximum and its first index.
// Compiled for AVX-512, AVX2 and baseline x86-64; the loader picks the best the CPU supports.
__attribute__((target_clones("avx512f", "avx2", "default"))) int64_t first_peak(const float* p, int64_t n) {
  if (n >= (int64_t(1) << 31)) return first_peak_scalar(p, n);
  f32x16 top = f32x16{} + p[0];
  i32x16 at = {}, cur = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, bad = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16, cur += 16) {
    f32x16 v;
    std::memcpy(&v, p + i, sizeof v);
    const i32x16 gt = v > top;
    top = gt ? v : top;
    at = gt ? cur : at;
    bad |= v != v;
  }
  float best = p[0];
  int64_t idx = 0;
  bool any_nan = false;
  for (int l = 0; l < 16; ++l) {
    if (top[l] > best || (top[l] == best && at[l] < idx)) best = top[l], idx = at[l];
    any_nan |= bad[l] != 0;
  }
  for (; i < n; ++i) {
    if (p[i] > best) best = p[i], idx = i;
    any_nan |= p[i] != p[i];
  }
  return any_nan ? first_peak_scalar(p, n) : idx;
}
#endif

template <typename T>
void decode(const at::Tensor& hm, bool quarter, float* coords, float* scores) {
  const int64_t H = hm.size(2), W = hm.size(3), HW = H * W;
  const T* base = hm.data_ptr<T>();
  constexpr bool native = std::is_same<T, float>::value || std::is_same<T, double>::value;
  at::parallel_for(0, hm.size(0) * hm.size(1), map_grain(HW), [&](int64_t begin, int64_t end) {
    std::vector<float> buf(native ? 0 : HW);
    for (int64_t m = begin; m < end; ++m) {
      const T* p = base + m * HW;
      int64_t idx;
      if constexpr (native) {
        idx = first_peak(p, HW);
      } else {
        for (int64_t t = 0; t < HW; ++t) buf[t] = static_cast<float>(p[t]);
        idx = first_peak(buf.data(), HW);
      }
      const int64_t y = idx / W, x = idx % W;
      float cx = (float)x, cy = (float)y;
      if (quarter && x > 0 && x < W - 1) cx += quarter_step((float)p[idx + 1], (float)p[idx - 1]);
      if (quarter && y > 0 && y < H - 1) cy += quarter_step((float)p[idx + W], (float)p[idx - W]);
      coords[2 * m] = cx;
      coords[2 * m + 1] = cy;
      scores[m] = (float)p[idx];
    }
  });
}

std::tuple<at::Tensor, at::Tensor> argmax_decode_cpu(const at::Tensor& hm, bool quarter) {
  check_input(hm, "heatmaps", 4, hm);
  TORCH_CHECK(at::isFloatingType(hm.scalar_type()), "heatmaps must be floating point, got ", hm.scalar_type());
  TORCH_CHECK(hm.size(2) > 0 && hm.size(3) > 0, "heatmaps must have H, W > 0, got ", hm.sizes());
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
