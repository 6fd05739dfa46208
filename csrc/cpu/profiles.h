// Per-map separable target profiles for the CPU kernels: the target of map (b,k) is
// max over visible instances n of gy_n[i] * gx_n[j].
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../hg_math.h"

namespace hgfast {

class MapProfiles {
 public:
  MapProfiles(int64_t height, int64_t width, int64_t instances)
      : H_(height), W_(width), gx_(instances * width), gy_(instances * height) {}

  // kp: (N,K,2) keypoints of one batch item, vis: (N,K); builds the profiles of joint k.
  void build(const float* kp, const bool* vis, int64_t N, int64_t K, int64_t k, float sigma, bool integer_centre) {
    count_ = 0;
    first_row_ = H_;
    end_row_ = 0;
    for (int64_t n = 0; n < N; ++n) {
      if (!vis[n * K + k]) continue;
      const float cx = centre(kp[(n * K + k) * 2], integer_centre);
      const float cy = centre(kp[(n * K + k) * 2 + 1], integer_centre);
      float* gx = gx_.data() + count_ * W_;
      float* gy = gy_.data() + count_ * H_;
      for (int64_t j = 0; j < W_; ++j) gx[j] = profile((float)j, cx, sigma);
      for (int64_t i = 0; i < H_; ++i) {
        gy[i] = profile((float)i, cy, sigma);
        if (gy[i] != 0.0f) first_row_ = std::min(first_row_, i), end_row_ = std::max(end_row_, i + 1);
      }
      ++count_;
    }
  }

  // Rows outside [first_row(), end_row()) are all zero (first_row() >= end_row() when the whole map is).
  int64_t first_row() const { return first_row_; }
  int64_t end_row() const { return end_row_; }

  // Writes target row i into out[W]; returns false (and writes nothing) when the row is all zero.
  bool row(int64_t i, float* out) const {
    bool any = false;
    for (int64_t c = 0; c < count_; ++c) {
      const float g = gy_[c * H_ + i];
      if (g == 0.0f) continue;
      const float* gx = gx_.data() + c * W_;
      if (!any) {
        for (int64_t j = 0; j < W_; ++j) out[j] = g * gx[j];
      } else {
        for (int64_t j = 0; j < W_; ++j) out[j] = std::max(out[j], g * gx[j]);
      }
      any = true;
    }
    return any;
  }

 private:
  int64_t H_, W_, count_ = 0, first_row_ = 0, end_row_ = 0;
  std::vector<float> gx_, gy_;
};

// Maps per at::parallel_for chunk so that each chunk has roughly `work` pixels.
inline int64_t map_grain(int64_t pixels_per_map, int64_t work = 32768) {
  return std::max<int64_t>(1, work / std::max<int64_t>(1, pixels_per_map));
}

}  // namespace hgfast
