// Spectral normalization: power iteration for the largest singular value sigma of a weight
// viewed as a matrix, and W / sigma with its gradient.
//
// Matrix view: a contiguous weight of shape [d0, ..., d_{n-1}] and a chosen `dim` is read as
// [outer][rows][inner] (outer = product of the sizes before dim, rows = size of dim, inner =
// product of the sizes after it). The matrix M has `rows` rows and outer * inner columns:
//     M[h, a * inner + b] = W[a][h][b]
// which is torch's permute(dim, ...).flatten(1) without a copy. Keras' reshape(kernel, [-1, out])
// is M transposed with dim = the last axis (inner = 1).
//
// Norms, dots and sigma accumulate in acc_t<T> (float32 for half types, float64 for float64).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ganops/bias_act.h"  // acc_t
#include "ganops/cpu_dispatch.h"
#include "ganops/macros.h"

namespace ganops {

// Which vector the power method updates first.
enum class PowerOrder : int {
  kUFirst = 0,  // torch: u = normalize(M v), then v = normalize(M^T u); v is the state
  kVFirst = 1,  // Keras: v = normalize(M^T u), then u = normalize(M v); u is the state
};

struct SpectralNormParams {
  int64_t outer = 1;
  int64_t rows = 1;
  int64_t inner = 1;
  int64_t n_power_iterations = 1;
  double eps = 1e-12;  // normalize(a) = a / max(||a||, eps)
  PowerOrder order = PowerOrder::kUFirst;
  int64_t cols() const { return outer * inner; }
  int64_t numel() const { return outer * rows * inner; }
};

// The [outer][rows][inner] view of a contiguous tensor of `ndim` sizes around `dim`.
inline void set_matrix_view(SpectralNormParams& p, const int64_t* sizes, int64_t ndim,
                            int64_t dim) {
  p.outer = 1;
  p.inner = 1;
  for (int64_t d = 0; d < dim; ++d) p.outer *= sizes[d];
  for (int64_t d = dim + 1; d < ndim; ++d) p.inner *= sizes[d];
  p.rows = sizes[dim];
}

namespace cpu {

// Dot product with kLanes independent partial sums: the inner loop is elementwise, so the
// compiler vectorizes it without reassociating anything (-ffast-math is off), and several vector
// accumulators hide the add latency that a single running sum is bound by. Long lines (rows of
// a dim-0 weight) take 32 lanes; short ones (the 9 or 16 elements of a kernel window) take 8,
// whose final tree costs less. The order of the sum is fixed by n alone.
template <int kLanes, typename T, typename Y, typename A>
GANOPS_HD A dot_lanes(const T* x, const Y* y, int64_t n) {
  A acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) acc[k] += static_cast<A>(x[i + k]) * static_cast<A>(y[i + k]);
  }
  for (int k = 0; i < n; ++i, ++k) acc[k] += static_cast<A>(x[i]) * static_cast<A>(y[i]);
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int k = 0; k < width; ++k) acc[k] += acc[k + width];
  }
  return acc[0];
}

template <typename T, typename Y, typename A>
GANOPS_HD A dot_line(const T* x, const Y* y, int64_t n) {
  return n >= 128 ? dot_lanes<32, T, Y, A>(x, y, n) : dot_lanes<8, T, Y, A>(x, y, n);
}

