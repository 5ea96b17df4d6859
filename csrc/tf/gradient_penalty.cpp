// Gradient penalties for TensorFlow: op registrations with shape functions, and
// OpKernels for CPU (and GPU when TF is built with CUDA) that check their inputs and call the
// framework-free core (ganops/gradient_penalty.h).
//
//   GanopsPerSampleLerp(input, end, weight)   -> input + weight_b * (end - input)
//   GanopsPerSampleAdd(input, other, alpha)   -> input + alpha_b * other
//   GanopsGradientPenalty(grad, grad_scale)   -> (penalty, norms)
//   GanopsGradientPenaltyGrad(grad_output, grad, norms, grad_scale) -> d penalty / d grad
//
// The batch is dim 0 and TF tensors are row-major, so sample b is the contiguous run
// [b * per_sample, (b + 1) * per_sample), as the core expects. The per-sample coefficients,
// norms and penalties are of type S, the core's accumulation type (float64 for float64 inputs,
// float32 otherwise); the Python wrappers cast the coefficients to it.
//
// grad_scale is an input, not an attribute as in the PyTorch schema: under a
// LossScaleOptimizer it is 1 / the dynamic loss scale, a variable that changes during training
// while a tf.function's attributes are fixed when it is traced. It stays in host memory.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "ganops/gradient_penalty.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "ganops/arg_text.h"
#include "tf_adapter.h"

namespace ganops {
namespace tf_adapter {
namespace {

// ---------------------------------------------------------------------------------------------
// Shape functions

absl::Status BatchedShape(InferenceContext* c, int index, const char* op, const char* name,
                          ShapeHandle* out) {
  absl::Status s = c->WithRankAtLeast(c->input(index), 1, out);
  if (!s.ok()) {
    return errors::InvalidArgument("ganops.", op, ": ", name, " must have a batch dim (at least "
                                   "1 dim); ", s.message());
  }
  return absl::OkStatus();
}

// input and the second sample tensor have one shape; the coefficient is per sample.
absl::Status MixShape(InferenceContext* c, const char* op, const char* other_name) {
  ShapeHandle input, other;
  TF_RETURN_IF_ERROR(BatchedShape(c, 0, op, "input", &input));
  absl::Status merged = c->Merge(input, c->input(1), &other);
  if (!merged.ok()) {
    return errors::InvalidArgument("ganops.", op, ": ", other_name, " must have input's shape; ",
                                   merged.message());
  }
  c->set_output(0, other);
  return absl::OkStatus();
}

absl::Status PenaltyShape(InferenceContext* c) {
  ShapeHandle grad, scale;
  TF_RETURN_IF_ERROR(BatchedShape(c, 0, "gradient_penalty", "grad", &grad));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 0, &scale));
  std::string reduction;
  TF_RETURN_IF_ERROR(c->GetAttr("reduction", &reduction));
  ShapeHandle norms = c->Vector(c->Dim(grad, 0));
  c->set_output(0, reduction == "none" ? norms : c->Scalar());
  c->set_output(1, norms);
  return absl::OkStatus();
}

absl::Status PenaltyGradShape(InferenceContext* c) {
  ShapeHandle grad, scale;
  TF_RETURN_IF_ERROR(BatchedShape(c, 1, "gradient_penalty_grad", "grad", &grad));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 0, &scale));
  c->set_output(0, grad);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Op registrations

REGISTER_OP("GanopsPerSampleLerp")
    .Input("input: T")
    .Input("end: T")
    .Input("weight: S")
    .Output("out: T")
    .Attr("T: {float, double, half, bfloat16}")
    .Attr("S: {float, double}")  // must be double for double samples, else float
    .SetShapeFn([](InferenceContext* c) { return MixShape(c, "per_sample_lerp", "end"); })
    .Doc(R"doc(
input + weight_b * (end - input), with one weight per sample b (dim 0): WGAN-GP's interpolation
of fake (input) and real (end) samples. weight holds batch values, e.g. shape [N] or [N, 1, 1, 1].
)doc");

