// bias_act for TensorFlow: op registrations with shape functions, and OpKernels for CPU (and
// GPU when TF is built with CUDA) that check their inputs and call the framework-free core.
//
//   GanopsBiasAct(x, b)                        -> y  = clamp(act(x + b) * gain)
//   GanopsBiasActGrad(grad, x, b)              -> dz = grad * dy/dz at z = x + b
//   GanopsBiasActGradGrad(grad_grad, grad, x, b) -> grad_grad * grad * d2y/dz2
//
// TF has no optional inputs, so `b` is always present; with has_bias=false it is ignored
// (the Python wrapper passes an empty vector).
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <cstdint>
#include <functional>
#include <string>

#include "ganops/activation.h"
#include "ganops/bias_act.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "ganops/arg_text.h"
#include "tf_adapter.h"

namespace ganops {
namespace tf_adapter {
namespace {

// ---------------------------------------------------------------------------------------------
// Op registrations

// Shape function shared by the three ops: the output has x's shape, merged with the shapes of
// the leading gradient inputs (which must equal it); b is a vector, and when its length and
// x.shape[dim] are both known they must agree.
absl::Status BiasActShape(InferenceContext* c, int num_grad_inputs) {
  const int x_index = num_grad_inputs;
  ShapeHandle out = c->input(x_index);
  for (int i = 0; i < num_grad_inputs; ++i) {
    TF_RETURN_IF_ERROR(c->Merge(out, c->input(i), &out));
  }
  ShapeHandle b;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(x_index + 1), 1, &b));

  bool has_bias = false;
  int64_t dim = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("has_bias", &has_bias));
  TF_RETURN_IF_ERROR(c->GetAttr("dim", &dim));
  if (has_bias && c->RankKnown(out)) {
    const int64_t rank = c->Rank(out);
    if (dim < -rank || dim >= rank) {
      return errors::InvalidArgument("ganops.bias_act: dim ", dim,
                                     " is out of range for x with ", rank, " dims");
    }
    if (dim < 0) dim += rank;
    DimensionHandle channels;
    absl::Status merged = c->Merge(c->Dim(out, dim), c->Dim(b, 0), &channels);
    if (!merged.ok()) {
      return errors::InvalidArgument("ganops.bias_act: b must be 1-D with x.shape[", dim,
                                     "] elements; ", merged.message());
    }
    TF_RETURN_IF_ERROR(c->ReplaceDim(out, dim, channels, &out));
  }
  c->set_output(0, out);
  return absl::OkStatus();
}

#define GANOPS_BIAS_ACT_ATTRS                                                               \
  Attr("T: {float, double, half, bfloat16}")                                                \
      .Attr("act: string")                                                                  \
      .Attr("alpha: float")                                                                 \
      .Attr("gain: float")                                                                  \
      .Attr("clamp: float") /* -1: no clamp */                                              \
      .Attr("dim: int")                                                                     \
      .Attr("has_bias: bool")                                                               \
      /* The exact doubles of alpha, gain and clamp (see GetExactScalarAttr). */            \
      .Attr("alpha_bits: int = 0")                                                          \
      .Attr("gain_bits: int = 0")                                                           \
      .Attr("clamp_bits: int = 0")

REGISTER_OP("GanopsBiasAct")
    .Input("x: T")
    .Input("b: T")
    .Output("y: T")
    .GANOPS_BIAS_ACT_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BiasActShape(c, 0); })
    .Doc("y = clamp(act(x + b) * gain, -clamp, clamp), b broadcast along `dim`.");

REGISTER_OP("GanopsBiasActGrad")
    .Input("grad: T")
    .Input("x: T")
    .Input("b: T")
    .Output("dz: T")
    .GANOPS_BIAS_ACT_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BiasActShape(c, 1); })
    .Doc("dz = grad * dy/dz at z = x + b: the gradient for x; summed per channel, for b.");

REGISTER_OP("GanopsBiasActGradGrad")
    .Input("grad_grad: T")
    .Input("grad: T")
    .Input("x: T")
    .Input("b: T")
    .Output("out: T")
    .GANOPS_BIAS_ACT_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BiasActShape(c, 2); })
    .Doc("grad_grad * grad * d2y/dz2: the gradient of GanopsBiasActGrad with respect to x.");

#undef GANOPS_BIAS_ACT_ATTRS

// ---------------------------------------------------------------------------------------------
// Device back ends: each runs one of the three core passes on its device.

// Estimated CPU cycles per element for TF's adaptive sharding: a transcendental (exp, erf,
// tanh) plus two to four loads and a store. Erring high only makes shards a little smaller.
constexpr int64_t kCyclesPerElement = 40;

template <typename Device, typename T>
struct BiasActDevice;