// dot_lanes of the three lines x, x + stride, x + 2 * stride with the same y in one sweep, into
// out[0..3): each y element loaded feeds three products (the one-line loop issues two loads per
// product, and those bound it), and each line keeps its own kLanes sums in dot_lanes' order, so
// the bits equal three dot_lanes calls. Three lines, not four: four of 32 float lanes need all 16
// AVX2 registers as accumulators and spilled (measured slower than three).
template <int kLanes, typename T, typename Y, typename A>
GANOPS_HD void dot3_lanes(const T* x, int64_t stride, const Y* y, int64_t n, A* out) {
  A acc0[kLanes] = {}, acc1[kLanes] = {}, acc2[kLanes] = {};
  const T* x1 = x + stride;
  const T* x2 = x + 2 * stride;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A yk = static_cast<A>(y[i + k]);
      acc0[k] += static_cast<A>(x[i + k]) * yk;
      acc1[k] += static_cast<A>(x1[i + k]) * yk;
      acc2[k] += static_cast<A>(x2[i + k]) * yk;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const A yk = static_cast<A>(y[i]);
    acc0[k] += static_cast<A>(x[i]) * yk;
    acc1[k] += static_cast<A>(x1[i]) * yk;
    acc2[k] += static_cast<A>(x2[i]) * yk;
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int k = 0; k < width; ++k) {
      acc0[k] += acc0[k + width];
      acc1[k] += acc1[k + width];
      acc2[k] += acc2[k + width];
    }
  }
  out[0] = acc0[0];
  out[1] = acc1[0];
  out[2] = acc2[0];
}

// Three dot_line calls with the same bits, in one sweep where that pays: long lines (32 lanes)
// of a float32 accumulator. 32 lanes of float64 are 8 AVX2 registers a line, too many for
// three; short lines (8 lanes) measured slower in one sweep, and GCC contracted the 8-lane
// sweep's products differently, which changed the last bit.
template <typename T, typename Y, typename A>
GANOPS_HD void dot3_line(const T* x, int64_t stride, const Y* y, int64_t n, A* out) {
  if (n >= 128 && sizeof(A) <= 4) {
    dot3_lanes<32, T, Y, A>(x, stride, y, n, out);
  } else {
    for (int r = 0; r < 3; ++r) out[r] = dot_line<T, Y, A>(x + r * stride, y, n);
  }
}

template <typename T, typename A>
GANOPS_HD void axpy_line(A alpha, const T* x, A* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * static_cast<A>(x[i]);
}

// Four axpy_line calls in one sweep: y += alpha[0] x[0..n) + ... + alpha[3] x[3 * stride ..),
// added in that order, so each y element is loaded and stored once per four lines (the
// store and the load behind it bounded the one-line loop) and the bits equal four calls.
template <typename T, typename A>
GANOPS_HD void axpy4_line(const A* alpha, const T* x, int64_t stride, A* __restrict__ y,
                          int64_t n) {
  const A a0 = alpha[0], a1 = alpha[1], a2 = alpha[2], a3 = alpha[3];
  const T* __restrict__ x0 = x;
  const T* __restrict__ x1 = x + stride;
  const T* __restrict__ x2 = x + 2 * stride;
  const T* __restrict__ x3 = x + 3 * stride;
  for (int64_t i = 0; i < n; ++i) {
    A acc = y[i];
    acc += a0 * static_cast<A>(x0[i]);
    acc += a1 * static_cast<A>(x1[i]);
    acc += a2 * static_cast<A>(x2[i]);
    acc += a3 * static_cast<A>(x3[i]);
    y[i] = acc;
  }
}

// t[h] = sum_c M[h, c] y[c] for h in [h0, h1).
template <typename T, typename A>
GANOPS_HD void mv_rows_block(const SpectralNormParams& p, const T* w, const A* y, A* t,
                             int64_t h0, int64_t h1) {
  const int64_t H = p.rows, B = p.inner;
  for (int64_t h = h0; h < h1; ++h) t[h] = A(0);
  if (B == 1) {  // rows are strided columns of the [outer][rows] block: accumulate row by row
    for (int64_t a = 0; a < p.outer; ++a) axpy_line(y[a], w + a * H + h0, t + h0, h1 - h0);
    return;
  }
  for (int64_t a = 0; a < p.outer; ++a) {
    int64_t h = h0;
    for (; h + 3 <= h1; h += 3) {
      A d[3];
      dot3_line<T, A, A>(w + (a * H + h) * B, B, y + a * B, B, d);
      for (int r = 0; r < 3; ++r) t[h + r] += d[r];
    }
    for (; h < h1; ++h) t[h] += dot_line<T, A, A>(w + (a * H + h) * B, y + a * B, B);
  }
}

