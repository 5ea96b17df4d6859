// spectral_norm_weight: the parametrization's forward (power steps, then W / sigma) as one op, so
// that the forward that runs on every access to module.weight crosses from Python into the
// dispatcher once instead of twice. It is CompositeImplicitAutograd: the two ops it calls keep
// their own autograd (power iteration: none, and u, v's versions bumped; W / sigma: the C++
// first order), fake kernels and device kernels, so nothing here is per device or per dtype.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <tuple>

namespace ganops {
namespace torch_adapter {
namespace {

at::Tensor spectral_norm_weight(const at::Tensor& weight, at::Tensor& u, at::Tensor& v,
                                int64_t dim, int64_t n_power_iterations, double eps) {
  static const auto power_iteration =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::spectral_norm_power_iteration", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, at::Tensor&, at::Tensor&, int64_t, int64_t, double)>();
  static const auto normalize =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::spectral_normalize", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, int64_t)>();
  auto [sigma, u_out, v_out] = power_iteration.call(weight, u, v, dim, n_power_iterations, eps);
  return normalize.call(weight, u_out, v_out, sigma, dim);
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CompositeImplicitAutograd, m) {
  m.impl("spectral_norm_weight", &ganops::torch_adapter::spectral_norm_weight);
}
