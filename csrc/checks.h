// Argument checks shared by the CPU and CUDA bindings (the Python wrappers check first, with friendlier text).
#pragma once
#include <ATen/ATen.h>

namespace hgfast {

inline void check_input(const at::Tensor& t, const char* name, int64_t dim, const at::Tensor& like) {
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dims, got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == like.device(), name, " is on ", t.device(), ", expected ", like.device());
}

// keypoints (B,N,K,2) f32, visible (B,N,K) bool, sigma (K,) f32.
inline void check_targets(const at::Tensor& kp, const at::Tensor& vis, const at::Tensor& sigma) {
  check_input(kp, "keypoints", 4, kp);
  check_input(vis, "visible", 3, kp);
  check_input(sigma, "sigma", 1, kp);
  TORCH_CHECK(kp.scalar_type() == at::kFloat, "keypoints must be float32, got ", kp.scalar_type());
  TORCH_CHECK(vis.scalar_type() == at::kBool, "visible must be bool, got ", vis.scalar_type());
  TORCH_CHECK(sigma.scalar_type() == at::kFloat, "sigma must be float32, got ", sigma.scalar_type());
  TORCH_CHECK(kp.size(3) == 2, "keypoints must be (B,N,K,2), got ", kp.sizes());
  TORCH_CHECK(vis.sizes() == kp.sizes().slice(0, 3), "visible must be (B,N,K), got ", vis.sizes());
  TORCH_CHECK(sigma.size(0) == kp.size(2), "sigma must be (K,), got ", sigma.sizes());
}

// gaussian_heatmaps' output: (height, width) > 0, a floating dtype.
inline void check_target_output(int64_t height, int64_t width, at::ScalarType dtype) {
  TORCH_CHECK(height > 0 && width > 0, "height and width must be positive, got ", height, "x", width);
  TORCH_CHECK(at::isFloatingType(dtype), "dtype must be floating point, got ", dtype);
}

// heatmaps (B,K,H,W) floating, H and W > 0.
inline void check_heatmaps(const at::Tensor& hm) {
  check_input(hm, "heatmaps", 4, hm);
  TORCH_CHECK(at::isFloatingType(hm.scalar_type()), "heatmaps must be floating point, got ", hm.scalar_type());
  TORCH_CHECK(hm.size(2) > 0 && hm.size(3) > 0, "heatmaps must have H, W > 0, got ", hm.sizes());
}

// pred (B,S,K,H,W) floating and non-empty, weights (B,K) in the accumulation dtype, keypoints matching B and K.
inline void check_loss(const at::Tensor& pred, const at::Tensor& kp, const at::Tensor& vis,
                       const at::Tensor& weights, const at::Tensor& sigma) {
  check_input(pred, "pred", 5, pred);
  TORCH_CHECK(at::isFloatingType(pred.scalar_type()), "pred must be floating point, got ", pred.scalar_type());
  TORCH_CHECK(pred.numel() > 0, "pred must be non-empty (B, S, K, H, W > 0), got ", pred.sizes());
  check_targets(kp, vis, sigma);
  check_input(weights, "weights", 2, pred);
  TORCH_CHECK(kp.device() == pred.device(), "keypoints is on ", kp.device(), ", expected ", pred.device());
  TORCH_CHECK(kp.size(0) == pred.size(0) && kp.size(2) == pred.size(2), "keypoints ", kp.sizes(),
              " does not match pred ", pred.sizes());
  TORCH_CHECK(weights.size(0) == pred.size(0) && weights.size(1) == pred.size(2), "weights must be (B,K), got ",
              weights.sizes());
  const auto acc = pred.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(weights.scalar_type() == acc, "weights must be ", acc, ", got ", weights.scalar_type());
}

// The loss backward's incoming gradient: one element, on pred's device (or a CPU scalar).
inline void check_loss_grad(const at::Tensor& grad, const at::Tensor& pred) {
  TORCH_CHECK(grad.numel() == 1, "grad must be a scalar, got ", grad.sizes());
  TORCH_CHECK(grad.device() == pred.device() || (grad.is_cpu() && grad.dim() == 0), "grad is on ", grad.device(),
              ", expected ", pred.device(), " (or a 0-dim CPU tensor)");
}

// Elements of one stack of pred (B,S,K,H,W): the count each stack's mean divides by.
inline int64_t stack_count(const at::Tensor& pred) {
  return pred.size(0) * pred.size(2) * pred.size(3) * pred.size(4);
}

}  // namespace hgfast
