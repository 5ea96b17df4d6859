// Spectral normalization for TensorFlow, in Keras' convention: op registrations with shape
// functions, and OpKernels for CPU (and GPU when TF is built with CUDA) that check their inputs
// and call the framework-free core (ganops/spectral_norm.h).
//
//   GanopsSpectralNormPowerIteration(weight, u)       -> (u_out, v_out, sigma)
//   GanopsSpectralNormalize(weight, u, v, sigma)      -> weight / sigma
//   GanopsSpectralNormalizeGrad(grad, weight, u, v, sigma)
//                                                     -> (grad - <grad, weight / sigma> u v^T) / sigma
//
// The matrix is Keras' reshape(weight, [-1, weight.shape[-1]]) transposed: M has rows = the
// last axis of the weight (u runs over it) and K = numel / rows columns (v runs over the other
// axes flattened in row-major order), M[h, k] = weight.flat[k * rows + h]. The power method is
// Keras': v = normalize(M^T u), u = normalize(M v), normalize(a) = a / max(||a||, eps), and
// sigma = u^T M v. sigma is float64 for float64 weights and float32 otherwise (the core's
// accumulation type).
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "ganops/spectral_norm.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "tf_adapter.h"

namespace ganops {
namespace tf_adapter {
namespace {

// ---------------------------------------------------------------------------------------------
// Shape functions

constexpr const char* kWeightMatrixHint =
    "viewed as the matrix reshape(weight, [-1, weight.shape[-1]])";

// weight: rank >= 2 (sets *rows to its last dimension).
absl::Status WeightShape(InferenceContext* c, int index, ShapeHandle* weight,
                         DimensionHandle* rows) {
  absl::Status s = c->WithRankAtLeast(c->input(index), 2, weight);
  if (!s.ok()) {
    return errors::InvalidArgument("ganops.spectral_norm: weight must have at least 2 dims to be ",
                                   kWeightMatrixHint, "; ", s.message());
  }
  *rows = c->Dim(*weight, -1);
  return absl::OkStatus();
}

// K = the product of weight's dimensions but the last (unknown if any of them is).
absl::Status ColsDim(InferenceContext* c, ShapeHandle weight, DimensionHandle* cols) {
  ShapeHandle prefix;
  TF_RETURN_IF_ERROR(c->Subshape(weight, 0, -1, &prefix));
  *cols = c->MakeDim(1);
  if (!c->RankKnown(prefix)) {
    *cols = c->UnknownDim();
    return absl::OkStatus();
  }
  for (int i = 0; i < c->Rank(prefix); ++i) {
    TF_RETURN_IF_ERROR(c->Multiply(*cols, c->Dim(prefix, i), cols));
  }
  return absl::OkStatus();
}

// A vector input: shape [n] or [1, n] with n merged against `length`. *out gets the merged shape.
absl::Status VectorShape(InferenceContext* c, int index, DimensionHandle length,
                         const char* name, const char* what, ShapeHandle* out) {
  ShapeHandle t = c->input(index);
  *out = t;
  if (!c->RankKnown(t)) return absl::OkStatus();
  const int rank = c->Rank(t);
  auto bad = [&](absl::string_view detail) {
    return errors::InvalidArgument("ganops.spectral_norm: ", name, " must have shape [n] or [1, n]"
                                   " with n = ", what, ", got ", c->DebugString(t), detail);
  };
  if (rank != 1 && rank != 2) return bad("");
  if (rank == 2) {
    DimensionHandle one;
    if (!c->WithValue(c->Dim(t, 0), 1, &one).ok()) return bad("");
  }
  DimensionHandle n;
  absl::Status merged = c->Merge(c->Dim(t, rank - 1), length, &n);
  if (!merged.ok()) return bad(absl::StrCat("; ", merged.message()));
  return c->ReplaceDim(t, rank - 1, n, out);
}

absl::Status PowerIterationShape(InferenceContext* c) {
  ShapeHandle weight, u;
  DimensionHandle rows, cols;
  TF_RETURN_IF_ERROR(WeightShape(c, 0, &weight, &rows));
  TF_RETURN_IF_ERROR(ColsDim(c, weight, &cols));
  TF_RETURN_IF_ERROR(VectorShape(c, 1, rows, "u", "weight.shape[-1]", &u));
  c->set_output(0, u);
  c->set_output(1, c->Vector(cols));
  c->set_output(2, c->Scalar());
  return absl::OkStatus();
}

// Shared by GanopsSpectralNormalize (no leading grad) and GanopsSpectralNormalizeGrad.
absl::Status NormalizeShape(InferenceContext* c, int num_grad_inputs) {
  const int w = num_grad_inputs;
  ShapeHandle weight, vec;
  DimensionHandle rows, cols;
  TF_RETURN_IF_ERROR(WeightShape(c, w, &weight, &rows));
  for (int i = 0; i < num_grad_inputs; ++i) {
    absl::Status merged = c->Merge(weight, c->input(i), &weight);
    if (!merged.ok()) {
      return errors::InvalidArgument("ganops.spectral_norm: grad must have weight's shape; ",
                                     merged.message());
    }
  }
  TF_RETURN_IF_ERROR(ColsDim(c, weight, &cols));
  TF_RETURN_IF_ERROR(VectorShape(c, w + 1, rows, "u", "weight.shape[-1]", &vec));
  TF_RETURN_IF_ERROR(
      VectorShape(c, w + 2, cols, "v", "weight.size / weight.shape[-1]", &vec));
  c->set_output(0, weight);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Op registrations

REGISTER_OP("GanopsSpectralNormPowerIteration")
    .Input("weight: T")
    .Input("u: T")
    .Output("u_out: T")
    .Output("v_out: T")
    .Output("sigma: S")
    .Attr("T: {float, double, half, bfloat16}")
    .Attr("S: {float, double} = DT_FLOAT")  // must be double for double weights, else float
    .Attr("n_power_iterations: int")
    .Attr("eps: float")
    .Attr("eps_bits: int = 0")  // eps's exact double (see GetExactScalarAttr)
    .SetShapeFn(PowerIterationShape)
    .Doc(R"doc(
Keras' power method on reshape(weight, [-1, weight.shape[-1]]), n_power_iterations times from u:
v = normalize(M^T u), u = normalize(M v), with normalize(a) = a / max(||a||, eps). u_out has u's
shape ([rows] or [1, rows]), v_out is [K], sigma = u_out^T M v_out is a scalar of type S.
)doc");

REGISTER_OP("GanopsSpectralNormalize")
    .Input("weight: T")
    .Input("u: T")
    .Input("v: T")
    .Input("sigma: S")
    .Output("out: T")
    .Attr("T: {float, double, half, bfloat16}")
    .Attr("S: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return NormalizeShape(c, 0); })
    .Doc("weight / sigma, where sigma = u^T M v (u and v are used by the gradient).");

REGISTER_OP("GanopsSpectralNormalizeGrad")
    .Input("grad: T")
    .Input("weight: T")
    .Input("u: T")
    .Input("v: T")
    .Input("sigma: S")
    .Output("out: T")
    .Attr("T: {float, double, half, bfloat16}")
    .Attr("S: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return NormalizeShape(c, 1); })
    .Doc("(grad - <grad, weight / sigma> u v^T) / sigma: the gradient of weight / sigma(weight).");

// ---------------------------------------------------------------------------------------------
// Device back ends: each runs one core pass on its device.

// The core sizes each task's share of the range (`grain` units) to about kSpectralGrain
// elements of W; a multiply-add and a load per element.
constexpr int64_t kCyclesPerElement = 2;

struct SpectralParallelFor {
  ::tensorflow::thread::ThreadPool* pool;

  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    const int64_t cycles = kCyclesPerElement * cpu::kSpectralGrain / std::max<int64_t>(grain, 1);
    TfParallelFor{pool, cycles}(begin, end, grain, f);
  }
};

template <typename Device, typename T>
struct SpectralDevice;

template <typename T>
struct SpectralDevice<CPUDevice, T> {
  using A = acc_t<T>;

  // u_out = u, v_out = 0 (Keras' order never reads v's initial value, but the core loads it),
  // then the power iteration in place; sigma written to the scalar output.
  static void power_iteration(OpKernelContext* ctx, const SpectralNormParams& p, const T* w,
                              const T* u, T* u_out, T* v_out, A* sigma) {
    std::copy(u, u + p.rows, u_out);
    std::fill(v_out, v_out + p.cols(), T(0));
    *sigma = cpu::power_iteration<T>(p, w, u_out, v_out, SpectralParallelFor{cpu_pool(ctx)});
  }
  static void normalize(OpKernelContext* ctx, const SpectralNormParams& p, const T* w,
                        const A* sigma, T* out) {
    cpu::normalize_forward<T>(p, w, *sigma, out, SpectralParallelFor{cpu_pool(ctx)});
  }
  static void normalize_grad(OpKernelContext* ctx, const SpectralNormParams& p, const T* g,
                             const T* w, const T* u, const T* v, const A* sigma, T* out) {
    cpu::normalize_backward<T>(p, g, w, u, v, *sigma, out, SpectralParallelFor{cpu_pool(ctx)});
  }
};

#if GOOGLE_CUDA
// The launchers run on TF's compute stream for this op; sigma stays on the device. Scratch
// memory comes from TF's allocator.
template <typename T>
struct SpectralDevice<GPUDevice, T> {
  using A = acc_t<T>;

  static cudaStream_t stream(OpKernelContext* ctx) {
    return ctx->eigen_device<GPUDevice>().stream();
  }
  static void check(OpKernelContext* ctx, int error, const char* what) {
    if (error != 0) {
      ctx->SetStatus(errors::Internal("ganops.spectral_norm: CUDA launch of ", what,
                                      " failed: ", cuda::error_string(error)));
    }
  }
  static void* workspace(OpKernelContext* ctx, size_t bytes, Tensor* storage) {
    if (bytes == 0) return nullptr;
    const absl::Status s = ctx->allocate_temp(
        ::tensorflow::DT_INT8, TensorShape({static_cast<int64_t>(bytes)}), storage);
    if (!s.ok()) {
      ctx->SetStatus(s);
      return nullptr;
    }
    return storage->flat<int8_t>().data();
  }
  static void power_iteration(OpKernelContext* ctx, const SpectralNormParams& p, const T* w,
                              const T* u, T* u_out, T* v_out, A* sigma) {
    const GPUDevice& d = ctx->eigen_device<GPUDevice>();
    d.memcpy(u_out, u, sizeof(T) * p.rows);
    d.memset(v_out, 0, sizeof(T) * p.cols());
    Tensor scratch;
    const size_t bytes = cuda::power_iteration_workspace_bytes(p, CudaDType<T>::value);
    void* ws = workspace(ctx, bytes, &scratch);
    if (bytes != 0 && ws == nullptr) return;
    check(ctx,
          cuda::power_iteration(p, CudaDType<T>::value, w, u_out, v_out, sigma, ws, stream(ctx)),
          "power_iteration");
  }
  static void normalize(OpKernelContext* ctx, const SpectralNormParams& p, const T* w,
                        const A* sigma, T* out) {
    check(ctx, cuda::spectral_normalize(p, CudaDType<T>::value, w, sigma, out, stream(ctx)),
          "spectral_normalize");
  }
  static void normalize_grad(OpKernelContext* ctx, const SpectralNormParams& p, const T* g,
                             const T* w, const T* u, const T* v, const A* sigma, T* out) {
    Tensor scratch;
    const size_t bytes = cuda::normalize_backward_workspace_bytes(p, CudaDType<T>::value);
    void* ws = workspace(ctx, bytes, &scratch);
    if (bytes != 0 && ws == nullptr) return;
    check(ctx,
          cuda::spectral_normalize_backward(p, CudaDType<T>::value, g, w, u, v, sigma, out, ws,
                                            stream(ctx)),
          "spectral_normalize_backward");
  }
};
#endif  // GOOGLE_CUDA

// ---------------------------------------------------------------------------------------------
// Kernels

// Checks shared by the three kernels; each returns false, with the status set, on bad input.
template <typename T>
class SpectralKernelBase : public OpKernel {
 public:
  using A = acc_t<T>;

  // The sigma type must be the core's accumulation type for T.
  explicit SpectralKernelBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    DataType sigma_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("S", &sigma_type));
    OP_REQUIRES(ctx, sigma_type == DataTypeToEnum<A>::v(),
                errors::InvalidArgument(
                    "ganops.spectral_norm: sigma must be ", DataTypeString(DataTypeToEnum<A>::v()),
                    " for a ", DataTypeString(DataTypeToEnum<T>::v()), " weight, got ",
                    DataTypeString(sigma_type)));
  }

 protected:
  // weight: rank >= 2, not empty; the matrix view with rows = the last axis.
  static bool MakeParams(OpKernelContext* ctx, const Tensor& weight, SpectralNormParams* p) {
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, weight.dims() >= 2,
        errors::InvalidArgument("ganops.spectral_norm: weight must have at least 2 dims to be ",
                                kWeightMatrixHint, ", got shape ",
                                weight.shape().DebugString()));
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, weight.NumElements() > 0,
        errors::InvalidArgument("ganops.spectral_norm: weight is empty (shape ",
                                weight.shape().DebugString(), ")"));
    const auto sizes = weight.shape().dim_sizes();
    set_matrix_view(*p, sizes.data(), weight.dims(), weight.dims() - 1);
    return true;
  }