template <typename T>
struct BiasActDevice<CPUDevice, T> {
  static TfParallelFor parallel_for(OpKernelContext* ctx) {
    return TfParallelFor{cpu_pool(ctx), kCyclesPerElement};
  }
  static void forward(OpKernelContext* ctx, const BiasActParams& p, const T* x, const T* b,
                      T* y) {
    cpu::bias_act_forward<T>(p, x, b, y, parallel_for(ctx));
  }
  static void backward(OpKernelContext* ctx, const BiasActParams& p, const T* dy, const T* x,
                       const T* b, T* dz) {
    cpu::bias_act_backward<T>(p, dy, x, b, dz, parallel_for(ctx));
  }
  static void backward2(OpKernelContext* ctx, const BiasActParams& p, const T* ddz,
                        const T* dy, const T* x, const T* b, T* out) {
    cpu::bias_act_backward2<T>(p, ddz, dy, x, b, out, parallel_for(ctx));
  }
};

#if GOOGLE_CUDA
// The launchers run on TF's compute stream for this op, so no extra synchronisation is needed.
template <typename T>
struct BiasActDevice<GPUDevice, T> {
  static cudaStream_t stream(OpKernelContext* ctx) {
    return ctx->eigen_device<GPUDevice>().stream();
  }
  static void check(OpKernelContext* ctx, int error, const char* what) {
    if (error != 0) {
      ctx->SetStatus(errors::Internal("ganops.bias_act: CUDA launch of ", what,
                                      " failed: ", cuda::error_string(error)));
    }
  }
  static void forward(OpKernelContext* ctx, const BiasActParams& p, const T* x, const T* b,
                      T* y) {
    check(ctx, cuda::bias_act_forward(p, CudaDType<T>::value, x, b, y, stream(ctx)),
          "bias_act_forward");
  }
  static void backward(OpKernelContext* ctx, const BiasActParams& p, const T* dy, const T* x,
                       const T* b, T* dz) {
    check(ctx, cuda::bias_act_backward(p, CudaDType<T>::value, dy, x, b, dz, stream(ctx)),
          "bias_act_backward");
  }
  static void backward2(OpKernelContext* ctx, const BiasActParams& p, const T* ddz,
                        const T* dy, const T* x, const T* b, T* out) {
    check(ctx,
          cuda::bias_act_backward2(p, CudaDType<T>::value, ddz, dy, x, b, out, stream(ctx)),
          "bias_act_backward2");
  }
};
#endif  // GOOGLE_CUDA

// ---------------------------------------------------------------------------------------------
// Kernels

// Reads and checks the attributes once per kernel instance; checks the tensors per call.
class BiasActKernelBase : public OpKernel {
 public:
  explicit BiasActKernelBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string act;
    double alpha = 0.0, gain = 1.0, clamp = -1.0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("act", &act));
    OP_REQUIRES_OK(ctx, GetExactScalarAttr(ctx, "alpha", &alpha));
    OP_REQUIRES_OK(ctx, GetExactScalarAttr(ctx, "gain", &gain));
    OP_REQUIRES_OK(ctx, GetExactScalarAttr(ctx, "clamp", &clamp));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dim", &dim_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("has_bias", &has_bias_));
    const ActInfo* info = find_act(act);
    OP_REQUIRES(ctx, info != nullptr,
                errors::InvalidArgument("ganops.bias_act: act: unknown activation ",
                                        quote_arg(act), "; expected one of ", act_names()));
    // Every op's input 0 has type T; the kernels compute in float64 for it, else in float32.
    const DataType dtype = ctx->input_type(0);
    OP_REQUIRES(ctx, finite_in_compute_type(alpha, DoubleCompute(dtype)),
                errors::InvalidArgument("ganops.bias_act: alpha ", alpha, " must be finite in ",
                                        compute_type_name(DoubleCompute(dtype)), ", the compute type of ",
                                        DataTypeString(dtype), " x"));
    OP_REQUIRES(ctx, finite_in_compute_type(gain, DoubleCompute(dtype)),
                errors::InvalidArgument("ganops.bias_act: gain ", gain, " must be finite in ",
                                        compute_type_name(DoubleCompute(dtype)), ", the compute type of ",
                                        DataTypeString(dtype), " x"));
    // Exactly -1 means no clamp (what the front ends pass for None); any other negative value
    // or NaN is a caller's mistake, which `clamp < 0` used to read silently as "no clamp".
    OP_REQUIRES(ctx, clamp == -1.0 || clamp >= 0.0,
                errors::InvalidArgument("ganops.bias_act: clamp must be >= 0, or -1 for no "
                                        "clamp, got ", clamp));
    base_.act = info->act;
    base_.alpha = alpha;
    base_.gain = gain;
    base_.clamp = clamp;
  }

 protected:
  // The core parameters for x (row-major) and b; false, with the status set, on bad input.
  bool MakeParams(OpKernelContext* ctx, const Tensor& x, const Tensor& b,
                  BiasActParams* p) const {
    *p = base_;
    p->numel = x.NumElements();
    if (!has_bias_) return true;  // channels = inner = 1, no bias pointer
    const int64_t rank = x.dims();
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, rank >= 1,
        errors::InvalidArgument("ganops.bias_act: x must have at least one dim when b is given"));
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, dim_ >= -rank && dim_ < rank,
        errors::InvalidArgument("ganops.bias_act: dim ", dim_, " is out of range for x with ",
                                rank, " dims"));
    const int64_t dim = dim_ < 0 ? dim_ + rank : dim_;
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, b.dims() == 1 && b.NumElements() == x.dim_size(dim),
        errors::InvalidArgument("ganops.bias_act: b must be 1-D with x.shape[", dim, "] = ",
                                x.dim_size(dim), " elements, got shape ",
                                b.shape().DebugString()));
    int64_t inner = 1;
    for (int64_t d = dim + 1; d < rank; ++d) inner *= x.dim_size(d);
    p->channels = x.dim_size(dim);
    p->inner = p->channels > 1 ? inner : 1;  // one channel: the layout does not matter
    return true;
  }

  // Checks that a gradient input has x's shape.
  static bool CheckLikeX(OpKernelContext* ctx, const Tensor& t, const Tensor& x,
                         const char* name) {
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, t.shape() == x.shape(),
        errors::InvalidArgument("ganops.bias_act: ", name, " has shape ", t.shape().DebugString(),
                                " but x has ", x.shape().DebugString()));
    return true;
  }

  template <typename T>
  const T* BiasData(const Tensor& b) const {
    return has_bias_ ? b.flat<T>().data() : nullptr;
  }

 private:
  BiasActParams base_;
  int64_t dim_ = 1;
  bool has_bias_ = false;
};

