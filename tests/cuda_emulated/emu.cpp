// The emulator's scheduler and the CUDA runtime calls the kernels' launchers make. See emu.h.
#include "emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace emu {
namespace {

constexpr unsigned char kPoison = 0xCD;
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kMaxDynamicShared = 48 * 1024;

Options g_options;
Stats g_stats;

struct Region {
  void* p;
  size_t bytes;
};
std::vector<Region> g_shared_permanent;  // namespace-scope __shared__ variables
std::vector<Region> g_shared_launch;     // the running launch's __shared__ variables
alignas(16) unsigned char g_dynamic_shared[kMaxDynamicShared];
size_t g_dynamic_bytes = 0;

void poison_shared() {
  for (const Region& r : g_shared_permanent) std::memset(r.p, kPoison, r.bytes);
  for (const Region& r : g_shared_launch) std::memset(r.p, kPoison, r.bytes);
  std::memset(g_dynamic_shared, kPoison, g_dynamic_bytes);
}

enum State : int { kRun, kBarrier, kWarp, kDone };

struct WarpRequest {
  ShflOp op;
  unsigned mask;
  int lane_arg, width;
  size_t size;
  unsigned char in[16], out[16];
  const char* file;
  int line;
};

// ---- fibers ---------------------------------------------------------------------------------
// x86-64: a hand-written switch (callee-saved registers and the stack pointer; nothing here
// changes the FP control words, and no signal mask is saved, which is what makes swapcontext
// slow). It returns by an indirect jump rather than `ret`, which the return-stack predictor
// would get wrong on every switch (measured: a third faster). Elsewhere: ucontext.

#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  popq %rax
  jmpq *%rax
  .size emu_switch, .-emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

void fiber_main();

struct Fiber {
  char* mem = nullptr;  // guard page + stack
  size_t mem_bytes = 0;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  State state = kRun;
  const char* bar_file = nullptr;
  int bar_line = 0;
  WarpRequest req;
  uint3 tid;

  Fiber() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    mem_bytes = kStackBytes + page;
    void* m = mmap(nullptr, mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "emu: cannot map a fiber stack\n");
      std::_Exit(3);
    }
    mem = static_cast<char*>(m);
    mprotect(mem, page, PROT_NONE);  // a stack overflow faults instead of corrupting memory
    char* top = mem + mem_bytes;
#if defined(__x86_64__)
    // Frame that emu_switch pops: six registers, then "returns" into fiber_main with the stack
    // aligned as after a call.
    void** s = reinterpret_cast<void**>(top);
    *--s = nullptr;                                     // fiber_main's return address (never used)
    *--s = reinterpret_cast<void*>(&fiber_main);        // emu_switch's ret target
    for (int i = 0; i < 6; ++i) *--s = nullptr;         // rbp rbx r12 r13 r14 r15
    sp = s;
#else
    getcontext(&ctx);
    ctx.uc_stack.ss_sp = mem + page;
    ctx.uc_stack.ss_size = kStackBytes;
    ctx.uc_link = nullptr;
    makecontext(&ctx, fiber_main, 0);
#endif
  }
  ~Fiber() { munmap(mem, mem_bytes); }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
};

std::vector<std::unique_ptr<Fiber>> g_fibers;
int g_nthreads = 0;
int g_cur = -1;  // running fiber, -1: the scheduler
Body g_body = nullptr;
void* g_ctx = nullptr;
const Site* g_site = nullptr;
bool g_in_block = false;  // a block of the current launch has started
#if defined(__x86_64__)
void* g_sched_sp = nullptr;
#else
ucontext_t g_sched_ctx;
#endif

void to_scheduler() {
  Fiber& f = *g_fibers[g_cur];
#if defined(__x86_64__)
  emu_switch(&f.sp, g_sched_sp);
#else
  swapcontext(&f.ctx, &g_sched_ctx);
#endif
}

void resume(int t) {
  Fiber& f = *g_fibers[t];
  g_cur = t;
  threadIdx = f.tid;
#if defined(__x86_64__)
  emu_switch(&g_sched_sp, f.sp);
#else
  swapcontext(&g_sched_ctx, &f.ctx);
#endif
  g_cur = -1;
}

// A fiber runs the current launch's kernel once per block, for ever.
void fiber_main() {
  for (;;) {
    g_body(g_ctx);
    g_fibers[g_cur]->state = kDone;
    to_scheduler();
  }
}

