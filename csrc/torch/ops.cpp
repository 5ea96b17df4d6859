// The ganops operator schemas. Implementations register per backend in their own files.
#include <torch/library.h>

TORCH_LIBRARY(ganops, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  // dz = grad * dy/dz at z = x + b: the gradient for x (for b: summed per channel).
  m.def("bias_act_backward(Tensor grad, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  // d/dx of bias_act_backward: grad_grad * grad * d2y/dz2.
  m.def("bias_act_backward2(Tensor grad_grad, Tensor grad, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
}
