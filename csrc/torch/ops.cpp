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

// spectral_norm_power_iteration is not differentiable (torch runs its power method under
// no_grad) and writes u and v in place. Without the two registrations below, the dispatcher's
// default autograd fallback marked its outputs as requiring grad whenever the weight did (and
// on backward warned or gave silently wrong gradients), and nothing bumped u's and v's version
// counters, so autograd could not detect a u or v saved for backward being overwritten (torch's
// own power method, F.normalize(..., out=u), does bump them).
//   Autograd: fall through, so the outputs never require grad.
//   ADInplaceOrView: run the op below this key, then bump the versions of u and v when they were
//   written (n_power_iterations > 0). torch's generic autogradNotImplementedInplaceOrViewFallback
//   does not do it: it only bumps inputs that are also returned, and u, v are not.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/variable.h>

#include <tuple>

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_norm_power_iteration_inplace_or_view(
    c10::DispatchKeySet keys, const at::Tensor& weight, at::Tensor& u, at::Tensor& v, int64_t dim,
    int64_t n_power_iterations, double eps) {
  static const auto op = c10::Dispatcher::singleton()
      .findSchemaOrThrow("ganops::spectral_norm_power_iteration", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, at::Tensor&,
                                                             at::Tensor&, int64_t, int64_t,
                                                             double)>();
  auto result = [&] {
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.redispatch(keys & c10::after_ADInplaceOrView_keyset, weight, u, v, dim,
                         n_power_iterations, eps);
  }();
  if (n_power_iterations > 0) {
    torch::autograd::impl::bump_version(u);
    torch::autograd::impl::bump_version(v);
  }
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(ganops, Autograd, m) {
  m.impl("spectral_norm_power_iteration", torch::CppFunction::makeFallthrough());
}

TORCH_LIBRARY_IMPL(ganops, ADInplaceOrView, m) {
  m.impl("spectral_norm_power_iteration",
         TORCH_FN(spectral_norm_power_iteration_inplace_or_view));
}
