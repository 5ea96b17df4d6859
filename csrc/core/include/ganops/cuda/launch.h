// Host-side declarations of the CUDA launchers. Includes no CUDA header, so framework
// adapters compiled by the host compiler can call the kernels that nvcc built.
#pragma once

#include <cstdint>

#include <cstddef>

#include "ganops/bias_act.h"
#include "ganops/gradient_penalty.h"
#include "ganops/spectral_norm.h"

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

// Spectral norm (ganops/spectral_norm.h). sigma is a device scalar of acc_t (float, or double
// for kFloat64). The workspace is device scratch memory of the size the *_workspace_bytes
// function gives, allocated by the adapter with its framework's allocator.
size_t power_iteration_workspace_bytes(const SpectralNormParams& p, DType dtype);
int power_iteration(const SpectralNormParams& p, DType dtype, const void* w, void* u, void* v,
                    void* sigma, void* workspace, cudaStream_t stream);
int spectral_normalize(const SpectralNormParams& p, DType dtype, const void* w,
                       const void* sigma, void* out, cudaStream_t stream);
size_t normalize_backward_workspace_bytes(const SpectralNormParams& p, DType dtype);
int spectral_normalize_backward(const SpectralNormParams& p, DType dtype, const void* g,
                                const void* w, const void* u, const void* v, const void* sigma,
                                void* out, void* workspace, cudaStream_t stream);

// Gradient penalties (ganops/gradient_penalty.h). c, norms, penalty and gout are device arrays of
// acc_t; the penalty's workspace holds gradient_penalty_workspace_bytes of scratch.
int mix_samples(const GradientPenaltyParams& p, MixMode mode, DType dtype, const void* a,
                const void* b, const void* c, void* x, cudaStream_t stream);
size_t gradient_penalty_workspace_bytes(const GradientPenaltyParams& p, DType dtype);
int gradient_penalty(const GradientPenaltyParams& p, DType dtype, const void* g, void* norms,
                     void* penalty, void* workspace, cudaStream_t stream);
int gradient_penalty_backward(const GradientPenaltyParams& p, DType dtype, const void* gout,
                              const void* g, const void* norms, void* dg, cudaStream_t stream);

const char* error_string(int error);

}  // namespace cuda
}  // namespace ganops
