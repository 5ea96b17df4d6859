// The activation table: the one place where each activation's value and its first and
// second derivatives are written. CPU loops and CUDA kernels both instantiate these.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <type_traits>

#include "ganops/macros.h"

namespace ganops {

// Unqualified calls below resolve to the float or double overload, on host and device.
using std::erf;
using std::exp;
using std::expm1;
using std::fabs;
using std::log1p;
using std::tanh;

enum class Act : int {
  kLinear = 0,
  kRelu,
  kLrelu,
  kTanh,
  kSigmoid,
  kElu,
  kSelu,
  kSoftplus,
  kSwish,
  kGelu,
  kCount
};

struct ActInfo {
  const char* name;
  Act act;
  double default_alpha;  // only lrelu reads alpha
  double default_gain;
};

// Defaults follow StyleGAN2-ADA: sqrt(2) gain for the rectifier-like activations.
inline const ActInfo* act_table() {
  static const ActInfo table[] = {
      {"linear", Act::kLinear, 0.0, 1.0},
      {"relu", Act::kRelu, 0.0, 1.4142135623730951},
      {"lrelu", Act::kLrelu, 0.2, 1.4142135623730951},
      {"tanh", Act::kTanh, 0.0, 1.0},
      {"sigmoid", Act::kSigmoid, 0.0, 1.0},
      {"elu", Act::kElu, 0.0, 1.0},
      {"selu", Act::kSelu, 0.0, 1.0},
      {"softplus", Act::kSoftplus, 0.0, 1.0},
      {"swish", Act::kSwish, 0.0, 1.4142135623730951},
      {"gelu", Act::kGelu, 0.0, 1.0},
  };
  return table;
}

// Returns nullptr for an unknown name; adapters turn that into an error naming `act`. The name
// is a string_view, not a C string, so that "relu\0junk" from Python is unknown rather than
// read as "relu".
inline const ActInfo* find_act(std::string_view name) {
  for (int i = 0; i < static_cast<int>(Act::kCount); ++i) {
    if (name == act_table()[i].name) return &act_table()[i];
  }
  return nullptr;
}

// Human-readable list for error messages.
inline const char* act_names() {
  return "linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish, gelu";
}

// Same constants as torch.nn.SELU.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// exp(x) for the CPU loops. libm's expf is a scalar call that stops the compiler from
// vectorizing a loop; this branch-free version (Cody-Waite reduction, Cephes' degree-5
// polynomial, 2^n assembled from integer bits) vectorizes with plain SSE2 and stays within a
// few ulp of exp (tests/core measures it). It has no selects for the special cases, which cost
// sigmoid and swish a fifth of their time: the clamp is written `x > hi ? hi : x` so that it
// compiles to min/max instructions that let NaN through, and 2^n, in two halves that are each
// normal floats for n in [-150, 129], makes the last multiply overflow to +inf past 88.72 and
// round into the subnormals, down to 0 below -103.97, as exp does. Device code and double
// precision use the library exp.
GANOPS_HD double vexp(double x) { return exp(x); }

#if !defined(__CUDA_ARCH__)
// 2^n1 * 2^n2 with n = n1 + n2 split so that both stay normal for n in [-252, 254].
GANOPS_HD void pow2_halves(int32_t n, float& scale1, float& scale2) {
  const int32_t n1 = n >> 1, n2 = n - n1;
  const uint32_t bits1 = static_cast<uint32_t>(n1 + 127) << 23;
  const uint32_t bits2 = static_cast<uint32_t>(n2 + 127) << 23;
  std::memcpy(&scale1, &bits1, sizeof(scale1));
  std::memcpy(&scale2, &bits2, sizeof(scale2));
}
#endif

GANOPS_HD float vexp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x > 89.0f ? 89.0f : x;
  xc = xc < -104.0f ? -104.0f : xc;
  const float t = xc * kLog2e + kRound;
  const float n = t - kRound;
  int32_t ni;
  std::memcpy(&ni, &t, sizeof(ni));
  ni -= 0x4B400000;  // the integer n, read from t's mantissa
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  float scale1, scale2;
  pow2_halves(ni, scale1, scale2);
  return p * scale1 * scale2;  // p * scale1 is exact: one rounding, at the end
#endif
}

