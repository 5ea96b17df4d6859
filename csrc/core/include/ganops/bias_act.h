// Fused bias + activation: y = clamp(act(x + b) * gain, -clamp, clamp).
//
// Memory model: a dense tensor (any permutation of a contiguous layout, so contiguous and
// channels_last alike) is walked in memory order as [outer][channels][inner], where
// inner = stride of the bias dim. The element at memory offset i has channel
// (i / inner) % channels. No copy is needed for any dense layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "ganops/activation.h"
#include "ganops/cpu_dispatch.h"
#include "ganops/macros.h"

namespace ganops {

struct BiasActParams {
  Act act = Act::kLinear;
  double alpha = 0.0;
  double gain = 1.0;
  double clamp = -1.0;     // < 0: no clamp
  int64_t numel = 0;
  int64_t channels = 1;    // size of the bias dim (1 when there is no bias)
  int64_t inner = 1;       // stride of the bias dim, in elements
  bool has_clamp() const { return clamp >= 0.0; }
};

// Float for float/half/bfloat16 storage, double for double.
template <typename T>
using acc_t = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

// Per-element math shared by the CPU loops and the CUDA kernels. kClamp is a template
// flag so the unclamped paths never evaluate f(z) in the backward passes.
template <Act kAct, bool kClamp, typename A>
struct BiasActMath {
  using F = Activation<kAct, A>;
  A alpha, gain, clamp;

  explicit BiasActMath(const BiasActParams& p)  // host only: kernels receive a copy
      : alpha(A(p.alpha)), gain(A(p.gain)), clamp(A(p.has_clamp() ? p.clamp : 0.0)) {}

  GANOPS_HD A forward(A z) const {
    A y = F::f(z, alpha) * gain;
    if (kClamp) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);  // keeps NaN as NaN
    return y;
  }
  // Gradient passes where -clamp <= y <= clamp, as torch.clamp's does.
  GANOPS_HD A mask(A z) const {
    if (!kClamp) return A(1);
    A y = F::f(z, alpha) * gain;
    return (y >= -clamp && y <= clamp) ? A(1) : A(0);
  }
  // d y / d z, times the incoming gradient.
  GANOPS_HD A grad(A dy, A z) const { return dy * F::df(z, alpha) * gain * mask(z); }
  // d/dz of grad(dy, z) with dy held fixed, times the incoming gradient ddz.
  GANOPS_HD A grad2(A ddz, A dy, A z) const {
    return ddz * dy * F::d2f(z, alpha) * gain * mask(z);
  }
};

// Calls fn(std::integral_constant<bool, clamp>{}) with the clamp flag as a constant.
template <typename Fn>
decltype(auto) dispatch_clamp(bool has_clamp, Fn&& fn) {
  if (has_clamp) return fn(std::true_type{});
  return fn(std::false_type{});
}

