// CUDA kernels and host launchers for spectral normalization (ganops/spectral_norm.h): the power
// iteration, W / sigma, and its backward. Same math and the same accumulation type as the CPU
// core; sums are in a fixed order fixed by the shape alone, so results repeat bit for bit.
//
// Power iteration. Each matrix-vector product M y or M^T y is ONE launch that also reduces the
// squared norm of its result, so one power step (u = normalize(M v), v = normalize(M^T u)) is
// two launches. Work vectors live in the workspace in acc_t, unnormalized, each with a scale
// 1 / max(||.||, eps) that the kernel producing it stores and the next kernel multiplies its
// input by as it loads it. Inside a launch:
//   1. every block computes partial results for one tile of outputs over one split of the
//      reduction, and writes them to the workspace (when the reduction is split at all);
//   2. the last block of a tile to finish (atomic ticket per tile, __threadfence before it) adds
//      the splits in split order, stores the tile's outputs and the tile's sum of squares;
//   3. the last tile to finish (a second ticket) adds the tiles' sums in tile order and stores
//      the scale; after the last step it also writes sigma and, for small vectors, u and v.
// The last block resets each ticket it consumed, so the counters are zero for the next launch;
// the launcher zeroes them once per call (the workspace comes from a caching allocator).
//
// The [outer][rows][inner] weight is read through one of two access patterns, chosen so that
// consecutive threads read consecutive addresses:
//   "reduce" view [va][vn][vk]: out[n] = sum_a sum_k X[(a*vn + n)*vk + k] * y[a*vk + k]
//       (the contiguous index k is summed: lanes of a group run along k, a group per output);
//   "keep" view [va][vk][vn]:   out[a*vn + j] = sum_k X[(a*vk + k)*vn + j] * y[k]
//       (the contiguous index j is kept: threads run along j, rows k are split among them).
//   M v:   inner == 1: keep   va = 1,     vk = outer, vn = rows   (t[h] = sum_a W[a][h] v[a])
//          inner  > 1: reduce va = outer, vn = rows,  vk = inner  (t[h] = sum_ab W[a][h][b] v[aB+b])
//   M^T u: inner == 1: reduce va = 1,     vn = outer, vk = rows   (s[a] = sum_h W[a][h] u[h])
//          inner  > 1: keep   va = outer, vk = rows,  vn = inner  (s[aB+b] = sum_h W[a][h][b] u[h])
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "block_reduce.cuh"  // ld, block_sum
#include "elementwise.cuh"  // kThreads, kUnroll, grid_size, dispatch_dtype
#include "ganops/spectral_norm.h"

namespace ganops {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Geometry (host). Decided by the shape alone, so the summation order never depends on the GPU.

constexpr int64_t kMinBlockWork = 4096;  // elements of W per block, at least
constexpr int64_t kTargetBlocks = 1024;  // blocks per pass over a large W
constexpr int64_t kFoldLimit = 16384;    // rows + cols up to which the last block writes u, v
constexpr int64_t kMaxDotPartials = 256; // block partials of <G, W> in the backward (<= kThreads)
constexpr size_t kAlign = 256;           // workspace regions start on this many bytes

static_assert(kMaxDotPartials <= kThreads, "each thread adds at most one dot partial per pass");

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t m) { return ceil_div(a, m) * m; }
inline int64_t pow2_at_least(int64_t x, int64_t cap) {
  int64_t r = 1;
  while (r < x && r < cap) r <<= 1;
  return r;
}

struct MatvecPlan {
  bool keep = false;
  int64_t va = 1, vn = 1, vk = 1;  // the view's sizes (see the top of the file)
  int64_t n_out = 1;               // outputs: vn (reduce) or va * vn (keep)
  int64_t P = 1;                   // splits of the reduction per tile
  int64_t n_tiles = 1;             // tiles of outputs
  int64_t ck = 1;                  // reduce: k per split; keep: rows k per split
  // reduce: a group of `lanes` threads (power of two <= 32) shares one output, a block covers
  // `rows_per_block` outputs (kThreads / rows_per_block threads per output).
  int lanes = 32, rows_per_block = 8;
  int64_t ca = 1, pk = 1;  // a per split, k-splits (split p = pa * pk + pk_index)
  // keep: a block covers tj consecutive outputs j of one a with r threads per output.
  int tj = 32, r = 8;
  int64_t jt_per_a = 1;  // column tiles per a
  int64_t blocks() const { return n_tiles * P; }
  int64_t partials() const { return P > 1 ? P * n_out : 0; }
};