// erf(x) for the CPU loops, vectorizable for the same reason as vexp: an odd Taylor series
// below 1, Abramowitz & Stegun 7.1.26 above (absolute error <= 1.5e-7; float's own rounding
// near 1 is 6e-8); tests/core measures it. Double precision and device code use the library erf.
GANOPS_HD double verf(double x) { return erf(x); }

GANOPS_HD float verf(float x) {
#if defined(__CUDA_ARCH__)
  return erff(x);
#else
  const float ax = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  const float tail = 1.0f - poly * t * vexp(-ax * ax);
  // Below 1 that difference cancels; the odd Taylor series (truncation < 1e-9 at 1) does not.
  const float s = x * x;
  float series = 1.0f / 76204800.0f;
  series = series * s - 1.0f / 6894720.0f;
  series = series * s + 1.0f / 685440.0f;
  series = series * s - 1.0f / 75600.0f;
  series = series * s + 1.0f / 9360.0f;
  series = series * s - 1.0f / 1320.0f;
  series = series * s + 1.0f / 216.0f;
  series = series * s - 1.0f / 42.0f;
  series = series * s + 1.0f / 10.0f;
  series = series * s - 1.0f / 3.0f;
  series = series * s + 1.0f;
  const float head = 1.12837916709551257f * ax * series;
  const float r = ax < 1.0f ? head : tail;
  return x < 0.0f ? -r : r;
#endif
}

// expm1(x) for the CPU loops: libm's expm1f is a call that stops the loop from vectorizing.
// vexp's reduction x = n ln2 + r and Cephes' polynomial give expm1(r) = r + r^2 P(r) without
// the cancellation of exp(r) - 1, and expm1(x) = (expm1(r) + (1 - 2^-n)) 2^n, where 1 - 2^-n is
// exact (or rounds to 1 past n = 24) and the sum stays well away from 0 for n != 0. For n = 0,
// r is x itself, so tiny x come back as x. Below -20 the result is -1 in float; past
// 88.72 it is +inf; NaN stays NaN. Double precision and device code use the library expm1.
GANOPS_HD double vexpm1(double x) { return expm1(x); }

GANOPS_HD float vexpm1(float x) {
#if defined(__CUDA_ARCH__)
  return expm1f(x);
#else
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  // Written as in vexp, so that NaN gets through the clamps and 89 overflows to +inf by
  // itself; -20 keeps 2^-n normal, and expm1(-20) is -1 + 2e-9, -1 in float.
  float xc = x > 89.0f ? 89.0f : x;
  xc = xc < -20.0f ? -20.0f : xc;
  const float t = xc * kLog2e + kRound;
  const float n = t - kRound;
  int32_t ni;
  std::memcpy(&ni, &t, sizeof(ni));
  ni -= 0x4B400000;  // the integer n, from -29 to 129
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float em1 = p * r * r + r;  // expm1(r)
  // 1 - 2^-n, with n capped at 25 where it already rounds to 1, so that 2^-n stays normal.
  const int32_t nneg = ni > 25 ? -25 : -ni;
  const uint32_t inv_bits = static_cast<uint32_t>(nneg + 127) << 23;
  float inv_scale;
  std::memcpy(&inv_scale, &inv_bits, sizeof(inv_scale));
  const float head = em1 + (1.0f - inv_scale);
  float scale1, scale2;
  pow2_halves(ni, scale1, scale2);
  const float y = head * scale1 * scale2;
  return x == 0.0f ? x : y;  // r loses the sign of -0
#endif
}

// log1p(x) for the CPU loops, vectorizable for the same reason. u = 1 + x is split as
// 2^e m with m in [sqrt(1/2), sqrt(2)) by integer arithmetic on its bits (musl's logf offset
// trick), and log(m) comes from Cephes' logf polynomial in f = m - 1. What rounding 1 + x lost,
// x - (u - 1), is added back to f, scaled by 2^-e: for e = 0 that makes f exactly x, so small x
// keep full relative accuracy. -1 gives -inf, below -1 NaN, +inf gives +inf, NaN stays NaN.
// Double precision and device code use the library log1p.
GANOPS_HD double vlog1p(double x) { return log1p(x); }

