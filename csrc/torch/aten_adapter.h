// Pieces shared by the torch CPU adapters (bias_act.cpp, spectral_norm.cpp): the core's
// parallel-for on ATen's intra-op thread pool and the dtypes every op is built for.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace ganops {
namespace torch_adapter {

struct AtenParallelFor {
  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    at::parallel_for(begin, end, grain, f);
  }
};

}  // namespace torch_adapter
}  // namespace ganops

#define GANOPS_DISPATCH_FLOATS(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)