inline int64_t block_work(int64_t numel) {
  return std::max(kMinBlockWork, ceil_div(numel, kTargetBlocks));
}

MatvecPlan plan_reduce(int64_t va, int64_t vn, int64_t vk, int64_t work) {
  MatvecPlan m;
  m.keep = false;
  m.va = va;
  m.vn = vn;
  m.vk = vk;
  m.n_out = vn;
  const int64_t lanes = pow2_at_least(vk, 32);
  const int64_t groups = kThreads / lanes;
  const int64_t rows = vn >= groups ? groups : pow2_at_least(vn, groups);  // divides groups
  m.lanes = static_cast<int>(lanes);
  m.rows_per_block = static_cast<int>(rows);
  m.n_tiles = ceil_div(vn, rows);
  const int64_t per_row = std::max<int64_t>(1, work / rows);  // elements per (output, split)
  if (vk >= per_row) {  // split k; every a is a split of its own
    m.ck = std::min(vk, round_up(per_row, kThreads / rows));
    m.pk = ceil_div(vk, m.ck);
    m.ca = 1;
    m.P = va * m.pk;
  } else {  // whole rows of k; split a
    m.ck = vk;
    m.pk = 1;
    m.ca = std::max<int64_t>(1, per_row / vk);
    m.P = ceil_div(va, m.ca);
  }
  return m;
}

MatvecPlan plan_keep(int64_t va, int64_t vk, int64_t vn, int64_t work) {
  MatvecPlan m;
  m.keep = true;
  m.va = va;
  m.vk = vk;
  m.vn = vn;
  m.n_out = va * vn;
  if (vn < kThreads) {  // whole rows of vn per step: r consecutive rows are one contiguous run
    m.tj = static_cast<int>(vn);
    m.r = static_cast<int>(kThreads / vn);
  } else {  // a warp per 32 columns, 8 rows at a time
    m.tj = 32;
    m.r = kThreads / 32;
  }
  m.jt_per_a = ceil_div(vn, m.tj);
  m.n_tiles = va * m.jt_per_a;
  m.ck = std::min(vk, round_up(std::max<int64_t>(1, work / m.tj), m.r));
  m.P = ceil_div(vk, m.ck);
  return m;
}

struct Plans {
  MatvecPlan mv;   // t = M y  (rows outputs)
  MatvecPlan mtv;  // s = M^T y (cols outputs)
};

Plans make_plans(const SpectralNormParams& p) {
  const int64_t work = block_work(p.numel());
  Plans pl;
  if (p.inner == 1) {
    pl.mv = plan_keep(1, p.outer, p.rows, work);
    pl.mtv = plan_reduce(1, p.outer, p.rows, work);
  } else {
    pl.mv = plan_reduce(p.outer, p.rows, p.inner, work);
    pl.mtv = plan_keep(p.outer, p.rows, p.inner, work);
  }
  return pl;
}

// Byte offsets of the power-iteration workspace regions.
struct PowerLayout {
  size_t t = 0, s = 0, part = 0, tile_part = 0, scalars = 0, counters = 0;
  size_t counter_bytes = 0, total = 0;
};

inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

PowerLayout power_layout(const SpectralNormParams& p, const Plans& pl, size_t acc_bytes) {
  PowerLayout l;
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off += align_up(bytes);
    return at;
  };
  const int64_t partials = std::max(pl.mv.partials(), pl.mtv.partials());
  const int64_t tiles = std::max(pl.mv.n_tiles, pl.mtv.n_tiles);
  l.t = take(static_cast<size_t>(p.rows) * acc_bytes);
  l.s = take(static_cast<size_t>(p.cols()) * acc_bytes);
  l.part = take(static_cast<size_t>(partials) * acc_bytes);
  l.tile_part = take(static_cast<size_t>(tiles) * acc_bytes);
  l.scalars = take(4 * acc_bytes);
  // [mv tile tickets][mv global ticket][mtv tile tickets][mtv global ticket]
  l.counter_bytes = static_cast<size_t>(pl.mv.n_tiles + 1 + pl.mtv.n_tiles + 1) * sizeof(unsigned);
  l.counters = take(l.counter_bytes);
  l.total = off;
  return l;
}

