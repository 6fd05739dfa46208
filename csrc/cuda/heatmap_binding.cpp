// CUDA implementations of the hgfast ops: argument checks, output allocation and launch (kernels in *.cu).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "heatmap_kernels.h"

namespace hgfast {
namespace {

cuda::Dtype dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return cuda::Dtype::F32;
    case at::kDouble: return cuda::Dtype::F64;
    case at::kHalf: return cuda::Dtype::F16;
    case at::kBFloat16: return cuda::Dtype::BF16;
    default: TORCH_CHECK(false, "unsupported dtype ", t);
  }
}

cuda::TargetArgs target_args(const at::Tensor& kp, const at::Tensor& vis, const at::Tensor& sigma, int64_t H,
                             int64_t W, bool integer_centre) {
  return {kp.data_ptr<float>(), vis.data_ptr<bool>(), sigma.data_ptr<float>(), kp.size(0), kp.size(1), kp.size(2),
          H, W, integer_centre};
}

void check_launch(cudaError_t err) { TORCH_CHECK(err == cudaSuccess, "hgfast CUDA kernel: ", cudaGetErrorString(err)); }

constexpr int64_t kMaxBlocks = 2147483647;  // gridDim.x

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

at::Tensor gaussian_heatmaps_cuda(const at::Tensor& kp, const at::Tensor& vis, const at::Tensor& sigma,
                                  int64_t height, int64_t width, bool integer_centre, at::ScalarType dtype) {
  check_targets(kp, vis, sigma);
  check_target_output(height, width, dtype);
  const c10::cuda::CUDAGuard guard(kp.device());
  auto out = at::empty({kp.size(0), kp.size(2), height, width}, kp.options().dtype(dtype));
  check_launch(cuda::gaussian_heatmaps(target_args(kp, vis, sigma, height, width, integer_centre), out.data_ptr(),
                                       dtype_of(dtype), stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> argmax_decode_cuda(const at::Tensor& hm, bool quarter) {
  check_heatmaps(hm);
  TORCH_CHECK(hm.size(0) * hm.size(1) <= kMaxBlocks, "heatmaps: at most ", kMaxBlocks, " maps (B x K) per call on "
              "CUDA (one block each), got ", hm.sizes());
  const c10::cuda::CUDAGuard guard(hm.device());
  auto coords = at::empty({hm.size(0), hm.size(1), 2}, hm.options().dtype(at::kFloat));
  auto scores = at::empty({hm.size(0), hm.size(1)}, hm.options().dtype(at::kFloat));
  check_launch(cuda::argmax_decode(hm.data_ptr(), dtype_of(hm.scalar_type()), hm.size(0) * hm.size(1), hm.size(2),
                                   hm.size(3), quarter, coords.data_ptr<float>(), scores.data_ptr<float>(), stream()));
  return {coords, scores};
}

at::Tensor loss_forward_cuda(const at::Tensor& pred, const at::Tensor& kp, const at::Tensor& vis,
                             const at::Tensor& weights, const at::Tensor& sigma, bool integer_centre) {
  check_loss(pred, kp, vis, weights, sigma);
  TORCH_CHECK(pred.size(0) * pred.size(2) <= kMaxBlocks, "pred: at most ", kMaxBlocks, " maps (B x K) per call on "
              "CUDA (one block each), got ", pred.sizes());
  const c10::cuda::CUDAGuard guard(pred.device());
  auto partial = at::empty({pred.size(0), pred.size(2)}, pred.options().dtype(at::kDouble));
  check_launch(cuda::mse_partials(target_args(kp, vis, sigma, pred.size(3), pred.size(4), integer_centre),
                                  pred.data_ptr(), dtype_of(pred.scalar_type()), pred.size(1),
                                  partial.data_ptr<double>(), stream()));
  const double count = static_cast<double>(stack_count(pred));
  return ((partial * weights.to(at::kDouble)).sum() / count).to(weights.scalar_type());
}

at::Tensor loss_backward_cuda(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& kp,
                              const at::Tensor& vis, const at::Tensor& weights, const at::Tensor& sigma,
                              bool integer_centre) {
  check_loss(pred, kp, vis, weights, sigma);
  check_loss_grad(grad, pred);
  const c10::cuda::CUDAGuard guard(pred.device());
  const auto g = grad.to(pred.device(), weights.scalar_type()).contiguous();
  auto out = at::empty_like(pred);
  check_launch(cuda::mse_backward(target_args(kp, vis, sigma, pred.size(3), pred.size(4), integer_centre),
                                  g.data_ptr(), weights.data_ptr(), pred.data_ptr(), dtype_of(pred.scalar_type()),
                                  pred.size(1), out.data_ptr(), stream()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hgfast, CUDA, m) {
  m.impl("gaussian_heatmaps", &gaussian_heatmaps_cuda);
  m.impl("argmax_decode", &argmax_decode_cuda);
  m.impl("heatmap_mse_loss", &loss_forward_cuda);
  m.impl("heatmap_mse_loss_backward", &loss_backward_cuda);
}

}  // namespace hgfast