template <typename Device, typename T>
class BiasActOp : public BiasActKernelBase {
 public:
  using BiasActKernelBase::BiasActKernelBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& b = ctx->input(1);
    BiasActParams p;
    if (!MakeParams(ctx, x, b, &p)) return;
    Tensor* y = nullptr;
    // The kernels read element i before writing it, so y may reuse x's buffer when TF allows.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    if (p.numel == 0) return;
    BiasActDevice<Device, T>::forward(ctx, p, x.flat<T>().data(), BiasData<T>(b),
                                      y->flat<T>().data());
  }
};

template <typename Device, typename T>
class BiasActGradOp : public BiasActKernelBase {
 public:
  using BiasActKernelBase::BiasActKernelBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& b = ctx->input(2);
    BiasActParams p;
    if (!MakeParams(ctx, x, b, &p) || !CheckLikeX(ctx, grad, x, "grad")) return;
    Tensor* dz = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &dz));
    if (p.numel == 0) return;
    BiasActDevice<Device, T>::backward(ctx, p, grad.flat<T>().data(), x.flat<T>().data(),
                                       BiasData<T>(b), dz->flat<T>().data());
  }
};

template <typename Device, typename T>
class BiasActGradGradOp : public BiasActKernelBase {
 public:
  using BiasActKernelBase::BiasActKernelBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad_grad = ctx->input(0);
    const Tensor& grad = ctx->input(1);
    const Tensor& x = ctx->input(2);
    const Tensor& b = ctx->input(3);
    BiasActParams p;
    if (!MakeParams(ctx, x, b, &p) || !CheckLikeX(ctx, grad_grad, x, "grad_grad") ||
        !CheckLikeX(ctx, grad, x, "grad")) {
      return;
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &out));
    if (p.numel == 0) return;
    BiasActDevice<Device, T>::backward2(ctx, p, grad_grad.flat<T>().data(),
                                        grad.flat<T>().data(), x.flat<T>().data(),
                                        BiasData<T>(b), out->flat<T>().data());
  }
};

#define GANOPS_REGISTER_BIAS_ACT_KERNELS(DEVICE_NAME, DeviceType, T)                        \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsBiasAct").Device(DEVICE_NAME).TypeConstraint<T>("T"),                     \
      BiasActOp<DeviceType, T>);                                                            \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsBiasActGrad").Device(DEVICE_NAME).TypeConstraint<T>("T"),                 \
      BiasActGradOp<DeviceType, T>);                                                        \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsBiasActGradGrad").Device(DEVICE_NAME).TypeConstraint<T>("T"),             \
      BiasActGradGradOp<DeviceType, T>);

GANOPS_REGISTER_BIAS_ACT_KERNELS(DEVICE_CPU, CPUDevice, float)
GANOPS_REGISTER_BIAS_ACT_KERNELS(DEVICE_CPU, CPUDevice, double)
GANOPS_REGISTER_BIAS_ACT_KERNELS(DEVICE_CPU, CPUDevice, Eigen::half)
GANOPS_REGISTER_BIAS_ACT_KERNELS(DEVICE_CPU, CPUDevice, Eigen::bfloat16)

#if GOOGLE_CUDA
GANOPS_REGISTER_BIAS_ACT_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, float)
GANOPS_REGISTER_BIAS_ACT_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, double)
GANOPS_REGISTER_BIAS_ACT_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::half)
GANOPS_REGISTER_BIAS_ACT_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::bfloat16)
#endif

#undef GANOPS_REGISTER_BIAS_ACT_KERNELS

}  // namespace
}  // namespace tf_adapter
}  // namespace ganops
