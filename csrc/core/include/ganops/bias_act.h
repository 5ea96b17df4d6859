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

// Whether a scalar argument (a double from Python) stays finite in the compute type: float for
// float/half/bfloat16 inputs, double for double. gain = 1e308 is finite as a double and inf as a
// float, where it would turn every output into inf or NaN without an error.
inline bool finite_in_compute_type(double v, bool double_compute) {
  return std::isfinite(v) &&
         (double_compute || std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max()));
}
inline const char* compute_type_name(bool double_compute) {
  return double_compute ? "float64" : "float32";
}

// The scalar arguments of bias_act that must be finite in the compute type (clamp may be any
// size: a clamp past the float range clamps nothing, which is what it says). Returns the name
// of the first one that is not, or nullptr.
inline const char* bias_act_scalar_out_of_range(const BiasActParams& p, bool double_compute) {
  if (!finite_in_compute_type(p.gain, double_compute)) return "gain";
  if (!finite_in_compute_type(p.alpha, double_compute)) return "alpha";
  return nullptr;
}

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

// Blocks of `inner` elements that share one bias value, channel after channel (NCHW-like
// layouts), walked by run_elements in one call per range rather than one per block. (A
// compile-time block length of 16 was tried for 4x4 maps: GCC 12 made it 40x slower.)
struct BiasBlocks {
  int64_t inner, channels;
};

// The bias as the CPU loops read it. Element i of x (memory order) uses channel
// (i / inner) % channels. The walks below keep every loop over many elements at a time: run
// lengths of 1..16 (one channel, channels_last or [N, C] with few channels, 2x2 and 4x4 maps)
// made a bias cost 24-80x the same call without one.
//   kScalar  one channel: one value for everything.
//   kTable   short periods (inner == 1 with C < kMinRun, or small maps whose period is short):
//            element by element from a table that repeats the pattern for kMinRun elements
//            past any start, so each run covers at least kMinRun elements; inner == 1 with
//            C >= kMinRun reads the bias itself.
//   kBlocks  other inner > 1: blocks of `inner` elements, one value each.
template <typename A>
struct BiasLayout {
  enum class Kind { kNone, kScalar, kTable, kBlocks } kind = Kind::kNone;
  const A* values = nullptr;  // the bias, or the table
  int64_t channels = 1, inner = 1;
  int64_t period = 1, table_len = 0;
  std::vector<A> storage;

  static constexpr int64_t kMinRun = 256;     // elements: well past a vector loop's start cost
  static constexpr int64_t kMaxTable = 4096;  // elements: small enough to stay in L1/L2 beside x, y

  BiasLayout(const BiasActParams& p, const A* bias) : channels(p.channels), inner(p.inner) {
    if (bias == nullptr) return;
    values = bias;
    period = channels * inner;
    if (channels == 1) {
      kind = Kind::kScalar;
    } else if (inner == 1 && channels >= kMinRun) {
      kind = Kind::kTable;
      table_len = channels;
    } else if (inner < 16 && period + kMinRun <= kMaxTable) {
      kind = Kind::kTable;
      table_len = period + kMinRun;
      storage.resize(static_cast<size_t>(table_len));
      for (int64_t j = 0; j < table_len; ++j) storage[j] = bias[(j / inner) % channels];
      values = storage.data();
    } else {
      kind = Kind::kBlocks;
    }
  }
  BiasLayout(const BiasLayout&) = delete;  // `values` may point into `storage`
  BiasLayout& operator=(const BiasLayout&) = delete;

  // Calls body(start, count, bias, mode) over [begin, end). mode is std::false_type (the whole
  // run uses *bias), std::true_type (element start + k uses bias[k]) or a BiasBlocks.
  template <typename Body>
  void for_each_run(int64_t begin, int64_t end, Body&& body) const {
    static const A zero = A(0);
    switch (kind) {
      case Kind::kNone: body(begin, end - begin, &zero, std::false_type{}); return;
      case Kind::kScalar: body(begin, end - begin, values, std::false_type{}); return;
      case Kind::kTable:
        for (int64_t i = begin; i < end;) {
          const int64_t j = i % period;
          const int64_t n = std::min(end - i, table_len - j);
          body(i, n, values + j, std::true_type{});
          i += n;
        }
        return;
      case Kind::kBlocks:
        body(begin, end - begin, values, BiasBlocks{inner, channels});
        return;
    }
  }
};