  // A vector of shape [n] or [1, n].
  static bool CheckVector(OpKernelContext* ctx, const Tensor& t, int64_t n, const char* name,
                          const char* what) {
    const bool ok = (t.dims() == 1 && t.dim_size(0) == n) ||
                    (t.dims() == 2 && t.dim_size(0) == 1 && t.dim_size(1) == n);
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, ok,
        errors::InvalidArgument("ganops.spectral_norm: ", name, " must have shape [", n,
                                "] or [1, ", n, "] (", what, "), got ",
                                t.shape().DebugString()));
    return true;
  }

  static bool CheckVectors(OpKernelContext* ctx, const SpectralNormParams& p, const Tensor& u,
                           const Tensor& v) {
    return CheckVector(ctx, u, p.rows, "u", "weight.shape[-1]") &&
           CheckVector(ctx, v, p.cols(), "v", "weight.size / weight.shape[-1]");
  }

  static bool CheckSigma(OpKernelContext* ctx, const Tensor& sigma) {
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, sigma.NumElements() == 1,
        errors::InvalidArgument("ganops.spectral_norm: sigma must hold one element, got shape ",
                                sigma.shape().DebugString()));
    return true;
  }

  // The checks of GanopsSpectralNormalize and its gradient on (weight, u, v, sigma).
  static bool MakeNormalizeParams(OpKernelContext* ctx, const Tensor& weight, const Tensor& u,
                                  const Tensor& v, const Tensor& sigma, SpectralNormParams* p) {
    return MakeParams(ctx, weight, p) && CheckVectors(ctx, *p, u, v) && CheckSigma(ctx, sigma);
  }
};

