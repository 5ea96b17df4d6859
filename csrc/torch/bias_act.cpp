// bias_act on CPU for PyTorch: checks, allocation and dtype dispatch around the core loops,
// run on ATen's intra-op thread pool.
#include <torch/library.h>

#include <tuple>

#include "aten_adapter.h"
#include "bias_act_args.h"

namespace ganops {
namespace torch_adapter {
namespace {

at::Tensor bias_act_cpu(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                        std::string act, double alpha, double gain, std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  at::Tensor y = at::empty_like(x);
  at::Tensor bias;
  bias_data(b, bias);
  GANOPS_DISPATCH_FLOATS(x.scalar_type(), "ganops::bias_act", [&] {
    cpu::bias_act_forward<scalar_t>(p, x.const_data_ptr<scalar_t>(),
                                    b ? bias.const_data_ptr<scalar_t>() : nullptr,
                                    y.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return y;
}

at::Tensor bias_act_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                 const std::optional<at::Tensor>& b, int64_t dim, std::string act,
                                 double alpha, double gain, std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor dy = like_x(grad, x, "grad");
  at::Tensor dz = at::empty_like(x);
  at::Tensor bias;
  bias_data(b, bias);
  GANOPS_DISPATCH_FLOATS(x.scalar_type(), "ganops::bias_act_backward", [&] {
    cpu::bias_act_backward<scalar_t>(p, dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                     b ? bias.const_data_ptr<scalar_t>() : nullptr,
                                     dz.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return dz;
}

std::tuple<at::Tensor, at::Tensor> bias_act_backward_bias_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& b, int64_t dim, std::string act,
    double alpha, double gain, std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor dy = like_x(grad, x, "grad");
  at::Tensor dz = at::empty_like(x);
  at::Tensor db = at::empty_like(b, at::MemoryFormat::Contiguous);
  const at::Tensor bias = b.contiguous();
  GANOPS_DISPATCH_FLOATS(x.scalar_type(), "ganops::bias_act_backward_bias", [&] {
    cpu::bias_act_backward_bias<scalar_t>(p, dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                          bias.const_data_ptr<scalar_t>(), dz.mutable_data_ptr<scalar_t>(),
                                          db.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return {dz, db};
}

at::Tensor bias_act_backward2_cpu(const at::Tensor& grad_grad, const at::Tensor& grad,
                                  const at::Tensor& x, const std::optional<at::Tensor>& b,
                                  int64_t dim, std::string act, double alpha, double gain,
                                  std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor ddz = like_x(grad_grad, x, "grad_grad");
  const at::Tensor dy = like_x(grad, x, "grad");
  at::Tensor out = at::empty_like(x);
  at::Tensor bias;
  bias_data(b, bias);
  GANOPS_DISPATCH_FLOATS(x.scalar_type(), "ganops::bias_act_backward2", [&] {
    cpu::bias_act_backward2<scalar_t>(p, ddz.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(),
                                      x.const_data_ptr<scalar_t>(),
                                      b ? bias.const_data_ptr<scalar_t>() : nullptr,
                                      out.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return out;
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CPU, m) {
  m.impl("bias_act", &ganops::torch_adapter::bias_act_cpu);
  m.impl("bias_act_backward", &ganops::torch_adapter::bias_act_backward_cpu);
  m.impl("bias_act_backward_bias", &ganops::torch_adapter::bias_act_backward_bias_cpu);
  m.impl("bias_act_backward2", &ganops::torch_adapter::bias_act_backward2_cpu);
}
