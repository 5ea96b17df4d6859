// Emulated check of csrc/core/cuda/gradient_penalty.cu against the CPU reference
// (ganops/gradient_penalty.h): the per-sample mix (both modes), the penalty forward (norms and
// the reduced penalty) and its backward.
//
// Cases: the 4 penalty kinds x 3 reductions, float32 and float64, on batches and sample sizes
// around the kernels' 8192-element chunks, samples whose norms fall on both sides of the target,
// all-zero gradients (a zero gradient must give zero, never NaN), empty samples, and a batch
// above CUDA's 65535 limit on gridDim.y. The kernels' kMaxGridY is a constant (no macro to
// shrink it), so that last case really has 65537 samples; samples beyond gridDim.y loop inside
// a block. Some cases are rerun with blocks and threads in reverse and shuffled order and must
// give the same bits.
#include <string>

#include "driver.h"
#include "gradient_penalty.cu"  // the rewritten copy (launch_rewrite.py)

using namespace ganops;
using drv::Array;

namespace {

const char* kKinds[] = {"norm", "squared", "two-sided", "one-sided"};
const char* kReductions[] = {"none", "mean", "sum"};

template <class T>
struct Outputs {
  using A = acc_t<T>;
  std::vector<A> norms, penalty;
  std::vector<T> dg, lerp, axpy;
};

template <class T>
struct Inputs {
  using A = acc_t<T>;
  std::vector<T> g, a, b;
  std::vector<A> c, gout;
};

template <class T>
bool run_gpu(const GradientPenaltyParams& p, bool mix, const Inputs<T>& in, Outputs<T>* o,
             std::string* why) {
  using A = acc_t<T>;
  const cuda::DType dt = drv::dtype_of<T>();
  const size_t N = static_cast<size_t>(p.numel());
  Array<T> g("g", in.g);
  Array<A> norms("norms", static_cast<size_t>(p.batch)), penalty("penalty", static_cast<size_t>(p.outputs()));
  drv::Buffer ws("penalty workspace", cuda::gradient_penalty_workspace_bytes(p, dt));
  int rc = cuda::gradient_penalty(p, dt, g.p(), norms.p(), penalty.p(), ws.data(), nullptr);
  if (rc != 0) return *why = "gradient_penalty returned " + std::to_string(rc), false;
  o->norms = norms.vec();
  o->penalty = penalty.vec();

  Array<A> gout("gout", in.gout), norms_in("norms (cpu)", o->norms);
  Array<T> dg("dg", N);
  rc = cuda::gradient_penalty_backward(p, dt, gout.p(), g.p(), norms_in.p(), dg.p(), nullptr);
  if (rc != 0) return *why = "gradient_penalty_backward returned " + std::to_string(rc), false;
  o->dg = dg.vec();

  if (mix) {
    Array<T> a("a", in.a), b("b", in.b), x("x", N);
    Array<A> c("c", in.c);
    rc = cuda::mix_samples(p, MixMode::kLerp, dt, a.p(), b.p(), c.p(), x.p(), nullptr);
    if (rc != 0) return *why = "mix_samples(lerp) returned " + std::to_string(rc), false;
    o->lerp = x.vec();
    x.poison();
    rc = cuda::mix_samples(p, MixMode::kAxpy, dt, a.p(), b.p(), c.p(), x.p(), nullptr);
    if (rc != 0) return *why = "mix_samples(axpy) returned " + std::to_string(rc), false;
    o->axpy = x.vec();
    if (!drv::same_bits(a.vec(), in.a) || !drv::same_bits(b.vec(), in.b) || !drv::same_bits(c.vec(), in.c)) {
      return *why = "mix_samples modified an input", false;
    }
  }
  const std::string clobbered = drv::clobbered_guards();
  if (!clobbered.empty()) return *why = "wrote outside " + clobbered, false;
  if (!drv::same_bits(g.vec(), in.g) || !drv::same_bits(gout.vec(), in.gout)) {
    return *why = "an input was modified", false;
  }
  return true;
}

struct Case {
  int64_t batch, per_sample;
  int kind, reduction;
  bool zero;            // all-zero gradients
  bool mix = true;      // also check mix_samples
  bool reorder = false; // rerun under the other schedules, require the same bits
};

template <class T>
void run_case(const Case& c, drv::Rng& rng, drv::Report& report) {
  GradientPenaltyParams p;
  p.batch = c.batch;
  p.per_sample = c.per_sample;
  p.kind = PenaltyKind(c.kind);
  p.reduction = Reduction(c.reduction);
  p.target = 1.5;
  p.weight = 3.0;
  p.grad_scale = 0.5;
  const size_t N = static_cast<size_t>(p.numel());
  char name[160];
  std::snprintf(name, sizeof name, "%s batch=%ld per_sample=%ld kind=%s reduction=%s%s",
                sizeof(T) == 8 ? "f64" : "f32", (long)c.batch, (long)c.per_sample, kKinds[c.kind],
                kReductions[c.reduction], c.zero ? " zero-gradients" : "");

  Inputs<T> in;
  in.g.resize(N);
  // Sample b's norm grad_scale * ||g_b|| spread over [0, 3 * target): both sides of the target.
  const double rms = std::sqrt(std::max<double>(1, double(c.per_sample)) / 3.0);
  for (int64_t b = 0; b < c.batch; ++b) {
    const double s = 3.0 * p.target * rng.uniform() / (p.grad_scale * rms);
    for (int64_t i = 0; i < c.per_sample; ++i) {
      in.g[static_cast<size_t>(b * c.per_sample + i)] = c.zero ? T(0) : T(s * rng.symmetric());
    }
  }
  in.a.resize(N);
  in.b.resize(N);
  in.c.resize(static_cast<size_t>(c.batch));
  in.gout.resize(static_cast<size_t>(p.outputs()));
  rng.fill(in.a);
  rng.fill(in.b);
  rng.fill(in.c);
  rng.fill(in.gout, 2.0);

  Outputs<T> ref;
  ref.norms.resize(static_cast<size_t>(c.batch));
  ref.penalty.resize(static_cast<size_t>(p.outputs()));
  ref.dg.resize(N);
  ref.lerp.resize(N);
  ref.axpy.resize(N);
  cpu::penalty_forward<T>(p, in.g.data(), ref.norms.data(), ref.penalty.data(), drv::SerialPF{});
  // The backward from the GPU's norms would hide a wrong norm: use the CPU's.
  cpu::penalty_backward<T>(p, in.gout.data(), in.g.data(), ref.norms.data(), ref.dg.data(), drv::SerialPF{});
  cpu::mix_samples<MixMode::kLerp, T>(p, in.a.data(), in.b.data(), in.c.data(), ref.lerp.data(), drv::SerialPF{});
  cpu::mix_samples<MixMode::kAxpy, T>(p, in.a.data(), in.b.data(), in.c.data(), ref.axpy.data(), drv::SerialPF{});

  Outputs<T> o;
  std::string why;
  if (!run_gpu<T>(p, c.mix, in, &o, &why)) {
    report.fail("%s: %s", name, why.c_str());
    return;
  }
  // The backward ran with the GPU's norms; check those first, then the rest.
  const double tol = sizeof(T) == 8 ? 1e-11 : 1e-4;
  const double en = drv::max_rel_err(o.norms, ref.norms), ep = drv::max_rel_err(o.penalty, ref.penalty),
               ed = drv::max_rel_err(o.dg, ref.dg);
  const double el = c.mix ? drv::max_rel_err(o.lerp, ref.lerp) : 0.0,
               ea = c.mix ? drv::max_rel_err(o.axpy, ref.axpy) : 0.0;
  bool finite = true;
  for (T x : o.dg) finite = finite && std::isfinite(double(x));
  if (!(en < tol && ep < tol && ed < tol && el < tol && ea < tol) || !finite) {
    report.fail("%s: max rel err norms %.3g penalty %.3g (%.8g vs cpu %.8g) dg %.3g%s lerp %.3g axpy %.3g (tol %.0e)",
                name, en, ep, double(o.penalty[0]), double(ref.penalty[0]), ed,
                finite ? "" : " (not finite)", el, ea, tol);
    return;
  }
  if (c.reorder) {
    for (const drv::Schedule& s : drv::kSchedules) {
      if (s.block == emu::Order::kForward && s.thread == emu::Order::kForward) continue;
      drv::ScopedSchedule scoped(s);
      Outputs<T> r;
      if (!run_gpu<T>(p, c.mix, in, &r, &why)) {
        report.fail("%s, %s schedule: %s", name, s.name, why.c_str());
        return;
      }
      if (!drv::same_bits(r.norms, o.norms) || !drv::same_bits(r.penalty, o.penalty) ||
          !drv::same_bits(r.dg, o.dg) || !drv::same_bits(r.lerp, o.lerp) || !drv::same_bits(r.axpy, o.axpy)) {
        report.fail("%s: the %s block/thread order changes the result", name, s.name);
        return;
      }
    }
  }
  report.pass(name);
}

}  // namespace