GANOPS_HD float vlog1p(float x) {
#if defined(__CUDA_ARCH__)
  return log1pf(x);
#else
  const float u = 1.0f + x;
  uint32_t ui;
  std::memcpy(&ui, &u, sizeof(ui));
  // u is 0, negative, inf or NaN only where the selects at the end replace the result; any
  // other u is at least 2^-24, a normal float. Unsigned, so that NaN's bits wrap harmlessly.
  const uint32_t ix = ui + (0x3F800000u - 0x3F3504F3u);
  const int32_t e = static_cast<int32_t>(ix >> 23) - 127;
  const uint32_t mi = (ix & 0x007FFFFFu) + 0x3F3504F3u;
  float m;
  std::memcpy(&m, &mi, sizeof(m));
  // 2^-e, with e capped where the correction is 0 anyway (u - 1 == x once x >= 2^24).
  const int32_t ec = e > 126 ? 126 : e;
  const int32_t inv_bits = (127 - ec) << 23;
  float inv_scale;
  std::memcpy(&inv_scale, &inv_bits, sizeof(inv_scale));
  const float f = (m - 1.0f) + (x - (u - 1.0f)) * inv_scale;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float fe = static_cast<float>(e);
  float y = p * f * z + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  y = (f + y) + fe * 0.693359375f;
  y = u == std::numeric_limits<float>::infinity() ? u : y;
  y = u == 0.0f ? -std::numeric_limits<float>::infinity() : y;
  y = u < 0.0f ? std::numeric_limits<float>::quiet_NaN() : y;
  return x == 0.0f ? x : y;  // f loses the sign of -0; NaN is NaN all the way
#endif
}

// tanh(x) for the CPU loops, vectorizable for the same reason, on |x| with the sign put back
// (which also keeps -0). Below 0.625 Cephes' tanhf polynomial, x + x^3 P(x^2), which has no
// cancellation; above, 1 - 2 / (exp(2|x|) + 1), where the difference loses at most a bit at
// 0.625 and exp's overflow to inf past 44 gives exactly 1. NaN stays NaN. Double precision and
// device code use the library tanh.
GANOPS_HD double vtanh(double x) { return tanh(x); }

GANOPS_HD float vtanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  const float ax = fabs(x);
  const float z = ax * ax;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * ax + ax;
  const float large = 1.0f - 2.0f / (vexp(2.0f * ax) + 1.0f);
  const float r = ax < 0.625f ? small : large;
  return std::copysign(r, x);
#endif
}

template <typename A>
GANOPS_HD A sigmoid(A z) {
  return A(1) / (A(1) + vexp(-z));
}

// f(z), f'(z) and f''(z) for one activation, evaluated in the accumulation type A
// (float for float/half/bfloat16 storage, double for double).
template <Act kAct, typename A>
struct Activation;

template <typename A>
struct Activation<Act::kLinear, A> {
  static GANOPS_HD A f(A z, A) { return z; }
  static GANOPS_HD A df(A, A) { return A(1); }
  static GANOPS_HD A d2f(A, A) { return A(0); }
};

template <typename A>
struct Activation<Act::kRelu, A> {
  // `z < 0` rather than `z > 0` so that NaN passes through, as torch.relu and tf.nn.relu keep it.
  static GANOPS_HD A f(A z, A) { return z < A(0) ? A(0) : z; }
  static GANOPS_HD A df(A z, A) { return z > A(0) ? A(1) : A(0); }
  static GANOPS_HD A d2f(A, A) { return A(0); }
};

template <typename A>
struct Activation<Act::kLrelu, A> {
  static GANOPS_HD A f(A z, A alpha) { return z >= A(0) ? z : z * alpha; }
  // At z = 0 the slope is alpha, torch's (and StyleGAN's) convention.
  static GANOPS_HD A df(A z, A alpha) { return z > A(0) ? A(1) : alpha; }
  static GANOPS_HD A d2f(A, A) { return A(0); }
};

template <typename A>
struct Activation<Act::kTanh, A> {
  static GANOPS_HD A f(A z, A) { return vtanh(z); }
  static GANOPS_HD A df(A z, A) {
    A t = vtanh(z);
    return A(1) - t * t;
  }
  static GANOPS_HD A d2f(A z, A) {
    A t = vtanh(z);
    return A(-2) * t * (A(1) - t * t);
  }
};