// s[c] = sum_h M[h, c] y[h] for the columns c = a * inner + [b0, b1) of one outer index a.
template <typename T, typename A>
GANOPS_HD void mv_cols_block(const SpectralNormParams& p, const T* w, const A* y, A* s,
                             int64_t a, int64_t b0, int64_t b1) {
  const int64_t H = p.rows, B = p.inner;
  if (B == 1) {  // one column: a contiguous row of the [outer][rows] block
    s[a] = dot_line<T, A, A>(w + a * H, y, H);
    return;
  }
  A* out = s + a * B + b0;
  for (int64_t b = b0; b < b1; ++b) out[b - b0] = A(0);
  for (int64_t h = 0; h < H; ++h) axpy_line(y[h], w + (a * H + h) * B + b0, out, b1 - b0);
}

// One block of rows of a fused power step: t = M y on rows [h0, h1), then z += M^T t over the
// same rows while they are still in cache, so a step reads W from memory once, not twice.
template <typename T, typename A>
GANOPS_HD void fused_rows_block(const SpectralNormParams& p, const T* w, const A* y, A* t, A* z,
                                int64_t h0, int64_t h1) {
  mv_rows_block(p, w, y, t, h0, h1);
  const int64_t H = p.rows, B = p.inner;
  for (int64_t a = 0; a < p.outer; ++a) {
    if (B == 1) {
      z[a] += dot_line<T, A, A>(w + a * H + h0, t + h0, h1 - h0);
    } else {
      int64_t h = h0;
      for (; h + 4 <= h1; h += 4) axpy4_line(t + h, w + (a * H + h) * B, B, z + a * B, B);
      for (; h < h1; ++h) axpy_line(t[h], w + (a * H + h) * B, z + a * B, B);
    }
  }
}

// The same with the roles swapped (Keras' order): s = M^T y on the columns a * inner + [b0, b1),
// then z += M s over those columns.
template <typename T, typename A>
GANOPS_HD void fused_cols_block(const SpectralNormParams& p, const T* w, const A* y, A* s, A* z,
                                int64_t a, int64_t b0, int64_t b1) {
  mv_cols_block(p, w, y, s, a, b0, b1);
  const int64_t H = p.rows, B = p.inner;
  if (B == 1) {
    axpy_line(s[a], w + a * H, z, H);
    return;
  }
  for (int64_t h = 0; h < H; ++h) {
    z[h] += dot_line<T, A, A>(w + (a * H + h) * B + b0, s + a * B + b0, b1 - b0);
  }
}

// Both products one outer index at a time, for outer > 1 and inner > 1 (a transposed
// convolution's dim 1): there a row of M is `outer` short pieces `rows * inner` elements
// apart, so a block of rows is a strided gather that misses the caches on its second read,
// while each outer index's [rows][inner] slab is contiguous. t = M y needs every slab before
// M^T t can start, so these take two passes, each a contiguous sweep of W.
//
// Lines at least this long take a dot product each in mv_outer_block; shorter ones defer
// the sum over inner.
constexpr int64_t kOuterLongLine = 64;

// t = M y over the outer indices [a0, a1), added into acc. Long lines (inner >=
// kOuterLongLine): acc[h] += <W[a][h][:], y[a * inner ..)>. Short ones (a kernel window):
// acc[h * inner + b] += W[a][h][b] y[a * inner + b], the sum over b left for later, so the
// loop has no add chain; the slab is swept as one line of rows * inner elements against yrep,
// y[a * inner ..) repeated to `period` (a multiple of inner) elements: long elementwise loops
// instead of one short loop per row (measured 1.7x).
template <typename T, typename A>
GANOPS_HD void mv_outer_block(const SpectralNormParams& p, const T* w, const A* y, A* acc,
                              A* yrep, int64_t period, int64_t a0, int64_t a1) {
  const int64_t H = p.rows, B = p.inner, n = H * B;
  if (B >= kOuterLongLine) {
    for (int64_t a = a0; a < a1; ++a) {
      for (int64_t h = 0; h < H; ++h) acc[h] += dot_line<T, A, A>(w + a * n + h * B, y + a * B, B);
    }
    return;
  }
  for (int64_t a = a0; a < a1; ++a) {
    const T* wa = w + a * n;
    for (int64_t l = 0; l < period; ++l) yrep[l] = y[a * B + l % B];
    int64_t j = 0;
    for (; j + period <= n; j += period) {
      const T* __restrict__ wj = wa + j;
      const A* __restrict__ yr = yrep;
      A* __restrict__ aj = acc + j;
      for (int64_t l = 0; l < period; ++l) aj[l] += static_cast<A>(wj[l]) * yr[l];
    }
    for (int64_t l = 0; j < n; ++j, ++l) acc[j] += static_cast<A>(wa[j]) * yrep[l];
  }
}

