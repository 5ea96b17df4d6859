// The ganops operator schemas. Implementations register per backend in their own files.
#include <torch/library.h>

TORCH_LIBRARY(ganops, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  // dz = grad * dy/dz at z = x + b: the gradient for x (for b: summed per channel).
  m.def("bias_act_backward(Tensor grad, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  // d/dx of bias_act_backward: grad_grad * grad * d2y/dz2.
  m.def("bias_act_backward2(Tensor grad_grad, Tensor grad, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");

  // Spectral normalization (DESIGN §4), weight viewed as a matrix with rows = weight.shape[dim].
  // n_power_iterations steps of u = normalize(M v), v = normalize(M^T u), updating u and v in
  // place; returns sigma = u^T M v for the new vectors (float32, float64 for float64 weights)
  // and copies of u and v that later in-place updates cannot change (saved for backward).
  m.def("spectral_norm_power_iteration(Tensor weight, Tensor(a!) u, Tensor(b!) v, int dim, int n_power_iterations, float eps) -> (Tensor sigma, Tensor u_out, Tensor v_out)");
  // weight / sigma, where sigma must be u^T M v (as returned above); differentiable in weight
  // through sigma with u and v held fixed.
  m.def("spectral_normalize(Tensor weight, Tensor u, Tensor v, Tensor sigma, int dim) -> Tensor");
  // (grad - <grad, weight / sigma> u v^T) / sigma
  m.def("spectral_normalize_backward(Tensor grad, Tensor weight, Tensor u, Tensor v, Tensor sigma, int dim) -> Tensor");
}
