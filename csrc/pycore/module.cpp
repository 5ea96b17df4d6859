// ganops._core: build information and the CPU core kernels on NumPy arrays, so the kernels
// can be tested with neither framework imported.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "ganops/activation.h"
#include "ganops/bias_act.h"
#include "ganops/build_info.h"
#include "ganops/gradient_penalty.h"
#include "ganops/spectral_norm.h"

namespace py = pybind11;

namespace {

// A plain thread pool stand-in: the frameworks hand their own pools to the core instead.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& f) {
  const int64_t n = end - begin;
  const int64_t max_tasks = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t tasks = std::min<int64_t>(max_tasks, (n + grain - 1) / std::max<int64_t>(grain, 1));
  if (tasks <= 1) {
    if (n > 0) f(begin, end);
    return;
  }
  const int64_t chunk = (n + tasks - 1) / tasks;
  std::vector<std::thread> threads;
  for (int64_t t = 1; t < tasks; ++t) {
    const int64_t b = begin + t * chunk, e = std::min(end, b + chunk);
    if (b < e) threads.emplace_back(f, b, e);
  }
  f(begin, std::min(end, begin + chunk));
  for (auto& th : threads) th.join();
}

bool on(const char* flag) { return std::string(flag) == "ON"; }

py::dict build_info() {
  py::dict d;
  d["version"] = GANOPS_VERSION;
  d["torch"] = GANOPS_TORCH_VERSION;
  d["torch_cuda"] = GANOPS_TORCH_CUDA_VERSION;
  d["tensorflow"] = GANOPS_TF_VERSION;
  d["cuda"] = GANOPS_CUDA_VERSION;
  d["cuda_architectures"] = GANOPS_CUDA_ARCHS;
  d["torch_cuda_kernels"] = on(GANOPS_BUILT_TORCH_CUDA);
  d["tf_cuda_kernels"] = on(GANOPS_BUILT_TF_CUDA);
  d["compiler"] = GANOPS_COMPILER;
  d["cpu_parallelism"] = "framework thread pool (at::parallel_for / TF worker threads)";
  d["core_threads"] = static_cast<int>(std::thread::hardware_concurrency());
#if GANOPS_CPU_DISPATCH
  d["cpu_loops"] = ganops::cpu_has_avx2_fma() ? "avx2+fma" : "baseline (sse2)";
#else
  d["cpu_loops"] = "baseline";
#endif
  return d;
}

py::dict activations() {
  py::dict d;
  for (int i = 0; i < static_cast<int>(ganops::Act::kCount); ++i) {
    const auto& info = ganops::act_table()[i];
    d[info.name] = py::make_tuple(info.default_alpha, info.default_gain);
  }
  return d;
}

ganops::BiasActParams make_params(const py::buffer_info& x, const py::object& b, int64_t dim,
                                  const std::string& act, double alpha, double gain,
                                  double clamp) {
  const auto* info = ganops::find_act(act);
  if (info == nullptr)
    throw py::value_error("act: unknown activation '" + act + "'; expected one of " +
                          ganops::act_names());
  ganops::BiasActParams p;
  p.act = info->act;
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  p.numel = x.size;
  if (!b.is_none()) {
    const int64_t ndim = x.ndim;
    if (dim < -ndim || dim >= ndim) throw py::index_error("dim out of range");
    if (dim < 0) dim += ndim;
    int64_t inner = 1;
    for (int64_t d = dim + 1; d < ndim; ++d) inner *= x.shape[d];
    p.channels = x.shape[dim];
    p.inner = p.channels > 1 ? inner : 1;
  }
  return p;
}

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
const T* bias_ptr(const py::object& b, int64_t channels, std::vector<Array<T>>& keep) {
  if (b.is_none()) return nullptr;
  keep.push_back(Array<T>::ensure(b));
  if (!keep.back() || keep.back().ndim() != 1 || keep.back().shape(0) != channels)
    throw py::value_error("b: expected a 1-D array with x.shape[dim] elements");
  return keep.back().data();
}

