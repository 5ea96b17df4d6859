// Gradient penalties: the per-sample mix that makes the penalty's inputs, and the
// per-sample norm of a gradient with the penalty on it, its reduction and its backward.
//
// Memory model: a dense tensor whose batch dim is outermost in memory (contiguous and
// channels_last alike) is walked in memory order as [batch][per_sample]; element i belongs to
// sample i / per_sample. Nothing else about the layout matters, so no copy is needed.
//
// Penalty of sample b, with n_b = grad_scale * ||g_b||_2:
//     kNorm      n_b                    (StyleGAN2's path length, before its EMA)
//     kSquared   n_b^2                  (zero-gp; R1 and R2 with weight gamma / 2)
//     kTwoSided  (n_b - target)^2       (WGAN-GP, DRAGAN)
//     kOneSided  max(0, n_b - target)^2
// each times `weight`, then reduced over the batch (none, mean or sum). Squares and sums
// accumulate in acc_t<T> (float32 for half types, float64 for float64).
//
// The backward is dL/dg_b = gout_b * weight * grad_scale^2 * (phi'(n_b) / n_b) * g_b, one read
// of g and one write. phi'(n) / n has a finite limit or is taken as 0 at n = 0 (where g_b is 0
// anyway), so a zero gradient gives a zero gradient, never NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "ganops/bias_act.h"  // acc_t
#include "ganops/cpu_dispatch.h"
#include "ganops/macros.h"

namespace ganops {

enum class PenaltyKind : int { kNorm = 0, kSquared = 1, kTwoSided = 2, kOneSided = 3 };
enum class Reduction : int { kNone = 0, kMean = 1, kSum = 2 };

struct GradientPenaltyParams {
  int64_t batch = 0;
  int64_t per_sample = 0;  // numel / batch
  PenaltyKind kind = PenaltyKind::kTwoSided;
  double target = 1.0;
  double weight = 1.0;
  double grad_scale = 1.0;  // g is read as grad_scale * g: AMP's unscale, path length's 1/sqrt(L)
  Reduction reduction = Reduction::kMean;
  int64_t numel() const { return batch * per_sample; }
  int64_t outputs() const { return reduction == Reduction::kNone ? batch : 1; }
};

// The [batch][per_sample] view of a tensor of `numel` elements whose dim 0 has `batch`.
inline void set_batch_view(GradientPenaltyParams& p, int64_t batch, int64_t numel) {
  p.batch = batch;
  p.per_sample = batch > 0 ? numel / batch : 0;
}

// The kinds and reductions by the names the front ends pass; false for an unknown name.
constexpr const char* kPenaltyKindNames = "norm, squared, two-sided, one-sided";
constexpr const char* kReductionNames = "none, mean, sum";

// string_view, not C strings: "mean\0junk" is an unknown name, not "mean".
inline bool parse_penalty_kind(std::string_view name, PenaltyKind* kind) {
  static constexpr const char* names[] = {"norm", "squared", "two-sided", "one-sided"};  // enum order
  for (int i = 0; i < 4; ++i) {
    if (name == names[i]) {
      *kind = static_cast<PenaltyKind>(i);
      return true;
    }
  }
  return false;
}

inline bool parse_reduction(std::string_view name, Reduction* reduction) {
  static constexpr const char* names[] = {"none", "mean", "sum"};  // enum order
  for (int i = 0; i < 3; ++i) {
    if (name == names[i]) {
      *reduction = static_cast<Reduction>(i);
      return true;
    }
  }
  return false;
}

// Whether grad_scale, weight and target stay finite where the kernels use them: in the compute
// type, and grad_scale also squared (the backward's coefficient is weight * grad_scale^2 * ...).
// Returns the name of the first argument that does not, or nullptr.
inline const char* penalty_scalar_out_of_range(const GradientPenaltyParams& p,
                                               bool double_compute) {
  if (!finite_in_compute_type(p.grad_scale * p.grad_scale, double_compute)) return "grad_scale";
  if (!finite_in_compute_type(p.weight, double_compute)) return "weight";
  if (!finite_in_compute_type(p.target, double_compute)) return "target";
  return nullptr;
}

// Per-sample penalty math, shared by the CPU loops and the CUDA kernels.
template <typename A>
struct PenaltyMath {
  PenaltyKind kind;
  A target, weight, scale;

  explicit PenaltyMath(const GradientPenaltyParams& p)  // host only: kernels receive a copy
      : kind(p.kind), target(A(p.target)), weight(A(p.weight)), scale(A(p.grad_scale)) {}

  // n_b from the sum of squares of the stored (unscaled) gradient.
  GANOPS_HD A norm(A sum_sq) const {
    using std::sqrt;
    return scale * sqrt(sum_sq);
  }