const char* op_name(ShflOp op) {
  switch (op) {
    case ShflOp::kIdx: return "__shfl_sync";
    case ShflOp::kUp: return "__shfl_up_sync";
    case ShflOp::kDown: return "__shfl_down_sync";
    case ShflOp::kXor: return "__shfl_xor_sync";
    case ShflOp::kSyncWarp: return "__syncwarp";
  }
  return "?";
}

bool pow2(long x) { return x > 0 && (x & (x - 1)) == 0; }

// The lanes of warp w that wait at a warp operation: check them against CUDA's rules and hand
// out the results. CUDA: every non-exited thread named in the mask executes the same intrinsic
// with the same mask. Lanes that have exited (or do not exist, in a partial last warp) may be
// named, but a lane must not read from them, nor from a lane outside the mask. The emulator also
// asks for the same call site (file and line) and width.
void resolve_warp(int w) {
  const int first = w * warpSize;
  const int lanes = std::min(warpSize, g_nthreads - first);
  unsigned waiting = 0;
  for (int l = 0; l < lanes; ++l) {
    if (g_fibers[static_cast<size_t>(first + l)]->state == kWarp) waiting |= 1u << l;
  }
  while (waiting != 0) {
    const int l0 = __builtin_ctz(waiting);
    const WarpRequest& r0 = g_fibers[static_cast<size_t>(first + l0)]->req;
    const unsigned mask = r0.mask;
    g_cur = first + l0;  // for fail()'s context
    threadIdx = g_fibers[static_cast<size_t>(g_cur)]->tid;
    if ((mask & (1u << l0)) == 0) {
      fail("%s at %s:%d: mask 0x%08x does not include the calling lane %d", op_name(r0.op), r0.file,
           r0.line, mask, l0);
    }
    if (r0.op != ShflOp::kSyncWarp && (!pow2(r0.width) || r0.width > warpSize)) {
      fail("%s at %s:%d: width %d is not a power of two in [1, 32]", op_name(r0.op), r0.file, r0.line,
           r0.width);
    }
    unsigned group = 0;  // the lanes that take part
    for (int l = 0; l < lanes; ++l) {
      if ((mask >> l & 1u) == 0) continue;
      const Fiber& f = *g_fibers[static_cast<size_t>(first + l)];
      if (f.state == kDone) continue;
      if (f.state != kWarp) {
        fail("%s at %s:%d (mask 0x%08x): lane %d waits at __syncthreads (%s:%d) instead", op_name(r0.op),
             r0.file, r0.line, mask, l, f.bar_file, f.bar_line);
      }
      const WarpRequest& r = f.req;
      if (r.mask != mask || r.op != r0.op || r.line != r0.line ||
          (r.file != r0.file && std::strcmp(r.file, r0.file) != 0) || r.size != r0.size ||
          r.width != r0.width) {
        fail("warp %d: lane %d is at %s (%s:%d, mask 0x%08x, width %d) while lane %d is at %s "
             "(%s:%d, mask 0x%08x, width %d)",
             w, l0, op_name(r0.op), r0.file, r0.line, mask, r0.width, l, op_name(r.op), r.file, r.line,
             r.mask, r.width);
      }
      group |= 1u << l;
    }
    for (int l = 0; l < lanes; ++l) {
      if ((group >> l & 1u) == 0) continue;
      Fiber& f = *g_fibers[static_cast<size_t>(first + l)];
      WarpRequest& r = f.req;
      if (r.op != ShflOp::kSyncWarp) {
        const int width = r.width;
        const int seg = l & ~(width - 1);  // first lane of this lane's segment
        int src = l;
        bool in_range = true;
        switch (r.op) {
          case ShflOp::kIdx: src = seg + (r.lane_arg & (width - 1)); break;
          case ShflOp::kUp: src = l - r.lane_arg; in_range = r.lane_arg >= 0 && src >= seg; break;
          case ShflOp::kDown: src = l + r.lane_arg; in_range = r.lane_arg >= 0 && src < seg + width; break;
          case ShflOp::kXor: src = l ^ r.lane_arg; in_range = r.lane_arg >= 0 && src < seg + width; break;
          case ShflOp::kSyncWarp: break;
        }
        if (in_range && (group >> src & 1u) == 0) {
          g_cur = first + l;
          threadIdx = f.tid;
          fail("%s at %s:%d: lane %d reads lane %d, which %s", op_name(r.op), r.file, r.line, l, src,
               (mask >> src & 1u) == 0 ? "is not in the mask"
                                       : (src >= lanes ? "does not exist" : "has exited"));
        }
        const WarpRequest& s = in_range ? g_fibers[static_cast<size_t>(first + src)]->req : r;
        std::memcpy(r.out, s.in, r.size);
      }
      f.state = kRun;
    }
    waiting &= ~group;
    ++g_stats.shuffles;
  }
  g_cur = -1;
}

