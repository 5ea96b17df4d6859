// The emulator's own test: CUDA semantics it must reproduce (warp shuffles and their width rules,
// barriers, grid-stride indexing, dim3 blocks) and the mistakes it must catch. Compiled like the
// kernels, after launch_rewrite.py.
//
//   emulator_selftest              the semantics; prints "emulator_selftest: PASS N cases"
//   emulator_selftest <scenario>   one broken kernel; the emulator must stop it (exit 3) or the
//                                  check after it must see the damage (exit 1)
#include <cstdio>
#include <cstring>
#include <string>

#include "driver.h"

namespace {

constexpr int kThreads = 256;

// ---- semantics ---------------------------------------------------------------------------------

template <int kOp>
__global__ void __launch_bounds__(kThreads) shuffle_kernel(const float* in, float* out, int arg, int width) {
  const float v = in[blockIdx.x * blockDim.x + threadIdx.x];
  float r = 0;
  if (kOp == 0) r = __shfl_sync(0xffffffffu, v, arg, width);
  if (kOp == 1) r = __shfl_up_sync(0xffffffffu, v, arg, width);
  if (kOp == 2) r = __shfl_down_sync(0xffffffffu, v, arg, width);
  if (kOp == 3) r = __shfl_xor_sync(0xffffffffu, v, arg, width);
  out[blockIdx.x * blockDim.x + threadIdx.x] = r;
}

// CUDA's rules, computed on the host: the source lane of lane l, or l itself when out of range.
int shuffle_source(int op, int l, int arg, int width) {
  const int seg = l / width * width;
  switch (op) {
    case 0: return seg + arg % width;
    case 1: return l - arg >= seg ? l - arg : l;
    case 2: return l + arg < seg + width ? l + arg : l;
    default: return (l ^ arg) < seg + width ? (l ^ arg) : l;
  }
}

__global__ void __launch_bounds__(kThreads) block_sum_kernel(const int* in, int* out, int n) {
  __shared__ int sm[kThreads];
  int acc = 0;
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) acc += in[i];
  sm[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sm[threadIdx.x] += sm[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = sm[0];
}

__global__ void index_kernel(int* out) {
  const int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  out[b * blockDim.x * blockDim.y * blockDim.z + t] = b * 1000 + t;
}

int semantics() {
  drv::Report report("emulator_selftest");
  // Shuffles: every op, width and a few offsets, two blocks of 64 threads.
  for (int op = 0; op < 4; ++op) {
    for (int width : {32, 16, 8, 2, 1}) {
      for (int arg : {0, 1, 3, 5, 16, 31}) {
        std::vector<float> in(128), want(128);
        for (int i = 0; i < 128; ++i) in[static_cast<size_t>(i)] = float(i);
        for (int i = 0; i < 128; ++i) want[static_cast<size_t>(i)] = float(i / 32 * 32 + shuffle_source(op, i % 32, arg, width));
        drv::Array<float> din("in", in), dout("out", 128);
        switch (op) {
          case 0: shuffle_kernel<0><<<2, 64>>>(din.p(), dout.p(), arg, width); break;
          case 1: shuffle_kernel<1><<<2, 64>>>(din.p(), dout.p(), arg, width); break;
          case 2: shuffle_kernel<2><<<2, 64>>>(din.p(), dout.p(), arg, width); break;
          default: shuffle_kernel<3><<<2, 64>>>(din.p(), dout.p(), arg, width); break;
        }
        if (dout.vec() != want) {
          report.fail("shuffle op %d width %d arg %d", op, width, arg);
        } else {
          report.pass();
        }
      }
    }
  }
  // A block reduction with a grid-stride loop, in every schedule.
  for (const drv::Schedule& s : drv::kSchedules) {
    drv::ScopedSchedule scoped(s);
    const int n = 100000;
    std::vector<int> in(n);
    for (int i = 0; i < n; ++i) in[static_cast<size_t>(i)] = i % 7 - 3;
    drv::Array<int> din("in", in), dout("partials", 13);
    block_sum_kernel<<<13, kThreads>>>(din.p(), dout.p(), n);
    long total = 0, want = 0;
    for (int x : dout.vec()) total += x;
    for (int x : in) want += x;
    if (total != want) report.fail("block sum %s: %ld, want %ld", s.name, total, want);
    else report.pass();
  }
  // dim3 grids and blocks: every (block, thread) exactly once.
  {
    const dim3 grid(3, 2, 2), block(8, 4, 2);
    const int n = 12 * 64;
    drv::Array<int> dout("out", n);
    index_kernel<<<grid, block>>>(dout.p());
    std::vector<int> got = dout.vec();
    bool ok = drv::clobbered_guards().empty();
    for (int i = 0; i < n; ++i) ok = ok && got[static_cast<size_t>(i)] == i / 64 * 1000 + i % 64;
    if (ok) report.pass();
    else report.fail("dim3 indexing");
  }
  return report.finish("shuffles, block sums, dim3 indexing");
}

// ---- mistakes ------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads) nonuniform_barrier_kernel() {
  if (threadIdx.x < 128) __syncthreads();
}

__global__ void __launch_bounds__(kThreads) divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 128) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void __launch_bounds__(128) small_kernel(int* out) { out[threadIdx.x] = 1; }