// z[a * inner + b] = sum_h t[h] W[a][h][b] for a in [a0, a1). Rows go four at a time into
// four accumulators of `inner` elements (scratch, 4 * inner) in turn, so four add chains run
// side by side; they are summed as (s0 + s1) + (s2 + s3).
template <typename T, typename A>
GANOPS_HD void mtv_outer_block(const SpectralNormParams& p, const T* w, const A* t, A* z,
                               A* scratch, int64_t a0, int64_t a1) {
  const int64_t H = p.rows, B = p.inner;
  for (int64_t a = a0; a < a1; ++a) {
    const T* wa = w + a * H * B;
    for (int64_t i = 0; i < 4 * B; ++i) scratch[i] = A(0);
    int64_t h = 0;
    for (; h + 16 <= H; h += 16) {
      for (int k = 0; k < 4; ++k) {
        axpy4_line(t + h + 4 * k, wa + (h + 4 * k) * B, B, scratch + k * B, B);
      }
    }
    for (; h < H; ++h) axpy_line(t[h], wa + h * B, scratch, B);
    A* za = z + a * B;
    for (int64_t b = 0; b < B; ++b) {
      za[b] = (scratch[b] + scratch[B + b]) + (scratch[2 * B + b] + scratch[3 * B + b]);
    }
  }
}

// out = (g - c * vec) * inv_sigma over one contiguous line.
template <typename T, typename A>
GANOPS_HD void rank1_line(const T* g, A c, const A* vec, A inv_sigma, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>((static_cast<A>(g[i]) - c * vec[i]) * inv_sigma);
  }
}

// dW = (G - k * u v^T) * inv_sigma on the elements [i0, i1) of the [outer][rows][inner] layout,
// walked in contiguous lines: along inner (u[h] fixed, v varies) or, when inner is 1, along
// rows (v[a] fixed, u varies).
template <typename T, typename A>
GANOPS_HD void normalize_grad_block(const SpectralNormParams& p, const T* g, const A* u,
                                    const A* v, A k, A inv_sigma, T* out, int64_t i0, int64_t i1) {
  const int64_t H = p.rows, B = p.inner;
  const int64_t len = B > 1 ? B : H;
  for (int64_t i = i0; i < i1;) {
    const int64_t line = i / len, off = i % len, n = std::min(i1 - i, len - off);
    if (B > 1) {
      rank1_line(g + i, k * u[line % H], v + (line / H) * B + off, inv_sigma, out + i, n);
    } else {
      rank1_line(g + i, k * v[line], u + off, inv_sigma, out + i, n);
    }
    i += n;
  }
}

template <typename T, typename A>
GANOPS_HD void dot_block(const T* x, const T* y, int64_t i0, int64_t i1, A* result) {
  *result = dot_line<T, T, A>(x + i0, y + i0, i1 - i0);
}

template <typename T, typename A>
GANOPS_HD void scale_block(const T* x, A scale, T* out, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) out[i] = static_cast<T>(static_cast<A>(x[i]) * scale);
}

