// CUDA kernels and host launchers for the gradient penalties (ganops/gradient_penalty.h): the
// per-sample mix of two tensors, the per-sample norm with the penalty and its reduction, and the
// penalty's backward. Same math (PenaltyMath) and accumulation type as the CPU core; the sums run
// in an order fixed by the shape alone, so results repeat bit for bit.
//
// Launches: the mix and the backward are one each (grid = chunks of a sample x samples, so a
// block reads its sample's coefficient once). The forward is two: block partial sums of squares
// per (sample, chunk), then one block of kFinishThreads that adds each sample's partials, applies
// the penalty and reduces over the batch. In that block a group of `lanes` threads (a power of
// two up to a warp, fixed by the chunk count) takes a sample at a time: lane l adds chunks
// l, l + lanes, ... in order, a shuffle tree adds the lanes, and lane 0 writes the norm; with one
// chunk a thread takes a sample. Each thread then adds its samples' penalties in sample order and
// block_sum's fixed tree adds the threads, so the order depends on the shape alone. A single block
// keeps the batch reduction in this launch, with no ticket to reset between calls; it holds any
// batch size (samples loop over the groups). Nothing is read back to the host.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "block_reduce.cuh"  // ld, block_sum
#include "elementwise.cuh"  // kThreads, kUnroll, dispatch_dtype
#include "ganops/gradient_penalty.h"

namespace ganops {
namespace cuda {
namespace {

constexpr int64_t kChunk = 8192;       // elements of one sample per block
constexpr unsigned kMaxGridY = 65535;  // samples beyond this loop inside a block
// The finish is one block, so its threads are all the parallelism it has: the largest block, for
// many loads in flight on a large batch (a thread's loads per sample wait on L2, not on ALUs).
constexpr int kFinishThreads = 1024;

inline int64_t chunks_per_sample(const GradientPenaltyParams& p) {
  return std::max<int64_t>(1, (p.per_sample + kChunk - 1) / kChunk);
}

// Lanes adding one sample's partials in the finish: enough that each adds few, at most a warp so
// the shuffle tree combines them.
inline int finish_lanes(int64_t chunks) {
  int lanes = 1;
  while (lanes < 32 && lanes < chunks) lanes *= 2;
  return lanes;
}

inline dim3 sample_grid(const GradientPenaltyParams& p) {
  return dim3(static_cast<unsigned>(chunks_per_sample(p)),
              static_cast<unsigned>(std::min<int64_t>(p.batch, kMaxGridY)));
}

template <MixMode kMode, typename T>
__global__ void __launch_bounds__(kThreads)
mix_kernel(GradientPenaltyParams p, const T* __restrict__ a, const T* __restrict__ b,
           const acc_t<T>* __restrict__ c, T* __restrict__ x) {
  using A = acc_t<T>;
  const int64_t D = p.per_sample;
  const int64_t i0 = int64_t(blockIdx.x) * kChunk, i1 = min(D, i0 + kChunk);
  for (int64_t s = blockIdx.y; s < p.batch; s += gridDim.y) {
    const A cs = __ldg(c + s);
    const int64_t base = s * D;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += kThreads) {
      x[base + i] = static_cast<T>(mix<kMode, A>(ld(a + base + i), ld(b + base + i), cs));
    }
  }
}

// partial[s * chunks + chunk] = sum of g^2 over that chunk of sample s.
template <typename T>
__global__ void __launch_bounds__(kThreads)
sum_squares_kernel(GradientPenaltyParams p, const T* __restrict__ g, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  __shared__ A sm[kThreads];
  const int64_t D = p.per_sample;
  const int64_t i0 = int64_t(blockIdx.x) * kChunk, i1 = min(D, i0 + kChunk);
  for (int64_t s = blockIdx.y; s < p.batch; s += gridDim.y) {
    A acc = A(0);
    for (int64_t i = i0 + threadIdx.x; i < i1; i += kThreads) {
      const A v = ld(g + s * D + i);
      acc += v * v;
    }
    const A total = block_sum(acc, sm);
    if (threadIdx.x == 0) partial[s * gridDim.x + blockIdx.x] = total;
  }
}

// One block: norms, penalties and their reduction (the structure is in the comment at the top).
// kOneChunk: lanes == 1 and chunks == 1, so a sample is one load and a thread keeps several in
// flight; otherwise every thread runs the same rounds, as the shuffles need the whole warp.
template <typename A, bool kOneChunk>
__global__ void __launch_bounds__(kFinishThreads, 1)
penalty_finish_kernel(GradientPenaltyParams p, PenaltyMath<A> math, int64_t chunks, int lanes,
                      const A* __restrict__ partial, A* __restrict__ norms, A* __restrict__ penalty) {
  __shared__ A sm[kFinishThreads];
  const int tid = static_cast<int>(threadIdx.x);
  A total = A(0);
  const auto finish = [&](int64_t s, A sum_sq) {
    norms[s] = math.norm(sum_sq);
    const A value = math.value(sum_sq);
    if (p.reduction == Reduction::kNone) {
      penalty[s] = value;
    } else {
      total += value;
    }
  };
  if (kOneChunk) {
    // All kUnroll loads first: the finish's stores and branches would otherwise hold them back.
    constexpr int64_t kStep = int64_t(kFinishThreads) * kUnroll;
    for (int64_t s0 = tid; s0 < p.batch; s0 += kStep) {
      A sum_sq[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const int64_t s = s0 + int64_t(k) * kFinishThreads;
        sum_sq[k] = s < p.batch ? partial[s] : A(0);
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const int64_t s = s0 + int64_t(k) * kFinishThreads;
        if (s < p.batch) finish(s, sum_sq[k]);
      }
    }
  } else {
    const int lane = tid & (lanes - 1);
    const int64_t groups = kFinishThreads / lanes;
    for (int64_t s0 = 0; s0 < p.batch; s0 += groups) {
      const int64_t s = s0 + tid / lanes;
      A sum_sq = A(0);
      if (s < p.batch) {
        const A* row = partial + s * chunks;
#pragma unroll 4
        for (int64_t c = lane; c < chunks; c += lanes) sum_sq += row[c];
      }
      for (int off = lanes / 2; off > 0; off >>= 1) {
        sum_sq += __shfl_down_sync(0xffffffffu, sum_sq, off, lanes);
      }
      if (lane == 0 && s < p.batch) finish(s, sum_sq);
    }
  }
  if (p.reduction == Reduction::kNone) return;
  total = block_sum<A, kFinishThreads>(total, sm);
  if (tid == 0) penalty[0] = p.reduction == Reduction::kMean ? total / A(p.batch) : total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
penalty_backward_kernel(GradientPenaltyParams p, PenaltyMath<acc_t<T>> math,
                        const acc_t<T>* __restrict__ gout, const T* __restrict__ g,
                        const acc_t<T>* __restrict__ norms, T* __restrict__ dg) {
  using A = acc_t<T>;
  const int64_t D = p.per_sample;
  const int64_t i0 = int64_t(blockIdx.x) * kChunk, i1 = min(D, i0 + kChunk);
  for (int64_t s = blockIdx.y; s < p.batch; s += gridDim.y) {
    const A cs = sample_gout(p, gout, s) * math.grad_coefficient(__ldg(norms + s));
    const int64_t base = s * D;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += kThreads) {
      dg[base + i] = static_cast<T>(cs * ld(g + base + i));
    }
  }
}

}  // namespace

int mix_samples(const GradientPenaltyParams& p, MixMode mode, DType dtype, const void* a,
                const void* b, const void* c, void* x, cudaStream_t stream) {
  if (p.numel() == 0) return 0;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* ta = static_cast<const T*>(a);
    const auto* tb = static_cast<const T*>(b);
    const auto* tc = static_cast<const acc_t<T>*>(c);
    auto* tx = static_cast<T*>(x);
    if (mode == MixMode::kLerp) {
      mix_kernel<MixMode::kLerp, T><<<sample_grid(p), kThreads, 0, stream>>>(p, ta, tb, tc, tx);
    } else {
      mix_kernel<MixMode::kAxpy, T><<<sample_grid(p), kThreads, 0, stream>>>(p, ta, tb, tc, tx);
    }
    return static_cast<int>(cudaGetLastError());
  });
}

