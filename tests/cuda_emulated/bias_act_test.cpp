// Emulated check of csrc/core/cuda/bias_act.cu (and elementwise.cuh) against the CPU reference
// (ganops/bias_act.h): forward, backward and backward-of-backward.
//
// Cases: every activation, clamp off and on, float64 and float32, with and without bias, on
// layouts [outer][channels][inner] that stand for NCHW (inner = H*W), channels_last (inner = 1),
// a bias on the outermost dim (outer = 1) and an empty tensor; tensors small enough for one
// block and large enough for the grid-stride loop (4 and 1 emulated SMs); the 32-bit index path
// through the public launchers and the 64-bit one (elementwise_kernel<T, int64_t>, launched the
// way launch_elementwise does for tensors of 2^31 elements or more).
#include <string>

#include "bias_act.cu"  // the rewritten copy (launch_rewrite.py)
#include "driver.h"

using namespace ganops;
using drv::Array;

namespace {

enum class Pass { kForward, kBackward, kBackward2 };
const char* kPassNames[] = {"forward", "backward", "backward2"};

// The 64-bit path: elementwise_kernel<T, int64_t> with the launcher's op, as launch_elementwise
// launches it when numel does not fit in int32.
template <class T>
int launch64(Pass pass, const BiasActParams& p, const T* x, const T* dy, const T* ddz, const T* b, T* out) {
  return cuda::dispatch_kernel(p, drv::dtype_of<T>(), [&](auto tag, auto math) {
    using M = decltype(math);
    if constexpr (!std::is_same<decltype(tag), T>::value) {
      return -1;  // dispatch_kernel instantiates every dtype; only T is called
    } else {
    const emu::Site site{"elementwise_kernel<T, int64_t> (driver)", __FILE__, __LINE__, cuda::kThreads};
    const dim3 grid(static_cast<unsigned>(cuda::grid_size(p.numel)));
    auto go = [&](auto op) {
      emu::launch(site, grid, dim3(cuda::kThreads), 0, nullptr,
                  [](const auto&... a) { cuda::elementwise_kernel<T, int64_t>(a...); }, p.numel,
                  p.channels, p.inner, b, op);
    };
    if (p.numel == 0) return 0;
    switch (pass) {
      case Pass::kForward: go(cuda::ForwardOp<T, M>{x, out, math}); break;
      case Pass::kBackward: go(cuda::BackwardOp<T, M>{dy, x, out, math}); break;
      case Pass::kBackward2: go(cuda::Backward2Op<T, M>{ddz, dy, x, out, math}); break;
    }
    return 0;
    }
  });
}

struct Case {
  int64_t outer, channels, inner;
  bool bias;
  int act;
  double clamp;
  bool index64;
  int sms;
};

template <class T>
void run_case(const Case& c, drv::Rng& rng, drv::Report& report) {
  BiasActParams p;
  p.act = Act(c.act);
  p.alpha = 0.2;
  p.gain = 1.3;
  p.clamp = c.clamp;
  p.channels = c.bias ? c.channels : 1;
  p.inner = c.bias ? c.inner : 1;
  p.numel = c.outer * c.channels * c.inner;
  const size_t N = static_cast<size_t>(p.numel);
  std::vector<T> x(N), dy(N), ddz(N), b(static_cast<size_t>(p.channels));
  rng.fill(x, 3.0);
  rng.fill(dy);
  rng.fill(ddz);
  rng.fill(b);
  const T* bias = c.bias ? b.data() : nullptr;
  const double tol = sizeof(T) == 8 ? 1e-12 : 2e-6;
  emu::options().sms = c.sms;
  Array<T> dx("x", x), ddy("dy", dy), dddz("ddz", ddz), db("b", b), out("out", N);
  const T* dbias = c.bias ? db.p() : nullptr;
  for (Pass pass : {Pass::kForward, Pass::kBackward, Pass::kBackward2}) {
    char name[200];
    std::snprintf(name, sizeof name, "%s %s act=%d clamp=%g [%ld][%ld][%ld]%s idx%s sms=%d",
                  sizeof(T) == 8 ? "f64" : "f32", kPassNames[int(pass)], c.act, c.clamp,
                  (long)c.outer, (long)c.channels, (long)c.inner, c.bias ? "" : " no-bias",
                  c.index64 ? "64" : "32", c.sms);
    std::vector<T> ref(N);
    switch (pass) {
      case Pass::kForward: cpu::bias_act_forward<T>(p, x.data(), bias, ref.data(), drv::SerialPF{}); break;
      case Pass::kBackward: cpu::bias_act_backward<T>(p, dy.data(), x.data(), bias, ref.data(), drv::SerialPF{}); break;
      case Pass::kBackward2:
        cpu::bias_act_backward2<T>(p, ddz.data(), dy.data(), x.data(), bias, ref.data(), drv::SerialPF{});
        break;
    }
    out.poison();
    int rc = 0;
    if (c.index64) {
      rc = launch64<T>(pass, p, dx.p(), ddy.p(), dddz.p(), dbias, out.p());
    } else {
      const cuda::DType dt = drv::dtype_of<T>();
      switch (pass) {
        case Pass::kForward: rc = cuda::bias_act_forward(p, dt, dx.p(), dbias, out.p(), nullptr); break;
        case Pass::kBackward: rc = cuda::bias_act_backward(p, dt, ddy.p(), dx.p(), dbias, out.p(), nullptr); break;
        case Pass::kBackward2:
          rc = cuda::bias_act_backward2(p, dt, dddz.p(), ddy.p(), dx.p(), dbias, out.p(), nullptr);
          break;
      }
    }
    const std::vector<T> got = out.vec();
    const double err = drv::max_rel_err(got, ref);
    const std::string clobbered = drv::clobbered_guards();
    if (rc != 0) {
      report.fail("%s: launcher returned %d", name, rc);
    } else if (!clobbered.empty()) {
      report.fail("%s: wrote outside %s", name, clobbered.c_str());
    } else if (!drv::same_bits(dx.vec(), x) || !drv::same_bits(ddy.vec(), dy) ||
               !drv::same_bits(dddz.vec(), ddz) || !drv::same_bits(db.vec(), b)) {
      report.fail("%s: an input was modified", name);
    } else if (!(err < tol)) {
      report.fail("%s: max rel err %.3g (tol %.0e)", name, err, tol);
    } else {
      report.pass(name);
    }
  }
}

}  // namespace

