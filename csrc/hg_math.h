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

// One axis of the separable target: exp(-(t - c)^2 / 2 sigma^2) where |t - c| <= 3 sigma, else 0.
HG_HD float profile(float t, float c, float sigma) {
  const float d = t - c;
  return fabsf(d) <= 3.0f * sigma ? expf(-(d * d) / (2.0f * sigma * sigma)) : 0.0f;
}

// 0.25 * sign(right - left); ties and NaN give 0.
HG_HD float quarter_step(float right, float left) {
  return 0.25f * (float)((right > left) - (right < left));
}

}  // namespace hgfast
