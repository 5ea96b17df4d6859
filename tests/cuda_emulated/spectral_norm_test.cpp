// Emulated check of csrc/core/cuda/spectral_norm.cu against the CPU reference
// (ganops/spectral_norm.h): power iteration (sigma, u, v), W / sigma and its backward.
//
// Cases: shapes that take every matvec plan (keep / reduce views, split and unsplit reductions,
// one and many tiles, u and v written by the last block or by write_state_kernel), 0, 1 and 3
// power iterations, both power orders, float64 and float32, the 32-bit index path through the
// public launchers and the 64-bit one (the launchers' own templates called with Index = int64_t,
// which only tensors of 2^31 elements would reach), 4 and 1 emulated SMs. Some cases are rerun
// with blocks and threads in reverse and shuffled order and must give the same bits.
#include <array>
#include <ctime>
#include <string>

#include "driver.h"
#include "spectral_norm.cu"  // the rewritten copy (launch_rewrite.py)

using namespace ganops;
using drv::Array;

namespace {

enum class Index { k32, k64 };

template <class T>
struct Outputs {
  using A = acc_t<T>;
  std::vector<A> sigma;  // of the power iteration
  std::vector<T> u, v;   // after it
  std::vector<T> out;    // W / sigma (with the CPU's sigma)
  std::vector<T> dw;     // backward (with the CPU's u, v, sigma)
};

std::set<std::string> g_covered;

void note_coverage(const SpectralNormParams& p) {
  const cuda::Plans pl = cuda::make_plans(p);
  for (const cuda::MatvecPlan* m : {&pl.mv, &pl.mtv}) {
    if (m->keep) {
      g_covered.insert(m->vn < cuda::kThreads ? "keep: whole rows per step (vn < 256)"
                                              : "keep: 32 columns per block (vn >= 256)");
      g_covered.insert(m->P > 1 ? "keep: split rows (P > 1)" : "keep: unsplit (P == 1)");
    } else {
      g_covered.insert(m->lanes < 32 ? "reduce: fewer than 32 lanes" : "reduce: 32 lanes");
      g_covered.insert(m->pk > 1 ? "reduce: split k" : (m->P > 1 ? "reduce: split a" : "reduce: unsplit"));
      if (m->vn < cuda::kThreads / m->lanes) g_covered.insert("reduce: partial block of rows");
    }
    g_covered.insert(m->n_tiles > 1 ? "many tiles" : "one tile");
  }
  g_covered.insert(p.rows + p.cols() <= cuda::kFoldLimit ? "u, v by the last block (fold)"
                                                          : "u, v by write_state_kernel");
  g_covered.insert(p.inner == 1 ? "backward: inner == 1" : (p.outer == 1 ? "backward: outer == 1"
                                                                          : "backward: general"));
  const int64_t parts = cuda::dot_partials(p.numel());
  g_covered.insert(parts == 1 ? "backward: one dot partial"
                              : (parts == cuda::kMaxDotPartials ? "backward: capped dot partials"
                                                                 : "backward: several dot partials"));
}

// The three launcher calls on the emulator (the power iteration only if `power`); index k64 calls
// the launchers' templates with an int64_t index (and scale_kernel<T, int64_t> the way
// spectral_normalize launches it).
template <class T>
bool run_gpu(const SpectralNormParams& p, Index index, bool power, const std::vector<T>& w,
             const std::vector<T>& g, const std::vector<T>& u0, const std::vector<T>& v0,
             const std::vector<T>& uc, const std::vector<T>& vc, acc_t<T> sc, Outputs<T>* o,
             std::string* why) {
  using A = acc_t<T>;
  const cuda::DType dt = drv::dtype_of<T>();
  const int64_t N = p.numel();
  Array<T> dw_in("w", w), dg("g", g), du("u", u0), dv("v", v0);
  Array<A> dsigma("sigma", 1);
  int rc = 0;
  if (power) {
    drv::Buffer ws("power-iteration workspace", cuda::power_iteration_workspace_bytes(p, dt));
    rc = index == Index::k32
             ? cuda::power_iteration(p, dt, dw_in.p(), du.p(), dv.p(), dsigma.p(), ws.data(), nullptr)
             : cuda::run_power_iteration<T, int64_t>(p, dw_in.p(), du.p(), dv.p(), dsigma.p(),
                                                     ws.data(), nullptr);
    if (rc != 0) return *why = "power_iteration returned " + std::to_string(rc), false;
    const std::string clobbered = drv::clobbered_guards();
    if (!clobbered.empty()) return *why = "power iteration wrote outside " + clobbered, false;
    o->sigma = dsigma.vec();
    o->u = du.vec();
    o->v = dv.vec();
  }

  Array<A> sigma_c("cpu sigma", std::vector<A>{sc});
  Array<T> dout("out", static_cast<size_t>(N));
  if (index == Index::k32) {
    rc = cuda::spectral_normalize(p, dt, dw_in.p(), sigma_c.p(), dout.p(), nullptr);
  } else {
    static const emu::Site site{"scale_kernel<T, int64_t> (driver)", __FILE__, __LINE__, cuda::kThreads};
    emu::launch(site, dim3(cuda::grid_size(N)), dim3(cuda::kThreads), 0, nullptr,
                [](const auto&... a) { cuda::scale_kernel<T, int64_t>(a...); },
                static_cast<const T*>(dw_in.p()), static_cast<const A*>(sigma_c.p()), dout.p(), N);
    rc = 0;
  }
  if (rc != 0) return *why = "spectral_normalize returned " + std::to_string(rc), false;
  o->out = dout.vec();

  Array<T> duc("cpu u", uc), dvc("cpu v", vc), ddw("dw", static_cast<size_t>(N));
  drv::Buffer ws2("backward workspace", cuda::normalize_backward_workspace_bytes(p, dt));
  rc = index == Index::k32
           ? cuda::spectral_normalize_backward(p, dt, dg.p(), dw_in.p(), duc.p(), dvc.p(), sigma_c.p(),
                                               ddw.p(), ws2.data(), nullptr)
           : cuda::run_normalize_backward<T, int64_t>(p, dg.p(), dw_in.p(), duc.p(), dvc.p(),
                                                      sigma_c.p(), ddw.p(), ws2.data(), nullptr);
  if (rc != 0) return *why = "spectral_normalize_backward returned " + std::to_string(rc), false;
  o->dw = ddw.vec();

  const std::string clobbered = drv::clobbered_guards();
  if (!clobbered.empty()) return *why = "wrote outside " + clobbered, false;
  if (!drv::same_bits(dw_in.vec(), w) || !drv::same_bits(dg.vec(), g) || !drv::same_bits(duc.vec(), uc) ||
      !drv::same_bits(dvc.vec(), vc) || sigma_c.vec()[0] != sc) {
    return *why = "an input was modified", false;
  }
  return true;
}

struct Case {
  std::array<int64_t, 3> shape;
  int n_iter;
  PowerOrder order;
  Index index;
  int sms;
  bool reorder = false;  // rerun under the other schedules, require the same bits
  bool power = true;     // false: only W / sigma and the backward (with the CPU's u, v, sigma)
};

std::string describe(const Case& c, const char* type) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s [%ld,%ld,%ld] n_iter=%d %s idx%s sms=%d%s", type, (long)c.shape[0],
                (long)c.shape[1], (long)c.shape[2], c.n_iter,
                c.order == PowerOrder::kUFirst ? "u-first" : "v-first",
                c.index == Index::k32 ? "32" : "64", c.sms, c.power ? "" : " (normalize, backward)");
  return buf;
}