int main() {
  drv::Rng rng(3);
  drv::Report report("bias_act_test");
  struct Layout {
    int64_t outer, channels, inner;
    bool bias;
  };
  const std::vector<Layout> layouts = {
      {1, 1, 1, true},       // one element
      {3, 7, 15, true},      // NCHW, less than a block
      {2, 64, 1, true},      // channels_last, one row of pixels
      {3, 1000, 3, true},    // NCHW, more than a tile
      {1, 5000, 1, true},    // bias on the outermost dim
      {200, 48, 1, true},    // channels_last, more than a tile
      {2, 5, 40000, true},   // NCHW, grid-stride loop with 1 SM
      {5, 7, 13, false},     // no bias
      {0, 8, 4, true},       // empty
  };
  for (int act = 0; act < int(Act::kCount); ++act) {
    for (double clamp : {-1.0, 0.7}) {
      int k = 0;
      for (const Layout& l : layouts) {
        const bool big = l.outer * l.channels * l.inner > 100000;
        ++k;
        run_case<double>({l.outer, l.channels, l.inner, l.bias, act, clamp, false, 4}, rng, report);
        if (!big || act % 3 == 0) run_case<float>({l.outer, l.channels, l.inner, l.bias, act, clamp, false, 4}, rng, report);
        // The 64-bit index path and a single SM, on alternating layouts.
        run_case<double>({l.outer, l.channels, l.inner, l.bias, act, clamp, true, k % 2 ? 1 : 4}, rng, report);
        if (big || k % 3 == 0) run_case<double>({l.outer, l.channels, l.inner, l.bias, act, clamp, false, 1}, rng, report);
      }
    }
  }
  return report.finish(std::to_string(int(Act::kCount)) + " activations x clamp on/off x " +
                       std::to_string(layouts.size()) + " layouts x 3 passes, float32 and float64");
}
