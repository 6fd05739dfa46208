// Schemas of the hgfast ops. Kernels: csrc/cpu (CPU), csrc/cuda (CUDA); fakes and autograd: hgfast/ops/_fake.py.
#include <Python.h>
#include <torch/library.h>

// Importing hgfast._C runs the TORCH_LIBRARY registrations below; the module itself is empty.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(hgfast, m) {
  // keypoints (B,N,K,2) f32, visible (B,N,K) bool, sigma (K,) f32 -> (B,K,H,W) of `dtype`
  m.def("gaussian_heatmaps(Tensor keypoints, Tensor visible, Tensor sigma, int height, int width, "
        "bool integer_centre, ScalarType dtype) -> Tensor");
  // heatmaps (B,K,H,W) -> coords (B,K,2) f32, scores (B,K) f32
  m.def("argmax_decode(Tensor heatmaps, bool quarter) -> (Tensor, Tensor)");
  // pred (B,S,K,H,W), weights (B,K) in the accumulation dtype (f64 for f64 pred, else f32) -> 0-dim loss
  m.def("heatmap_mse_loss(Tensor pred, Tensor keypoints, Tensor visible, Tensor weights, Tensor sigma, "
        "bool integer_centre) -> Tensor");
  m.def("heatmap_mse_loss_backward(Tensor grad, Tensor pred, Tensor keypoints, Tensor visible, "
        "Tensor weights, Tensor sigma, bool integer_centre) -> Tensor");
}
