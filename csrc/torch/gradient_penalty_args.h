// Argument checks and core parameters for the gradient-penalty ops, shared by the CPU and CUDA
// implementations. Errors name the argument; ValueError/TypeError reach Python.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string>
#include <tuple>

#include "ganops/arg_text.h"
#include "ganops/gradient_penalty.h"

namespace ganops {
namespace torch_adapter {

inline void check_penalty_dtype(const at::Tensor& t, const char* op, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                   "ganops.", op, ": ", name, " must be float32, float64, float16 or bfloat16, "
                   "got ", s);
}

// The per-sample values (eps, norms, penalties) are acc_t: float64 for float64, else float32.
inline at::ScalarType penalty_acc_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// t itself when its batch dim is outermost in memory and it is dense (contiguous, channels_last
// and the like), else a contiguous copy: the kernels read sample b at [b * per_sample, ...).
inline at::Tensor batch_major(const at::Tensor& t) {
  const int64_t n = t.size(0);
  const bool ok = t.is_non_overlapping_and_dense() &&
                  (n <= 1 || t.stride(0) == t.numel() / n);
  return ok ? t : t.contiguous();
}

inline void check_batched(const at::Tensor& t, const char* op, const char* name) {
  check_penalty_dtype(t, op, name);
  TORCH_CHECK_VALUE(t.dim() >= 1, "ganops.", op, ": ", name, " must have a batch dim (at least "
                    "1 dim), got a 0-d tensor");
}

// `t` with ref's shape, dtype and device, laid out like ref (copied only when it is not).
inline at::Tensor laid_out_like(const at::Tensor& t, const at::Tensor& ref, const char* op,
                                const char* name, const char* ref_name) {
  TORCH_CHECK_VALUE(t.sizes() == ref.sizes(), "ganops.", op, ": ", name, " has shape ",
                    t.sizes(), " but ", ref_name, " has ", ref.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "ganops.", op, ": ", name,
                   " has dtype ", t.scalar_type(), " but ", ref_name, " has ", ref.scalar_type());
  TORCH_CHECK_VALUE(t.device() == ref.device(), "ganops.", op, ": ", name, " is on ", t.device(),
                    " but ", ref_name, " is on ", ref.device());
  if (t.strides() == ref.strides()) return t;
  at::Tensor out = at::empty_strided(ref.sizes(), ref.strides(), ref.options());
  out.copy_(t);
  return out;
}

// One value per sample of `like` (any shape with batch elements, e.g. (N,) or (N, 1, 1, 1)),
// as a contiguous acc_t vector.
inline at::Tensor per_sample_values(const at::Tensor& c, const at::Tensor& like, const char* op,
                                    const char* name) {
  const int64_t n = like.size(0);
  TORCH_CHECK_TYPE(at::isFloatingType(c.scalar_type()), "ganops.", op, ": ", name,
                   " must be a floating tensor, got ", c.scalar_type());
  TORCH_CHECK_VALUE(c.numel() == n && (c.dim() == 0 || c.size(0) == n || n == 1), "ganops.", op,
                    ": ", name, " must hold one value per sample (", n, "), e.g. shape (", n,
                    ",) or (", n, ", 1, ...), got shape ", c.sizes());
  TORCH_CHECK_VALUE(c.device() == like.device(), "ganops.", op, ": ", name, " is on ",
                    c.device(), " but the samples are on ", like.device());
  return c.reshape({n}).to(penalty_acc_dtype(like)).contiguous();
}

inline GradientPenaltyParams mix_params(const at::Tensor& input) {
  GradientPenaltyParams p;
  set_batch_view(p, input.size(0), input.numel());
  return p;
}

// What both mix implementations check and prepare: the inputs in one batch-major layout, the
// coefficients as an acc_t vector, the core parameters.
struct MixArgs {
  at::Tensor a, b, c;
  GradientPenaltyParams p;
};

inline MixArgs mix_args(const at::Tensor& input, const at::Tensor& other, const at::Tensor& coef,
                        const char* op, const char* other_name, const char* coef_name) {
  check_batched(input, op, "input");
  MixArgs m;
  m.a = batch_major(input);
  m.b = laid_out_like(other, m.a, op, other_name, "input");
  m.c = per_sample_values(coef, m.a, op, coef_name);
  m.p = mix_params(m.a);
  return m;
}

// All checks of gradient_penalty on (grad, scalars), and its core parameters.
inline GradientPenaltyParams penalty_params(const at::Tensor& grad, const std::string& kind,
                                            double target, double weight, double grad_scale,
                                            const std::string& reduction) {
  check_batched(grad, "gradient_penalty", "grad");
  TORCH_CHECK_VALUE(grad.size(0) > 0, "ganops.gradient_penalty: grad has an empty batch (shape ",
                    grad.sizes(), ")");
  TORCH_CHECK_VALUE(std::isfinite(target), "ganops.gradient_penalty: target must be finite, got ",
                    target);
  TORCH_CHECK_VALUE(std::isfinite(weight), "ganops.gradient_penalty: weight must be finite, got ",
                    weight);
  TORCH_CHECK_VALUE(std::isfinite(grad_scale) && grad_scale > 0.0,
                    "ganops.gradient_penalty: grad_scale must be finite and > 0, got ", grad_scale);
  GradientPenaltyParams p = mix_params(grad);
  TORCH_CHECK_VALUE(parse_penalty_kind(kind, &p.kind), "ganops.gradient_penalty: kind: "
                    "unknown penalty ", quote_arg(kind), "; expected one of ", kPenaltyKindNames);
  TORCH_CHECK_VALUE(parse_reduction(reduction, &p.reduction), "ganops.gradient_penalty: "
                    "reduction: unknown reduction ", quote_arg(reduction), "; expected one of ",
                    kReductionNames);
  p.target = target;
  p.weight = weight;
  p.grad_scale = grad_scale;
  const bool double_compute = grad.scalar_type() == at::kDouble;
  if (const char* name = penalty_scalar_out_of_range(p, double_compute)) {
    const double value = name == std::string("grad_scale") ? grad_scale
                         : name == std::string("weight")   ? weight
                                                           : target;
    TORCH_CHECK_VALUE(false, "ganops.gradient_penalty: ", name, " must be within the range of ",
                      compute_type_name(double_compute), " (the compute type for a ",
                      grad.scalar_type(), " grad)",
                      name == std::string("grad_scale") ? ", squared" : "", ", got ", value);
  }
  return p;
}

// The forward's outputs for grad, in acc_t: the penalty (p.outputs() values) and the norms.
inline std::tuple<at::Tensor, at::Tensor> penalty_outputs(const at::Tensor& grad,
                                                          const GradientPenaltyParams& p) {
  const auto acc = grad.options().dtype(penalty_acc_dtype(grad));
  at::Tensor penalty = p.reduction == Reduction::kNone ? at::empty({p.batch}, acc)
                                                       : at::empty({}, acc);
  return {penalty, at::empty({p.batch}, acc)};
}

// A contiguous acc_t tensor of `n` elements on grad's device (grad_output, norms).
inline at::Tensor acc_vector(const at::Tensor& t, const at::Tensor& grad, int64_t n,
                             const char* name) {
  TORCH_CHECK_VALUE(t.numel() == n, "ganops.gradient_penalty_backward: ", name, " must hold ", n,
                    " values, got shape ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == penalty_acc_dtype(grad),
                   "ganops.gradient_penalty_backward: ", name, " must be ",
                   penalty_acc_dtype(grad), " for a ", grad.scalar_type(), " grad, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == grad.device(), "ganops.gradient_penalty_backward: ", name,
                    " is on ", t.device(), " but grad is on ", grad.device());
  return t.contiguous();
}

}  // namespace torch_adapter
}  // namespace ganops
