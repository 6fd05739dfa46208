// Torch-free host launchers of the CUDA kernels in heatmap_kernels.cu (bodies need only the CUDA headers).
// Shapes and semantics match the hgfast ops in csrc/hgfast_ops.cpp; all pointers are contiguous device memory.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace hgfast {
namespace cuda {

enum class Dtype { F32, F64, F16, BF16 };

struct TargetArgs {  // keypoints (B,N,K,2), visible (B,N,K), sigma (K,); maps are H x W
  const float* keypoints;
  const bool* visible;
  const float* sigma;
  int64_t B, N, K, H, W;
  bool integer_centre;
};

// out: (B,K,H,W) of `dtype`.
cudaError_t gaussian_heatmaps(const TargetArgs& t, void* out, Dtype dtype, cudaStream_t stream);

// heatmaps: (maps,H,W) of `dtype` -> coords (maps,2), scores (maps,) float32.
cudaError_t argmax_decode(const void* heatmaps, Dtype dtype, int64_t maps, int64_t H, int64_t W, bool quarter,
                          float* coords, float* scores, cudaStream_t stream);

// pred (B,S,K,H,W) of `dtype` -> partial[b*K+k] = sum over s,i,j of (pred - target)^2, in double.
cudaError_t mse_partials(const TargetArgs& t, const void* pred, Dtype dtype, int64_t S, double* partial,
                         cudaStream_t stream);

// grad_pred = grad * 2 * weights[b,k] * (pred - target) / (B*K*H*W); grad (scalar) and weights (B,K) are
// double when dtype is F64, else float.
cudaError_t mse_backward(const TargetArgs& t, const void* grad, const void* weights, const void* pred, Dtype dtype,
                         int64_t S, void* grad_pred, cudaStream_t stream);

}  // namespace cuda
}  // namespace hgfast
