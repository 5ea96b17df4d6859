// CUDA kernels and host launchers for bias_act (forward, backward, backward of backward).
// The per-element math is BiasActMath from ganops/bias_act.h, the same as on the CPU.
#include "elementwise.cuh"

namespace ganops {
namespace cuda {
namespace {

template <typename T, typename Math>
struct ForwardOp {
  const T* __restrict__ x;
  T* __restrict__ y;
  Math m;
  template <typename Index>
  __device__ void operator()(Index i, acc_t<T> bv) const {
    y[i] = static_cast<T>(m.forward(load(x, i) + bv));
  }
};

template <typename T, typename Math>
struct BackwardOp {
  const T* __restrict__ dy;
  const T* __restrict__ x;
  T* __restrict__ dz;
  Math m;
  template <typename Index>
  __device__ void operator()(Index i, acc_t<T> bv) const {
    dz[i] = static_cast<T>(m.grad(load(dy, i), load(x, i) + bv));
  }
};

template <typename T, typename Math>
struct Backward2Op {
  const T* __restrict__ ddz;
  const T* __restrict__ dy;
  const T* __restrict__ x;
  T* __restrict__ out;
  Math m;
  template <typename Index>
  __device__ void operator()(Index i, acc_t<T> bv) const {
    out[i] = static_cast<T>(m.grad2(load(ddz, i), load(dy, i), load(x, i) + bv));
  }
};

}  // namespace

int bias_act_forward(const BiasActParams& p, DType dtype, const void* x, const void* b, void* y,
                     cudaStream_t stream) {
  return dispatch_kernel(p, dtype, [&](auto tag, auto math) {
    using T = decltype(tag);
    ForwardOp<T, decltype(math)> op{static_cast<const T*>(x), static_cast<T*>(y), math};
    return launch_elementwise<T>(p, b, stream, op);
  });
}

int bias_act_backward(const BiasActParams& p, DType dtype, const void* dy, const void* x,
                      const void* b, void* dz, cudaStream_t stream) {
  return dispatch_kernel(p, dtype, [&](auto tag, auto math) {
    using T = decltype(tag);
    BackwardOp<T, decltype(math)> op{static_cast<const T*>(dy), static_cast<const T*>(x),
                                     static_cast<T*>(dz), math};
    return launch_elementwise<T>(p, b, stream, op);
  });
}

int bias_act_backward2(const BiasActParams& p, DType dtype, const void* ddz, const void* dy,
                       const void* x, const void* b, void* out, cudaStream_t stream) {
  return dispatch_kernel(p, dtype, [&](auto tag, auto math) {
    using T = decltype(tag);
    Backward2Op<T, decltype(math)> op{static_cast<const T*>(ddz), static_cast<const T*>(dy),
                                      static_cast<const T*>(x), static_cast<T*>(out), math};
    return launch_elementwise<T>(p, b, stream, op);
  });
}

const char* error_string(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }

}  // namespace cuda
}  // namespace ganops
