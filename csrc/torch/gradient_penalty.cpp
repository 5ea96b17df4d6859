// Gradient penalties on CPU for PyTorch: checks, allocation and dtype dispatch around the core
// per-sample mix, penalty and backward, run on ATen's intra-op thread pool.
#include <torch/library.h>

#include <string>
#include <tuple>

#include "aten_adapter.h"
#include "gradient_penalty_args.h"

namespace ganops {
namespace torch_adapter {
namespace {

template <MixMode kMode>
at::Tensor mix_cpu(const at::Tensor& input, const at::Tensor& other, const at::Tensor& coef,
                   const char* op, const char* other_name, const char* coef_name) {
  const MixArgs m = mix_args(input, other, coef, op, other_name, coef_name);
  at::Tensor x = at::empty_strided(m.a.sizes(), m.a.strides(), m.a.options());
  GANOPS_DISPATCH_FLOATS(m.a.scalar_type(), "ganops::per_sample_mix", [&] {
    cpu::mix_samples<kMode, scalar_t>(m.p, m.a.const_data_ptr<scalar_t>(),
                                      m.b.const_data_ptr<scalar_t>(),
                                      m.c.const_data_ptr<acc_t<scalar_t>>(),
                                      x.mutable_data_ptr<scalar_t>(), AtenParallelFor{});
  });
  return x;
}

at::Tensor per_sample_lerp_cpu(const at::Tensor& input, const at::Tensor& end,
                               const at::Tensor& weight) {
  return mix_cpu<MixMode::kLerp>(input, end, weight, "per_sample_lerp", "end", "weight");
}

at::Tensor per_sample_add_cpu(const at::Tensor& input, const at::Tensor& other,
                              const at::Tensor& alpha) {
  return mix_cpu<MixMode::kAxpy>(input, other, alpha, "per_sample_add", "other", "alpha");
}

std::tuple<at::Tensor, at::Tensor> gradient_penalty_cpu(const at::Tensor& grad, std::string kind,
                                                        double target, double weight,
                                                        double grad_scale, std::string reduction) {
  const GradientPenaltyParams p = penalty_params(grad, kind, target, weight, grad_scale, reduction);
  const at::Tensor g = batch_major(grad);
  auto [penalty, norms] = penalty_outputs(grad, p);
  GANOPS_DISPATCH_FLOATS(grad.scalar_type(), "ganops::gradient_penalty", [&] {
    using A = acc_t<scalar_t>;
    cpu::penalty_forward<scalar_t>(p, g.const_data_ptr<scalar_t>(), norms.mutable_data_ptr<A>(),
                                   penalty.mutable_data_ptr<A>(), AtenParallelFor{});
  });
  return {penalty, norms};
}

at::Tensor gradient_penalty_backward_cpu(const at::Tensor& grad_output, const at::Tensor& grad,
                                         const at::Tensor& norms, std::string kind, double target,
                                         double weight, double grad_scale, std::string reduction) {
  const GradientPenaltyParams p = penalty_params(grad, kind, target, weight, grad_scale, reduction);
  const at::Tensor g = batch_major(grad);
  const at::Tensor gout = acc_vector(grad_output, grad, p.outputs(), "grad_output");
  const at::Tensor n = acc_vector(norms, grad, p.batch, "norms");
  at::Tensor dg = at::empty_strided(g.sizes(), g.strides(), g.options());
  GANOPS_DISPATCH_FLOATS(grad.scalar_type(), "ganops::gradient_penalty_backward", [&] {
    using A = acc_t<scalar_t>;
    cpu::penalty_backward<scalar_t>(p, gout.const_data_ptr<A>(), g.const_data_ptr<scalar_t>(),
                                    n.const_data_ptr<A>(), dg.mutable_data_ptr<scalar_t>(),
                                    AtenParallelFor{});
  });
  return dg;
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CPU, m) {
  m.impl("per_sample_lerp", &ganops::torch_adapter::per_sample_lerp_cpu);
  m.impl("per_sample_add", &ganops::torch_adapter::per_sample_add_cpu);
  m.impl("gradient_penalty", &ganops::torch_adapter::gradient_penalty_cpu);
  m.impl("gradient_penalty_backward", &ganops::torch_adapter::gradient_penalty_backward_cpu);
}