REGISTER_OP("GanopsPerSampleAdd")
    .Input("input: T")
    .Input("other: T")
    .Input("alpha: S")
    .Output("out: T")
    .Attr("T: {float, double, half, bfloat16}")
    .Attr("S: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return MixShape(c, "per_sample_add", "other"); })
    .Doc(R"doc(
input + alpha_b * other, with one alpha per sample b (dim 0): DRAGAN's perturbation of real
samples (input) by noise (other).
)doc");

#define GANOPS_PENALTY_ATTRS                                                                \
  Attr("T: {float, double, half, bfloat16}")                                                \
      .Attr("S: {float, double}")                                                           \
      .Attr("kind: string")                                                                 \
      .Attr("target: float")                                                                \
      .Attr("weight: float")                                                                \
      .Attr("reduction: string")                                                            \
      /* The exact doubles of target and weight (see GetExactScalarAttr). */                \
      .Attr("target_bits: int = 0")                                                         \
      .Attr("weight_bits: int = 0")

REGISTER_OP("GanopsGradientPenalty")
    .Input("grad: T")
    .Input("grad_scale: S")
    .Output("penalty: S")
    .Output("norms: S")
    .GANOPS_PENALTY_ATTRS
    .SetShapeFn(PenaltyShape)
    .Doc(R"doc(
n_b = grad_scale * ||grad_b|| over all non-batch dims, and the penalty weight * phi(n_b) for kind
norm (n), squared (n^2), two-sided ((n - target)^2) or one-sided (max(0, n - target)^2), reduced
over the batch (none: shape [N]; mean, sum: a scalar). norms has shape [N].
)doc");

REGISTER_OP("GanopsGradientPenaltyGrad")
    .Input("grad_output: S")
    .Input("grad: T")
    .Input("norms: S")
    .Input("grad_scale: S")
    .Output("grad_grad: T")
    .GANOPS_PENALTY_ATTRS
    .SetShapeFn(PenaltyGradShape)
    .Doc(R"doc(
grad_output times d penalty / d grad, from the norms GanopsGradientPenalty returned for grad:
grad_output_b * weight * grad_scale^2 * phi'(n_b) / n_b * grad_b, 0 where n_b = 0.
)doc");

#undef GANOPS_PENALTY_ATTRS

// ---------------------------------------------------------------------------------------------
// Device back ends: each runs one core pass on its device.

// A mix or a scaled copy costs about two cycles per element; the forward's tasks are runs of
// kPenaltyGrain / grain elements each (the core's sizing), so their cost follows from grain.
constexpr int64_t kCyclesPerElement = 2;

struct PenaltyParallelFor {
  ::tensorflow::thread::ThreadPool* pool;

  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    const int64_t cycles = kCyclesPerElement * cpu::kPenaltyGrain / std::max<int64_t>(grain, 1);
    TfParallelFor{pool, cycles}(begin, end, grain, f);
  }
};

template <typename Device, typename T>
struct PenaltyDevice;

template <typename T>
struct PenaltyDevice<CPUDevice, T> {
  using A = acc_t<T>;

  static void mix(OpKernelContext* ctx, const GradientPenaltyParams& p, MixMode mode, const T* a,
                  const T* b, const A* c, T* x) {
    const PenaltyParallelFor pf{cpu_pool(ctx)};
    if (mode == MixMode::kLerp) {
      cpu::mix_samples<MixMode::kLerp, T>(p, a, b, c, x, pf);
    } else {
      cpu::mix_samples<MixMode::kAxpy, T>(p, a, b, c, x, pf);
    }
  }
  static void forward(OpKernelContext* ctx, const GradientPenaltyParams& p, const T* g, A* norms,
                      A* penalty) {
    cpu::penalty_forward<T>(p, g, norms, penalty, PenaltyParallelFor{cpu_pool(ctx)});
  }
  static void backward(OpKernelContext* ctx, const GradientPenaltyParams& p, const A* gout,
                       const T* g, const A* norms, T* dg) {
    cpu::penalty_backward<T>(p, gout, g, norms, dg, PenaltyParallelFor{cpu_pool(ctx)});
  }
};

#if GOOGLE_CUDA
// The launchers run on TF's compute stream for this op; the penalty and the norms stay on the
// device. The forward's scratch comes from TF's allocator.
template <typename T>
struct PenaltyDevice<GPUDevice, T> {
  using A = acc_t<T>;