inline size_t acc_bytes(DType dtype) { return dtype == DType::kFloat64 ? sizeof(double) : sizeof(float); }

// ---------------------------------------------------------------------------------------------
// Device helpers.

__device__ __forceinline__ float acc_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double acc_sqrt(double x) { return sqrt(x); }

// u = t * scale_t, v = s * scale_s rounded to T. t or s may have been written earlier in the same
// launch by other blocks, hence the L2 loads.
template <typename T, typename A, typename Index>
__device__ __forceinline__ void write_state(const A* t, A scale_t, const A* s, A scale_s, T* u, T* v,
                                            Index H, Index C, Index start, Index stride) {
  for (Index i = start; i < H; i += stride) u[i] = static_cast<T>(__ldcg(t + i) * scale_t);
  for (Index i = start; i < C; i += stride) v[i] = static_cast<T>(__ldcg(s + i) * scale_s);
}

enum Mode : int {
  kMid = 0,       // store the scale of this pass's output
  kFinal = 1,     // also sigma = ||out||^2 * scale (= <out, normalize(out)>), and u, v if fold
  kSigmaDot = 2,  // sigma = <out, z> (no power step: sigma = u^T M v)
};

template <typename T, typename Y, typename Index>
struct MatvecArgs {
  using A = acc_t<T>;
  const T* w;
  const Y* y;          // input vector (T: the stored u or v; A: a work vector)
  const A* y_scale;    // the input is y * (*y_scale); nullptr: y as it is
  A* out;              // the pass's raw result, n_out elements
  const T* z;          // nullptr: reduce sum(out^2); else sum(out * z) (kSigmaDot)
  Index va, vn, vk, n_out, P, n_tiles, ck;
  Index ca, pk;        // reduce
  Index jt_per_a;      // keep
  int lanes, rows_per_block;  // reduce
  int tj, r;                  // keep
  A* part;             // P * n_out partial results, split-major
  A* tile_part;        // n_tiles sums of squares
  unsigned* tile_cnt;  // n_tiles tickets
  unsigned* global_cnt;
  int mode;
  A eps;
  A* scale_out;        // 1 / max(||out||, eps)
  A* sigma;
  // kFinal with fold: the last block writes u and v.
  int fold;
  int self_is_t;       // out is t (an M v pass) or s (an M^T u pass)
  const A* other_vec;
  const A* other_scale;
  T* u_out;
  T* v_out;
  Index H, C;
};

// Steps 1-3 of the header comment for one block, given its per-output values s_val[0, n_valid)
// for the outputs out_base + [0, n_valid) of tile `tile`, split `p`.
template <typename T, typename Y, typename Index>
__device__ __forceinline__ void finish_pass(const MatvecArgs<T, Y, Index>& args,
                                            const acc_t<T>* s_val, acc_t<T>* s_red, int n_valid,
                                            Index out_base, Index tile, Index p) {
  using A = acc_t<T>;
  __shared__ int s_last;
  __shared__ A s_scale;
  const int tid = static_cast<int>(threadIdx.x);

  // Step 2: the tile's outputs, adding the splits in split order.
  A val = A(0);
  if (args.P > 1) {
    if (tid < n_valid) __stcg(args.part + p * args.n_out + out_base + Index(tid), s_val[tid]);
    __threadfence();  // partials visible device-wide before the ticket
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(args.tile_cnt + tile, 1u) == static_cast<unsigned>(args.P - 1);
    __syncthreads();
    if (!s_last) return;  // uniform over the block
    __threadfence();
    if (tid < n_valid) {
      for (Index q = 0; q < args.P; ++q) val += __ldcg(args.part + q * args.n_out + out_base + Index(tid));
    }
    if (tid == 0) atomicExch(args.tile_cnt + tile, 0u);  // for the next launch
  } else if (tid < n_valid) {
    val = s_val[tid];
  }
  A contrib = A(0);
  if (tid < n_valid) {
    __stcg(args.out + out_base + Index(tid), val);
    contrib = val * (args.z != nullptr ? ld(args.z + out_base + Index(tid)) : val);
  }
  __threadfence();  // outputs visible device-wide before the global ticket
  const A tile_sum = block_sum(contrib, s_red);

  // Step 3: the last tile adds the tiles' sums in tile order.
  A total = tile_sum;
  if (args.n_tiles > 1) {
    if (tid == 0) {
      __stcg(args.tile_part + tile, tile_sum);
      __threadfence();
      s_last = atomicAdd(args.global_cnt, 1u) == static_cast<unsigned>(args.n_tiles - 1);
    }
    __syncthreads();
    if (!s_last) return;  // uniform over the block
    __threadfence();
    A sum = A(0);
    for (Index q = Index(tid); q < args.n_tiles; q += Index(kThreads)) sum += __ldcg(args.tile_part + q);
    total = block_sum(sum, s_red);
    if (tid == 0) atomicExch(args.global_cnt, 0u);  // for the next launch
  }

  if (args.mode == kSigmaDot) {
    if (tid == 0) *args.sigma = total;
    return;
  }
  if (tid == 0) {
    const A norm = acc_sqrt(total);
    const A scale = A(1) / (norm < args.eps ? args.eps : norm);  // std::max(norm, eps) on the CPU
    *args.scale_out = scale;
    if (args.mode == kFinal) *args.sigma = total * scale;
    s_scale = scale;
  }
  if (!args.fold) return;
  __syncthreads();
  const A self_scale = s_scale;
  const A other_scale = *args.other_scale;  // written by an earlier launch
  if (args.self_is_t) {
    write_state(args.out, self_scale, args.other_vec, other_scale, args.u_out, args.v_out, args.H,
                args.C, Index(tid), Index(kThreads));
  } else {
    write_state(args.other_vec, other_scale, args.out, self_scale, args.u_out, args.v_out, args.H,
                args.C, Index(tid), Index(kThreads));
  }
}

