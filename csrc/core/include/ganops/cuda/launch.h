// Host-side declarations of the CUDA launchers. Includes no CUDA header, so framework
// adapters compiled by the host compiler can call the kernels that nvcc built.
#pragma once

#include <cstdint>

#include "ganops/bias_act.h"

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace ganops {
namespace cuda {

// Storage types the kernels are built for; adapters map their framework dtype onto these.
enum class DType : int { kFloat32 = 0, kFloat64, kFloat16, kBFloat16 };

// Each launcher returns a cudaError_t as int: 0 on success.
int bias_act_forward(const BiasActParams& p, DType dtype, const void* x, const void* b,
                     void* y, cudaStream_t stream);
int bias_act_backward(const BiasActParams& p, DType dtype, const void* dy, const void* x,
                      const void* b, void* dz, cudaStream_t stream);
int bias_act_backward2(const BiasActParams& p, DType dtype, const void* ddz, const void* dy,
                       const void* x, const void* b, void* out, cudaStream_t stream);

const char* error_string(int error);

}  // namespace cuda
}  // namespace ganops