template <class T>
void run_case(const Case& c, drv::Rng& rng, drv::Report& report) {
  using A = acc_t<T>;
  const char* type = sizeof(T) == 8 ? "f64" : "f32";
  const double tol = sizeof(T) == 8 ? 1e-9 : 2e-4;
  SpectralNormParams p;
  p.outer = c.shape[0];
  p.rows = c.shape[1];
  p.inner = c.shape[2];
  p.n_power_iterations = c.n_iter;
  p.order = c.order;
  p.eps = 1e-12;
  note_coverage(p);
  const int64_t N = p.numel(), H = p.rows, C = p.cols();
  std::vector<T> w(N), g(N), u0(H), v0(C);
  for (auto* vec : {&w, &g, &u0, &v0}) rng.fill(*vec);

  std::vector<T> uc = u0, vc = v0, oc(N), dc(N);
  const A sc = cpu::power_iteration<T>(p, w.data(), uc.data(), vc.data(), drv::SerialPF{});
  cpu::normalize_forward<T>(p, w.data(), sc, oc.data(), drv::SerialPF{});
  cpu::normalize_backward<T>(p, g.data(), w.data(), uc.data(), vc.data(), sc, dc.data(), drv::SerialPF{});

  emu::options().sms = c.sms;
  Outputs<T> o;
  std::string why;
  const std::string name = describe(c, type);
  if (!run_gpu<T>(p, c.index, c.power, w, g, u0, v0, uc, vc, sc, &o, &why)) {
    report.fail("%s: %s", name.c_str(), why.c_str());
    return;
  }
  // Without the power iteration (c.power false) o.sigma, o.u and o.v are empty.
  const double es = c.power ? drv::max_rel_err(o.sigma.data(), &sc, 1) : 0.0,
               eu = c.power ? drv::max_rel_err(o.u, uc) : 0.0, ev = c.power ? drv::max_rel_err(o.v, vc) : 0.0,
               eo = drv::max_rel_err(o.out, oc), ed = drv::max_rel_err(o.dw, dc);
  if (!(es < tol && eu < tol && ev < tol && eo < tol && ed < tol)) {
    report.fail("%s: max rel err sigma %.3g (%.6g vs cpu %.6g) u %.3g v %.3g out %.3g dw %.3g (tol %.0e)",
                name.c_str(), es, c.power ? double(o.sigma[0]) : 0.0, double(sc), eu, ev, eo, ed, tol);
    return;
  }
  if (c.reorder) {
    for (const drv::Schedule& s : drv::kSchedules) {
      if (s.block == emu::Order::kForward && s.thread == emu::Order::kForward) continue;
      drv::ScopedSchedule scoped(s);
      Outputs<T> r;
      if (!run_gpu<T>(p, c.index, c.power, w, g, u0, v0, uc, vc, sc, &r, &why)) {
        report.fail("%s, %s schedule: %s", name.c_str(), s.name, why.c_str());
        return;
      }
      const bool same = drv::same_bits(r.sigma, o.sigma) && drv::same_bits(r.u, o.u) &&
                        drv::same_bits(r.v, o.v) && drv::same_bits(r.out, o.out) &&
                        drv::same_bits(r.dw, o.dw);
      if (!same) {
        report.fail("%s: the %s block/thread order changes the result", name.c_str(), s.name);
        return;
      }
    }
  }
  if (std::getenv("EMU_VERBOSE")) {
    std::printf("ok   %s (sigma %.6g; %ld blocks so far, %.2f s)\n", name.c_str(), double(sc),
                emu::stats().blocks, double(std::clock()) / CLOCKS_PER_SEC);
  }
  report.pass();
}

}  // namespace

