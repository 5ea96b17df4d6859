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

// Dot and axpy with eight independent accumulators, so the compiler can vectorize the
// reduction without reassociating under -ffast-math.
template <typename T, typename Y, typename A>
GANOPS_HD A dot_line(const T* x, const Y* y, int64_t n) {
  A acc[8] = {A(0), A(0), A(0), A(0), A(0), A(0), A(0), A(0)};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<A>(x[i + k]) * static_cast<A>(y[i + k]);
  }
  for (; i < n; ++i) acc[0] += static_cast<A>(x[i]) * static_cast<A>(y[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename T, typename A>
GANOPS_HD void axpy_line(A alpha, const T* x, A* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * static_cast<A>(x[i]);
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
    for (int64_t h = h0; h < h1; ++h) t[h] += dot_line<T, A, A>(w + (a * H + h) * B, y + a * B, B);
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
GANOPS_TARGET_AVX2_FMA void mv_cols_block_avx2(const SpectralNormParams& p, const T* w, const A* y,
                                               A* s, int64_t a, int64_t b0, int64_t b1) {
  mv_cols_block(p, w, y, s, a, b0, b1);
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

// Elements per parallel task for the passes over W (and the chunk of the deterministic dot).
constexpr int64_t kSpectralGrain = 1 << 14;

// t = M y (length rows), parallel over rows.
template <typename T, typename A, typename ParallelFor>
void matvec(const SpectralNormParams& p, const T* w, const A* y, A* t, ParallelFor&& pf) {
  const int64_t per_row = std::max<int64_t>(p.cols(), 1);
  const int64_t grain = std::max<int64_t>(1, kSpectralGrain / per_row);
  pf(int64_t(0), p.rows, grain, [&](int64_t h0, int64_t h1) {
    GANOPS_SN_CALL(mv_rows_block, p, w, y, t, h0, h1);
  });
}

// s = M^T y (length cols), parallel over columns: tasks are (outer index, column range).
template <typename T, typename A, typename ParallelFor>
void matvec_t(const SpectralNormParams& p, const T* w, const A* y, A* s, ParallelFor&& pf) {
  const int64_t B = p.inner;
  // Columns per task: wide enough for the vector loop, and about kSpectralGrain elements.
  const int64_t width = B == 1 ? 1 : std::min<int64_t>(B, std::max<int64_t>(64, kSpectralGrain / std::max<int64_t>(p.rows, 1)));
  const int64_t per_outer = (B + width - 1) / width;
  const int64_t tasks = p.outer * per_outer;
  const int64_t per_task = std::max<int64_t>(1, p.rows * width);
  const int64_t grain = std::max<int64_t>(1, kSpectralGrain / per_task);
  pf(int64_t(0), tasks, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t a = task / per_outer, b0 = (task % per_outer) * width;
      GANOPS_SN_CALL(mv_cols_block, p, w, y, s, a, b0, std::min(B, b0 + width));
    }
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
    if (p.order == PowerOrder::kUFirst) {
      matvec(p, w, vv.data(), uu.data(), pf);
      normalize(uu.data(), H, p.eps);
      matvec_t(p, w, uu.data(), s.data(), pf);
      vv = s;
      normalize(vv.data(), C, p.eps);
    } else {
      matvec_t(p, w, uu.data(), vv.data(), pf);
      normalize(vv.data(), C, p.eps);
      matvec(p, w, vv.data(), t.data(), pf);
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