  static cudaStream_t stream(OpKernelContext* ctx) {
    return ctx->eigen_device<GPUDevice>().stream();
  }
  static void check(OpKernelContext* ctx, int error, const char* what) {
    if (error != 0) {
      ctx->SetStatus(errors::Internal("ganops.gradient_penalty: CUDA launch of ", what,
                                      " failed: ", cuda::error_string(error)));
    }
  }
  static void mix(OpKernelContext* ctx, const GradientPenaltyParams& p, MixMode mode, const T* a,
                  const T* b, const A* c, T* x) {
    check(ctx, cuda::mix_samples(p, mode, CudaDType<T>::value, a, b, c, x, stream(ctx)),
          "mix_samples");
  }
  static void forward(OpKernelContext* ctx, const GradientPenaltyParams& p, const T* g, A* norms,
                      A* penalty) {
    const size_t bytes = cuda::gradient_penalty_workspace_bytes(p, CudaDType<T>::value);
    Tensor scratch;
    void* ws = nullptr;
    if (bytes != 0) {
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_INT8,
                                             TensorShape({static_cast<int64_t>(bytes)}),
                                             &scratch));
      ws = scratch.flat<int8_t>().data();
    }
    check(ctx,
          cuda::gradient_penalty(p, CudaDType<T>::value, g, norms, penalty, ws, stream(ctx)),
          "gradient_penalty");
  }
  static void backward(OpKernelContext* ctx, const GradientPenaltyParams& p, const A* gout,
                       const T* g, const A* norms, T* dg) {
    check(ctx,
          cuda::gradient_penalty_backward(p, CudaDType<T>::value, gout, g, norms, dg,
                                          stream(ctx)),
          "gradient_penalty_backward");
  }
};
#endif  // GOOGLE_CUDA

// ---------------------------------------------------------------------------------------------
// Kernels

// S must be the core's accumulation type for T.
template <typename T>
void CheckAccType(OpKernelConstruction* ctx, const char* op) {
  using A = acc_t<T>;
  DataType acc_type;
  OP_REQUIRES_OK(ctx, ctx->GetAttr("S", &acc_type));
  OP_REQUIRES(ctx, acc_type == DataTypeToEnum<A>::v(),
              errors::InvalidArgument("ganops.", op, ": the per-sample values must be ",
                                      DataTypeString(DataTypeToEnum<A>::v()), " for ",
                                      DataTypeString(DataTypeToEnum<T>::v()), " samples, got ",
                                      DataTypeString(acc_type)));
}

bool CheckBatched(OpKernelContext* ctx, const Tensor& t, const char* op, const char* name) {
  GANOPS_OP_REQUIRES_OR_FALSE(
      ctx, t.dims() >= 1,
      errors::InvalidArgument("ganops.", op, ": ", name, " must have a batch dim (at least 1 "
                              "dim), got a 0-d tensor"));
  return true;
}

// The batch and per-sample size of a tensor whose dim 0 is the batch.
GradientPenaltyParams BatchParams(const Tensor& t) {
  GradientPenaltyParams p;
  set_batch_view(p, t.dim_size(0), t.NumElements());
  return p;
}

template <typename Device, typename T, MixMode kMode>
class MixOp : public OpKernel {
 public:
  using A = acc_t<T>;

  explicit MixOp(OpKernelConstruction* ctx) : OpKernel(ctx) { CheckAccType<T>(ctx, op_name()); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& other = ctx->input(1);
    const Tensor& coef = ctx->input(2);
    if (!CheckBatched(ctx, input, op_name(), "input")) return;
    OP_REQUIRES(ctx, other.shape() == input.shape(),
                errors::InvalidArgument("ganops.", op_name(), ": ", other_name(), " has shape ",
                                        other.shape().DebugString(), " but input has ",
                                        input.shape().DebugString()));
    const int64_t n = input.dim_size(0);
    OP_REQUIRES(ctx,
                coef.NumElements() == n && (coef.dims() == 0 || coef.dim_size(0) == n || n == 1),
                errors::InvalidArgument("ganops.", op_name(), ": ", coef_name(),
                                        " must hold one value per sample (", n, "), e.g. shape [",
                                        n, "] or [", n, ", 1, ...], got shape ",
                                        coef.shape().DebugString()));
    Tensor* out = nullptr;
    // The kernel reads element i of both inputs before writing it, so out may reuse either.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0, 1}, 0, input.shape(), &out));
    PenaltyDevice<Device, T>::mix(ctx, BatchParams(input), kMode, input.flat<T>().data(),
                                  other.flat<T>().data(), coef.flat<A>().data(),
                                  out->flat<T>().data());
  }

