"""Fake (meta) kernels and autograd for torch.ops.ganops.spectral_*.

    spectral_norm_power_iteration(W, u!, v!, dim, n, eps) -> (sigma, u copy, v copy)
        Mutates u and v; not differentiable (torch runs its power method under no_grad too).
    spectral_normalize(W, u, v, sigma, dim) -> W / sigma
        --grad (C++)-->  spectral_normalize_backward: (G - <G, W / sigma> u v^T) / sigma
    spectral_normalize_backward
        --grad-->  the exact second-order formula below, in plain torch ops (so any order works).
    spectral_norm_weight(W, u!, v!, dim, n, eps) -> W / sigma
        The first two in one call (CompositeImplicitAutograd in C++: their fakes and autograd
        apply), what the parametrization runs on every access to module.weight.

What is saved for backward: W (the parameter itself, no copy), u, v and sigma (vectors and a
scalar). Nothing of W's size is allocated for backward.
"""
import torch

ops = torch.ops.ganops

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def sigma_dtype(weight_dtype):
    return torch.float64 if weight_dtype == torch.float64 else torch.float32


# C++'s names for the dtypes, so the fakes' messages read exactly like the kernels'.
_DTYPE_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
                torch.bfloat16: "BFloat16"}


def _dtype_name(dtype):
    return _DTYPE_NAMES.get(dtype, str(dtype))


def _check_weight(weight, dim):
    torch._check_type(weight.dtype in _FLOATS, lambda: (
        "ganops.spectral_norm: weight must be float32, float64, float16 or bfloat16, got "
        f"{_dtype_name(weight.dtype)}"))
    torch._check_value(weight.ndim >= 1, lambda: (
        "ganops.spectral_norm: weight must have at least 1 dim to be viewed as a matrix, got a "
        f"{weight.ndim}-d tensor"))
    torch._check_value(weight.numel() > 0, lambda: (
        f"ganops.spectral_norm: weight is empty (shape {list(weight.shape)})"))
    torch._check_index(-weight.ndim <= dim < weight.ndim, lambda: (
        f"ganops.spectral_norm: dim {dim} is out of range for a weight with {weight.ndim} dims"))


def _check_vector(t, weight, n, name, what):
    torch._check_value(t.ndim == 1 and t.shape[0] == n, lambda: (
        f"ganops.spectral_norm: {name} must be 1-D with {n} elements ({what}), got shape "
        f"{list(t.shape)}"))
    torch._check_type(t.dtype == weight.dtype, lambda: (
        f"ganops.spectral_norm: {name} has dtype {_dtype_name(t.dtype)} but weight has "
        f"{_dtype_name(weight.dtype)}"))
    torch._check_value(t.device == weight.device, lambda: (
        f"ganops.spectral_norm: {name} is on {t.device} but weight is on {weight.device}"))
    torch._check_value(t.is_contiguous(), lambda: f"ganops.spectral_norm: {name} must be contiguous")


def _check(weight, u, v, dim):
    """The C++ checks (spectral_norm_args.h), with the same exception types and messages, for
    fake tensors (torch.compile, opcheck) and meta tensors, which never reach C++."""
    _check_weight(weight, dim)
    rows = weight.shape[dim]
    _check_vector(u, weight, rows, "u", "weight.shape[dim]")
    _check_vector(v, weight, weight.numel() // rows, "v", "weight.numel() / weight.shape[dim]")


def _check_sigma(sigma, weight):
    torch._check_value(sigma.numel() == 1, lambda: (
        f"ganops.spectral_norm: sigma must hold one element, got shape {list(sigma.shape)}"))
    expected = sigma_dtype(weight.dtype)
    torch._check_type(sigma.dtype == expected, lambda: (
        f"ganops.spectral_norm: sigma must be {_dtype_name(expected)} for a "
        f"{_dtype_name(weight.dtype)} weight, got {_dtype_name(sigma.dtype)}"))
    torch._check_value(sigma.device == weight.device, lambda: (
        f"ganops.spectral_norm: sigma is on {sigma.device} but weight is on {weight.device}"))


@torch.library.register_fake("ganops::spectral_norm_power_iteration")
def _power_iteration_fake(weight, u, v, dim, n_power_iterations, eps):
    _check(weight, u, v, dim)
    torch._check_value(n_power_iterations >= 0, lambda: (
        f"ganops.spectral_norm: n_power_iterations must be >= 0, got {n_power_iterations}"))
    torch._check_value(eps > 0, lambda: f"ganops.spectral_norm: eps must be > 0, got {eps}")
    sigma = weight.new_empty((), dtype=sigma_dtype(weight.dtype))
    return sigma, torch.empty_like(u), torch.empty_like(v)


@torch.library.register_fake("ganops::spectral_normalize")
def _normalize_fake(weight, u, v, sigma, dim):
    _check(weight, u, v, dim)
    _check_sigma(sigma, weight)
    return weight.new_empty(weight.shape)  # contiguous, as the kernels write it


@torch.library.register_fake("ganops::spectral_normalize_backward")
def _normalize_backward_fake(grad, weight, u, v, sigma, dim):
    _check(weight, u, v, dim)
    _check_sigma(sigma, weight)
    torch._check_value(grad.shape == weight.shape, lambda: (
        f"ganops.spectral_norm: grad has shape {list(grad.shape)} but weight has {list(weight.shape)}"))
    torch._check_type(grad.dtype == weight.dtype, lambda: (
        f"ganops.spectral_norm: grad has dtype {_dtype_name(grad.dtype)} but weight has "
        f"{_dtype_name(weight.dtype)}"))
    torch._check_value(grad.device == weight.device, lambda: (
        f"ganops.spectral_norm: grad is on {grad.device} but weight is on {weight.device}"))
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
