// The activation table: the one place where each activation's value and its first and
// second derivatives are written. CPU loops and CUDA kernels both instantiate these.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
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

// Returns nullptr for an unknown name; adapters turn that into an error naming `act`.
inline const ActInfo* find_act(const char* name) {
  for (int i = 0; i < static_cast<int>(Act::kCount); ++i) {
    if (std::strcmp(act_table()[i].name, name) == 0) return &act_table()[i];
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

template <typename A>
GANOPS_HD A sigmoid(A z) {
  return A(1) / (A(1) + exp(-z));
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
  static GANOPS_HD A f(A z, A) { return z > A(0) ? z : A(0); }
  static GANOPS_HD A df(A z, A) { return z > A(0) ? A(1) : A(0); }
  static GANOPS_HD A d2f(A, A) { return A(0); }
};

template <typename A>
struct Activation<Act::kLrelu, A> {
  static GANOPS_HD A f(A z, A alpha) { return z >= A(0) ? z : z * alpha; }
  static GANOPS_HD A df(A z, A alpha) { return z >= A(0) ? A(1) : alpha; }
  static GANOPS_HD A d2f(A, A) { return A(0); }
};

template <typename A>
struct Activation<Act::kTanh, A> {
  static GANOPS_HD A f(A z, A) { return tanh(z); }
  static GANOPS_HD A df(A z, A) {
    A t = tanh(z);
    return A(1) - t * t;
  }
  static GANOPS_HD A d2f(A z, A) {
    A t = tanh(z);
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
  static GANOPS_HD A f(A z, A) { return z >= A(0) ? z : expm1(z); }
  static GANOPS_HD A df(A z, A) { return z >= A(0) ? A(1) : exp(z); }
  static GANOPS_HD A d2f(A z, A) { return z >= A(0) ? A(0) : exp(z); }
};

template <typename A>
struct Activation<Act::kSelu, A> {
  static GANOPS_HD A f(A z, A) {
    return A(kSeluScale) * (z >= A(0) ? z : A(kSeluAlpha) * expm1(z));
  }
  static GANOPS_HD A df(A z, A) {
    return z >= A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * exp(z);
  }
  static GANOPS_HD A d2f(A z, A) {
    return z >= A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * exp(z);
  }
};

template <typename A>
struct Activation<Act::kSoftplus, A> {
  // max(z, 0) + log1p(exp(-|z|)) never overflows, unlike log(1 + exp(z)).
  static GANOPS_HD A f(A z, A) { return (z > A(0) ? z : A(0)) + log1p(exp(-fabs(z))); }
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
  static GANOPS_HD A cdf(A z) { return A(0.5) * (A(1) + erf(z * A(kInvSqrt2))); }
  static GANOPS_HD A pdf(A z) { return A(kInvSqrt2Pi) * exp(A(-0.5) * z * z); }
  static GANOPS_HD A f(A z, A) { return z * cdf(z); }
  static GANOPS_HD A df(A z, A) { return cdf(z) + z * pdf(z); }
  static GANOPS_HD A d2f(A z, A) { return pdf(z) * (A(2) - z * z); }
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
