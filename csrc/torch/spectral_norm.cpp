// Spectral normalization on CPU for PyTorch: checks, allocation and dtype dispatch around the
// core power iteration and W / sigma, run on ATen's intra-op thread pool.
#include <torch/library.h>

#include <tuple>

#include "aten_adapter.h"
#include "spectral_norm_args.h"

namespace ganops {
namespace torch_adapter {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> power_iteration_cpu(
    const at::Tensor& weight, at::Tensor& u, at::Tensor& v, int64_t dim,
    int64_t n_power_iterations, double eps) {
  const SpectralNormParams p = power_iteration_params(weight, u, v, dim, n_power_iterations, eps);
  const at::Tensor w = weight.contiguous();
  at::Tensor sigma = at::empty({}, weight.options().dtype(sigma_dtype(weight)));
  GANOPS_DISPATCH_FLOATS(weight.scalar_type(), "ganops::spectral_norm_power_iteration", [&] {
    using A = acc_t<scalar_t>;
    *sigma.mutable_data_ptr<A>() = cpu::power_iteration<scalar_t>(
        p, w.const_data_ptr<scalar_t>(), u.mutable_data_ptr<scalar_t>(),
        v.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return {sigma, u.clone(), v.clone()};
}

at::Tensor normalize_cpu(const at::Tensor& weight, const at::Tensor& u, const at::Tensor& v,
                         const at::Tensor& sigma, int64_t dim) {
  const SpectralNormParams p = normalize_params(weight, u, v, sigma, dim);
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(weight.sizes(), weight.options());
  GANOPS_DISPATCH_FLOATS(weight.scalar_type(), "ganops::spectral_normalize", [&] {
    using A = acc_t<scalar_t>;
    cpu::normalize_forward<scalar_t>(p, w.const_data_ptr<scalar_t>(), sigma.item<A>(),
                                     out.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return out;
}

at::Tensor normalize_backward_cpu(const at::Tensor& grad, const at::Tensor& weight,
                                  const at::Tensor& u, const at::Tensor& v,
                                  const at::Tensor& sigma, int64_t dim) {
  const SpectralNormParams p = normalize_params(weight, u, v, sigma, dim);
  const at::Tensor g = contiguous_like_weight(grad, weight);
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(weight.sizes(), weight.options());
  GANOPS_DISPATCH_FLOATS(weight.scalar_type(), "ganops::spectral_normalize_backward", [&] {
    using A = acc_t<scalar_t>;
    cpu::normalize_backward<scalar_t>(p, g.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                      u.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                                      sigma.item<A>(), out.mutable_data_ptr<scalar_t>(),
                                      AtenParallelFor{});
  });
  return out;
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CPU, m) {
  m.impl("spectral_norm_power_iteration", &ganops::torch_adapter::power_iteration_cpu);
  m.impl("spectral_normalize", &ganops::torch_adapter::normalize_cpu);
  m.impl("spectral_normalize_backward", &ganops::torch_adapter::normalize_backward_cpu);
}