// "reduce" view: out[n] = sum_a sum_k X[(a*vn + n)*vk + k] * y[a*vk + k] * scale.
// Block = (tile of rows_per_block outputs, split p). Output `row` of the tile is served by
// kThreads / rows_per_block threads: `sub` groups of `lanes` lanes, interleaved along k.
template <typename T, typename Y, typename Index>
__global__ void __launch_bounds__(kThreads) matvec_reduce_kernel(const MatvecArgs<T, Y, Index> args) {
  using A = acc_t<T>;
  __shared__ A s_red[kThreads];
  __shared__ A s_val[kThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const Index tile = Index(blockIdx.x) / args.P, p = Index(blockIdx.x) % args.P;
  const int L = args.lanes, RB = args.rows_per_block;
  const int g = tid / L, lane = tid % L;
  const int row = g % RB, sub = g / RB;
  const int subs = kThreads / L / RB;
  const Index n = tile * Index(RB) + Index(row);
  const A scale = args.y_scale != nullptr ? *args.y_scale : A(1);
  A acc = A(0);
  if (n < args.vn) {
    const Index pa = p / args.pk, pk = p % args.pk;
    const Index a0 = pa * args.ca, a1 = args.va - a0 > args.ca ? a0 + args.ca : args.va;
    const Index k0 = pk * args.ck, k1 = args.vk - k0 > args.ck ? k0 + args.ck : args.vk;
    const Index step = Index(kThreads / RB);
    for (Index a = a0; a < a1; ++a) {
      const T* x = args.w + (a * args.vn + n) * args.vk;
      const Y* y = args.y + a * args.vk;
#pragma unroll 4
      for (Index k = k0 + Index(sub * L + lane); k < k1; k += step) {
        acc += ld(x + k) * (static_cast<A>(__ldg(y + k)) * scale);
      }
    }
  }
  // Lanes of a group (all threads are here: no early exit above), then the groups of a row.
  for (int off = L / 2; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off, L);
  if (lane == 0) s_red[g] = acc;
  __syncthreads();
  if (tid < RB) {
    A v = A(0);
    for (int q = 0; q < subs; ++q) v += s_red[q * RB + tid];
    s_val[tid] = v;
  }
  __syncthreads();
  const Index base = tile * Index(RB);
  const int n_valid = static_cast<int>(args.vn - base < Index(RB) ? args.vn - base : Index(RB));
  finish_pass(args, s_val, s_red, n_valid, base, tile, p);
}

// "keep" view: out[a*vn + j] = sum_k X[(a*vk + k)*vn + j] * y[k] * scale.
// Block = (a, column tile jt of tj outputs, split p); thread (r, jj) takes rows k = k0 + r,
// k0 + r + R, ... of column jt*tj + jj, so the block reads R consecutive rows at a time.
template <typename T, typename Y, typename Index>
__global__ void __launch_bounds__(kThreads) matvec_keep_kernel(const MatvecArgs<T, Y, Index> args) {
  using A = acc_t<T>;
  __shared__ A s_red[kThreads];
  __shared__ A s_val[kThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const Index tile = Index(blockIdx.x) / args.P, p = Index(blockIdx.x) % args.P;
  const Index a = tile / args.jt_per_a, jt = tile % args.jt_per_a;
  const int TJ = args.tj, R = args.r;
  const int jj = tid % TJ, r = tid / TJ;
  const Index j = jt * Index(TJ) + Index(jj);
  const A scale = args.y_scale != nullptr ? *args.y_scale : A(1);
  A acc = A(0);
  if (r < R && j < args.vn) {
    const Index k0 = p * args.ck, k1 = args.vk - k0 > args.ck ? k0 + args.ck : args.vk;
    const T* x = args.w + a * args.vk * args.vn + j;
#pragma unroll 4
    for (Index k = k0 + Index(r); k < k1; k += Index(R)) {
      acc += ld(x + k * args.vn) * (static_cast<A>(__ldg(args.y + k)) * scale);
    }
  }
  s_red[tid] = acc;
  __syncthreads();
  if (tid < TJ) {
    A v = A(0);
    for (int q = 0; q < R; ++q) v += s_red[q * TJ + tid];
    s_val[tid] = v;
  }
  __syncthreads();
  const Index col0 = jt * Index(TJ);
  const int n_valid = static_cast<int>(args.vn - col0 < Index(TJ) ? args.vn - col0 : Index(TJ));
  finish_pass(args, s_val, s_red, n_valid, a * args.vn + col0, tile, p);
}

// u and v from the work vectors, when they are too long for one block (kFinal without fold).
template <typename T, typename A, typename Index>
__global__ void __launch_bounds__(kThreads)
write_state_kernel(const A* t, const A* scale_t, const A* s, const A* scale_s, T* u, T* v, Index H,
                   Index C) {
  const Index stride = Index(gridDim.x) * Index(kThreads);
  const Index start = Index(blockIdx.x) * Index(kThreads) + Index(threadIdx.x);
  write_state(t, *scale_t, s, *scale_s, u, v, H, C, start, stride);
}

// out = W * (1 / sigma).
template <typename T, typename Index>
__global__ void __launch_bounds__(kThreads)
scale_kernel(const T* __restrict__ w, const acc_t<T>* __restrict__ sigma, T* __restrict__ out,
             Index numel) {
  using A = acc_t<T>;
  const A inv = A(1) / *sigma;
  const Index tile = Index(kThreads) * kUnroll;
  for (Index base = Index(blockIdx.x) * tile; base < numel; base += Index(gridDim.x) * tile) {
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const Index i = base + Index(k * kThreads) + Index(threadIdx.x);
      if (i < numel) out[i] = static_cast<T>(ld(w + i) * inv);
    }
  }
}

// Backward pass 1: part[b] = sum of g * w over the tiles b, b + gridDim.x, ... (gridDim.x is
// fixed by the shape), each block's threads in a fixed order.
template <typename T, typename Index>
__global__ void __launch_bounds__(kThreads)
dot_partials_kernel(const T* __restrict__ g, const T* __restrict__ w, Index numel,
                    acc_t<T>* __restrict__ part) {
  using A = acc_t<T>;
  __shared__ A s_red[kThreads];
  const Index tile = Index(kThreads) * kUnroll;
  A acc = A(0);
  for (Index base = Index(blockIdx.x) * tile; base < numel; base += Index(gridDim.x) * tile) {
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const Index i = base + Index(k * kThreads) + Index(threadIdx.x);
      if (i < numel) acc += ld(g + i) * ld(w + i);
    }
  }
  const A total = block_sum(acc, s_red);
  if (threadIdx.x == 0) part[blockIdx.x] = total;
}

