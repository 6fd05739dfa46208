// Torch-free scalar math shared by the CPU and CUDA kernels; the semantics are DESIGN.md §5.
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define HG_HD __host__ __device__ __forceinline__
#else
#define HG_HD inline
#endif

namespace hgfast {

// Centre of a Gaussian: the keypoint itself (unbiased) or floor(c + 0.5) (integer-centre encoding).
HG_HD float centre(float c, bool integer_centre) { return integer_centre ? floorf(c + 0.5f) : c; }

// One axis of the separable target: exp(-q^2 / 2), q = (t - c) / sigma, where |t - c| <= 3 sigma, else 0; 0 unless
// sigma > 0 (a zero, negative or NaN sigma draws nothing). q, not (t - c)^2 / 2 sigma^2: 2 sigma^2 neither
// underflows (a tiny sigma: 0/0) nor overflows (a huge one: x/inf) in float32.
HG_HD float profile(float t, float c, float sigma) {
  const float d = t - c;
  if (!(sigma > 0.0f) || !(fabsf(d) <= 3.0f * sigma)) return 0.0f;
  const float q = d / sigma;
  return expf(-0.5f * q * q);
}

// 0.25 * sign(right - left), compared in the map's own type (float64 maps in double); ties and NaN give 0.
template <typename T>
HG_HD float quarter_step(T right, T left) {
  return 0.25f * (float)((right > left) - (right < left));
}

}  // namespace hgfast
