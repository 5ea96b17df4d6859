// CUDA block emulator: runs the repository's unmodified CUDA kernels on the CPU, compiled by g++,
// so a machine without a GPU (CI) still checks their logic against the CPU reference templates.
// tests/core/test_cuda_emulated.py builds and runs everything here; see it for the commands.
//
// How it works. launch_rewrite.py copies csrc/core/cuda/* into a build directory (never the
// source tree) and turns every `kernel<...><<<grid, block, smem, stream>>>(args);` into
// `::emu::launch(...)` and every __shared__ declaration into one the emulator knows about; each
// copy includes this header first, which maps the CUDA qualifiers, built-in variables,
// intrinsics and runtime calls onto the emulator (emu.cpp). Each CUDA thread of a block is a
// fiber (its own stack, switched by hand on one OS thread): it runs until __syncthreads, a warp
// operation or the end of the kernel, then the scheduler runs the next one. Blocks run one after
// another. The drivers (<op>_test.cpp) #include the rewritten .cu, call its launchers on many
// shapes, compare with the CPU reference, print one line "<op>_test: PASS <n> cases (...)" and
// exit 0, or print FAIL lines and exit 1. The emulator exits 3 on a CUDA rule broken.
//
// What it checks (an emulator error names the kernel, its launch site, the block and thread):
//   - index math and grid-stride loops: the drivers compare every output with the CPU's, in
//     buffers with poisoned guard zones on both sides (a write out of bounds is reported, a read
//     out of bounds reads poison) and check that inputs are left unchanged;
//   - launch configurations within CUDA's limits: grid.x <= 2^31-1, grid.y and grid.z <= 65535,
//     no empty grid, at most 1024 threads per block (and the per-dimension limits), no more than
//     the kernel's __launch_bounds__, at most 48 KiB of dynamic shared memory;
//   - workspace sizes and reads of workspace nobody wrote: the drivers allocate exactly what the
//     *_workspace_bytes functions ask for, filled with 0xCD bytes and guarded; every __shared__
//     variable is refilled with 0xCD before each block (and uninitialized locals, with g++ 12's
//     -ftrivial-auto-var-init=pattern);
//   - reductions, and the "last block" ticket logic for the block orders the drivers try;
//   - barrier uniformity: all threads of a block wait at the same __syncthreads (same file and
//     line) or none does; a thread finishing while others wait is an error;
//   - warp shuffles (__shfl_sync, _up, _down, _xor; __syncwarp): CUDA's width rules; every live
//     lane the mask names joins the same call; no lane reads one outside the mask or exited;
//   - missing barriers inside a block: a read before the write it needs sees poison, and the
//     drivers rerun cases with threads (between barriers) and blocks in reverse and shuffled
//     order (emu::options()), requiring the same bits.
//
// What it cannot check:
//   - memory ordering between blocks (__threadfence, atomics racing with other blocks, the
//     visibility of __stcg / __ldcg traffic): blocks run one after another, each to completion,
//     so a missing fence or a ticket race is invisible; likewise cross-block deadlocks;
//   - races inside a block that no schedule tried turns into a different result;
//   - real half / bfloat16 device arithmetic (the host-side conversions of cuda_fp16.h and
//     cuda_bf16.h compile but are not device intrinsics; the drivers test float32 and float64),
//     nor nvcc's FMA contraction or its math library's rounding;
//   - performance, occupancy, register pressure, static shared memory size, memory coalescing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

// ---- CUDA qualifiers as the host compiler sees them ---------------------------------------------
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __constant__ static
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// launch_rewrite.py rewrites the __shared__ declarations of the CUDA sources so the emulator
// knows where they are (see touch_shared); anywhere else __shared__ is a plain static.
#define __shared__ static