  GANOPS_HD A value(A sum_sq) const {
    const A n = norm(sum_sq);
    switch (kind) {
      case PenaltyKind::kNorm: return weight * n;
      case PenaltyKind::kSquared: return weight * (scale * scale * sum_sq);
      case PenaltyKind::kTwoSided: return weight * (n - target) * (n - target);
      // Written so that a NaN norm (a diverged D) gives a NaN penalty, not 0.
      case PenaltyKind::kOneSided: return n <= target ? A(0) : weight * (n - target) * (n - target);
    }
    return A(0);
  }

  // d value / d g_b = grad_coefficient(n_b) * g_b. The tests are `n == 0` and `n <= target`, not
  // `n > ...`, so that a NaN norm gives a NaN coefficient rather than a silent 0.
  GANOPS_HD A grad_coefficient(A n) const {
    A d_over_n = A(0);  // phi'(n) / n
    switch (kind) {
      case PenaltyKind::kNorm: d_over_n = n == A(0) ? A(0) : A(1) / n; break;
      case PenaltyKind::kSquared: d_over_n = A(2); break;
      case PenaltyKind::kTwoSided: d_over_n = n == A(0) ? A(0) : A(2) * (n - target) / n; break;
      case PenaltyKind::kOneSided:
        d_over_n = (n == A(0) || n <= target) ? A(0) : A(2) * (n - target) / n;
        break;
    }
    return weight * scale * scale * d_over_n;
  }
};

// The incoming gradient of sample b's penalty: gout holds p.outputs() values.
template <typename A>
GANOPS_HD A sample_gout(const GradientPenaltyParams& p, const A* gout, int64_t b) {
  switch (p.reduction) {
    case Reduction::kNone: return gout[b];
    case Reduction::kMean: return gout[0] / A(p.batch);
    case Reduction::kSum: return gout[0];
  }
  return A(0);
}

// How the penalty's input x is made from two tensors and one coefficient per sample:
//     kLerp  x = a + c_b * (b - a)    (WGAN-GP: a = fake, b = real, c = eps)
//     kAxpy  x = a + c_b * b          (DRAGAN: a = real, b = noise, c = alpha_b * 0.5 * std)
enum class MixMode : int { kLerp = 0, kAxpy = 1 };

template <MixMode kMode, typename A>
GANOPS_HD A mix(A a, A b, A c) {
  return kMode == MixMode::kLerp ? a + c * (b - a) : a + c * b;
}

namespace cpu {

// Elements per parallel task, and the least work that wakes the thread pool: torch's
// elementwise grain. Below it a pass runs on the calling thread, because on a busy machine
// (DataLoader workers, another job) a fork/join waits for a descheduled thread, which can turn
// microseconds into milliseconds.
constexpr int64_t kPenaltyGrain = 1 << 15;

// Sum of squares with 16 independent lanes (vectorizes without reassociation; the order is
// fixed by n alone).
template <typename T, typename A>
GANOPS_HD A sum_squares(const T* x, int64_t n) {
  constexpr int kLanes = 16;
  A acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A v = static_cast<A>(x[i + k]);
      acc[k] += v * v;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const A v = static_cast<A>(x[i]);
    acc[k] += v * v;
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int k = 0; k < width; ++k) acc[k] += acc[k + width];
  }
  return acc[0];
}

// Calls line(b, i0, i1) for the parts of [e0, e1) that lie in one sample each.
template <typename Line>
GANOPS_HD void for_sample_lines(int64_t per_sample, int64_t e0, int64_t e1, const Line& line) {
  for (int64_t i = e0; i < e1;) {
    const int64_t b = i / per_sample;
    const int64_t end = std::min(e1, (b + 1) * per_sample);
    line(b, i, end);
    i = end;
  }
}

// One sample's run of each elementwise pass: the loops the compiler vectorizes.
template <MixMode kMode, typename T, typename A>
inline void mix_line(const T* a, const T* b, A c, T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<T>(mix<kMode, A>(static_cast<A>(a[i]), static_cast<A>(b[i]), c));
  }
}

template <typename T, typename A>
inline void scale_line(const T* g, A c, T* dg, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dg[i] = static_cast<T>(c * static_cast<A>(g[i]));
}

#if GANOPS_CPU_DISPATCH
// AVX2 + FMA twins (see bias_act.h's run_elements_avx2). These passes are memory-bound in DRAM,
// but a penalty's tensors are often cache-resident (a CIFAR batch's gradient is 768 KiB), where
// SSE2's 4 lanes and the scalar half-type conversions are the limit.
template <MixMode kMode, typename T, typename A>
GANOPS_TARGET_AVX2_FMA void mix_line_avx2(const T* a, const T* b, A c, T* x, int64_t n) {
  mix_line<kMode>(a, b, c, x, n);
}