template <typename Device, typename T>
class PowerIterationOp : public SpectralKernelBase<T> {
 public:
  using Base = SpectralKernelBase<T>;
  using A = typename Base::A;

  explicit PowerIterationOp(OpKernelConstruction* ctx) : Base(ctx) {
    double eps = 0.0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("n_power_iterations", &n_));
    OP_REQUIRES_OK(ctx, GetExactScalarAttr(ctx, "eps", &eps));
    OP_REQUIRES(ctx, n_ >= 1,
                errors::InvalidArgument("ganops.spectral_norm: n_power_iterations must be >= 1, "
                                        "got ", n_));
    // The norms are floored at eps in A: it must be > 0 and finite there, not only as a double
    // (1e-50 would be 0 in float32, and a zero vector would give 0 / 0).
    const A eps_a = static_cast<A>(eps);
    OP_REQUIRES(ctx, eps > 0.0 && eps_a > A(0) && std::isfinite(eps_a),
                errors::InvalidArgument("ganops.spectral_norm: eps must be finite and > 0, got ",
                                        eps, " (in ",
                                        compute_type_name(DoubleCompute(DataTypeToEnum<A>::v())),
                                        ", the type of the norms for ",
                                        DataTypeString(DataTypeToEnum<T>::v()), " weights)"));
    eps_ = eps;
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& weight = ctx->input(0);
    const Tensor& u = ctx->input(1);
    SpectralNormParams p;
    if (!Base::MakeParams(ctx, weight, &p) ||
        !Base::CheckVector(ctx, u, p.rows, "u", "weight.shape[-1]")) {
      return;
    }
    p.n_power_iterations = n_;
    p.eps = eps_;
    p.order = PowerOrder::kVFirst;
    Tensor *u_out = nullptr, *v_out = nullptr, *sigma = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, u.shape(), &u_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({p.cols()}), &v_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({}), &sigma));
    SpectralDevice<Device, T>::power_iteration(ctx, p, weight.flat<T>().data(),
                                               u.flat<T>().data(), u_out->flat<T>().data(),
                                               v_out->flat<T>().data(), sigma->flat<A>().data());
  }

 private:
  int64_t n_ = 1;
  double eps_ = 1e-7;
};

