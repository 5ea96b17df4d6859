// Portable qualifiers so one header serves g++ (CPU adapters) and nvcc (CUDA kernels).
#pragma once

#if defined(__CUDACC__)
#define GANOPS_HD __host__ __device__ __forceinline__
#else
#define GANOPS_HD inline
#endif
