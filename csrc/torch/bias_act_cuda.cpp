// bias_act on CUDA for PyTorch: the same checks as on CPU, then the core launchers on the
// current stream. Compiled only when torch and the build have CUDA.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "bias_act_args.h"
#include "cuda_adapter.h"

namespace ganops {
namespace torch_adapter {
namespace {

at::Tensor bias_act_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                         std::string act, double alpha, double gain, std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  const c10::cuda::CUDAGuard guard(x.device());  // after the checks, which name a CPU argument
  at::Tensor y = at::empty_like(x);
  at::Tensor bias;
  check_launch(cuda::bias_act_forward(p, core_dtype(x), x.const_data_ptr(), bias_data(b, bias),
                                      y.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()),
               "bias_act");
  return y;
}

at::Tensor bias_act_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                  const std::optional<at::Tensor>& b, int64_t dim, std::string act,
                                  double alpha, double gain, std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor dy = like_x(grad, x, "grad");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor dz = at::empty_like(x);
  at::Tensor bias;
  check_launch(cuda::bias_act_backward(p, core_dtype(x), dy.const_data_ptr(), x.const_data_ptr(),
                                       bias_data(b, bias), dz.mutable_data_ptr(),
                                       c10::cuda::getCurrentCUDAStream()),
               "bias_act_backward");
  return dz;
}

// Two passes on CUDA (the backward kernel, then at::sum over dz): a fused reduction kernel
// would be CUDA code no GPU here has run. at::sum accumulates half types in float32.
std::tuple<at::Tensor, at::Tensor> bias_act_backward_bias_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& b, int64_t dim, std::string act,
    double alpha, double gain, std::optional<double> clamp) {
  at::Tensor dz = bias_act_backward_cuda(grad, x, b, dim, act, alpha, gain, clamp);
  const int64_t channel_dim = dim < 0 ? dim + x.dim() : dim;  // checked by the call above
  std::vector<int64_t> others;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d != channel_dim) others.push_back(d);
  }
  // at::sum over no dims would reduce them all; a 1-D x is its own per-channel sum (copied: an
  // op's two outputs must not alias).
  at::Tensor db = others.empty() ? dz.clone(at::MemoryFormat::Contiguous) : at::sum(dz, others);
  return {dz, db};
}

at::Tensor bias_act_backward2_cuda(const at::Tensor& grad_grad, const at::Tensor& grad,
                                   const at::Tensor& x, const std::optional<at::Tensor>& b,
                                   int64_t dim, std::string act, double alpha, double gain,
                                   std::optional<double> clamp) {
  const BiasActParams p = bias_act_params(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor ddz = like_x(grad_grad, x, "grad_grad");
  const at::Tensor dy = like_x(grad, x, "grad");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty_like(x);
  at::Tensor bias;
  check_launch(cuda::bias_act_backward2(p, core_dtype(x), ddz.const_data_ptr(), dy.const_data_ptr(),
                                        x.const_data_ptr(), bias_data(b, bias),
                                        out.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()),
               "bias_act_backward2");
  return out;
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CUDA, m) {
  m.impl("bias_act", &ganops::torch_adapter::bias_act_cuda);
  m.impl("bias_act_backward", &ganops::torch_adapter::bias_act_backward_cuda);
  m.impl("bias_act_backward_bias", &ganops::torch_adapter::bias_act_backward_bias_cuda);
  m.impl("bias_act_backward2", &ganops::torch_adapter::bias_act_backward2_cuda);
}