enum IndexMode : int { kGeneral = 0, kInnerOne = 1, kOuterOne = 2 };

// Backward pass 2: every block adds the n_part partials in the same order (so all agree on
// k = <G, W> / sigma), then dW = (G - k u v^T) / sigma with u v^T at (a, h, b) = u[h] v[a*B + b].
template <typename T, typename Index>
__global__ void __launch_bounds__(kThreads)
normalize_backward_kernel(const T* __restrict__ g, const T* __restrict__ u, const T* __restrict__ v,
                          const acc_t<T>* __restrict__ sigma, const acc_t<T>* __restrict__ part,
                          int n_part, Index H, Index B, Index numel, int mode, T* __restrict__ out) {
  using A = acc_t<T>;
  __shared__ A s_red[kThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const A dot = block_sum(tid < n_part ? part[tid] : A(0), s_red);
  const A inv = A(1) / *sigma;
  const A k = dot * inv;
  const Index tile = Index(kThreads) * kUnroll;
  for (Index base = Index(blockIdx.x) * tile; base < numel; base += Index(gridDim.x) * tile) {
#pragma unroll
    for (int q = 0; q < kUnroll; ++q) {
      const Index i = base + Index(q * kThreads) + Index(tid);
      if (i >= numel) continue;
      Index h, c;
      if (mode == kInnerOne) {  // [outer][rows]: c = a
        c = i / H;
        h = i - c * H;
      } else if (mode == kOuterOne) {  // [rows][inner]: c = b
        h = i / B;
        c = i - h * B;
      } else {
        const Index line = i / B;  // a * H + h
        const Index b = i - line * B;
        const Index a = line / H;
        h = line - a * H;
        c = a * B + b;
      }
      const A gv = ld(g + i);
      // The CPU's association: the factor that is constant along a contiguous line first.
      const A val = mode == kInnerOne ? (gv - (k * ld(v + c)) * ld(u + h)) * inv
                                      : (gv - (k * ld(u + h)) * ld(v + c)) * inv;
      out[i] = static_cast<T>(val);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

template <typename A>
struct PowerWork {
  A* t;
  A* s;
  A* part;
  A* tile_part;
  A* scalars;  // [0] scale of t, [1] scale of s
  unsigned* cnt_mv;
  unsigned* cnt_mtv;
};

template <typename T, typename Index, typename Y>
MatvecArgs<T, Y, Index> make_args(const MatvecPlan& m, const T* w, const Y* y,
                                  const acc_t<T>* y_scale, acc_t<T>* out, unsigned* cnt,
                                  const PowerWork<acc_t<T>>& ws, acc_t<T>* scale_out, acc_t<T> eps) {
  MatvecArgs<T, Y, Index> a{};
  a.w = w;
  a.y = y;
  a.y_scale = y_scale;
  a.out = out;
  a.z = nullptr;
  a.va = Index(m.va);
  a.vn = Index(m.vn);
  a.vk = Index(m.vk);
  a.n_out = Index(m.n_out);
  a.P = Index(m.P);
  a.n_tiles = Index(m.n_tiles);
  a.ck = Index(m.ck);
  a.ca = Index(m.ca);
  a.pk = Index(m.pk);
  a.jt_per_a = Index(m.jt_per_a);
  a.lanes = m.lanes;
  a.rows_per_block = m.rows_per_block;
  a.tj = m.tj;
  a.r = m.r;
  a.part = ws.part;
  a.tile_part = ws.tile_part;
  a.tile_cnt = cnt;
  a.global_cnt = cnt + m.n_tiles;
  a.mode = kMid;
  a.eps = eps;
  a.scale_out = scale_out;
  a.sigma = nullptr;
  a.fold = 0;
  a.self_is_t = 0;
  a.other_vec = nullptr;
  a.other_scale = nullptr;
  a.u_out = nullptr;
  a.v_out = nullptr;
  a.H = Index(0);
  a.C = Index(0);
  return a;
}

template <typename T, typename Y, typename Index>
int launch_matvec(const MatvecPlan& m, const MatvecArgs<T, Y, Index>& args, cudaStream_t stream) {
  const int64_t blocks = m.blocks();
  if (blocks > std::numeric_limits<int32_t>::max()) return static_cast<int>(cudaErrorInvalidConfiguration);
  const dim3 grid(static_cast<unsigned>(blocks));
  if (m.keep) {
    matvec_keep_kernel<T, Y, Index><<<grid, kThreads, 0, stream>>>(args);
  } else {
    matvec_reduce_kernel<T, Y, Index><<<grid, kThreads, 0, stream>>>(args);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename T, typename Index>
int run_power_iteration(const SpectralNormParams& p, const T* w, T* u, T* v, acc_t<T>* sigma,
                        void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  const Plans pl = make_plans(p);
  const PowerLayout lay = power_layout(p, pl, sizeof(A));
  char* base = static_cast<char*>(workspace);
  PowerWork<A> ws;
  ws.t = reinterpret_cast<A*>(base + lay.t);
  ws.s = reinterpret_cast<A*>(base + lay.s);
  ws.part = reinterpret_cast<A*>(base + lay.part);
  ws.tile_part = reinterpret_cast<A*>(base + lay.tile_part);
  ws.scalars = reinterpret_cast<A*>(base + lay.scalars);
  ws.cnt_mv = reinterpret_cast<unsigned*>(base + lay.counters);
  ws.cnt_mtv = ws.cnt_mv + (pl.mv.n_tiles + 1);
  int err = static_cast<int>(cudaMemsetAsync(base + lay.counters, 0, lay.counter_bytes, stream));
  if (err != 0) return err;

  const A eps = static_cast<A>(p.eps);
  const Index H = Index(p.rows), C = Index(p.cols());
  A* const scale_t = ws.scalars;
  A* const scale_s = ws.scalars + 1;

  if (p.n_power_iterations == 0) {  // sigma = <u, M v>
    auto a = make_args<T, Index>(pl.mv, w, static_cast<const T*>(v), nullptr, ws.t, ws.cnt_mv, ws,
                                 scale_t, eps);
    a.z = u;
    a.mode = kSigmaDot;
    a.sigma = sigma;
    return launch_matvec(pl.mv, a, stream);
  }

  const bool fold = p.rows + p.cols() <= kFoldLimit;
  auto finalize = [&](auto& a, bool self_is_t) {
    a.mode = kFinal;
    a.sigma = sigma;
    if (fold) {
      a.fold = 1;
      a.self_is_t = self_is_t ? 1 : 0;
      a.other_vec = self_is_t ? ws.s : ws.t;
      a.other_scale = self_is_t ? scale_s : scale_t;
      a.u_out = u;
      a.v_out = v;
      a.H = H;
      a.C = C;
    }
  };
  // t = M y, scale_t = 1 / max(||t||, eps)
  auto mv_pass = [&](const auto* y, const A* y_scale, bool final_pass) {
    auto a = make_args<T, Index>(pl.mv, w, y, y_scale, ws.t, ws.cnt_mv, ws, scale_t, eps);
    if (final_pass) finalize(a, true);
    return launch_matvec(pl.mv, a, stream);
  };
  // s = M^T y, scale_s = 1 / max(||s||, eps)
  auto mtv_pass = [&](const auto* y, const A* y_scale, bool final_pass) {
    auto a = make_args<T, Index>(pl.mtv, w, y, y_scale, ws.s, ws.cnt_mtv, ws, scale_s, eps);
    if (final_pass) finalize(a, false);
    return launch_matvec(pl.mtv, a, stream);
  };

  const T* u_in = u;
  const T* v_in = v;
  for (int64_t it = 0; it < p.n_power_iterations; ++it) {
    const bool first = it == 0, last = it + 1 == p.n_power_iterations;
    if (p.order == PowerOrder::kUFirst) {  // u = normalize(M v), v = normalize(M^T u)
      err = first ? mv_pass(v_in, nullptr, false) : mv_pass(static_cast<const A*>(ws.s), scale_s, false);
      if (err != 0) return err;
      err = mtv_pass(static_cast<const A*>(ws.t), scale_t, last);
    } else {  // v = normalize(M^T u), u = normalize(M v)
      err = first ? mtv_pass(u_in, nullptr, false) : mtv_pass(static_cast<const A*>(ws.t), scale_t, false);
      if (err != 0) return err;
      err = mv_pass(static_cast<const A*>(ws.s), scale_s, last);
    }
    if (err != 0) return err;
  }
  if (!fold) {
    const int grid = grid_size(std::max(p.rows, p.cols()), 8);
    write_state_kernel<T, A, Index><<<grid, kThreads, 0, stream>>>(ws.t, scale_t, ws.s, scale_s, u,
                                                                    v, H, C);
    err = static_cast<int>(cudaGetLastError());
  }
  return err;
}

inline bool fits_32bit(int64_t n) { return n <= std::numeric_limits<int32_t>::max(); }

inline int64_t dot_partials(int64_t numel) {
  return std::min(kMaxDotPartials, std::max<int64_t>(1, ceil_div(numel, int64_t(kThreads) * kUnroll * 4)));
}

template <typename T, typename Index>
int run_normalize_backward(const SpectralNormParams& p, const T* g, const T* w, const T* u,
                           const T* v, const acc_t<T>* sigma, T* out, void* workspace,
                           cudaStream_t stream) {
  using A = acc_t<T>;
  const int64_t numel = p.numel();
  const int n_part = static_cast<int>(dot_partials(numel));
  A* part = static_cast<A*>(workspace);
  dot_partials_kernel<T, Index><<<n_part, kThreads, 0, stream>>>(g, w, Index(numel), part);
  int err = static_cast<int>(cudaGetLastError());
  if (err != 0) return err;
  const int mode = p.inner == 1 ? kInnerOne : (p.outer == 1 ? kOuterOne : kGeneral);
  // Few blocks per SM: each one first adds the n_part partials.
  const int grid = grid_size(numel, 8);
  normalize_backward_kernel<T, Index><<<grid, kThreads, 0, stream>>>(
      g, u, v, sigma, part, n_part, Index(p.rows), Index(p.inner), Index(numel), mode, out);
  return static_cast<int>(cudaGetLastError());
}

inline bool misaligned(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 != 0; }

}  // namespace

size_t power_iteration_workspace_bytes(const SpectralNormParams& p, DType dtype) {
  if (p.numel() <= 0) return 0;
  return power_layout(p, make_plans(p), acc_bytes(dtype)).total;
}

int power_iteration(const SpectralNormParams& p, DType dtype, const void* w, void* u, void* v,
                    void* sigma, void* workspace, cudaStream_t stream) {
  if (p.numel() <= 0 || p.n_power_iterations < 0 || workspace == nullptr || misaligned(workspace)) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    auto run = [&](auto index_tag) {
      using Index = decltype(index_tag);
      return run_power_iteration<T, Index>(p, static_cast<const T*>(w), static_cast<T*>(u),
                                           static_cast<T*>(v), static_cast<A*>(sigma), workspace,
                                           stream);
    };
    return fits_32bit(p.numel()) ? run(uint32_t{}) : run(int64_t{});
  });
}

int spectral_normalize(const SpectralNormParams& p, DType dtype, const void* w, const void* sigma,
                       void* out, cudaStream_t stream) {
  const int64_t numel = p.numel();
  if (numel <= 0) return 0;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int grid = grid_size(numel);
    if (fits_32bit(numel)) {
      scale_kernel<T, uint32_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(w), static_cast<const A*>(sigma), static_cast<T*>(out), uint32_t(numel));
    } else {
      scale_kernel<T, int64_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(w), static_cast<const A*>(sigma), static_cast<T*>(out), numel);
    }
    return static_cast<int>(cudaGetLastError());
  });
}

size_t normalize_backward_workspace_bytes(const SpectralNormParams& p, DType dtype) {
  if (p.numel() <= 0) return 0;
  return align_up(static_cast<size_t>(dot_partials(p.numel())) * acc_bytes(dtype));
}

int spectral_normalize_backward(const SpectralNormParams& p, DType dtype, const void* g,
                                const void* w, const void* u, const void* v, const void* sigma,
                                void* out, void* workspace, cudaStream_t stream) {
  if (p.numel() <= 0) return 0;
  if (workspace == nullptr || misaligned(workspace)) return static_cast<int>(cudaErrorInvalidValue);
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    auto run = [&](auto index_tag) {
      using Index = decltype(index_tag);
      return run_normalize_backward<T, Index>(
          p, static_cast<const T*>(g), static_cast<const T*>(w), static_cast<const T*>(u),
          static_cast<const T*>(v), static_cast<const A*>(sigma), static_cast<T*>(out), workspace,
          stream);
    };
    return fits_32bit(p.numel()) ? run(uint32_t{}) : run(int64_t{});
  });
}

}  // namespace cuda
}  // namespace ganops
