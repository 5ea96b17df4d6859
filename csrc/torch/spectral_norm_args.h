// Argument checks for the spectral-norm ops, shared by the CPU and CUDA implementations.
// Errors name the argument; ValueError/TypeError/IndexError reach Python.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ganops/spectral_norm.h"

namespace ganops {
namespace torch_adapter {

// Checks weight and dim and returns the matrix view (rows = weight.shape[dim]).
inline SpectralNormParams spectral_norm_params(const at::Tensor& weight, int64_t dim) {
  const auto s = weight.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                   "ganops.spectral_norm: weight must be float32, float64, float16 or bfloat16, "
                   "got ", s);
  const int64_t ndim = weight.dim();
  TORCH_CHECK_VALUE(ndim >= 1, "ganops.spectral_norm: weight must have at least 1 dim to be "
                    "viewed as a matrix, got a ", ndim, "-d tensor");
  TORCH_CHECK_VALUE(weight.numel() > 0, "ganops.spectral_norm: weight is empty (shape ",
                    weight.sizes(), ")");
  TORCH_CHECK_INDEX(dim >= -ndim && dim < ndim, "ganops.spectral_norm: dim ", dim,
                    " is out of range for a weight with ", ndim, " dims");
  if (dim < 0) dim += ndim;
  SpectralNormParams p;
  set_matrix_view(p, weight.sizes().data(), ndim, dim);
  return p;
}

// A 1-D contiguous vector of `n` elements with weight's dtype and device.
inline void check_vector(const at::Tensor& t, const at::Tensor& weight, int64_t n,
                         const char* name, const char* what) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.numel() == n, "ganops.spectral_norm: ", name,
                    " must be 1-D with ", n, " elements (", what, "), got shape ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == weight.scalar_type(), "ganops.spectral_norm: ", name,
                   " has dtype ", t.scalar_type(), " but weight has ", weight.scalar_type());
  TORCH_CHECK_VALUE(t.device() == weight.device(), "ganops.spectral_norm: ", name, " is on ",
                    t.device(), " but weight is on ", weight.device());
  TORCH_CHECK_VALUE(t.is_contiguous(), "ganops.spectral_norm: ", name, " must be contiguous");
}

inline void check_vectors(const SpectralNormParams& p, const at::Tensor& weight,
                          const at::Tensor& u, const at::Tensor& v) {
  check_vector(u, weight, p.rows, "u", "weight.shape[dim]");
  check_vector(v, weight, p.cols(), "v", "weight.numel() / weight.shape[dim]");
}

// sigma as accumulated by the core: float64 for float64 weights, else float32.
inline at::ScalarType sigma_dtype(const at::Tensor& weight) {
  return weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_sigma(const at::Tensor& sigma, const at::Tensor& weight) {
  TORCH_CHECK_VALUE(sigma.numel() == 1, "ganops.spectral_norm: sigma must hold one element, got "
                    "shape ", sigma.sizes());
  TORCH_CHECK_TYPE(sigma.scalar_type() == sigma_dtype(weight), "ganops.spectral_norm: sigma must "
                   "be ", sigma_dtype(weight), " for a ", weight.scalar_type(), " weight, got ",
                   sigma.scalar_type());
  TORCH_CHECK_VALUE(sigma.device() == weight.device(), "ganops.spectral_norm: sigma is on ",
                    sigma.device(), " but weight is on ", weight.device());
}

inline void check_power_args(int64_t n_power_iterations, double eps) {
  TORCH_CHECK_VALUE(n_power_iterations >= 0, "ganops.spectral_norm: n_power_iterations must be "
                    ">= 0, got ", n_power_iterations);
  TORCH_CHECK_VALUE(eps > 0.0, "ganops.spectral_norm: eps must be > 0, got ", eps);
}

// All checks of spectral_norm_power_iteration, and its core parameters.
inline SpectralNormParams power_iteration_params(const at::Tensor& weight, const at::Tensor& u,
                                                 const at::Tensor& v, int64_t dim,
                                                 int64_t n_power_iterations, double eps) {
  SpectralNormParams p = spectral_norm_params(weight, dim);
  check_vectors(p, weight, u, v);
  check_power_args(n_power_iterations, eps);
  p.n_power_iterations = n_power_iterations;
  p.eps = eps;
  return p;
}

// The checks of spectral_normalize and its backward on (weight, u, v, sigma).
inline SpectralNormParams normalize_params(const at::Tensor& weight, const at::Tensor& u,
                                           const at::Tensor& v, const at::Tensor& sigma,
                                           int64_t dim) {
  const SpectralNormParams p = spectral_norm_params(weight, dim);
  check_vectors(p, weight, u, v);
  check_sigma(sigma, weight);
  return p;
}

// grad as a contiguous tensor of weight's shape and dtype.
inline at::Tensor contiguous_like_weight(const at::Tensor& grad, const at::Tensor& weight) {
  TORCH_CHECK_VALUE(grad.sizes() == weight.sizes(), "ganops.spectral_norm: grad has shape ",
                    grad.sizes(), " but weight has ", weight.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == weight.scalar_type(), "ganops.spectral_norm: grad has "
                   "dtype ", grad.scalar_type(), " but weight has ", weight.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == weight.device(), "ganops.spectral_norm: grad is on ",
                    grad.device(), " but weight is on ", weight.device());
  return grad.contiguous();
}

}  // namespace torch_adapter
}  // namespace ganops
