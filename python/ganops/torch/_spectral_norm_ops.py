"""Fake (meta) kernels and autograd for torch.ops.ganops.spectral_*.

    spectral_norm_power_iteration(W, u!, v!, dim, n, eps) -> (sigma, u copy, v copy)
        Mutates u and v; not differentiable (torch runs its power method under no_grad too).
    spectral_normalize(W, u, v, sigma, dim) -> W / sigma
        --grad (C++)-->  spectral_normalize_backward: (G - <G, W / sigma> u v^T) / sigma
    spectral_normalize_backward
        --grad-->  the exact second-order formula below, in plain torch ops (so any order works).

What is saved for backward: W (the parameter itself, no copy), u, v and sigma (vectors and a
scalar). Nothing of W's size is allocated for backward.
"""
import torch

ops = torch.ops.ganops

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def sigma_dtype(weight_dtype):
    return torch.float64 if weight_dtype == torch.float64 else torch.float32


def _check(weight, u, v, dim):
    """The C++ checks, for fake tensors (torch.compile, opcheck) that never reach C++."""
    torch._check(weight.dtype in _FLOATS, lambda: (
        f"ganops.spectral_norm: weight must be float32, float64, float16 or bfloat16, got {weight.dtype}"))
    torch._check(weight.ndim >= 1, lambda: "ganops.spectral_norm: weight must have at least 1 dim")
    torch._check(-weight.ndim <= dim < weight.ndim, lambda: (
        f"ganops.spectral_norm: dim {dim} is out of range for a weight with {weight.ndim} dims"))
    rows = weight.shape[dim]
    torch._check(u.ndim == 1 and u.shape[0] == rows, lambda: (
        f"ganops.spectral_norm: u must be 1-D with {rows} elements (weight.shape[dim])"))
    torch._check(v.ndim == 1 and v.shape[0] * rows == weight.numel(), lambda: (
        "ganops.spectral_norm: v must be 1-D with weight.numel() / weight.shape[dim] elements"))
    torch._check(u.dtype == weight.dtype and v.dtype == weight.dtype, lambda: (
        "ganops.spectral_norm: u and v must have weight's dtype"))


@torch.library.register_fake("ganops::spectral_norm_power_iteration")
def _power_iteration_fake(weight, u, v, dim, n_power_iterations, eps):
    _check(weight, u, v, dim)
    torch._check(n_power_iterations >= 0, lambda: "ganops.spectral_norm: n_power_iterations must be >= 0")
    torch._check(eps > 0, lambda: "ganops.spectral_norm: eps must be > 0")
    sigma = weight.new_empty((), dtype=sigma_dtype(weight.dtype))
    return sigma, torch.empty_like(u), torch.empty_like(v)


@torch.library.register_fake("ganops::spectral_normalize")
def _normalize_fake(weight, u, v, sigma, dim):
    _check(weight, u, v, dim)
    return weight.new_empty(weight.shape)  # contiguous, as the kernels write it


@torch.library.register_fake("ganops::spectral_normalize_backward")
def _normalize_backward_fake(grad, weight, u, v, sigma, dim):
    _check(weight, u, v, dim)
    torch._check(grad.shape == weight.shape, lambda: "ganops.spectral_norm: grad must have weight's shape")
    return weight.new_empty(weight.shape)


def weight_to_matrix(weight, dim):
    """torch's view of a weight as a matrix: weight.shape[dim] rows."""
    dim = dim % weight.ndim
    if dim != 0:
        weight = weight.permute(dim, *(d for d in range(weight.ndim) if d != dim))
    return weight.flatten(1) if weight.ndim > 1 else weight.unsqueeze(1)


def matrix_to_weight(matrix, shape, dim):
    """Inverse of weight_to_matrix for a weight of `shape`."""
    dim = dim % len(shape)
    others = [s for d, s in enumerate(shape) if d != dim]
    t = matrix.reshape(shape[dim], *others)
    if dim == 0:
        return t
    order = list(range(1, dim + 1)) + [0] + list(range(dim + 1, len(shape)))
    return t.permute(order)


# spectral_normalize's first-order autograd is in C++ (csrc/torch/spectral_norm_autograd.cpp):
# it runs on every training step, where a Python autograd.Function would cost as much as the
# kernels on small weights. It returns a gradient for weight only; sigma is a function of weight
# (u^T M v) whose derivative that formula already includes.


# spectral_normalize_backward(G, W) = G / s - (a / s^2) P with s = <P, W>, a = <G, W>, P = u v^T.
# For an incoming H, with h = <H, G> and q = <H, P>:
#     dG = H / s - (q / s^2) W
#     dW = -(q / s^2) G + (2 a q / s^3 - h / s^2) P
def _normalize_backward_setup(ctx, inputs, output):
    grad, weight, u, v, sigma, dim = inputs
    ctx.dim = dim
    ctx.save_for_backward(grad, weight, u, v, sigma)


def _normalize_backward_backward(ctx, hess):
    grad, weight, u, v, sigma = ctx.saved_tensors
    dim = ctx.dim
    acc = sigma.dtype
    g, w, h = grad.to(acc), weight.to(acc), hess.to(acc)
    uu, vv, s = u.to(acc), v.to(acc), sigma.to(acc)
    q = uu @ weight_to_matrix(h, dim) @ vv
    d_grad = d_weight = None
    if ctx.needs_input_grad[0]:
        d_grad = (h / s - (q / s**2) * w).to(grad.dtype)
    if ctx.needs_input_grad[1]:
        a = (g * w).sum()
        p = matrix_to_weight(torch.outer(uu, vv), weight.shape, dim)
        d_weight = (-(q / s**2) * g + (2 * a * q / s**3 - (h * g).sum() / s**2) * p).to(weight.dtype)
    return d_grad, d_weight, None, None, None, None


torch.library.register_autograd("ganops::spectral_normalize_backward", _normalize_backward_backward,
                                setup_context=_normalize_backward_setup)