namespace cpu {

// Walks [begin, end) in runs of elements that share a bias layout and calls
// body(start, count, bias_ptr, per_element) where per_element is a bool constant:
// false: the whole run uses *bias_ptr; true: element k uses bias_ptr[k].
template <typename A, typename Body>
void for_each_bias_run(int64_t begin, int64_t end, const BiasActParams& p, const A* bias,
                       Body&& body) {
  if (bias == nullptr) {
    static const A zero = A(0);
    body(begin, end - begin, &zero, std::false_type{});
    return;
  }
  const int64_t C = p.channels, inner = p.inner;
  int64_t i = begin;
  if (inner == 1) {  // channels fastest (channels_last, dense [N, C]): bias is a vector
    while (i < end) {
      const int64_t c = i % C;
      const int64_t n = std::min(end - i, C - c);
      body(i, n, bias + c, std::true_type{});
      i += n;
    }
  } else {  // channels slower than a contiguous block: bias is one scalar per block
    while (i < end) {
      const int64_t c = (i / inner) % C;
      const int64_t n = std::min(end - i, inner - i % inner);
      body(i, n, bias + c, std::false_type{});
      i += n;
    }
  }
}

// Elements per parallel task: large enough to amortise scheduling, small enough to split a
// 32x512x32x32 activation into many tasks.
constexpr int64_t kGrain = 1 << 15;

// One run of elements sharing a bias layout: the loop the compiler vectorizes.
template <typename A, typename Op, bool kPerElement>
GANOPS_HD void run_elements(const Op& op, int64_t start, int64_t n, const A* bv,
                            std::integral_constant<bool, kPerElement>) {
  if (kPerElement) {
    for (int64_t k = 0; k < n; ++k) op(start + k, bv[k]);
  } else {
    const A bias_value = *bv;
    for (int64_t k = 0; k < n; ++k) op(start + k, bias_value);
  }
}

#if GANOPS_CPU_DISPATCH
// The same loop built for AVX2 + FMA: 8 lanes instead of SSE2's 4, which is what the
// transcendental activations (swish, sigmoid, gelu, ...) need. Only this function carries the
// target attribute; the always-inline math it inlines is compiled for AVX2 here and nowhere
// else, so no baseline code path can pick up AVX2 instructions.
template <typename A, typename Op, bool kPerElement>
GANOPS_TARGET_AVX2_FMA void run_elements_avx2(const Op& op, int64_t start, int64_t n, const A* bv,
                                              std::integral_constant<bool, kPerElement> tag) {
  run_elements(op, start, n, bv, tag);
}
#endif

// Runs op(i, bias_value) for every element, in parallel. parallel_for(begin, end, grain, f)
// is the framework's pool (at::parallel_for, TF's worker threads, or a plain one).
template <typename T, typename ParallelFor, typename Op>
void elementwise(const BiasActParams& p, const T* b, ParallelFor&& parallel_for, Op&& op) {
  using A = acc_t<T>;
  std::vector<A> bias;
  if (b != nullptr) {
    bias.resize(static_cast<size_t>(p.channels));
    for (int64_t c = 0; c < p.channels; ++c) bias[c] = static_cast<A>(b[c]);
  }
  const A* bias_ptr = b != nullptr ? bias.data() : nullptr;
#if GANOPS_CPU_DISPATCH
  const bool avx2 = cpu_has_avx2_fma();
#endif
  parallel_for(int64_t(0), p.numel, kGrain, [&](int64_t begin, int64_t end) {
    for_each_bias_run(begin, end, p, bias_ptr,
                      [&](int64_t start, int64_t n, const A* bv, auto per_element) {
#if GANOPS_CPU_DISPATCH
                        if (avx2) return run_elements_avx2(op, start, n, bv, per_element);
#endif
                        run_elements(op, start, n, bv, per_element);
                      });
  });
}

template <typename Fn>
void dispatch_math(const BiasActParams& p, Fn&& fn) {
  dispatch_act(p.act, [&](auto act_tag) {
    dispatch_clamp(p.has_clamp(), [&](auto clamp_tag) {
      fn(act_tag, clamp_tag);
    });
  });
}

// y = clamp(act(x + b) * gain)
template <typename T, typename ParallelFor>
void bias_act_forward(const BiasActParams& p, const T* x, const T* b, T* y,
                      ParallelFor&& parallel_for) {
  using A = acc_t<T>;
  dispatch_math(p, [&](auto act_tag, auto clamp_tag) {
    const BiasActMath<decltype(act_tag)::value, decltype(clamp_tag)::value, A> m(p);
    elementwise(p, b, parallel_for, [&](int64_t i, A bv) GANOPS_INLINE_LAMBDA {
      y[i] = static_cast<T>(m.forward(static_cast<A>(x[i]) + bv));
    });
  });
}

// dz = dy * d y / d z  (z = x + b). The gradient for x is dz; for b, dz summed per channel.
template <typename T, typename ParallelFor>
void bias_act_backward(const BiasActParams& p, const T* dy, const T* x, const T* b, T* dz,
                       ParallelFor&& parallel_for) {
  using A = acc_t<T>;
  dispatch_math(p, [&](auto act_tag, auto clamp_tag) {
    const BiasActMath<decltype(act_tag)::value, decltype(clamp_tag)::value, A> m(p);
    elementwise(p, b, parallel_for, [&](int64_t i, A bv) GANOPS_INLINE_LAMBDA {
      dz[i] = static_cast<T>(m.grad(static_cast<A>(dy[i]), static_cast<A>(x[i]) + bv));
    });
  });
}

// Gradient of bias_act_backward with respect to x (and so z): ddz * dy * d2y/dz2.
template <typename T, typename ParallelFor>
void bias_act_backward2(const BiasActParams& p, const T* ddz, const T* dy, const T* x,
                        const T* b, T* out, ParallelFor&& parallel_for) {
  using A = acc_t<T>;
  dispatch_math(p, [&](auto act_tag, auto clamp_tag) {
    const BiasActMath<decltype(act_tag)::value, decltype(clamp_tag)::value, A> m(p);
    elementwise(p, b, parallel_for, [&](int64_t i, A bv) GANOPS_INLINE_LAMBDA {
      out[i] = static_cast<T>(m.grad2(static_cast<A>(ddz[i]), static_cast<A>(dy[i]),
                                      static_cast<A>(x[i]) + bv));
    });
  });
}

}  // namespace cpu
}  // namespace ganops