int main() {
  drv::Rng rng(2);
  drv::Report report("gradient_penalty_test");
  // (batch, per_sample): one element; empty samples; under, at and just over one 8192-element
  // chunk; several chunks; many small samples (more samples than threads in the finishing block).
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {3, 0}, {9, 1}, {20, 3}, {6, 105}, {4, 8192}, {2, 8193}, {3, 20000}, {17, 9000}, {300, 2}};
  int n = 0;
  for (const auto& s : shapes) {
    for (int kind = 0; kind < 4; ++kind) {
      for (int red = 0; red < 3; ++red, ++n) {
        const bool mix = red == 0;  // the mix depends on neither kind nor reduction
        run_case<double>({s.first, s.second, kind, red, false, mix, n % 5 == 0}, rng, report);
        run_case<float>({s.first, s.second, kind, red, false, mix, n % 7 == 3}, rng, report);
      }
      // Zero gradients: every kind, one reduction per kind in turn.
      run_case<double>({s.first, s.second, kind, kind % 3, true, false}, rng, report);
      run_case<float>({s.first, s.second, kind, (kind + 1) % 3, true, false}, rng, report);
    }
  }
  // More samples than gridDim.y can hold (65535): each of the first blocks of y takes two.
  run_case<float>({65537, 1, 2, 1, false, true}, rng, report);
  return report.finish(std::to_string(shapes.size()) + " shapes x 4 kinds x 3 reductions, float32 and "
                       "float64, zero gradients, batch 65537");
}