 private:
  static constexpr bool kLerp = kMode == MixMode::kLerp;
  static const char* op_name() { return kLerp ? "per_sample_lerp" : "per_sample_add"; }
  static const char* other_name() { return kLerp ? "end" : "other"; }
  static const char* coef_name() { return kLerp ? "weight" : "alpha"; }
};

// Reads and checks the attributes once per kernel instance; checks grad and grad_scale per call.
template <typename T>
class PenaltyKernelBase : public OpKernel {
 public:
  using A = acc_t<T>;

  explicit PenaltyKernelBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    CheckAccType<T>(ctx, "gradient_penalty");
    std::string kind, reduction;
    double target = 1.0, weight = 1.0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kind", &kind));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reduction", &reduction));
    OP_REQUIRES_OK(ctx, GetExactScalarAttr(ctx, "target", &target));
    OP_REQUIRES_OK(ctx, GetExactScalarAttr(ctx, "weight", &weight));
    OP_REQUIRES(ctx, parse_penalty_kind(kind, &base_.kind),
                errors::InvalidArgument("ganops.gradient_penalty: kind: unknown penalty ",
                                        quote_arg(kind), "; expected one of ",
                                        kPenaltyKindNames));
    OP_REQUIRES(ctx, parse_reduction(reduction, &base_.reduction),
                errors::InvalidArgument("ganops.gradient_penalty: reduction: unknown reduction ",
                                        quote_arg(reduction), "; expected one of ",
                                        kReductionNames));
    const DataType acc = DataTypeToEnum<A>::v();
    OP_REQUIRES(ctx, finite_in_compute_type(target, DoubleCompute(acc)),
                errors::InvalidArgument("ganops.gradient_penalty: target ", target,
                                        " must be finite in ", compute_type_name(DoubleCompute(acc)),
                                        ", the type of the norms for ",
                                        DataTypeString(DataTypeToEnum<T>::v()), " gradients"));
    OP_REQUIRES(ctx, finite_in_compute_type(weight, DoubleCompute(acc)),
                errors::InvalidArgument("ganops.gradient_penalty: weight ", weight,
                                        " must be finite in ", compute_type_name(DoubleCompute(acc)),
                                        ", the type of the norms for ",
                                        DataTypeString(DataTypeToEnum<T>::v()), " gradients"));
    base_.target = target;
    base_.weight = weight;
  }

 protected:
  // The core parameters for grad and the scalar grad_scale; false, with the status set, on bad
  // input.
  bool MakeParams(OpKernelContext* ctx, const Tensor& grad, const Tensor& grad_scale,
                  GradientPenaltyParams* p) const {
    if (!CheckBatched(ctx, grad, "gradient_penalty", "grad")) return false;
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, grad.dim_size(0) > 0,
        errors::InvalidArgument("ganops.gradient_penalty: grad has an empty batch (shape ",
                                grad.shape().DebugString(), ")"));
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, grad_scale.NumElements() == 1,
        errors::InvalidArgument("ganops.gradient_penalty: grad_scale must be a scalar, got shape ",
                                grad_scale.shape().DebugString()));
    const double scale = static_cast<double>(grad_scale.flat<A>()(0));
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, std::isfinite(scale) && scale > 0.0,
        errors::InvalidArgument("ganops.gradient_penalty: grad_scale must be finite and > 0, got ",
                                scale));
    *p = base_;
    const GradientPenaltyParams batch = BatchParams(grad);
    p->batch = batch.batch;
    p->per_sample = batch.per_sample;
    p->grad_scale = scale;
    return true;
  }

  // A vector of n acc values (grad_output, norms): any shape with n elements.
  static bool CheckValues(OpKernelContext* ctx, const Tensor& t, int64_t n, const char* name) {
    GANOPS_OP_REQUIRES_OR_FALSE(
        ctx, t.NumElements() == n,
        errors::InvalidArgument("ganops.gradient_penalty_grad: ", name, " must hold ", n,
                                " values, got shape ", t.shape().DebugString()));
    return true;
  }

 private:
  GradientPenaltyParams base_;
};

