// Portable qualifiers so one header serves g++ (CPU adapters) and nvcc (CUDA kernels).
#pragma once

#if defined(__CUDACC__)
#define GANOPS_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Forced: a translation unit that instantiates every activation x dtype x pass exhausts GCC's
// inlining budget, and an out-of-line call per element stops the loop from vectorizing.
#define GANOPS_HD inline __attribute__((always_inline))
#else
#define GANOPS_HD inline
#endif

// The per-element lambdas of the CPU loops, for the same reason.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define GANOPS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define GANOPS_INLINE_LAMBDA
#endif
