// bias_act on CUDA for PyTorch: the same checks as on CPU, then the core launchers on the
// current stream. Compiled only when torch and the build have CUDA.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

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
  m.impl("bias_act_backward2", &ganops::torch_adapter::bias_act_backward2_cuda);
}