template <typename Device, typename T>
class PenaltyOp : public PenaltyKernelBase<T> {
 public:
  using Base = PenaltyKernelBase<T>;
  using A = typename Base::A;
  using Base::Base;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    GradientPenaltyParams p;
    if (!Base::MakeParams(ctx, grad, ctx->input(1), &p)) return;
    Tensor *penalty = nullptr, *norms = nullptr;
    const TensorShape per_sample({p.batch});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, p.reduction == Reduction::kNone ? per_sample : TensorShape({}),
                            &penalty));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, per_sample, &norms));
    PenaltyDevice<Device, T>::forward(ctx, p, grad.flat<T>().data(), norms->flat<A>().data(),
                                      penalty->flat<A>().data());
  }
};

template <typename Device, typename T>
class PenaltyGradOp : public PenaltyKernelBase<T> {
 public:
  using Base = PenaltyKernelBase<T>;
  using A = typename Base::A;
  using Base::Base;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad_output = ctx->input(0);
    const Tensor& grad = ctx->input(1);
    const Tensor& norms = ctx->input(2);
    GradientPenaltyParams p;
    if (!Base::MakeParams(ctx, grad, ctx->input(3), &p) ||
        !Base::CheckValues(ctx, grad_output, p.outputs(), "grad_output") ||
        !Base::CheckValues(ctx, norms, p.batch, "norms")) {
      return;
    }
    Tensor* out = nullptr;
    // The per-sample coefficients are formed before any output is written, and element i of
    // grad is read before out[i] is written: out may reuse grad's buffer.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 0, grad.shape(), &out));
    PenaltyDevice<Device, T>::backward(ctx, p, grad_output.flat<A>().data(),
                                       grad.flat<T>().data(), norms.flat<A>().data(),
                                       out->flat<T>().data());
  }
};

#define GANOPS_REGISTER_PENALTY_KERNELS(DEVICE_NAME, DeviceType, T)                         \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsPerSampleLerp").Device(DEVICE_NAME).TypeConstraint<T>("T"),               \
      MixOp<DeviceType, T, MixMode::kLerp>);                                                \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("GanopsPerSampleAdd").Device(DEVICE_NAME).TypeConstraint<T>("T"),                \
      MixOp<DeviceType, T, MixMode::kAxpy>);                                                \
  REGISTER_KERNEL_BUILDER(Name("GanopsGradientPenalty")                                     \
                              .Device(DEVICE_NAME)                                          \
                              .TypeConstraint<T>("T")                                       \
                              .HostMemory("grad_scale"),                                    \
                          PenaltyOp<DeviceType, T>);                                        \
  REGISTER_KERNEL_BUILDER(Name("GanopsGradientPenaltyGrad")                                 \
                              .Device(DEVICE_NAME)                                          \
                              .TypeConstraint<T>("T")                                       \
                              .HostMemory("grad_scale"),                                    \
                          PenaltyGradOp<DeviceType, T>);

GANOPS_REGISTER_PENALTY_KERNELS(DEVICE_CPU, CPUDevice, float)
GANOPS_REGISTER_PENALTY_KERNELS(DEVICE_CPU, CPUDevice, double)
GANOPS_REGISTER_PENALTY_KERNELS(DEVICE_CPU, CPUDevice, Eigen::half)
GANOPS_REGISTER_PENALTY_KERNELS(DEVICE_CPU, CPUDevice, Eigen::bfloat16)

#if GOOGLE_CUDA
GANOPS_REGISTER_PENALTY_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, float)
GANOPS_REGISTER_PENALTY_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, double)
GANOPS_REGISTER_PENALTY_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::half)
GANOPS_REGISTER_PENALTY_KERNELS(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::bfloat16)
#endif

#undef GANOPS_REGISTER_PENALTY_KERNELS

}  // namespace
}  // namespace tf_adapter
}  // namespace ganops