// kind 0: forward(x); 1: backward(dy, x); 2: backward2(ddz, dy, x)
template <typename T>
py::array_t<T> run(int kind, std::vector<Array<T>> ins, const py::object& b, int64_t dim,
                   const std::string& act, double alpha, double gain, double clamp) {
  const Array<T>& x = ins.back();
  for (const auto& a : ins) {
    if (a.ndim() != x.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), x.shape()))
      throw py::value_error("all array arguments must have the shape of x");
  }
  const auto p = make_params(x.request(), b, dim, act, alpha, gain, clamp);
  std::vector<Array<T>> keep;
  const T* bp = bias_ptr<T>(b, p.channels, keep);
  py::array_t<T> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (kind == 0) ganops::cpu::bias_act_forward(p, ins[0].data(), bp, o, parallel_for);
    if (kind == 1) ganops::cpu::bias_act_backward(p, ins[0].data(), ins[1].data(), bp, o, parallel_for);
    if (kind == 2)
      ganops::cpu::bias_act_backward2(p, ins[0].data(), ins[1].data(), ins[2].data(), bp, o,
                                      parallel_for);
  }
  return out;
}

py::array dispatch(int kind, std::vector<py::array> arrays, py::object b, int64_t dim,
                   const std::string& act, double alpha, double gain, double clamp) {
  const bool f64 = arrays.back().dtype().is(py::dtype::of<double>());
  if (!f64 && !arrays.back().dtype().is(py::dtype::of<float>()))
    throw py::type_error("x: expected a float32 or float64 array");
  auto convert = [&](auto tag) {
    using T = decltype(tag);
    std::vector<Array<T>> ins;
    for (auto& a : arrays) ins.push_back(Array<T>::ensure(a));
    return py::array(run<T>(kind, ins, b, dim, act, alpha, gain, clamp));
  };
  return f64 ? convert(double{}) : convert(float{});
}

// The matrix view of a C-contiguous weight around `dim`, with the checks the adapters make.
ganops::SpectralNormParams spectral_params(const py::array& w, int64_t dim) {
  const int64_t ndim = w.ndim();
  if (ndim < 1 || w.size() == 0) throw py::value_error("w: expected a non-empty array");
  if (dim < -ndim || dim >= ndim) throw py::index_error("dim out of range");
  if (dim < 0) dim += ndim;
  std::vector<int64_t> sizes(w.shape(), w.shape() + ndim);
  ganops::SpectralNormParams p;
  ganops::set_matrix_view(p, sizes.data(), ndim, dim);
  return p;
}

template <typename T>
Array<T> vector_of(const py::array& a, int64_t n, const char* name) {
  Array<T> out = Array<T>::ensure(a);
  if (!out || out.ndim() != 1 || out.shape(0) != n)
    throw py::value_error(std::string(name) + ": expected a 1-D array of " + std::to_string(n) +
                          " elements");
  return out;
}

// (sigma, u, v) after n steps of the power method from copies of u and v.
py::tuple spectral_power_iteration(py::array w, py::array u, py::array v, int64_t dim,
                                   int64_t n, double eps, int order) {
  auto p = spectral_params(w, dim);
  p.n_power_iterations = n;
  p.eps = eps;
  p.order = order == 0 ? ganops::PowerOrder::kUFirst : ganops::PowerOrder::kVFirst;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const Array<T> wa = Array<T>::ensure(w);
    Array<T> ua(vector_of<T>(u, p.rows, "u").request());  // copies: the inputs stay as they are
    Array<T> va(vector_of<T>(v, p.cols(), "v").request());
    Array<T> uo(p.rows), vo(p.cols());
    std::copy(ua.data(), ua.data() + p.rows, uo.mutable_data());
    std::copy(va.data(), va.data() + p.cols(), vo.mutable_data());
    T sigma;
    {
      py::gil_scoped_release release;
      sigma = ganops::cpu::power_iteration(p, wa.data(), uo.mutable_data(), vo.mutable_data(),
                                           parallel_for);
    }
    return py::tuple(py::make_tuple(sigma, uo, vo));
  };
  return w.dtype().is(py::dtype::of<double>()) ? run(double{}) : run(float{});
}

// (g - <g, w / sigma> u v^T) / sigma
py::array spectral_normalize_backward(py::array g, py::array w, py::array u, py::array v,
                                      double sigma, int64_t dim) {
  const auto p = spectral_params(w, dim);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const Array<T> wa = Array<T>::ensure(w), ga = Array<T>::ensure(g);
    if (ga.size() != wa.size()) throw py::value_error("g: expected w's shape");
    const Array<T> ua = vector_of<T>(u, p.rows, "u"), va = vector_of<T>(v, p.cols(), "v");
    Array<T> out(std::vector<py::ssize_t>(wa.shape(), wa.shape() + wa.ndim()));
    {
      py::gil_scoped_release release;
      ganops::cpu::normalize_backward(p, ga.data(), wa.data(), ua.data(), va.data(), T(sigma),
                                      out.mutable_data(), parallel_for);
    }
    return py::array(out);
  };
  return w.dtype().is(py::dtype::of<double>()) ? run(double{}) : run(float{});
}

