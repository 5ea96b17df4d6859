// The ganops operator schemas. Implementations register per backend in their own files.
#include <torch/library.h>

TORCH_LIBRARY(ganops, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  // dz = grad * dy/dz at z = x + b: the gradient for x (for b: summed per channel).
  m.def("bias_act_backward(Tensor grad, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  // bias_act_backward and, in the same pass, its per-channel sum db (the gradient for b),
  // accumulated in float32 (float64 for float64) and independent of the thread count.
  m.def("bias_act_backward_bias(Tensor grad, Tensor x, Tensor b, int dim, str act, float alpha, float gain, float? clamp) -> (Tensor dz, Tensor db)");
  // d/dx of bias_act_backward: grad_grad * grad * d2y/dz2.
  m.def("bias_act_backward2(Tensor grad_grad, Tensor grad, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");

  // Spectral normalization, weight viewed as a matrix with rows = weight.shape[dim].
  // n_power_iterations steps of u = normalize(M v), v = normalize(M^T u), updating u and v in
  // place; returns sigma = u^T M v for the new vectors (float32, float64 for float64 weights)
  // and copies of u and v that later in-place updates cannot change (saved for backward).
  m.def("spectral_norm_power_iteration(Tensor weight, Tensor(a!) u, Tensor(b!) v, int dim, int n_power_iterations, float eps) -> (Tensor sigma, Tensor u_out, Tensor v_out)");
  // weight / sigma, where sigma must be u^T M v (as returned above); differentiable in weight
  // through sigma with u and v held fixed.
  m.def("spectral_normalize(Tensor weight, Tensor u, Tensor v, Tensor sigma, int dim) -> Tensor");
  // (grad - <grad, weight / sigma> u v^T) / sigma
  m.def("spectral_normalize_backward(Tensor grad, Tensor weight, Tensor u, Tensor v, Tensor sigma, int dim) -> Tensor");
  // The parametrization's forward in one call: spectral_norm_power_iteration, then
  // spectral_normalize with the vectors and sigma it returned.
  m.def("spectral_norm_weight(Tensor weight, Tensor(a!) u, Tensor(b!) v, int dim, int n_power_iterations, float eps) -> Tensor");

  // Gradient penalties. Per-sample mixes that make the penalty's input, with one
  // coefficient per sample (shape (N,) or (N, 1, ...)):
  //     per_sample_lerp: input + weight_b * (end - input)   (WGAN-GP interpolation)
  //     per_sample_add:  input + alpha_b * other             (DRAGAN perturbation)
  m.def("per_sample_lerp(Tensor input, Tensor end, Tensor weight) -> Tensor");
  m.def("per_sample_add(Tensor input, Tensor other, Tensor alpha) -> Tensor");
  // n_b = grad_scale * ||grad_b|| over all non-batch dims; penalty phi(n_b) * weight for kind
  // norm (n), squared (n^2), two-sided ((n - target)^2) or one-sided (max(0, n - target)^2),
  // reduced (none, mean, sum). Returns (penalty, norms), float32 (float64 for float64 grad).
  m.def("gradient_penalty(Tensor grad, str kind, float target, float weight, float grad_scale, str reduction) -> (Tensor penalty, Tensor norms)");
  // d penalty / d grad, times grad_output (the penalty's shape), from the norms returned above.
  m.def("gradient_penalty_backward(Tensor grad_output, Tensor grad, Tensor norms, str kind, float target, float weight, float grad_scale, str reduction) -> Tensor");
}