template <typename Device, typename T>
class NormalizeOp : public SpectralKernelBase<T> {
 public:
  using Base = SpectralKernelBase<T>;
  using A = typename Base::A;
  using Base::Base;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& weight = ctx->input(0);
    const Tensor& sigma = ctx->input(3);
    SpectralNormParams p;
    if (!Base::MakeNormalizeParams(ctx, weight, ctx->input(1), ctx->input(2), sigma, &p)) return;
    Tensor* out = nullptr;
    // The kernel reads element i before writing it, so out may reuse weight's buffer.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, weight.shape(), &out));
    SpectralDevice<Device, T>::normalize(ctx, p, weight.flat<T>().data(), sigma.flat<A>().data(),
                                         out->flat<T>().data());
  }
};

template <typename Device, typename T>
class NormalizeGradOp : public SpectralKernelBase<T> {
 public:
  using Base = SpectralKernelBase<T>;
  using A = typename Base::A;
  using Base::Base;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    const Tensor& weight = ctx->input(1);
    const Tensor& u = ctx->input(2);
    const Tensor& v = ctx->input(3);
    const Tensor& sigma = ctx->input(4);
    SpectralNormParams p;
    if (!Base::MakeNormalizeParams(ctx, weight, u, v, sigma, &p)) return;
    OP_REQUIRES(ctx, grad.shape() == weight.shape(),
                errors::InvalidArgument("ganops.spectral_norm: grad has shape ",
                                        grad.shape().DebugString(), " but weight has ",
                                        weight.shape().DebugString()));
    Tensor* out = nullptr;
    // <grad, weight> is summed before any output is written, and the second pass reads
    // grad[i] before writing out[i]: out may reuse grad's buffer.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, weight.shape(), &out));
    SpectralDevice<Device, T>::normalize_grad(
        ctx, p, grad.flat<T>().data(), weight.flat<T>().data(), u.flat<T>().data(),
        v.flat<T>().data(), sigma.flat<A>().data(), out->flat<T>().data());
  }
};

