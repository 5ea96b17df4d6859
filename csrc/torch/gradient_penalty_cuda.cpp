// Gradient penalties on CUDA for PyTorch: the same checks and outputs as the CPU adapter
// (gradient_penalty.cpp), then the core launchers on the current stream. The penalty and the
// norms stay on the device, so no call waits for the GPU. Compiled only when torch and the
// build have CUDA.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "cuda_adapter.h"
#include "gradient_penalty_args.h"

namespace ganops {
namespace torch_adapter {
namespace {

at::Tensor mix_cuda(const at::Tensor& input, const at::Tensor& other, const at::Tensor& coef,
                    MixMode mode, const char* op, const char* other_name, const char* coef_name) {
  // Checks first: a guard built on a CPU argument would fail with CUDAGuardImpl's own message.
  const MixArgs m = mix_args(input, other, coef, op, other_name, coef_name);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor x = at::empty_strided(m.a.sizes(), m.a.strides(), m.a.options());
  check_launch(cuda::mix_samples(m.p, mode, core_dtype(m.a), m.a.const_data_ptr(),
                                 m.b.const_data_ptr(), m.c.const_data_ptr(), x.mutable_data_ptr(),
                                 c10::cuda::getCurrentCUDAStream()),
               op);
  return x;
}

at::Tensor per_sample_lerp_cuda(const at::Tensor& input, const at::Tensor& end,
                                const at::Tensor& weight) {
  return mix_cuda(input, end, weight, MixMode::kLerp, "per_sample_lerp", "end", "weight");
}

at::Tensor per_sample_add_cuda(const at::Tensor& input, const at::Tensor& other,
                               const at::Tensor& alpha) {
  return mix_cuda(input, other, alpha, MixMode::kAxpy, "per_sample_add", "other", "alpha");
}

std::tuple<at::Tensor, at::Tensor> gradient_penalty_cuda(const at::Tensor& grad, std::string kind,
                                                         double target, double weight,
                                                         double grad_scale, std::string reduction) {
  const GradientPenaltyParams p = penalty_params(grad, kind, target, weight, grad_scale, reduction);
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::Tensor g = batch_major(grad);
  auto [penalty, norms] = penalty_outputs(grad, p);
  const cuda::DType dtype = core_dtype(grad);
  at::Tensor ws = at::empty({static_cast<int64_t>(cuda::gradient_penalty_workspace_bytes(p, dtype))},
                            grad.options().dtype(at::kByte));
  check_launch(cuda::gradient_penalty(p, dtype, g.const_data_ptr(), norms.mutable_data_ptr(),
                                      penalty.mutable_data_ptr(), ws.mutable_data_ptr(),
                                      c10::cuda::getCurrentCUDAStream()),
               "gradient_penalty");
  return {penalty, norms};
}

at::Tensor gradient_penalty_backward_cuda(const at::Tensor& grad_output, const at::Tensor& grad,
                                          const at::Tensor& norms, std::string kind, double target,
                                          double weight, double grad_scale, std::string reduction) {
  const GradientPenaltyParams p = penalty_params(grad, kind, target, weight, grad_scale, reduction);
  const at::Tensor g = batch_major(grad);
  const at::Tensor gout = acc_vector(grad_output, grad, p.outputs(), "grad_output");
  const at::Tensor n = acc_vector(norms, grad, p.batch, "norms");
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor dg = at::empty_strided(g.sizes(), g.strides(), g.options());
  check_launch(cuda::gradient_penalty_backward(p, core_dtype(grad), gout.const_data_ptr(),
                                               g.const_data_ptr(), n.const_data_ptr(),
                                               dg.mutable_data_ptr(),
                                               c10::cuda::getCurrentCUDAStream()),
               "gradient_penalty_backward");
  return dg;
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CUDA, m) {
  m.impl("per_sample_lerp", &ganops::torch_adapter::per_sample_lerp_cuda);
  m.impl("per_sample_add", &ganops::torch_adapter::per_sample_add_cuda);
  m.impl("gradient_penalty", &ganops::torch_adapter::gradient_penalty_cuda);
  m.impl("gradient_penalty_backward", &ganops::torch_adapter::gradient_penalty_backward_cuda);
}
