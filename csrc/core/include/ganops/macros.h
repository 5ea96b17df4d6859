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

// Runtime CPU dispatch of the CPU loops (x86-64, GCC/Clang host code): the package is built for
// baseline x86-64, and the innermost loops get an AVX2 + FMA twin chosen when the CPU has them.
#if !defined(__CUDACC__) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(GANOPS_NO_CPU_DISPATCH)
#define GANOPS_CPU_DISPATCH 1
#include <cstdlib>
#define GANOPS_TARGET_AVX2_FMA __attribute__((target("avx2,fma")))
namespace ganops {
// GANOPS_DISABLE_AVX2=1 in the environment forces the baseline loops (tests run both paths).
inline bool cpu_has_avx2_fma() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                                std::getenv("GANOPS_DISABLE_AVX2") == nullptr;
  return supported;
}
}  // namespace ganops
#else
#define GANOPS_CPU_DISPATCH 0
#endif