#if GANOPS_CPU_DISPATCH
// AVX2 + FMA twins of the loops above (see bias_act.h's run_elements_avx2 for why only these
// functions carry the target attribute).
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void mv_rows_block_avx2(const SpectralNormParams& p, const T* w, const A* y,
                                               A* t, int64_t h0, int64_t h1) {
  mv_rows_block(p, w, y, t, h0, h1);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void fused_rows_block_avx2(const SpectralNormParams& p, const T* w,
                                                  const A* y, A* t, A* z, int64_t h0, int64_t h1) {
  fused_rows_block(p, w, y, t, z, h0, h1);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void fused_cols_block_avx2(const SpectralNormParams& p, const T* w,
                                                  const A* y, A* s, A* z, int64_t a, int64_t b0,
                                                  int64_t b1) {
  fused_cols_block(p, w, y, s, z, a, b0, b1);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void mv_outer_block_avx2(const SpectralNormParams& p, const T* w,
                                                const A* y, A* acc, A* yrep, int64_t period,
                                                int64_t a0, int64_t a1) {
  mv_outer_block(p, w, y, acc, yrep, period, a0, a1);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void mtv_outer_block_avx2(const SpectralNormParams& p, const T* w,
                                                 const A* t, A* z, A* scratch, int64_t a0,
                                                 int64_t a1) {
  mtv_outer_block(p, w, t, z, scratch, a0, a1);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void normalize_grad_block_avx2(const SpectralNormParams& p, const T* g,
                                                      const A* u, const A* v, A k, A inv_sigma,
                                                      T* out, int64_t i0, int64_t i1) {
  normalize_grad_block(p, g, u, v, k, inv_sigma, out, i0, i1);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void dot_block_avx2(const T* x, const T* y, int64_t i0, int64_t i1,
                                           A* result) {
  dot_block(x, y, i0, i1, result);
}
template <typename T, typename A>
GANOPS_TARGET_AVX2_FMA void scale_block_avx2(const T* x, A scale, T* out, int64_t i0, int64_t i1) {
  scale_block(x, scale, out, i0, i1);
}
#define GANOPS_SN_CALL(fn, ...) \
  (cpu_has_avx2_fma() ? fn##_avx2(__VA_ARGS__) : fn(__VA_ARGS__))  // both return void
#else
#define GANOPS_SN_CALL(fn, ...) fn(__VA_ARGS__)
#endif

// Elements per parallel task for the passes over W (and the chunk of the deterministic dot),
// and so the least work that wakes the thread pool: torch's elementwise grain. Smaller weights
// (Linear(256, 128) and below) run every pass on the calling thread: on a busy machine each
// fork/join waits for a descheduled thread, which took a 20 us weight step to 11-32 ms.
constexpr int64_t kSpectralGrain = 1 << 15;

// Most partial sums a fused pass keeps (one vector of z per group of tasks).
constexpr int64_t kFusedGroups = 16;

// Groups of a pass over `tasks` tasks of numel elements in all: fixed by the sizes alone.
inline int64_t pass_groups(int64_t tasks, int64_t numel) {
  return std::max<int64_t>(1, std::min<int64_t>({tasks, kFusedGroups, numel / kSpectralGrain}));
}

// t = M y for outer > 1 and inner > 1: the outer indices split into groups, each sweeping its
// slabs into its own accumulator (rows x lanes) and folding it to a partial t; the partials
// are added in group order, whatever the number of threads.
template <typename T, typename A, typename ParallelFor>
void matvec_outer(const SpectralNormParams& p, const T* w, const A* y, A* t, ParallelFor&& pf) {
  const int64_t H = p.rows, B = p.inner;
  const int64_t lanes = B >= kOuterLongLine ? 1 : B;
  const int64_t groups = pass_groups(p.outer, p.numel());
  std::vector<A> partial(static_cast<size_t>(groups * H));
  const int64_t period = lanes * std::max<int64_t>(1, kOuterLongLine / lanes);
  const auto run = [&](int64_t g0, int64_t g1) {
    std::vector<A> acc(static_cast<size_t>(H * lanes)), yrep(static_cast<size_t>(period));
    for (int64_t g = g0; g < g1; ++g) {
      std::fill(acc.begin(), acc.end(), A(0));
      GANOPS_SN_CALL(mv_outer_block, p, w, y, acc.data(), yrep.data(), period,
                     g * p.outer / groups, (g + 1) * p.outer / groups);
      for (int64_t h = 0; h < H; ++h) {
        A sum = A(0);
        for (int64_t b = 0; b < lanes; ++b) sum += acc[h * lanes + b];
        partial[g * H + h] = sum;
      }
    }
  };
  if (groups == 1) {
    run(0, 1);
  } else {
    pf(int64_t(0), groups, int64_t(1), run);
  }
  for (int64_t h = 0; h < H; ++h) t[h] = A(0);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t h = 0; h < H; ++h) t[h] += partial[g * H + h];
  }
}

// z = M^T t for outer > 1 and inner > 1, parallel over outer indices (each owns its z).
template <typename T, typename A, typename ParallelFor>
void matvec_t_outer(const SpectralNormParams& p, const T* w, const A* t, A* z, ParallelFor&& pf) {
  const int64_t grain = std::max<int64_t>(1, kSpectralGrain / (p.rows * p.inner));
  pf(int64_t(0), p.outer, grain, [&](int64_t a0, int64_t a1) {
    std::vector<A> scratch(static_cast<size_t>(4 * p.inner));
    GANOPS_SN_CALL(mtv_outer_block, p, w, t, z, scratch.data(), a0, a1);
  });
}

// t = M y (length rows), parallel over rows.
template <typename T, typename A, typename ParallelFor>
void matvec(const SpectralNormParams& p, const T* w, const A* y, A* t, ParallelFor&& pf) {
  if (p.outer > 1 && p.inner > 1) {
    matvec_outer(p, w, y, t, pf);
    return;
  }
  const int64_t per_row = std::max<int64_t>(p.cols(), 1);
  const int64_t grain = std::max<int64_t>(1, kSpectralGrain / per_row);
  pf(int64_t(0), p.rows, grain, [&](int64_t h0, int64_t h1) {
    GANOPS_SN_CALL(mv_rows_block, p, w, y, t, h0, h1);
  });
}

// Runs block(task, z_partial) for tasks [0, tasks) in up to kFusedGroups groups, each adding
// into its own partial z, then sums the partials in group order: the same result whatever the
// number of threads.
template <typename A, typename ParallelFor, typename Block>
void fused_pass(int64_t tasks, int64_t numel, int64_t z_len, A* z, ParallelFor&& pf,
                const Block& block) {
  const int64_t groups = pass_groups(tasks, numel);
  std::vector<A> partial(static_cast<size_t>(groups * z_len), A(0));
  const auto run = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t task = g * tasks / groups; task < (g + 1) * tasks / groups; ++task) {
        block(task, partial.data() + g * z_len);
      }
    }
  };
  if (groups == 1) {
    run(0, 1);
  } else {
    pf(int64_t(0), groups, int64_t(1), run);
  }
  // Group by group over contiguous vectors (the loop vectorizes; one element at a time across
  // groups strides by z_len and took 15-25% of a conv 128->256 step): each z[i] is still
  // 0 + partial_0 + partial_1 + ... in group order, the same bits.
  for (int64_t i = 0; i < z_len; ++i) z[i] = A(0);
  for (int64_t g = 0; g < groups; ++g) {
    const A* part = partial.data() + g * z_len;
    for (int64_t i = 0; i < z_len; ++i) z[i] += part[i];
  }
}

// Rows (or columns) per task of a fused pass: about kSpectralGrain elements.
inline int64_t lines_per_task(int64_t line_len) {
  return std::max<int64_t>(1, kSpectralGrain / std::max<int64_t>(line_len, 1));
}

// t = M y (rows) and z = M^T t (cols) in one pass over W (two when outer > 1 and inner > 1,
// see mv_outer_block).
template <typename T, typename A, typename ParallelFor>
void fused_step_rows(const SpectralNormParams& p, const T* w, const A* y, A* t, A* z,
                     ParallelFor&& pf) {
  if (p.outer > 1 && p.inner > 1) {
    matvec_outer(p, w, y, t, pf);
    matvec_t_outer(p, w, t, z, pf);
    return;
  }
  // Whole groups of four rows per task where a task stays near kSpectralGrain (axpy4_line).
  int64_t per_task = lines_per_task(p.cols());
  if (per_task >= 4) {
    per_task -= per_task % 4;
  } else if (p.cols() <= kSpectralGrain) {
    per_task = 4;
  }
  const int64_t tasks = (p.rows + per_task - 1) / per_task;
  fused_pass(tasks, p.numel(), p.cols(), z, pf, [&](int64_t task, A* zp) {
    const int64_t h0 = task * per_task, h1 = std::min(p.rows, h0 + per_task);
    GANOPS_SN_CALL(fused_rows_block, p, w, y, t, zp, h0, h1);
  });
}

// s = M^T y (cols) and z = M s (rows) in one pass over W. Tasks are (outer index, column
// range); with inner == 1 a task is a run of outer indices (contiguous rows of W).
template <typename T, typename A, typename ParallelFor>
void fused_step_cols(const SpectralNormParams& p, const T* w, const A* y, A* s, A* z,
                     ParallelFor&& pf) {
  const int64_t B = p.inner;
  if (B == 1) {
    const int64_t per_task = lines_per_task(p.rows);
    const int64_t tasks = (p.outer + per_task - 1) / per_task;
    fused_pass(tasks, p.numel(), p.rows, z, pf, [&](int64_t task, A* zp) {
      for (int64_t a = task * per_task; a < std::min(p.outer, (task + 1) * per_task); ++a) {
        GANOPS_SN_CALL(fused_cols_block, p, w, y, s, zp, a, int64_t(0), int64_t(1));
      }
    });
    return;
  }
  const int64_t width = std::min<int64_t>(B, std::max<int64_t>(64, lines_per_task(p.rows)));
  const int64_t per_outer = (B + width - 1) / width;
  fused_pass(p.outer * per_outer, p.numel(), p.rows, z, pf, [&](int64_t task, A* zp) {
    const int64_t a = task / per_outer, b0 = (task % per_outer) * width;
    GANOPS_SN_CALL(fused_cols_block, p, w, y, s, zp, a, b0, std::min(B, b0 + width));
  });
}

// <x, y> over n elements, summed in fixed chunks so the result does not depend on the number
// of threads.
template <typename T, typename A, typename ParallelFor>
A dot(const T* x, const T* y, int64_t n, ParallelFor&& pf) {
  const int64_t chunks = (n + kSpectralGrain - 1) / kSpectralGrain;
  std::vector<A> partial(static_cast<size_t>(chunks), A(0));
  const auto run = [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      GANOPS_SN_CALL(dot_block, x, y, c * kSpectralGrain, std::min(n, (c + 1) * kSpectralGrain),
                     &partial[c]);
    }
  };
  // One chunk runs here: a thread pool wakes for any range of at least `grain` tasks.
  if (chunks <= 1) {
    run(0, chunks);
  } else {
    pf(int64_t(0), chunks, int64_t(1), run);
  }
  A sum = A(0);
  for (A v : partial) sum += v;
  return sum;
}

// a / max(||a||, eps), in place; returns ||a||.
template <typename A>
A normalize(A* a, int64_t n, double eps) {
  A ss = A(0);
  for (int64_t i = 0; i < n; ++i) ss += a[i] * a[i];
  const A norm = std::sqrt(ss);
  const A inv = A(1) / std::max(norm, static_cast<A>(eps));
  for (int64_t i = 0; i < n; ++i) a[i] *= inv;
  return norm;
}

// Runs p.n_power_iterations steps of the power method from the stored u and v, writes the new
// vectors back (u: rows, v: cols; both in T) and returns sigma = u^T M v for them.
//
// After the last step, sigma needs no extra pass over W: with kUFirst, v = s / max(|s|, eps)
// for s = M^T u, so u^T M v = <s, v>; with kVFirst, u = t / max(|t|, eps) for t = M v, so
// sigma = <t, u>. With no steps (evaluation), sigma = <u, M v> costs one pass.
template <typename T, typename ParallelFor>
acc_t<T> power_iteration(const SpectralNormParams& p, const T* w, T* u, T* v,
                         ParallelFor&& pf) {
  using A = acc_t<T>;
  const int64_t H = p.rows, C = p.cols();
  std::vector<A> uu(static_cast<size_t>(H)), vv(static_cast<size_t>(C));
  std::vector<A> t(static_cast<size_t>(H)), s(static_cast<size_t>(C));
  for (int64_t i = 0; i < H; ++i) uu[i] = static_cast<A>(u[i]);
  for (int64_t i = 0; i < C; ++i) vv[i] = static_cast<A>(v[i]);
  A sigma = A(0);
  if (p.n_power_iterations == 0) {
    matvec(p, w, vv.data(), t.data(), pf);
    for (int64_t i = 0; i < H; ++i) sigma += uu[i] * t[i];
    return sigma;
  }
  for (int64_t it = 0; it < p.n_power_iterations; ++it) {
    // One pass gives M y and M^T M y (or M^T y and M M^T y); the second product is scaled by
    // the first one's normalisation, which makes it M^T u (or M v) for the normalized vector.
    if (p.order == PowerOrder::kUFirst) {
      fused_step_rows(p, w, vv.data(), t.data(), s.data(), pf);
      uu = t;
      const A scale = A(1) / std::max(normalize(uu.data(), H, p.eps), static_cast<A>(p.eps));
      for (int64_t i = 0; i < C; ++i) s[i] *= scale;  // s = M^T u
      vv = s;
      normalize(vv.data(), C, p.eps);
    } else {
      fused_step_cols(p, w, uu.data(), s.data(), t.data(), pf);
      vv = s;
      const A scale = A(1) / std::max(normalize(vv.data(), C, p.eps), static_cast<A>(p.eps));
      for (int64_t i = 0; i < H; ++i) t[i] *= scale;  // t = M v
      uu = t;
      normalize(uu.data(), H, p.eps);
    }
  }
  if (p.order == PowerOrder::kUFirst) {
    for (int64_t i = 0; i < C; ++i) sigma += s[i] * vv[i];
  } else {
    for (int64_t i = 0; i < H; ++i) sigma += t[i] * uu[i];
  }
  for (int64_t i = 0; i < H; ++i) u[i] = static_cast<T>(uu[i]);
  for (int64_t i = 0; i < C; ++i) v[i] = static_cast<T>(vv[i]);
  return sigma;
}

// out = W / sigma.
template <typename T, typename ParallelFor>
void normalize_forward(const SpectralNormParams& p, const T* w, acc_t<T> sigma, T* out,
                       ParallelFor&& pf) {
  using A = acc_t<T>;
  const A inv = A(1) / sigma;
  pf(int64_t(0), p.numel(), kSpectralGrain, [&](int64_t i0, int64_t i1) {
    GANOPS_SN_CALL(scale_block, w, inv, out, i0, i1);
  });
}

// Gradient of W / sigma(W) with sigma = u^T M v and u, v held fixed:
//     dW = (G - <G, W / sigma> u v^T) / sigma
// Two passes: the dot <G, W>, then one read of G and one write of dW.
template <typename T, typename ParallelFor>
void normalize_backward(const SpectralNormParams& p, const T* g, const T* w, const T* u,
                        const T* v, acc_t<T> sigma, T* out, ParallelFor&& pf) {
  using A = acc_t<T>;
  const int64_t H = p.rows, C = p.cols();
  std::vector<A> uu(static_cast<size_t>(H)), vv(static_cast<size_t>(C));
  for (int64_t i = 0; i < H; ++i) uu[i] = static_cast<A>(u[i]);
  for (int64_t i = 0; i < C; ++i) vv[i] = static_cast<A>(v[i]);
  const A inv = A(1) / sigma;
  const A k = dot<T, A>(g, w, p.numel(), pf) * inv;
  pf(int64_t(0), p.numel(), kSpectralGrain, [&](int64_t i0, int64_t i1) {
    GANOPS_SN_CALL(normalize_grad_block, p, g, uu.data(), vv.data(), k, inv, out,
                   i0, i1);
  });
}

#undef GANOPS_SN_CALL

}  // namespace cpu
}  // namespace ganops
