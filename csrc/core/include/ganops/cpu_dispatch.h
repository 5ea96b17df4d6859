// Runtime CPU dispatch of the CPU loops (x86-64, GCC/Clang host code): the package is built for
// baseline x86-64, and the innermost loops get an AVX2 + FMA twin chosen when the CPU has them.
#pragma once

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