void order_indices(std::vector<int>& idx, int n, Order order, std::mt19937& rng) {
  idx.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
  if (order == Order::kReverse) std::reverse(idx.begin(), idx.end());
  if (order == Order::kShuffle) std::shuffle(idx.begin(), idx.end(), rng);
}

void run_block(std::mt19937& rng, std::vector<int>& order) {
  for (int t = 0; t < g_nthreads; ++t) g_fibers[static_cast<size_t>(t)]->state = kRun;
  const int warps = (g_nthreads + warpSize - 1) / warpSize;
  for (;;) {
    order_indices(order, g_nthreads, g_options.thread_order, rng);
    for (int t : order) {
      if (g_fibers[static_cast<size_t>(t)]->state == kRun) resume(t);
    }
    int done = 0, barrier = 0, warp = 0;
    for (int t = 0; t < g_nthreads; ++t) {
      switch (g_fibers[static_cast<size_t>(t)]->state) {
        case kDone: ++done; break;
        case kBarrier: ++barrier; break;
        case kWarp: ++warp; break;
        case kRun: break;
      }
    }
    if (done == g_nthreads) return;
    if (warp > 0) {  // warp operations first: they may let threads reach the barrier
      for (int w = 0; w < warps; ++w) resolve_warp(w);
      continue;
    }
    // Everyone is at a barrier or finished.
    int first = -1;
    for (int t = 0; t < g_nthreads; ++t) {
      if (g_fibers[static_cast<size_t>(t)]->state == kBarrier) { first = t; break; }
    }
    const Fiber& f0 = *g_fibers[static_cast<size_t>(first)];
    if (done > 0) {
      int finished = 0;
      while (g_fibers[static_cast<size_t>(finished)]->state != kDone) ++finished;
      g_cur = first;
      threadIdx = f0.tid;
      fail("non-uniform __syncthreads at %s:%d: %d threads wait there, %d finished the kernel "
           "(e.g. thread %d)", f0.bar_file, f0.bar_line, barrier, done, finished);
    }
    for (int t = 0; t < g_nthreads; ++t) {
      const Fiber& f = *g_fibers[static_cast<size_t>(t)];
      if (f.bar_line != f0.bar_line ||
          (f.bar_file != f0.bar_file && std::strcmp(f.bar_file, f0.bar_file) != 0)) {
        g_cur = t;
        threadIdx = f.tid;
        fail("threads wait at different __syncthreads: thread %d at %s:%d, thread %d at %s:%d", first,
             f0.bar_file, f0.bar_line, t, f.bar_file, f.bar_line);
      }
    }
    for (int t = 0; t < g_nthreads; ++t) g_fibers[static_cast<size_t>(t)]->state = kRun;
    ++g_stats.barriers;
  }
}

}  // namespace

Options& options() { return g_options; }
const Stats& stats() { return g_stats; }

void fail(const char* fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "emu: ERROR: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  if (g_site != nullptr) {
    std::fprintf(stderr, "emu:   in kernel %s launched at %s:%d, grid (%u,%u,%u) block (%u,%u,%u)\n",
                 g_site->kernel, g_site->file, g_site->line, gridDim.x, gridDim.y, gridDim.z,
                 blockDim.x, blockDim.y, blockDim.z);
    if (g_in_block) {
      std::fprintf(stderr, "emu:   block (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z);
      if (g_cur >= 0) std::fprintf(stderr, " thread (%u,%u,%u)", threadIdx.x, threadIdx.y, threadIdx.z);
      std::fprintf(stderr, "\n");
    }
  }
  std::fflush(stderr);
  std::_Exit(3);
}

