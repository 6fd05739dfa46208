// CUDA kernels of the hgfast ops (torch-free: `nvcc -arch=sm_90 -c` compiles this file alone).
// Targets: one thread per output pixel. Decode: one block per map with a (value, first index) reduction.
// Loss: one block per (b,k) map over all stacks, target values recomputed per pixel, deterministic partials.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../hg_math.h"
#include "heatmap_kernels.h"

namespace hgfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ double to_float(double v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Store an accumulator value (float, or double for double tensors: never narrowed through float) as T.
template <typename T, typename V>
__device__ __forceinline__ T from_float(V v) { return static_cast<T>(v); }
template <>
__device__ __forceinline__ __half from_float<__half, float>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16, float>(float v) { return __float2bfloat16_rn(v); }

// Target value of map (b,k) at row i, column j: max over visible instances of gy * gx.
__device__ float target_at(const TargetArgs& t, int64_t b, int64_t k, int64_t i, int64_t j) {
  const float s = t.sigma[k];
  float v = 0.0f;
  for (int64_t n = 0; n < t.N; ++n) {
    const int64_t q = (b * t.N + n) * t.K + k;
    if (!t.visible[q]) continue;
    const float gy = profile((float)i, centre(t.keypoints[2 * q + 1], t.integer_centre), s);
    const float gx = profile((float)j, centre(t.keypoints[2 * q], t.integer_centre), s);
    v = fmaxf(v, gy * gx);
  }
  return v;
}

template <typename T>
__global__ void targets_kernel(TargetArgs t, T* out) {
  const int64_t total = t.B * t.K * t.H * t.W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e % t.W, i = (e / t.W) % t.H, k = (e / (t.W * t.H)) % t.K, b = e / (t.W * t.H * t.K);
    out[e] = from_float<T>(target_at(t, b, k, i, j));
  }
}

// (value, index) candidates: NaN beats numbers, larger beats smaller, ties go to the smaller index.
template <typename A>
__device__ __forceinline__ bool better(A v, int64_t i, A w, int64_t j) {
  const bool vn = v != v, wn = w != w;
  if (vn != wn) return vn;
  if (!vn && v != w) return v > w;
  return i < j;
}

template <typename T, typename A>
__global__ void decode_kernel(const T* hm, int64_t H, int64_t W, bool quarter, float* coords, float* scores) {
  __shared__ A sv[kThreads];
  __shared__ int64_t si[kThreads];
  const int64_t HW = H * W;
  const T* p = hm + blockIdx.x * HW;
  A best = to_float(p[0]);
  int64_t at = 0;
  for (int64_t e = threadIdx.x; e < HW; e += blockDim.x) {
    const A v = to_float(p[e]);
    if (better(v, e, best, at)) best = v, at = e;
  }
  sv[threadIdx.x] = best;
  si[threadIdx.x] = at;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half && better(sv[threadIdx.x + half], si[threadIdx.x + half], sv[threadIdx.x], si[threadIdx.x])) {
      sv[threadIdx.x] = sv[threadIdx.x + half];
      si[threadIdx.x] = si[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int64_t idx = si[0], y = idx / W, x = idx % W;
    float cx = (float)x, cy = (float)y;
    if (quarter && x > 0 && x < W - 1) cx += quarter_step(to_float(p[idx + 1]), to_float(p[idx - 1]));
    if (quarter && y > 0 && y < H - 1) cy += quarter_step(to_float(p[idx + W]), to_float(p[idx - W]));
    coords[2 * blockIdx.x] = cx;
    coords[2 * blockIdx.x + 1] = cy;
    scores[blockIdx.x] = (float)to_float(p[idx]);
  }
}

// Squares summed in double per thread (a thread adds S*H*W/256 of them: thousands at 8 stacks x 128x128).
template <typename T>
__global__ void mse_partials_kernel(TargetArgs t, const T* pred, int64_t S, double* partial) {
  __shared__ double red[kThreads];
  const int64_t m = blockIdx.x, b = m / t.K, k = m % t.K, HW = t.H * t.W;
  double acc = 0;
  for (int64_t e = threadIdx.x; e < HW; e += blockDim.x) {
    const double target = target_at(t, b, k, e / t.W, e % t.W);
    for (int64_t s = 0; s < S; ++s) {
      const double d = (double)to_float(pred[((b * S + s) * t.K + k) * HW + e]) - target;
      acc += d * d;
    }
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) red[threadIdx.x] += red[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[m] = red[0];
}

template <typename T, typename A>
__global__ void mse_backward_kernel(TargetArgs t, const A* grad, const A* weights, const T* pred, int64_t S, T* out) {
  const int64_t HW = t.H * t.W, total = t.B * S * t.K * HW;
  const A scale = 2 * grad[0] / (A)(t.B * t.K * HW);
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = e % HW, k = (e / HW) % t.K, b = e / (HW * t.K * S);
    const A d = (A)to_float(pred[e]) - (A)target_at(t, b, k, p / t.W, p % t.W);
    out[e] = from_float<T>(scale * weights[b * t.K + k] * d);
  }
}
// Grid size for grid-stride loops over n elements (capped; the loops cover the rest).
unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return (unsigned)(blocks < 65536 ? blocks : 65536);
}

// Calls fn(T{}) with the element type T of `dtype`, then reports launch errors.
template <typename Fn>
cudaError_t dispatch(Dtype dtype, const Fn& fn) {
  switch (dtype) {
    case Dtype::F32: fn(float{}); break;
    case Dtype::F64: fn(double{}); break;
    case Dtype::F16: fn(__half{}); break;
    case Dtype::BF16: fn(__nv_bfloat16{}); break;
  }
  return cudaGetLastError();
}

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

}  // namespace

cudaError_t gaussian_heatmaps(const TargetArgs& t, void* out, Dtype dtype, cudaStream_t stream) {
  const int64_t n = t.B * t.K * t.H * t.W;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    targets_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(t, static_cast<T*>(out));
  });
}

cudaError_t argmax_decode(const void* heatmaps, Dtype dtype, int64_t maps, int64_t H, int64_t W, bool quarter,
                          float* coords, float* scores, cudaStream_t stream) {
  if (maps == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    decode_kernel<T, typename Acc<T>::type><<<(unsigned)maps, kThreads, 0, stream>>>(
        static_cast<const T*>(heatmaps), H, W, quarter, coords, scores);
  });
}

cudaError_t mse_partials(const TargetArgs& t, const void* pred, Dtype dtype, int64_t S, double* partial,
                         cudaStream_t stream) {
  if (t.B * t.K == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    mse_partials_kernel<T><<<(unsigned)(t.B * t.K), kThreads, 0, stream>>>(
        t, static_cast<const T*>(pred), S, partial);
  });
}

cudaError_t mse_backward(const TargetArgs& t, const void* grad, const void* weights, const void* pred, Dtype dtype,
                         int64_t S, void* grad_pred, cudaStream_t stream) {
  const int64_t n = t.B * S * t.K * t.H * t.W;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    mse_backward_kernel<T, A><<<blocks_for(n), kThreads, 0, stream>>>(
        t, static_cast<const A*>(grad), static_cast<const A*>(weights), static_cast<const T*>(pred), S,
        static_cast<T*>(grad_pred));
  });
}

}  // namespace cuda
}  // namespace hgfast