// ---- built-in variables (set by the scheduler for the running fiber) ---------------------------
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace emu {

enum class Order { kForward, kReverse, kShuffle };

struct Options {
  int sms = 4;                        // cudaDevAttrMultiProcessorCount
  Order block_order = Order::kForward;
  Order thread_order = Order::kForward;  // order in which runnable threads run between barriers
  unsigned seed = 1;                  // for kShuffle
};
Options& options();

struct Stats {
  long launches = 0, blocks = 0, barriers = 0, shuffles = 0;
};
const Stats& stats();

// Where a launch came from; filled in by launch_rewrite.py.
struct Site {
  const char* kernel;   // the kernel expression as written, e.g. "scale_kernel<T, uint32_t>"
  const char* file;
  int line;
  long max_threads;     // the kernel's __launch_bounds__ (0: none known)
};

// Prints the message with the current kernel / block / thread, then exits with status 3.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

using Body = void (*)(void*);
void launch_impl(const Site& site, dim3 grid, dim3 block, size_t smem, Body body, void* ctx);

// The launch: the arguments are evaluated once, on the "host", as CUDA does (the parameter
// pack holds their values); every thread then calls the kernel with its own copies.
template <typename F>
void call_body(void* f) {
  (*static_cast<F*>(f))();
}
template <typename K, typename... Args>
void launch(const Site& site, dim3 grid, dim3 block, size_t smem, cudaStream_t /*stream*/, K kernel,
            Args... args) {
  auto body = [&]() { kernel(args...); };
  launch_impl(site, grid, block, smem, &call_body<decltype(body)>, &body);
}

// ---- shared memory ------------------------------------------------------------------------------
// Tells the emulator that the running kernel uses the __shared__ variable at p: it is filled with
// 0xCD bytes now (first use in this launch) and before each later block. Called outside a launch
// (a namespace-scope __shared__, at start-up), the variable is poisoned before every block.
bool touch_shared(void* p, size_t bytes);
// The launch's dynamic shared memory (extern __shared__), poisoned before every block.
void* dynamic_shared();

// ---- synchronization ----------------------------------------------------------------------------
void syncthreads(const char* file, int line);

enum class ShflOp : int { kIdx, kUp, kDown, kXor, kSyncWarp };
// Waits until every lane named in mask is at the same warp operation, then returns the value of
// the source lane (into out, size bytes) per CUDA's rules, or the caller's own when out of range.
void warp_op(ShflOp op, unsigned mask, const void* in, void* out, size_t size, int lane_arg,
             int width, const char* file, int line);

template <typename T>
T shfl(ShflOp op, unsigned mask, T v, int lane_arg, int width, const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "shuffle of this type");
  T r;
  warp_op(op, mask, &v, &r, sizeof(T), lane_arg, width, file, line);
  return r;
}

// Called through function objects so the call site's file and line come along without
// variadic-macro comma tricks.
struct WarpCall {
  ShflOp op;
  const char* file;
  int line;
  template <typename T>
  T operator()(unsigned mask, T v, int lane_arg, int width = warpSize) const {
    return shfl(op, mask, v, lane_arg, width, file, line);
  }
};
struct SyncWarpCall {
  const char* file;
  int line;
  void operator()(unsigned mask = 0xffffffffu) const {
    warp_op(ShflOp::kSyncWarp, mask, nullptr, nullptr, 0, 0, warpSize, file, line);
  }
};

}  // namespace emu

#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp ::emu::SyncWarpCall{__FILE__, __LINE__}
#define __shfl_sync ::emu::WarpCall{::emu::ShflOp::kIdx, __FILE__, __LINE__}
#define __shfl_up_sync ::emu::WarpCall{::emu::ShflOp::kUp, __FILE__, __LINE__}
#define __shfl_down_sync ::emu::WarpCall{::emu::ShflOp::kDown, __FILE__, __LINE__}
#define __shfl_xor_sync ::emu::WarpCall{::emu::ShflOp::kXor, __FILE__, __LINE__}

// ---- memory and atomics (trivially atomic: one OS thread, no preemption inside a kernel) --------
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T __ldcg(const T* p) { return *p; }
template <typename T> inline T __ldca(const T* p) { return *p; }
template <typename T> inline T __ldcs(const T* p) { return *p; }
template <typename T> inline void __stcg(T* p, T v) { *p = v; }
template <typename T> inline void __stcs(T* p, T v) { *p = v; }
template <typename T> inline void __stwb(T* p, T v) { *p = v; }

#define EMU_ATOMIC_RMW(name, expr)                                                  \
  template <typename T>                                                             \
  inline T name(T* p, T v) {                                                        \
    static_assert(std::is_arithmetic<T>::value, #name " of this type");             \
    const T old = *p;                                                               \
    *p = (expr);                                                                    \
    return old;                                                                     \
  }
EMU_ATOMIC_RMW(atomicAdd, old + v)
EMU_ATOMIC_RMW(atomicSub, old - v)
EMU_ATOMIC_RMW(atomicExch, v)
EMU_ATOMIC_RMW(atomicMin, v < old ? v : old)
EMU_ATOMIC_RMW(atomicMax, v > old ? v : old)
EMU_ATOMIC_RMW(atomicAnd, old & v)
EMU_ATOMIC_RMW(atomicOr, old | v)
EMU_ATOMIC_RMW(atomicXor, old ^ v)
#undef EMU_ATOMIC_RMW
template <typename T>
inline T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

// ---- device math the host does not declare -----------------------------------------------------
// CUDA's integer min / max overloads (host code has only std::min / std::max).
#define EMU_MINMAX(T)                                      \
  inline T min(T a, T b) { return b < a ? b : a; }         \
  inline T max(T a, T b) { return a < b ? b : a; }
EMU_MINMAX(int)
EMU_MINMAX(unsigned)
EMU_MINMAX(long)
EMU_MINMAX(unsigned long)
EMU_MINMAX(long long)
EMU_MINMAX(unsigned long long)
#undef EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