size_t gradient_penalty_workspace_bytes(const GradientPenaltyParams& p, DType dtype) {
  const size_t acc = dtype == DType::kFloat64 ? sizeof(double) : sizeof(float);
  return static_cast<size_t>(p.batch * chunks_per_sample(p)) * acc;
}

int gradient_penalty(const GradientPenaltyParams& p, DType dtype, const void* g, void* norms,
                     void* penalty, void* workspace, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    auto* partial = static_cast<A*>(workspace);
    sum_squares_kernel<T><<<sample_grid(p), kThreads, 0, stream>>>(p, static_cast<const T*>(g),
                                                                   partial);
    const int64_t chunks = chunks_per_sample(p);
    if (chunks == 1) {
      penalty_finish_kernel<A, true><<<1, kFinishThreads, 0, stream>>>(
          p, PenaltyMath<A>(p), chunks, 1, partial, static_cast<A*>(norms),
          static_cast<A*>(penalty));
    } else {
      penalty_finish_kernel<A, false><<<1, kFinishThreads, 0, stream>>>(
          p, PenaltyMath<A>(p), chunks, finish_lanes(chunks), partial, static_cast<A*>(norms),
          static_cast<A*>(penalty));
    }
    return static_cast<int>(cudaGetLastError());
  });
}

int gradient_penalty_backward(const GradientPenaltyParams& p, DType dtype, const void* gout,
                              const void* g, const void* norms, void* dg, cudaStream_t stream) {
  if (p.numel() == 0) return 0;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    penalty_backward_kernel<T><<<sample_grid(p), kThreads, 0, stream>>>(
        p, PenaltyMath<A>(p), static_cast<const A*>(gout), static_cast<const T*>(g),
        static_cast<const A*>(norms), static_cast<T*>(dg));
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace cuda
}  // namespace ganops
