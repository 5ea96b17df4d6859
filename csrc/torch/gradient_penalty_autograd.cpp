// Autograd of gradient_penalty, in C++ and for every device.
//
// A penalty runs on every discriminator step, and a Python autograd.Function costs tens of
// microseconds a call, as much as the kernels on CIFAR-sized batches (64x3x32x32 here: 0.18 ms
// forward+backward with the Python registration).
//
// What is saved for backward: grad (the input itself, no copy) and the N norms. The norms output
// is not differentiable (kind "norm" gives a differentiable n_b). The backward op's own
// derivative (second order) stays in Python (_gradient_penalty_ops.py); it is only entered under
// create_graph=True.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <tuple>

namespace ganops {
namespace torch_adapter {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> call_penalty(const at::Tensor& grad, const std::string& kind,
                                                double target, double weight, double grad_scale,
                                                const std::string& reduction) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::gradient_penalty", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, std::string, double,
                                                    double, double, std::string)>();
  return op.call(grad, kind, target, weight, grad_scale, reduction);
}

at::Tensor call_penalty_backward(const at::Tensor& grad_output, const at::Tensor& grad,
                                 const at::Tensor& norms, const std::string& kind, double target,
                                 double weight, double grad_scale, const std::string& reduction) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::gradient_penalty_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, std::string,
                            double, double, double, std::string)>();
  return op.call(grad_output, grad, norms, kind, target, weight, grad_scale, reduction);
}

class GradientPenalty : public torch::autograd::Function<GradientPenalty> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad,
                               const std::string& kind, double target, double weight,
                               double grad_scale, const std::string& reduction) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [penalty, norms] = call_penalty(grad, kind, target, weight, grad_scale, reduction);
    ctx->save_for_backward({grad, norms});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["target"] = target;
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["grad_scale"] = grad_scale;
    ctx->saved_data["reduction"] = reduction;
    ctx->mark_non_differentiable({norms});
    return {penalty, norms};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    at::Tensor d_grad;
    if (ctx->needs_input_grad(0) && grads[0].defined()) {
      const at::Tensor& norms = saved[1];
      const at::Tensor gout = grads[0].to(norms.scalar_type()).contiguous();
      const std::string kind = ctx->saved_data["kind"].toStringRef();
      const std::string reduction = ctx->saved_data["reduction"].toStringRef();
      const double target = ctx->saved_data["target"].toDouble();
      const double weight = ctx->saved_data["weight"].toDouble();
      const double grad_scale = ctx->saved_data["grad_scale"].toDouble();
      if (at::GradMode::is_enabled()) {  // create_graph: record the second-order node
        d_grad = call_penalty_backward(gout, saved[0], norms, kind, target, weight, grad_scale,
                                       reduction);
      } else {  // skip the (Python) autograd kernel of the backward op: nothing to record
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        d_grad = call_penalty_backward(gout, saved[0], norms, kind, target, weight, grad_scale,
                                       reduction);
      }
    }
    return {d_grad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> gradient_penalty_autograd(const at::Tensor& grad,
                                                             std::string kind, double target,
                                                             double weight, double grad_scale,
                                                             std::string reduction) {
  const variable_list out =
      GradientPenalty::apply(grad, kind, target, weight, grad_scale, reduction);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, Autograd, m) {
  m.impl("gradient_penalty", &ganops::torch_adapter::gradient_penalty_autograd);
}
