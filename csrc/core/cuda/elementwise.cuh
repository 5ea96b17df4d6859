// Grid-stride elementwise launcher with a per-element bias lookup, shared by the bias_act
// kernels. 32-bit index arithmetic unless the tensor needs 64 bits.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "ganops/bias_act.h"
#include "ganops/cuda/launch.h"

namespace ganops {
namespace cuda {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // elements per thread per tile: independent loads in flight

template <typename T>
__device__ __forceinline__ acc_t<T> load(const T* p, int64_t i) {
  return static_cast<acc_t<T>>(p[i]);
}

// op(i, bias_value) for every element; the element's bias is b[(i / inner) % channels].
template <typename T, typename Index, typename Op>
__global__ void __launch_bounds__(kThreads)
elementwise_kernel(Index numel, Index channels, Index inner, const T* __restrict__ b, Op op) {
  using A = acc_t<T>;
  const Index tile = Index(kThreads) * kUnroll;
  for (Index base = Index(blockIdx.x) * tile; base < numel; base += Index(gridDim.x) * tile) {
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const Index i = base + Index(k) * kThreads + threadIdx.x;
      if (i < numel) {
        const A bv = b != nullptr ? static_cast<A>(__ldg(b + (i / inner) % channels)) : A(0);
        op(i, bv);
      }
    }
  }
}

// Blocks for a grid-stride pass over numel elements: one per tile, at most blocks_per_sm per SM
// (the default is enough to fill the GPU; a kernel with per-block set-up work asks for fewer).
inline int grid_size(int64_t numel, int blocks_per_sm = 32) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t tiles = (numel + int64_t(kThreads) * kUnroll - 1) / (int64_t(kThreads) * kUnroll);
  const int64_t cap = int64_t(sms > 0 ? sms : 80) * blocks_per_sm;
  return static_cast<int>(tiles < cap ? (tiles > 0 ? tiles : 1) : cap);
}

template <typename T, typename Op>
int launch_elementwise(const BiasActParams& p, const void* bias, cudaStream_t stream, Op op) {
  const T* b = static_cast<const T*>(bias);
  if (p.numel == 0) return 0;
  const int grid = grid_size(p.numel);
  if (p.numel <= std::numeric_limits<int32_t>::max()) {
    elementwise_kernel<T, uint32_t><<<grid, kThreads, 0, stream>>>(
        uint32_t(p.numel), uint32_t(p.channels), uint32_t(p.inner), b, op);
  } else {
    elementwise_kernel<T, int64_t><<<grid, kThreads, 0, stream>>>(
        p.numel, p.channels, p.inner, b, op);
  }
  return static_cast<int>(cudaGetLastError());
}

// Map a DType onto the storage type and call fn(T{}).
template <typename Fn>
int dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat64: return fn(double{});
    case DType::kFloat16: return fn(__half{});
    case DType::kBFloat16: return fn(__nv_bfloat16{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// Calls fn(T{}, BiasActMath<act, clamp, acc_t<T>>(p)) for the runtime dtype, act and clamp.
template <typename Fn>
int dispatch_kernel(const BiasActParams& p, DType dtype, Fn&& fn) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    int err = 0;
    dispatch_act(p.act, [&](auto act_tag) {
      dispatch_clamp(p.has_clamp(), [&](auto clamp_tag) {
        using Math = BiasActMath<decltype(act_tag)::value, decltype(clamp_tag)::value, acc_t<T>>;
        err = fn(tag, Math(p));
      });
    });
    return err;
  });
}

}  // namespace cuda
}  // namespace ganops