// Elements per parallel task: large enough to amortise scheduling, small enough to split a
// 32x512x32x32 activation into many tasks.
constexpr int64_t kGrain = 1 << 15;

// One run of elements sharing a bias layout: the loops the compiler vectorizes.
template <typename A, typename Op, bool kPerElement>
GANOPS_HD void run_elements(const Op& op, int64_t start, int64_t n, const A* bv,
                            std::integral_constant<bool, kPerElement>) {
  if (kPerElement) {
#pragma GCC ivdep
    for (int64_t k = 0; k < n; ++k) op(start + k, bv[k]);
  } else {
    const A bias_value = *bv;
    for (int64_t k = 0; k < n; ++k) op(start + k, bias_value);
  }
}

// A run through blocks of `inner` elements; `start` may fall inside a block. One division per
// run, none per block.
template <typename A, typename Op>
GANOPS_HD void run_elements(const Op& op, int64_t start, int64_t n, const A* bias,
                            BiasBlocks blocks) {
  const int64_t inner = blocks.inner;
  const int64_t end = start + n;
  int64_t block = start / inner;
  int64_t c = block % blocks.channels;
  int64_t i = start;
  // A first partial block, then whole blocks, then a last partial one. No lambda here: it would not inherit the AVX2 target of run_elements_avx2.
  if (i % inner != 0) {
    const int64_t stop = std::min(end, (block + 1) * inner);
    const A bias_value = bias[c];
    for (; i < stop; ++i) op(i, bias_value);
    c = c + 1 == blocks.channels ? 0 : c + 1;
  }
  for (; i + inner <= end; i += inner) {
    const A bias_value = bias[c];
    // Element k reads its inputs and then writes its output, never another element's (even
    // when TF hands the kernel y == x), so no alias check is needed before each short block.
#pragma GCC ivdep
    for (int64_t k = 0; k < inner; ++k) op(i + k, bias_value);
    c = c + 1 == blocks.channels ? 0 : c + 1;
  }
  const A bias_value = bias[c];
  for (; i < end; ++i) op(i, bias_value);
}

#if GANOPS_CPU_DISPATCH
// The same loop built for AVX2 + FMA: 8 lanes instead of SSE2's 4, which is what the
// transcendental activations (swish, sigmoid, gelu, ...) need. Only this function carries the
// target attribute; the always-inline math it inlines is compiled for AVX2 here and nowhere
// else, so no baseline code path can pick up AVX2 instructions.
template <typename A, typename Op, typename Mode>
GANOPS_TARGET_AVX2_FMA void run_elements_avx2(const Op& op, int64_t start, int64_t n, const A* bv,
                                              Mode mode) {
  run_elements(op, start, n, bv, mode);
}
#endif

// The bias in the compute type (empty without one).
template <typename T>
std::vector<acc_t<T>> bias_in_compute_type(const BiasActParams& p, const T* b) {
  std::vector<acc_t<T>> bias;
  if (b != nullptr) {
    bias.resize(static_cast<size_t>(p.channels));
    for (int64_t c = 0; c < p.channels; ++c) bias[c] = static_cast<acc_t<T>>(b[c]);
  }
  return bias;
}

// Runs op(i, bias_value) for every element, in parallel. parallel_for(begin, end, grain, f)
// is the framework's pool (at::parallel_for, TF's worker threads, or a plain one).
template <typename T, typename ParallelFor, typename Op>
void elementwise(const BiasActParams& p, const T* b, ParallelFor&& parallel_for, Op&& op) {
  using A = acc_t<T>;
  const std::vector<A> bias = bias_in_compute_type(p, b);
  const BiasLayout<A> layout(p, b != nullptr ? bias.data() : nullptr);
#if GANOPS_CPU_DISPATCH
  const bool avx2 = cpu_has_avx2_fma();
#endif
  parallel_for(int64_t(0), p.numel, kGrain, [&](int64_t begin, int64_t end) {
    layout.for_each_run(begin, end, [&](int64_t start, int64_t n, const A* bv, auto mode) {
#if GANOPS_CPU_DISPATCH
      if (avx2) return run_elements_avx2(op, start, n, bv, mode);
#endif
      run_elements(op, start, n, bv, mode);
    });
  });
}

