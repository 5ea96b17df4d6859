// First-order autograd of bias_act, in C++ and for every device.
//
// bias_act runs after every layer of a GAN, often on small tensors (StyleGAN2's 4x128 mapping
// layers), where a Python autograd.Function's tens of microseconds a call cost more than the
// kernels: with the Python registration a 256x512 forward+backward was no faster than eager
// PyTorch's three ops.
//
// What is saved: x and b (b is tiny), nothing for linear without clamp; never y as well as x.
// Backward is one pass over the incoming gradient: bias_act_backward_bias gives dz and its
// per-channel sum db together. The derivatives of the backward ops (second order) stay in Python
// (_bias_act_ops.py) and are only entered under create_graph=True.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace ganops {
namespace torch_adapter {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                         const std::string& act, double alpha, double gain,
                         std::optional<double> clamp) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::bias_act", "")
          .typed<at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&, int64_t,
                            std::string, double, double, std::optional<double>)>();
  return op.call(x, b, dim, act, alpha, gain, clamp);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& x,
                         const std::optional<at::Tensor>& b, int64_t dim, const std::string& act,
                         double alpha, double gain, std::optional<double> clamp) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::bias_act_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            int64_t, std::string, double, double, std::optional<double>)>();
  return op.call(grad, x, b, dim, act, alpha, gain, clamp);
}

std::tuple<at::Tensor, at::Tensor> call_backward_bias(const at::Tensor& grad, const at::Tensor& x,
                                                      const at::Tensor& b, int64_t dim,
                                                      const std::string& act, double alpha,
                                                      double gain, std::optional<double> clamp) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ganops::bias_act_backward_bias", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, int64_t, std::string,
                                                    double, double, std::optional<double>)>();
  return op.call(grad, x, b, dim, act, alpha, gain, clamp);
}

// t summed over every dim but `dim` (a 1-D t is its own sum: at::sum over no dims reduces all).
at::Tensor per_channel_sum(const at::Tensor& t, int64_t dim) {
  std::vector<int64_t> others;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d != dim) others.push_back(d);
  }
  return others.empty() ? t : t.sum(others);
}

class BiasAct : public torch::autograd::Function<BiasAct> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const std::optional<at::Tensor>& b, int64_t dim,
                               const std::string& act, double alpha, double gain,
                               std::optional<double> clamp) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor y = call_bias_act(x, b, dim, act, alpha, gain, clamp);
    const bool has_bias = b.has_value() && b->defined();
    const bool needs_x = !(act == "linear" && !clamp.has_value());  // else dz = dy * gain
    if (needs_x) ctx->save_for_backward({x, has_bias ? *b : at::Tensor()});
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["needs_x"] = needs_x;
    // The op has checked dim; the backward's per-channel sums need it non-negative.
    ctx->saved_data["dim"] = has_bias && dim < 0 ? dim + x.dim() : dim;
    ctx->saved_data["act"] = act;
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gain"] = gain;
    ctx->saved_data["clamp"] = clamp.has_value() ? c10::IValue(*clamp) : c10::IValue();
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const variable_list out_none(7);
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return out_none;
    const bool needs_db = has_bias && ctx->needs_input_grad(1);  // edge 1 is b when there is one
    const bool needs_x = ctx->saved_data["needs_x"].toBool();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    const std::string act = ctx->saved_data["act"].toStringRef();
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const double gain = ctx->saved_data["gain"].toDouble();
    const c10::IValue& clamp_value = ctx->saved_data["clamp"];
    const std::optional<double> clamp =
        clamp_value.isNone() ? std::nullopt : std::optional<double>(clamp_value.toDouble());

    // With create_graph every step is recorded, so that the Python autograd of
    // bias_act_backward gives the exact second order (the fused op has no derivative of its
    // own). Otherwise there is nothing to record: skip the (Python) autograd kernels.
    const bool create_graph = at::GradMode::is_enabled();
    std::optional<at::AutoDispatchBelowADInplaceOrView> below_autograd;
    if (!create_graph) below_autograd.emplace();
    at::Tensor dz, db;
    if (!needs_x) {
      dz = grad * gain;
    } else {
      const variable_list saved = ctx->get_saved_variables();
      if (needs_db && !create_graph) {
        std::tie(dz, db) = call_backward_bias(grad, saved[0], saved[1], dim, act, alpha, gain, clamp);
      } else {
        const std::optional<at::Tensor> b =
            has_bias ? std::optional<at::Tensor>(saved[1]) : std::nullopt;
        dz = call_backward(grad, saved[0], b, dim, act, alpha, gain, clamp);
      }
    }
    if (needs_db && !db.defined()) db = per_channel_sum(dz, dim);
    variable_list out = out_none;
    out[0] = dz;
    if (needs_db) out[1] = db;
    return out;
  }
};

at::Tensor bias_act_autograd(const at::Tensor& x, const std::optional<at::Tensor>& b,
                             int64_t dim, std::string act, double alpha, double gain,
                             std::optional<double> clamp) {
  return BiasAct::apply(x, b, dim, act, alpha, gain, clamp)[0];
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, Autograd, m) {
  m.impl("bias_act", &ganops::torch_adapter::bias_act_autograd);
}
