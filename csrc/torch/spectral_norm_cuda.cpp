// Spectral normalization on CUDA for PyTorch: the same checks and outputs as the CPU adapter
// (spectral_norm.cpp), then the core launchers on the current stream. sigma stays on the device
// (the kernels read it there), so no call waits for the GPU. Compiled only when torch and the
// build have CUDA.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "cuda_adapter.h"
#include "spectral_norm_args.h"

namespace ganops {
namespace torch_adapter {
namespace {

// Scratch memory for the kernels from torch's caching allocator, on weight's device.
at::Tensor workspace(size_t bytes, const at::Tensor& weight) {
  return at::empty({static_cast<int64_t>(bytes)}, weight.options().dtype(at::kByte));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> power_iteration_cuda(
    const at::Tensor& weight, at::Tensor& u, at::Tensor& v, int64_t dim,
    int64_t n_power_iterations, double eps) {
  const SpectralNormParams p = power_iteration_params(weight, u, v, dim, n_power_iterations, eps);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor w = weight.contiguous();
  at::Tensor sigma = at::empty({}, weight.options().dtype(sigma_dtype(weight)));
  const cuda::DType dtype = core_dtype(weight);
  at::Tensor ws = workspace(cuda::power_iteration_workspace_bytes(p, dtype), weight);
  check_launch(cuda::power_iteration(p, dtype, w.const_data_ptr(), u.mutable_data_ptr(),
                                     v.mutable_data_ptr(), sigma.mutable_data_ptr(),
                                     ws.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()),
               "spectral_norm_power_iteration");
  return {sigma, u.clone(), v.clone()};
}

at::Tensor normalize_cuda(const at::Tensor& weight, const at::Tensor& u, const at::Tensor& v,
                          const at::Tensor& sigma, int64_t dim) {
  const SpectralNormParams p = normalize_params(weight, u, v, sigma, dim);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(weight.sizes(), weight.options());
  check_launch(cuda::spectral_normalize(p, core_dtype(weight), w.const_data_ptr(),
                                        sigma.const_data_ptr(), out.mutable_data_ptr(),
                                        c10::cuda::getCurrentCUDAStream()),
               "spectral_normalize");
  return out;
}

at::Tensor normalize_backward_cuda(const at::Tensor& grad, const at::Tensor& weight,
                                   const at::Tensor& u, const at::Tensor& v,
                                   const at::Tensor& sigma, int64_t dim) {
  const SpectralNormParams p = normalize_params(weight, u, v, sigma, dim);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor g = contiguous_like_weight(grad, weight);
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(weight.sizes(), weight.options());
  const cuda::DType dtype = core_dtype(weight);
  at::Tensor ws = workspace(cuda::normalize_backward_workspace_bytes(p, dtype), weight);
  check_launch(cuda::spectral_normalize_backward(
                   p, dtype, g.const_data_ptr(), w.const_data_ptr(), u.const_data_ptr(),
                   v.const_data_ptr(), sigma.const_data_ptr(), out.mutable_data_ptr(),
                   ws.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()),
               "spectral_normalize_backward");
  return out;
}

}  // namespace
}  // namespace torch_adapter
}  // namespace ganops

TORCH_LIBRARY_IMPL(ganops, CUDA, m) {
  m.impl("spectral_norm_power_iteration", &ganops::torch_adapter::power_iteration_cuda);
  m.impl("spectral_normalize", &ganops::torch_adapter::normalize_cuda);
  m.impl("spectral_normalize_backward", &ganops::torch_adapter::normalize_backward_cuda);
}