template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void scale_line_avx2(const T* g, A c, T* dg, int64_t n) {
  scale_line(g, c, dg, n);
}

template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA A sum_squares_avx2(const T* x, int64_t n) {
  return sum_squares<T, A>(x, n);
}
#endif

// x = mix(a, b, c_b) elementwise; c holds one coefficient per sample.
template <MixMode kMode, typename T, typename ParallelFor>
void mix_samples(const GradientPenaltyParams& p, const T* a, const T* b, const acc_t<T>* c, T* x,
                 ParallelFor&& pf) {
#if GANOPS_CPU_DISPATCH
  const bool avx2 = cpu_has_avx2_fma();
#endif
  pf(int64_t(0), p.numel(), kPenaltyGrain, [&](int64_t e0, int64_t e1) {
    for_sample_lines(p.per_sample, e0, e1, [&](int64_t s, int64_t i0, int64_t i1) {
#if GANOPS_CPU_DISPATCH
      if (avx2) return mix_line_avx2<kMode>(a + i0, b + i0, c[s], x + i0, i1 - i0);
#endif
      mix_line<kMode>(a + i0, b + i0, c[s], x + i0, i1 - i0);
    });
  });
}

// norms[b] = n_b and penalty = the reduced weighted penalties (p.outputs() values). The sums of
// squares run in fixed chunks of each sample, added in chunk order, so the result does not
// depend on the number of threads.
template <typename T, typename ParallelFor>
void penalty_forward(const GradientPenaltyParams& p, const T* g, acc_t<T>* norms,
                     acc_t<T>* penalty, ParallelFor&& pf) {
  using A = acc_t<T>;
  const int64_t D = p.per_sample;
  const int64_t chunks = std::max<int64_t>(1, (D + kPenaltyGrain - 1) / kPenaltyGrain);
  const int64_t tasks = p.batch * chunks;
  std::vector<A> partial(static_cast<size_t>(tasks), A(0));
#if GANOPS_CPU_DISPATCH
  const bool avx2 = cpu_has_avx2_fma();
#endif
  const auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / chunks, c = t % chunks;
      const int64_t i0 = c * kPenaltyGrain, i1 = std::min(D, i0 + kPenaltyGrain);
#if GANOPS_CPU_DISPATCH
      if (avx2) {
        partial[t] = sum_squares_avx2<T, A>(g + b * D + i0, i1 - i0);
        continue;
      }
#endif
      partial[t] = sum_squares<T, A>(g + b * D + i0, i1 - i0);
    }
  };
  // Tiny inputs run here: waking the pool costs more than the sums.
  if (p.numel() <= kPenaltyGrain) {
    run(0, tasks);
  } else {
    pf(int64_t(0), tasks, std::max<int64_t>(1, kPenaltyGrain / std::max<int64_t>(D, 1)), run);
  }
  const PenaltyMath<A> math(p);
  A total = A(0);
  for (int64_t b = 0; b < p.batch; ++b) {
    A sum_sq = A(0);
    for (int64_t c = 0; c < chunks; ++c) sum_sq += partial[b * chunks + c];
    norms[b] = math.norm(sum_sq);
    const A value = math.value(sum_sq);
    if (p.reduction == Reduction::kNone) {
      penalty[b] = value;
    } else {
      total += value;
    }
  }
  if (p.reduction == Reduction::kMean) penalty[0] = total / A(p.batch);
  if (p.reduction == Reduction::kSum) penalty[0] = total;
}

// dg = gout_b * grad_coefficient(n_b) * g, with the norms penalty_forward wrote.
template <typename T, typename ParallelFor>
void penalty_backward(const GradientPenaltyParams& p, const acc_t<T>* gout, const T* g,
                      const acc_t<T>* norms, T* dg, ParallelFor&& pf) {
  using A = acc_t<T>;
  const PenaltyMath<A> math(p);
  std::vector<A> coef(static_cast<size_t>(p.batch));
  for (int64_t b = 0; b < p.batch; ++b) {
    coef[b] = sample_gout(p, gout, b) * math.grad_coefficient(norms[b]);
  }
#if GANOPS_CPU_DISPATCH
  const bool avx2 = cpu_has_avx2_fma();
#endif
  pf(int64_t(0), p.numel(), kPenaltyGrain, [&](int64_t e0, int64_t e1) {
    for_sample_lines(p.per_sample, e0, e1, [&](int64_t s, int64_t i0, int64_t i1) {
#if GANOPS_CPU_DISPATCH
      if (avx2) return scale_line_avx2(g + i0, coef[s], dg + i0, i1 - i0);
#endif
      scale_line(g + i0, coef[s], dg + i0, i1 - i0);
    });
  });
}

}  // namespace cpu
}  // namespace ganops
