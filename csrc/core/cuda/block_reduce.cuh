// Device helpers shared by the reducing CUDA kernels (spectral_norm.cu, gradient_penalty.cu):
// read-only loads widened to the accumulation type, and a block sum in a fixed tree order, so a
// reduction gives the same bits on every run.
#pragma once

#include <cuda_runtime.h>

#include "elementwise.cuh"  // kThreads
#include "ganops/bias_act.h"  // acc_t

namespace ganops {
namespace cuda {

template <typename T>
__device__ __forceinline__ acc_t<T> ld(const T* p) {
  return static_cast<acc_t<T>>(__ldg(p));
}

// Sum of v over the block (blockDim.x == kBlock, a power of two) in a fixed tree order; every
// thread gets it. sm is kBlock elements of shared memory, free again when this returns.
template <typename A, int kBlock = kThreads>
__device__ __forceinline__ A block_sum(A v, A* sm) {
  static_assert((kBlock & (kBlock - 1)) == 0, "the tree halves the block");
  const int tid = static_cast<int>(threadIdx.x);
  sm[tid] = v;
  __syncthreads();
#pragma unroll
  for (int s = kBlock / 2; s > 0; s >>= 1) {
    if (tid < s) sm[tid] += sm[tid + s];
    __syncthreads();
  }
  const A total = sm[0];
  __syncthreads();
  return total;
}

}  // namespace cuda
}  // namespace ganops