template <typename A>
struct Activation<Act::kSigmoid, A> {
  static GANOPS_HD A f(A z, A) { return sigmoid(z); }
  static GANOPS_HD A df(A z, A) {
    A s = sigmoid(z);
    return s * (A(1) - s);
  }
  static GANOPS_HD A d2f(A z, A) {
    A s = sigmoid(z);
    return s * (A(1) - s) * (A(1) - A(2) * s);
  }
};

template <typename A>
struct Activation<Act::kElu, A> {
  static GANOPS_HD A f(A z, A) { return z >= A(0) ? z : vexpm1(z); }
  // Derivatives at z = 0 take the negative branch, as torch's elu_backward does.
  static GANOPS_HD A df(A z, A) { return z > A(0) ? A(1) : vexp(z); }
  static GANOPS_HD A d2f(A z, A) { return z > A(0) ? A(0) : vexp(z); }
};

template <typename A>
struct Activation<Act::kSelu, A> {
  static GANOPS_HD A f(A z, A) {
    return A(kSeluScale) * (z >= A(0) ? z : A(kSeluAlpha) * vexpm1(z));
  }
  // Derivatives at z = 0 take the negative branch (scale * alpha), as torch's selu does.
  static GANOPS_HD A df(A z, A) {
    return z > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * vexp(z);
  }
  static GANOPS_HD A d2f(A z, A) {
    return z > A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * vexp(z);
  }
};

template <typename A>
struct Activation<Act::kSoftplus, A> {
  // max(z, 0) + log1p(exp(-|z|)) never overflows, unlike log(1 + exp(z)).
  static GANOPS_HD A f(A z, A) { return (z > A(0) ? z : A(0)) + vlog1p(vexp(-fabs(z))); }
  static GANOPS_HD A df(A z, A) { return sigmoid(z); }
  static GANOPS_HD A d2f(A z, A) {
    A s = sigmoid(z);
    return s * (A(1) - s);
  }
};

template <typename A>
struct Activation<Act::kSwish, A> {
  static GANOPS_HD A f(A z, A) { return z * sigmoid(z); }
  static GANOPS_HD A df(A z, A) {
    A s = sigmoid(z);
    return s * (A(1) + z * (A(1) - s));
  }
  static GANOPS_HD A d2f(A z, A) {
    A s = sigmoid(z);
    return s * (A(1) - s) * (A(2) + z * (A(1) - A(2) * s));
  }
};

template <typename A>
struct Activation<Act::kGelu, A> {
  static GANOPS_HD A cdf(A z) { return A(0.5) * (A(1) + verf(z * A(kInvSqrt2))); }
  static GANOPS_HD A pdf(A z) { return A(kInvSqrt2Pi) * vexp(A(-0.5) * z * z); }
  static GANOPS_HD A f(A z, A) { return z * cdf(z); }
  static GANOPS_HD A df(A z, A) { return cdf(z) + z * pdf(z); }
  // Where the density underflows to 0, z * z may already be inf: 0 * inf would be NaN, while
  // the true value is 0.
  static GANOPS_HD A d2f(A z, A) {
    const A density = pdf(z);
    return density == A(0) ? A(0) : density * (A(2) - z * z);
  }
};

template <Act kAct>
using ActTag = std::integral_constant<Act, kAct>;

// Calls fn(ActTag<act>{}) with the activation as a compile-time constant, so each loop
// body is specialised and vectorizable.  In fn: `constexpr Act kAct = decltype(tag)::value;`
template <typename Fn>
decltype(auto) dispatch_act(Act act, Fn&& fn) {
  switch (act) {
    case Act::kLinear: return fn(ActTag<Act::kLinear>{});
    case Act::kRelu: return fn(ActTag<Act::kRelu>{});
    case Act::kLrelu: return fn(ActTag<Act::kLrelu>{});
    case Act::kTanh: return fn(ActTag<Act::kTanh>{});
    case Act::kSigmoid: return fn(ActTag<Act::kSigmoid>{});
    case Act::kElu: return fn(ActTag<Act::kElu>{});
    case Act::kSelu: return fn(ActTag<Act::kSelu>{});
    case Act::kSoftplus: return fn(ActTag<Act::kSoftplus>{});
    case Act::kSwish: return fn(ActTag<Act::kSwish>{});
    case Act::kGelu: return fn(ActTag<Act::kGelu>{});
    default: return fn(ActTag<Act::kLinear>{});
  }
}

}  // namespace ganops
