// Pieces shared by the TensorFlow adapters (one file per op): the TF names they
// use, the core's parallel-for on TF's CPU worker pool, the TF-type to launcher-dtype map for CUDA,
// exact double attributes, and an OP_REQUIRES for helpers that return bool. (Name lookups,
// message quoting and the scalar range rules are the core's: activation.h, arg_text.h.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/platform/threadpool.h"

#if GOOGLE_CUDA
#include "ganops/cuda/launch.h"
#endif

namespace ganops {
namespace tf_adapter {

// The TF names every adapter uses.
using ::tensorflow::DataType;
using ::tensorflow::DataTypeString;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
namespace errors = ::tensorflow::errors;

using CPUDevice = Eigen::ThreadPoolDevice;
#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;
#endif

// Adapts TF's CPU worker pool to the core's parallel_for(begin, end, grain, f). Ranges no
// longer than the core's grain run inline: below that, waking threads costs more than it saves.
// `cycles_per_unit` is the estimated cost of one unit of the range for TF's adaptive sharding;
// erring high only makes shards a little smaller.
struct TfParallelFor {
  ::tensorflow::thread::ThreadPool* pool;
  int64_t cycles_per_unit;

  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    if (end - begin <= grain || pool == nullptr) {
      if (end > begin) f(begin, end);
      return;
    }
    pool->ParallelFor(
        end - begin,
        ::tensorflow::thread::ThreadPool::SchedulingParams::Adaptive(
            std::max<int64_t>(1, cycles_per_unit)),
        [&](int64_t shard_begin, int64_t shard_end) {
          f(begin + shard_begin, begin + shard_end);
        });
  }
};

// TF's float attributes are float32, which would round a float64 op's alpha, gain, target, ...
// (gain sqrt(2) by 3e-8 relative). So each such scalar also travels as `<name>_bits`, an int
// attribute holding the IEEE-754 bit pattern of the double the caller passed. Bits rather than a
// string attribute: exact by construction, with no text to format and parse (strtod depends on
// the process' locale; the front ends would have to agree on a correctly rounded format). The
// float attribute stays, for graphs written before `_bits` existed: in those `_bits` reads as
// its default 0, so the double is taken only where it rounds to the float attribute (it refines
// it), and the float attribute otherwise.
inline absl::Status GetExactScalarAttr(OpKernelConstruction* ctx, const std::string& name,
                                       double* value) {
  float rounded = 0.f;
  int64_t bits = 0;
  TF_RETURN_IF_ERROR(ctx->GetAttr(name, &rounded));
  TF_RETURN_IF_ERROR(ctx->GetAttr(name + "_bits", &bits));
  double exact = 0.0;
  static_assert(sizeof(exact) == sizeof(bits), "a double is 64 bits");
  std::memcpy(&exact, &bits, sizeof(exact));
  *value = static_cast<float>(exact) == rounded ? exact : static_cast<double>(rounded);
  return absl::OkStatus();
}

// Whether the kernels compute in float64 (for float64 tensors) rather than float32: the type
// scalar arguments are checked against (finite_in_compute_type in the core).
inline bool DoubleCompute(DataType dtype) { return dtype == ::tensorflow::DT_DOUBLE; }

inline ::tensorflow::thread::ThreadPool* cpu_pool(::tensorflow::OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->workers;
}

#if GOOGLE_CUDA
template <typename T>
struct CudaDType;
template <>
struct CudaDType<float> {
  static constexpr cuda::DType value = cuda::DType::kFloat32;
};
template <>
struct CudaDType<double> {
  static constexpr cuda::DType value = cuda::DType::kFloat64;
};
template <>
struct CudaDType<Eigen::half> {
  static constexpr cuda::DType value = cuda::DType::kFloat16;
};
template <>
struct CudaDType<Eigen::bfloat16> {
  static constexpr cuda::DType value = cuda::DType::kBFloat16;
};
#endif  // GOOGLE_CUDA

}  // namespace tf_adapter
}  // namespace ganops

// OP_REQUIRES returns from a void function; parameter checks that return bool use this so the
// caller can stop early.
#define GANOPS_OP_REQUIRES_OR_FALSE(CTX, EXP, STATUS)                                       \
  do {                                                                                      \
    if (!(EXP)) {                                                                           \
      (CTX)->CtxFailure(__FILE__, __LINE__, (STATUS));                                      \
      return false;                                                                         \
    }                                                                                       \
  } while (0)