// Gradient penalties on a C-contiguous [batch, ...] array (float32 or float64).
ganops::GradientPenaltyParams penalty_params(const py::array& g, const std::string& kind,
                                             double target, double weight, double grad_scale,
                                             const std::string& reduction) {
  ganops::GradientPenaltyParams p;
  if (!ganops::parse_penalty_kind(kind, &p.kind))
    throw py::value_error("kind: unknown penalty '" + kind + "'");
  if (!ganops::parse_reduction(reduction, &p.reduction))
    throw py::value_error("reduction: unknown '" + reduction + "'");
  if (g.ndim() < 1 || g.shape(0) < 1) throw py::value_error("g: expected a non-empty batch");
  ganops::set_batch_view(p, g.shape(0), g.size());
  p.target = target;
  p.weight = weight;
  p.grad_scale = grad_scale;
  return p;
}

// (penalty, norms): penalty has p.outputs() values.
py::tuple gradient_penalty(py::array g, const std::string& kind, double target, double weight,
                           double grad_scale, const std::string& reduction) {
  const auto p = penalty_params(g, kind, target, weight, grad_scale, reduction);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const Array<T> ga = Array<T>::ensure(g);
    Array<T> penalty(p.outputs()), norms(p.batch);
    {
      py::gil_scoped_release release;
      ganops::cpu::penalty_forward(p, ga.data(), norms.mutable_data(), penalty.mutable_data(),
                                   parallel_for);
    }
    return py::tuple(py::make_tuple(penalty, norms));
  };
  return g.dtype().is(py::dtype::of<double>()) ? run(double{}) : run(float{});
}

py::array gradient_penalty_backward(py::array gout, py::array g, py::array norms,
                                    const std::string& kind, double target, double weight,
                                    double grad_scale, const std::string& reduction) {
  const auto p = penalty_params(g, kind, target, weight, grad_scale, reduction);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const Array<T> ga = Array<T>::ensure(g);
    const Array<T> go = vector_of<T>(gout, p.outputs(), "gout");
    const Array<T> na = vector_of<T>(norms, p.batch, "norms");
    Array<T> out(std::vector<py::ssize_t>(ga.shape(), ga.shape() + ga.ndim()));
    {
      py::gil_scoped_release release;
      ganops::cpu::penalty_backward(p, go.data(), ga.data(), na.data(), out.mutable_data(),
                                    parallel_for);
    }
    return py::array(out);
  };
  return g.dtype().is(py::dtype::of<double>()) ? run(double{}) : run(float{});
}

// x = a + c_b (b - a) (mode 0) or a + c_b b (mode 1).
py::array mix_samples(py::array a, py::array b, py::array c, int mode) {
  if (a.ndim() < 1) throw py::value_error("a: expected a batch dim");
  ganops::GradientPenaltyParams p;
  ganops::set_batch_view(p, a.shape(0), a.size());
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const Array<T> aa = Array<T>::ensure(a), ba = Array<T>::ensure(b);
    if (ba.size() != aa.size()) throw py::value_error("b: expected a's shape");
    const Array<T> ca = vector_of<T>(c, p.batch, "c");
    Array<T> out(std::vector<py::ssize_t>(aa.shape(), aa.shape() + aa.ndim()));
    {
      py::gil_scoped_release release;
      if (mode == 0) {
        ganops::cpu::mix_samples<ganops::MixMode::kLerp>(p, aa.data(), ba.data(), ca.data(),
                                                         out.mutable_data(), parallel_for);
      } else {
        ganops::cpu::mix_samples<ganops::MixMode::kAxpy>(p, aa.data(), ba.data(), ca.data(),
                                                         out.mutable_data(), parallel_for);
      }
    }
    return py::array(out);
  };
  return a.dtype().is(py::dtype::of<double>()) ? run(double{}) : run(float{});
}