void launch_impl(const Site& site, dim3 grid, dim3 block, size_t smem, Body body, void* ctx) {
  if (g_cur >= 0) fail("kernel %s launched from inside a kernel (dynamic parallelism)", site.kernel);
  g_site = &site;
  gridDim = grid;
  blockDim = block;
  blockIdx = uint3{0, 0, 0};
  const unsigned long long threads =
      static_cast<unsigned long long>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) fail("launch with an empty grid");
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u) {
    fail("grid exceeds CUDA's limits (x <= 2^31-1, y and z <= 65535)");
  }
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || threads > 1024) {
    fail("block exceeds CUDA's limits (x, y <= 1024, z <= 64, x*y*z <= 1024, none 0)");
  }
  if (site.max_threads > 0 && threads > static_cast<unsigned long long>(site.max_threads)) {
    fail("%llu threads per block, more than the kernel's __launch_bounds__(%ld)", threads,
         site.max_threads);
  }
  if (smem > kMaxDynamicShared) fail("%zu bytes of dynamic shared memory (> 48 KiB)", smem);

  g_nthreads = static_cast<int>(threads);
  while (g_fibers.size() < threads) g_fibers.emplace_back(new Fiber());
  for (int t = 0; t < g_nthreads; ++t) {
    const unsigned u = static_cast<unsigned>(t);
    g_fibers[static_cast<size_t>(t)]->tid =
        uint3{u % block.x, u / block.x % block.y, u / (block.x * block.y)};
  }
  g_body = body;
  g_ctx = ctx;
  ++g_stats.launches;

  std::mt19937 rng(g_options.seed + static_cast<unsigned>(g_stats.launches));
  const long long nblocks = static_cast<long long>(grid.x) * grid.y * grid.z;
  std::vector<long long> blocks;
  std::vector<int> thread_order;
  if (g_options.block_order == Order::kShuffle) {
    blocks.resize(static_cast<size_t>(nblocks));
    for (long long b = 0; b < nblocks; ++b) blocks[static_cast<size_t>(b)] = b;
    std::shuffle(blocks.begin(), blocks.end(), rng);
  }
  g_shared_launch.clear();
  g_dynamic_bytes = smem;
  for (long long i = 0; i < nblocks; ++i) {
    long long b = i;
    if (g_options.block_order == Order::kReverse) b = nblocks - 1 - i;
    if (g_options.block_order == Order::kShuffle) b = blocks[static_cast<size_t>(i)];
    blockIdx.x = static_cast<unsigned>(b % grid.x);
    blockIdx.y = static_cast<unsigned>(b / grid.x % grid.y);
    blockIdx.z = static_cast<unsigned>(b / (static_cast<long long>(grid.x) * grid.y));
    poison_shared();
    g_in_block = true;
    run_block(rng, thread_order);
    ++g_stats.blocks;
  }
  g_in_block = false;
  g_site = nullptr;
}

bool touch_shared(void* p, size_t bytes) {
  std::vector<Region>& list = g_site != nullptr ? g_shared_launch : g_shared_permanent;
  for (const Region& r : list) {
    if (r.p == p) return true;
  }
  list.push_back(Region{p, bytes});
  std::memset(p, kPoison, bytes);
  return true;
}

void* dynamic_shared() { return g_dynamic_shared; }

void syncthreads(const char* file, int line) {
  if (g_cur < 0) fail("__syncthreads at %s:%d outside a kernel", file, line);
  Fiber& f = *g_fibers[static_cast<size_t>(g_cur)];
  f.state = kBarrier;
  f.bar_file = file;
  f.bar_line = line;
  to_scheduler();
}

void warp_op(ShflOp op, unsigned mask, const void* in, void* out, size_t size, int lane_arg,
             int width, const char* file, int line) {
  if (g_cur < 0) fail("%s at %s:%d outside a kernel", op_name(op), file, line);
  Fiber& f = *g_fibers[static_cast<size_t>(g_cur)];
  WarpRequest& r = f.req;
  r.op = op;
  r.mask = mask;
  r.lane_arg = lane_arg;
  r.width = width;
  r.size = size;
  r.file = file;
  r.line = line;
  if (size != 0) std::memcpy(r.in, in, size);
  f.state = kWarp;
  to_scheduler();
  if (size != 0) std::memcpy(out, r.out, size);
}

}  // namespace emu

// ---- the CUDA runtime calls the launchers make ---------------------------------------------------
// Defined here (the drivers link no CUDA library), so a launcher that starts using another runtime
// call fails to link, naming it, instead of being emulated wrongly.
namespace {
cudaError_t g_last_error = cudaSuccess;
}

extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  if (device != 0) emu::fail("cudaDeviceGetAttribute for device %d (the emulator has device 0)", device);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = emu::options().sms; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxGridDimY: *value = 65535; break;
    case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    default: emu::fail("cudaDeviceGetAttribute: attribute %d is not emulated", static_cast<int>(attr));
  }
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t /*stream*/) {
  if (count != 0 && ptr == nullptr) emu::fail("cudaMemsetAsync of %zu bytes at a null pointer", count);
  std::memset(ptr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) { return cudaMemsetAsync(ptr, value, count, 0); }

const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error (emulated)" : "error (emulated)";
}

const char* cudaGetErrorName(cudaError_t error) {
  return error == cudaSuccess ? "cudaSuccess" : "cudaError (emulated)";
}

}  // extern "C"
