// Pieces shared by the torch CUDA adapters (*_cuda.cpp): the launcher dtype of a tensor and the
// check of a launcher's return code.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ganops/cuda/launch.h"

namespace ganops {
namespace torch_adapter {

// The ops' argument checks admit float32, float64, float16 and bfloat16 only.
inline cuda::DType core_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kDouble: return cuda::DType::kFloat64;
    case at::kHalf: return cuda::DType::kFloat16;
    default: return cuda::DType::kBFloat16;
  }
}

inline void check_launch(int err, const char* op) {
  TORCH_CHECK(err == 0, "ganops.", op, ": CUDA launch failed: ", cuda::error_string(err));
}

}  // namespace torch_adapter
}  // namespace ganops