// Applies one of the core's float math functions to every element, for accuracy tests.
template <float (*fn)(float)>
py::array_t<float> map_float(py::array_t<float, py::array::c_style | py::array::forcecast> x) {
  py::array_t<float> out(x.request().shape);
  const float* in = x.data();
  float* o = out.mutable_data();
  for (py::ssize_t i = 0; i < x.size(); ++i) o[i] = fn(in[i]);
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ganops core: build information and framework-free CPU kernels on NumPy arrays";
  m.def("build_info", &build_info, "What this build was compiled against.");
  m.def("activations", &activations,
        "The activation table: name -> (default alpha, default gain).");
  m.def("vexp", &map_float<ganops::vexp>, py::arg("x"),
        "The vectorizable float32 exp used by the CPU activation loops.");
  m.def("verf", &map_float<ganops::verf>, py::arg("x"),
        "The vectorizable float32 erf used by the CPU activation loops.");
  m.def("vexpm1", &map_float<ganops::vexpm1>, py::arg("x"),
        "The vectorizable float32 expm1 used by the CPU activation loops.");
  m.def("vlog1p", &map_float<ganops::vlog1p>, py::arg("x"),
        "The vectorizable float32 log1p used by the CPU activation loops.");
  m.def("vtanh", &map_float<ganops::vtanh>, py::arg("x"),
        "The vectorizable float32 tanh used by the CPU activation loops.");
  m.def(
      "bias_act",
      [](py::array x, py::object b, int64_t dim, const std::string& act, double alpha,
         double gain, double clamp) { return dispatch(0, {x}, b, dim, act, alpha, gain, clamp); },
      py::arg("x"), py::arg("b") = py::none(), py::arg("dim") = 1, py::arg("act") = "linear",
      py::arg("alpha") = 0.0, py::arg("gain") = 1.0, py::arg("clamp") = -1.0,
      "y = clamp(act(x + b) * gain); clamp < 0 means none.");
  m.def(
      "bias_act_backward",
      [](py::array dy, py::array x, py::object b, int64_t dim, const std::string& act,
         double alpha, double gain, double clamp) {
        return dispatch(1, {dy, x}, b, dim, act, alpha, gain, clamp);
      },
      py::arg("dy"), py::arg("x"), py::arg("b") = py::none(), py::arg("dim") = 1,
      py::arg("act") = "linear", py::arg("alpha") = 0.0, py::arg("gain") = 1.0,
      py::arg("clamp") = -1.0, "dz = dy * dy/dz at z = x + b.");
  m.def(
      "bias_act_backward2",
      [](py::array ddz, py::array dy, py::array x, py::object b, int64_t dim,
         const std::string& act, double alpha, double gain, double clamp) {
        return dispatch(2, {ddz, dy, x}, b, dim, act, alpha, gain, clamp);
      },
      py::arg("ddz"), py::arg("dy"), py::arg("x"), py::arg("b") = py::none(),
      py::arg("dim") = 1, py::arg("act") = "linear", py::arg("alpha") = 0.0,
      py::arg("gain") = 1.0, py::arg("clamp") = -1.0, "ddz * dy * d2y/dz2 at z = x + b.");
  m.def("spectral_power_iteration", &spectral_power_iteration, py::arg("w"), py::arg("u"),
        py::arg("v"), py::arg("dim") = 0, py::arg("n_power_iterations") = 1,
        py::arg("eps") = 1e-12, py::arg("order") = 0,
        "(sigma, u, v) after n power steps on w viewed as a matrix with rows = w.shape[dim]; "
        "order 0: u first (torch), 1: v first (Keras). u and v are not modified.");
  m.def("spectral_normalize_backward", &spectral_normalize_backward, py::arg("g"), py::arg("w"),
        py::arg("u"), py::arg("v"), py::arg("sigma"), py::arg("dim") = 0,
        "(g - <g, w / sigma> u v^T) / sigma.");
  m.def("gradient_penalty", &gradient_penalty, py::arg("g"), py::arg("kind"),
        py::arg("target") = 1.0, py::arg("weight") = 1.0, py::arg("grad_scale") = 1.0,
        py::arg("reduction") = "mean",
        "(penalty, norms) of the per-sample gradient norms n_b = grad_scale * ||g_b||.");
  m.def("gradient_penalty_backward", &gradient_penalty_backward, py::arg("gout"), py::arg("g"),
        py::arg("norms"), py::arg("kind"), py::arg("target") = 1.0, py::arg("weight") = 1.0,
        py::arg("grad_scale") = 1.0, py::arg("reduction") = "mean",
        "d penalty / d g times gout, from the norms gradient_penalty returned.");
  m.def("mix_samples", &mix_samples, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("mode"),
        "a + c_b (b - a) (mode 0, lerp) or a + c_b b (mode 1), c one value per sample.");
}
