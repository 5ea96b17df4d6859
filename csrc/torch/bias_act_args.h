// Argument checks and core parameters for the bias_act ops, shared by the CPU and CUDA
// implementations. Errors name the argument; ValueError/TypeError reach Python.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>

#include "ganops/arg_text.h"
#include "ganops/bias_act.h"

namespace ganops {
namespace torch_adapter {

inline void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                   "ganops.bias_act: ", name,
                   " must be float32, float64, float16 or bfloat16, got ", s);
}

// Checks x, b and the scalars, and returns the core parameters for x's memory layout.
inline BiasActParams bias_act_params(const at::Tensor& x, const std::optional<at::Tensor>& b,
                                     int64_t dim, const std::string& act, double alpha,
                                     double gain, std::optional<double> clamp) {
  check_float_dtype(x, "x");
  TORCH_CHECK_VALUE(x.is_non_overlapping_and_dense(),
                    "ganops.bias_act: x must be dense (contiguous, channels_last or another "
                    "permutation of a contiguous layout); got strides ", x.strides(),
                    " for shape ", x.sizes(), ". Call x.contiguous() first.");
  const ActInfo* info = find_act(act);
  TORCH_CHECK_VALUE(info != nullptr, "ganops.bias_act: act: unknown activation ", quote_arg(act),
                    "; expected one of ", act_names());
  TORCH_CHECK_VALUE(!clamp.has_value() || *clamp >= 0.0,
                    "ganops.bias_act: clamp must be None or >= 0, got ", clamp.value_or(0.0));
  BiasActParams p;
  p.act = info->act;
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp.has_value() ? *clamp : -1.0;
  const bool double_compute = x.scalar_type() == at::kDouble;
  const char* out_of_range = bias_act_scalar_out_of_range(p, double_compute);
  TORCH_CHECK_VALUE(out_of_range == nullptr, "ganops.bias_act: ", out_of_range,
                    " must be finite in ", compute_type_name(double_compute),
                    " (the compute type for ", x.scalar_type(), " x), got ",
                    out_of_range == std::string("gain") ? gain : alpha);
  p.numel = x.numel();
  if (b.has_value()) {
    const at::Tensor& bias = *b;
    const int64_t ndim = x.dim();
    TORCH_CHECK_VALUE(ndim >= 1, "ganops.bias_act: x must have at least one dim when b is given");
    TORCH_CHECK_INDEX(dim >= -ndim && dim < ndim, "ganops.bias_act: dim ", dim,
                      " is out of range for x with ", ndim, " dims");
    if (dim < 0) dim += ndim;
    TORCH_CHECK_VALUE(bias.dim() == 1 && bias.numel() == x.size(dim),
                      "ganops.bias_act: b must be 1-D with x.shape[", dim, "] = ", x.size(dim),
                      " elements, got shape ", bias.sizes());
    TORCH_CHECK_TYPE(bias.scalar_type() == x.scalar_type(), "ganops.bias_act: b has dtype ",
                     bias.scalar_type(), " but x has ", x.scalar_type(),
                     "; cast b with b.to(x.dtype)");
    TORCH_CHECK_VALUE(bias.device() == x.device(), "ganops.bias_act: b is on ", bias.device(),
                      " but x is on ", x.device());
    p.channels = x.size(dim);
    // A size-1 dim may carry any stride; with one channel the layout does not matter.
    p.inner = p.channels > 1 ? x.stride(dim) : 1;
  }
  return p;
}

// A tensor with x's shape, dtype and device laid out like x (the kernels index all
// inputs with x's memory offsets). Copies only when the layout differs, e.g. the
// expanded gradient of a sum().
inline at::Tensor like_x(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == x.sizes(), "ganops.bias_act: ", name, " has shape ", t.sizes(),
                    " but x has ", x.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), "ganops.bias_act: ", name,
                   " has dtype ", t.scalar_type(), " but x has ", x.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), "ganops.bias_act: ", name, " is on ", t.device(),
                    " but x is on ", x.device());
  if (t.strides() == x.strides()) return t;
  at::Tensor out = at::empty_like(x);
  out.copy_(t);
  return out;
}

inline const void* bias_data(const std::optional<at::Tensor>& b, at::Tensor& holder) {
  if (!b.has_value()) return nullptr;
  holder = b->contiguous();
  return holder.data_ptr();
}

}  // namespace torch_adapter
}  // namespace ganops
