// Autograd of the spectral-norm ops, in C++ and for every device.
//
// spectral_normalize: the layer runs it on every training step, and a Python autograd.Function
// costs tens of microseconds a call, as much as the kernels themselves on small weights.
//
// What is saved for backward: weight (the parameter itself, no copy), u, v and sigma.
// The backward op's own derivative (second order) stays in Python (_spectral_norm_ops.py); it
// is only entered under create_graph=True.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <tuple>

namespace ganops {
namespace torch_adapter {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_normalize(const at::Tensor& weight, const at::Tensor& u, const at::Tensor& v,
                          const at::Tensor& sigma, int64_t dim) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ganops::spectral_normalize", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(weight, u, v, sigma, dim);
}

at::Tensor call_normalize_backward(const at::Tensor& grad, const at::Tensor& weight,
                                   const at::Tensor& u, const at::Tensor& v,
                                   const at::Tensor& sigma, int64_t dim) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::spectral_normalize_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(grad, weight, u, v, sigma, dim);
}

class SpectralNormalize : public torch::autograd::Function<SpectralNormalize> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weight, const at::Tensor& u,
                            const at::Tensor& v, const at::Tensor& sigma, int64_t dim) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = call_normalize(weight, u, v, sigma, dim);
    ctx->save_for_backward({weight, u, v, sigma});
    ctx->saved_data["dim"] = dim;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    at::Tensor d_weight;
    if (ctx->needs_input_grad(0) && grads[0].defined()) {
      const int64_t dim = ctx->saved_data["dim"].toInt();
      if (at::GradMode::is_enabled()) {  // create_graph: record the second-order node
        d_weight = call_normalize_backward(grads[0], saved[0], saved[1], saved[2], saved[3], dim);
      } else {  // skip the (Python) autograd kernel of the backward op: nothing to record
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        d_weight = call_normalize_backward(grads[0], saved[0], saved[1], saved[2], saved[3], dim);
      }
    }
    return {d_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor spectral_normalize_autograd(const at::Tensor& weight, const at::Tensor& u,
                                       const at::Tensor& v, const at::Tensor& sigma, int64_t dim) {
  return SpectralNormalize::apply(weight, u, v, sigma, dim);
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

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
  m.impl("spectral_normalize", &ganops::torch_adapter::spectral_normalize_autograd);
  m.impl("spectral_norm_power_iteration", torch::CppFunction::makeFallthrough());
}

TORCH_LIBRARY_IMPL(ganops, ADInplaceOrView, m) {
  m.impl("spectral_norm_power_iteration",
         TORCH_FN(spectral_norm_power_iteration_inplace_or_view));
}