int main() {
  drv::Rng rng(1);
  drv::Report report("spectral_norm_test");
  // [outer, rows, inner]
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1},    {1, 2, 1},     {5, 1, 1},     {1, 7, 1},     {3, 1, 5},     {7, 3, 2},
      {35, 3, 1},   {48, 40, 1},   {16, 32, 16},  {1, 64, 96},   {1, 32, 144},  {9, 17, 33},
      {33, 33, 33}, {2, 3, 257},   {2, 257, 3},   {1, 257, 1},   {1, 255, 256}, {1, 1, 300},
      {300, 1, 1},  {2, 5000, 1},  {1, 1000, 70}, {70, 1000, 1}, {3, 8, 5000},  {4, 4096, 9},
      {1, 4096, 1}, {4096, 1, 1},  {1, 1, 4097},  {1, 8, 20000}, {20000, 8, 1}, {512, 256, 9},
      {1, 512, 4608}, {4608, 512, 1}};
  const PowerOrder U = PowerOrder::kUFirst, V = PowerOrder::kVFirst;
  for (const auto& s : shapes) {
    const int64_t numel = s[0] * s[1] * s[2];
    if (numel >= 300000) {
      // Large (a 512 x 4608 conv weight, both ways round): the power iteration once per order and
      // the sigma-only path; the other index path and one SM for W / sigma and the backward.
      run_case<double>({s, 1, U, Index::k32, 4}, rng, report);
      run_case<double>({s, 1, V, Index::k32, 4}, rng, report);
      run_case<double>({s, 0, V, Index::k32, 4}, rng, report);
      run_case<double>({s, 1, U, Index::k64, 4, false, false}, rng, report);
      run_case<double>({s, 1, U, Index::k32, 1, false, false}, rng, report);
      continue;
    }
    // float64, 32-bit index, 4 SMs: 0, 1 and 3 iterations, both orders.
    for (int n_iter : {0, 1, 3}) {
      for (PowerOrder order : {U, V}) run_case<double>({s, n_iter, order, Index::k32, 4}, rng, report);
    }
    run_case<float>({s, 0, U, Index::k32, 4}, rng, report);
    run_case<float>({s, 1, V, Index::k32, 4}, rng, report);
    run_case<float>({s, 3, U, Index::k32, 4}, rng, report);
    // The 64-bit index path (with 4 and with 1 SM) and a single SM: they change the index type
    // and the grid-stride kernels' grids, not the plans.
    run_case<double>({s, 3, V, Index::k64, 4}, rng, report);
    run_case<double>({s, 1, U, Index::k64, 1}, rng, report);
    run_case<double>({s, 3, U, Index::k32, 1}, rng, report);
    // Reverse and shuffled block and thread orders: the same bits.
    run_case<double>({s, 3, U, Index::k32, 4, true}, rng, report);
    if (numel < 20000) run_case<float>({s, 1, V, Index::k32, 1, true}, rng, report);
  }
  // Every plan the launchers can choose must have been taken by some shape.
  for (const char* path :
       {"keep: whole rows per step (vn < 256)", "keep: 32 columns per block (vn >= 256)",
        "keep: split rows (P > 1)", "keep: unsplit (P == 1)", "reduce: fewer than 32 lanes",
        "reduce: 32 lanes", "reduce: split k", "reduce: split a", "reduce: unsplit",
        "reduce: partial block of rows", "many tiles", "one tile", "u, v by the last block (fold)",
        "u, v by write_state_kernel", "backward: inner == 1", "backward: outer == 1",
        "backward: general", "backward: one dot partial", "backward: several dot partials",
        "backward: capped dot partials"}) {
    report.require(g_covered.count(path) != 0, (std::string("no case covers ") + path).c_str());
  }
  return report.finish(std::to_string(shapes.size()) + " shapes, " + std::to_string(g_covered.size()) +
                       " plan paths");
}