// ---- Per-channel sums of op's values, fused into the elementwise pass (the bias gradient).
//
// Deterministic: the element range is cut into chunks that depend only on the shape, each chunk
// sums into its own partials, and the partials are added in chunk order, so the bits do not
// depend on the number of threads. Inside a run, sums go through kLanes independent
// accumulators: a float sum in one accumulator is a serial dependence that GCC will not
// vectorize without -ffast-math (which would also make the order compiler-chosen).

constexpr int64_t kSumLanes = 16;
constexpr int64_t kSumTile = 256;  // elements whose values wait in a stack buffer for the lanes

// lanes[k % kSumLanes] += v[k] for k < n, then the lanes folded in a fixed order.
template <typename A>
GANOPS_HD A lane_sum(const A* v, int64_t n) {
  A lanes[kSumLanes] = {};
  int64_t k = 0;
  for (; k + kSumLanes <= n; k += kSumLanes) {
    for (int64_t l = 0; l < kSumLanes; ++l) lanes[l] += v[k + l];
  }
  for (int64_t l = 0; k < n; ++k, ++l) lanes[l] += v[k];
  A total = A(0);
  for (int64_t l = 0; l < kSumLanes; ++l) total += lanes[l];
  return total;
}

// The sum of op(i, bias_value) over [start, start + n), all of one channel. op returns the
// value it wrote; the values go through a stack tile so that the loop computing them stays
// the plain vectorizable loop of run_elements.
template <typename A, typename Op>
GANOPS_HD A run_one_channel_sum(const Op& op, int64_t start, int64_t n, A bias_value) {
  A tile[kSumTile];
  A total = A(0);
  for (int64_t t = 0; t < n; t += kSumTile) {
    const int64_t m = std::min(kSumTile, n - t);
#pragma GCC ivdep
    for (int64_t k = 0; k < m; ++k) tile[k] = op(start + t + k, bias_value);
    total += lane_sum(tile, m);
  }
  return total;
}

// A run of one bias value (one channel, or no table): its sum into acc[0].
template <typename A, typename Op>
GANOPS_HD void run_sums(const Op& op, int64_t start, int64_t n, const A* bv, A* acc,
                        std::false_type) {
  acc[0] += run_one_channel_sum(op, start, n, *bv);
}

// A table run: element start + k into acc[k], where acc lines up with the table as bv does.
template <typename A, typename Op>
GANOPS_HD void run_sums(const Op& op, int64_t start, int64_t n, const A* bv, A* acc,
                        std::true_type) {
#pragma GCC ivdep
  for (int64_t k = 0; k < n; ++k) acc[k] += op(start + k, bv[k]);
}

// A run through blocks: each (partial) block's sum into acc[its channel].
template <typename A, typename Op>
GANOPS_HD void run_sums(const Op& op, int64_t start, int64_t n, const A* bias, A* acc,
                        BiasBlocks blocks) {
  const int64_t inner = blocks.inner;
  const int64_t end = start + n;
  int64_t c = (start / inner) % blocks.channels;
  for (int64_t i = start; i < end;) {
    const int64_t stop = std::min(end, (i / inner + 1) * inner);
    acc[c] += run_one_channel_sum(op, i, stop - i, bias[c]);
    i = stop;
    c = c + 1 == blocks.channels ? 0 : c + 1;
  }
}

// Short blocks (4x4 maps): a sum per block would cost a lane fold per few elements, so element
// k of a block of channel c goes into acc[c * inner + k] instead (acc spans one period).
struct BiasBlockPositions {
  int64_t inner, channels;
};
constexpr int64_t kMaxPositionBlock = 4 * kSumLanes;

template <typename A, typename Op>
GANOPS_HD void run_sums(const Op& op, int64_t start, int64_t n, const A* bias, A* acc,
                        BiasBlockPositions blocks) {
  const int64_t inner = blocks.inner;
  const int64_t end = start + n;
  int64_t c = (start / inner) % blocks.channels;
  for (int64_t i = start; i < end;) {
    const int64_t offset = i % inner;
    const int64_t m = std::min(end - i, inner - offset);
    const A bias_value = bias[c];
    A* block_acc = acc + c * inner + offset;
#pragma GCC ivdep
    for (int64_t k = 0; k < m; ++k) block_acc[k] += op(i + k, bias_value);
    i += m;
    c = c + 1 == blocks.channels ? 0 : c + 1;
  }
}

#if GANOPS_CPU_DISPATCH
template <typename A, typename Op, typename Mode>
GANOPS_TARGET_AVX2_FMA void run_sums_avx2(const Op& op, int64_t start, int64_t n, const A* bv,
                                          A* acc, Mode mode) {
  run_sums(op, start, n, bv, acc, mode);
}
#endif