#define GANOPS_REGISTER_SPECTRAL_KERNELS(DEVICE_NAME, DeviceType, T)                        \
  REGISTER_KERNEL_BUILDER(Name("GanopsSpectralNormPowerIteration")                          \
                              .Device(DEVICE_NAME)                                          \
                              .TypeConstraint<T>("T"),                                      \
                          PowerIterationOp<DeviceType, T>);                                 \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsSpectralNormalize").Device(DEVICE_NAME).TypeConstraint<T>("T"),           \
      NormalizeOp<DeviceType, T>);                                                          \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsSpectralNormalizeGrad").Device(DEVICE_NAME).TypeConstraint<T>("T"),       \
      NormalizeGradOp<DeviceType, T>);

GANOPS_REGISTER_SPECTRAL_KERNELS(DEVICE_CPU, CPUDevice, float)
GANOPS_REGISTER_SPECTRAL_KERNELS(DEVICE_CPU, CPUDevice, double)
GANOPS_REGISTER_SPECTRAL_KERNELS(DEVICE_CPU, CPUDevice, Eigen::half)
GANOPS_REGISTER_SPECTRAL_KERNELS(DEVICE_CPU, CPUDevice, Eigen::bfloat16)

#if GOOGLE_CUDA
GANOPS_REGISTER_SPECTRAL_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, float)
GANOPS_REGISTER_SPECTRAL_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, double)
GANOPS_REGISTER_SPECTRAL_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::half)
GANOPS_REGISTER_SPECTRAL_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::bfloat16)
#endif

#undef GANOPS_REGISTER_SPECTRAL_KERNELS

}  // namespace
}  // namespace tf_adapter
}  // namespace ganops