__global__ void __launch_bounds__(kThreads) partial_mask_kernel(float* out) {
  out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, out[threadIdx.x], 1);
}

__global__ void __launch_bounds__(kThreads) exited_lane_kernel(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, out[threadIdx.x], 8, 32);  // lanes 8-15 read 16-23
}

// Reads a neighbour's shared slot without a barrier: poison in the emulator's forward order.
__global__ void __launch_bounds__(kThreads) missing_barrier_kernel(float* out) {
  __shared__ float sm[kThreads];
  sm[threadIdx.x] = float(threadIdx.x);
  out[threadIdx.x] = sm[(threadIdx.x + 1) % kThreads];
}

// Thread 0 overwrites a shared value the others may not have read yet (no barrier before it):
// the result depends on the order the threads run in.
__global__ void __launch_bounds__(kThreads) order_race_kernel(float* out) {
  __shared__ float sm[kThreads];
  sm[threadIdx.x] = 1.0f;
  __syncthreads();
  const float v = sm[0];
  if (threadIdx.x == 0) sm[0] = 100.0f;
  out[threadIdx.x] = v;
}

__global__ void __launch_bounds__(kThreads) off_by_one_kernel(float* out, int n) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i <= n) out[i] = 1.0f;  // should be i < n
}

int scenario(const std::string& name) {
  drv::Array<float> f("out", kThreads);
  drv::Array<int> d("out", kThreads);
  if (name == "nonuniform-barrier") {
    nonuniform_barrier_kernel<<<1, kThreads>>>();
  } else if (name == "divergent-barrier") {
    divergent_barrier_kernel<<<1, kThreads>>>(d.p());
  } else if (name == "grid-y-limit") {
    small_kernel<<<dim3(1, 65536), 32>>>(d.p());
  } else if (name == "block-limit") {
    small_kernel<<<1, 2048>>>(d.p());
  } else if (name == "empty-grid") {
    small_kernel<<<0, 32>>>(d.p());
  } else if (name == "launch-bounds") {
    small_kernel<<<1, kThreads>>>(d.p());
  } else if (name == "shuffle-mask") {
    partial_mask_kernel<<<1, kThreads>>>(f.p());
  } else if (name == "shuffle-exited-lane") {
    exited_lane_kernel<<<1, kThreads>>>(f.p());
  } else if (name == "missing-barrier") {
    missing_barrier_kernel<<<1, kThreads>>>(f.p());
    for (int t = 0; t < kThreads; ++t) {
      if (f.vec()[static_cast<size_t>(t)] != float((t + 1) % kThreads)) {
        std::printf("FAIL missing-barrier: thread %d read %g, a value never written\n", t, f.vec()[static_cast<size_t>(t)]);
        return 1;
      }
    }
  } else if (name == "order-race") {
    std::vector<float> first;
    for (const drv::Schedule& s : drv::kSchedules) {
      drv::ScopedSchedule scoped(s);
      f.poison();
      order_race_kernel<<<1, kThreads>>>(f.p());
      if (first.empty()) first = f.vec();
      if (!drv::same_bits(f.vec(), first)) {
        std::printf("FAIL order-race: the %s schedule changes the result\n", s.name);
        return 1;
      }
    }
  } else if (name == "out-of-bounds-write") {
    off_by_one_kernel<<<2, kThreads>>>(f.p(), kThreads);
    const std::string c = drv::clobbered_guards();
    if (!c.empty()) {
      std::printf("FAIL out-of-bounds-write: wrote outside %s\n", c.c_str());
      return 1;
    }
  } else {
    std::printf("unknown scenario %s\n", name.c_str());
    return 2;
  }
  std::printf("scenario %s: nothing caught\n", name.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return argc > 1 ? scenario(argv[1]) : semantics(); }