// Runs op(i, bias_value), which returns the value it stored, for every element in parallel,
// and writes sum[c] = the sum of the values over the elements of channel c. Needs a bias (it
// sets the layout). Sums accumulate in acc_t<T>; sum is in T.
template <typename T, typename ParallelFor, typename Op>
void elementwise_channel_sums(const BiasActParams& p, const T* b, T* sum,
                              ParallelFor&& parallel_for, Op&& op) {
  using A = acc_t<T>;
  using Kind = typename BiasLayout<A>::Kind;
  const std::vector<A> bias = bias_in_compute_type(p, b);
  const BiasLayout<A> layout(p, bias.data());
  // Partials per chunk: one per table entry (a short-period table repeats channels), one per
  // element of a period for short blocks, else one per channel. The first two are folded into
  // channels below.
  const bool positions = layout.kind == Kind::kBlocks && layout.inner <= kMaxPositionBlock;
  const bool folded = positions || (layout.kind == Kind::kTable && layout.values != bias.data());
  const int64_t acc_len = layout.kind == Kind::kTable ? layout.table_len
                          : positions                 ? layout.period
                                                      : p.channels;
  // Chunks of at least 8 partials' worth of elements keep the partials under an eighth of the
  // tensor; at most 4096 chunks keep them small for huge tensors and still feed many threads.
  const int64_t chunk = std::max({kGrain, 8 * acc_len, (p.numel + 4095) / 4096});
  const int64_t chunks = (p.numel + chunk - 1) / chunk;
  std::vector<A> partials(static_cast<size_t>(chunks * acc_len));
#if GANOPS_CPU_DISPATCH
  const bool avx2 = cpu_has_avx2_fma();
#endif
  parallel_for(int64_t(0), chunks, int64_t(1), [&](int64_t first, int64_t last) {
    for (int64_t ch = first; ch < last; ++ch) {
      A* acc = partials.data() + ch * acc_len;
      layout.for_each_run(ch * chunk, std::min(p.numel, (ch + 1) * chunk),
                          [&](int64_t start, int64_t n, const A* bv, auto mode) {
        A* run_acc = acc + (bv - layout.values);  // a table run starts part-way into the table
        if constexpr (std::is_same<decltype(mode), BiasBlocks>::value) {
          if (positions) {
            const BiasBlockPositions short_blocks{mode.inner, mode.channels};
#if GANOPS_CPU_DISPATCH
            if (avx2) return run_sums_avx2(op, start, n, bv, run_acc, short_blocks);
#endif
            return run_sums(op, start, n, bv, run_acc, short_blocks);
          }
        }
#if GANOPS_CPU_DISPATCH
        if (avx2) return run_sums_avx2(op, start, n, bv, run_acc, mode);
#endif
        run_sums(op, start, n, bv, run_acc, mode);
      });
    }
  });
  // Channel c's partials, chunk after chunk: each channel's order is fixed, so channels can go
  // in parallel.
  const int64_t inner = layout.inner;
  parallel_for(int64_t(0), p.channels, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, chunks)),
               [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      A total = A(0);
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const A* acc = partials.data() + ch * acc_len;
        if (!folded) {
          total += acc[c];
          continue;
        }
        for (int64_t t = c * inner; t < acc_len; t += layout.period) {
          for (int64_t r = 0; r < inner && t + r < acc_len; ++r) total += acc[t + r];
        }
      }
      sum[c] = static_cast<T>(total);
    }
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

// bias_act_backward, and db = dz summed per channel in the same pass over dy (b required).
template <typename T, typename ParallelFor>
void bias_act_backward_bias(const BiasActParams& p, const T* dy, const T* x, const T* b, T* dz,
                            T* db, ParallelFor&& parallel_for) {
  using A = acc_t<T>;
  dispatch_math(p, [&](auto act_tag, auto clamp_tag) {
    const BiasActMath<decltype(act_tag)::value, decltype(clamp_tag)::value, A> m(p);
    elementwise_channel_sums(p, b, db, parallel_for, [&](int64_t i, A bv) GANOPS_INLINE_LAMBDA {
      const A g = m.grad(static_cast<A>(dy[i]), static_cast<A>(x[i]) + bv);
      dz[i] = static_cast<T>(g);
      return g;
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
