"""Fake (meta) kernels for torch.ops.ganops.bias_act*, and the autograd of the backward ops.

Autograd chain, each step itself a custom op:
  bias_act            --grad-->  bias_act_backward   (dz = dy * f'(z) * gain * mask)
                                 or bias_act_backward_bias (dz and db = dz summed per channel,
                                 in one pass; first order only, it has no derivative)
  bias_act_backward   --grad-->  bias_act_backward   (for dy)  and  bias_act_backward2 (for x, b)
  bias_act_backward2  --grad-->  not supported: third order raises a clear error.
First and second order are exact. The first step is in C++ (csrc/torch/bias_act_autograd.cpp):
a Python autograd.Function costs more than the kernels on small tensors. It records bias_act_backward when create_graph=True,
so the second order below is exact. What it saves: x and b (b is tiny), nothing for linear
without clamp; never y as well as x.
"""
import math

import torch

from ganops import _activations

ops = torch.ops.ganops

# f'' is zero everywhere (almost everywhere for relu/lrelu): second-order terms vanish.
_PIECEWISE_LINEAR = ("linear", "relu", "lrelu")


def _check(x, b, dim, act, alpha, gain, clamp):
    """The C++ checks, for fake tensors (torch.compile, opcheck) that never reach C++."""
    torch._check(x.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16),
                 lambda: f"ganops.bias_act: x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    torch._check(act in _activations.defaults(), lambda: f"ganops.bias_act: act: unknown activation {act!r}")
    torch._check(clamp is None or clamp >= 0, lambda: f"ganops.bias_act: clamp must be None or >= 0, got {clamp}")
    # As the C++ check: gain and alpha must stay finite in the compute type (float32 unless x is
    # float64), or every output would be inf or NaN.
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    for name, value in (("gain", gain), ("alpha", alpha)):
        torch._check_value(math.isfinite(value) and abs(value) <= torch.finfo(compute).max, lambda: (
            f"ganops.bias_act: {name} must be finite in {compute} (the compute type for {x.dtype} x), "
            f"got {value}"))
    if b is not None:
        torch._check(-x.ndim <= dim < x.ndim, lambda: f"ganops.bias_act: dim {dim} is out of range for x with {x.ndim} dims")
        torch._check(b.ndim == 1 and b.shape[0] == x.shape[dim],
                     lambda: f"ganops.bias_act: b must be 1-D with x.shape[{dim}] elements, got shape {tuple(b.shape)}")
        torch._check(b.dtype == x.dtype, lambda: f"ganops.bias_act: b has dtype {b.dtype} but x has {x.dtype}")
        _check_same_device(b, "b", x)


def _check_same_device(t, name, x):
    # One meta argument sends the whole call here (Meta outranks CPU in dispatch), so without
    # this a CPU x with a meta b would "succeed" with an uninitialised CPU result.
    torch._check_value(t.device == x.device, lambda: (
        f"ganops.bias_act: {name} is on {t.device} but x is on {x.device}"))


@torch.library.register_fake("ganops::bias_act")
def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    _check(x, b, dim, act, alpha, gain, clamp)
    return torch.empty_like(x)


@torch.library.register_fake("ganops::bias_act_backward")
def _bias_act_backward_fake(grad, x, b, dim, act, alpha, gain, clamp):
    _check(x, b, dim, act, alpha, gain, clamp)
    torch._check(grad.shape == x.shape, lambda: "ganops.bias_act: grad must have x's shape")
    _check_same_device(grad, "grad", x)
    return torch.empty_like(x)


@torch.library.register_fake("ganops::bias_act_backward_bias")
def _bias_act_backward_bias_fake(grad, x, b, dim, act, alpha, gain, clamp):
    _check(x, b, dim, act, alpha, gain, clamp)
    torch._check(grad.shape == x.shape, lambda: "ganops.bias_act: grad must have x's shape")
    _check_same_device(grad, "grad", x)
    return torch.empty_like(x), torch.empty_like(b, memory_format=torch.contiguous_format)


@torch.library.register_fake("ganops::bias_act_backward2")
def _bias_act_backward2_fake(grad_grad, grad, x, b, dim, act, alpha, gain, clamp):
    _check(x, b, dim, act, alpha, gain, clamp)
    _check_same_device(grad, "grad", x)
    _check_same_device(grad_grad, "grad_grad", x)
    return torch.empty_like(x)


def _per_channel_sum(t, dim):
    """Gradient for the bias: t summed over every dim but `dim`."""
    dim = dim % t.ndim
    others = [d for d in range(t.ndim) if d != dim]
    return t.sum(others) if others else t  # sum([]) would reduce every dim


# bias_act_backward(grad, x, b): linear in grad; through x and b via f''.
def _bias_act_backward_setup(ctx, inputs, output):
    grad, x, b, dim, act, alpha, gain, clamp = inputs
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.has_bias = b is not None
    ctx.save_for_backward(grad, x, b)


def _bias_act_backward_backward(ctx, grad_grad):
    grad, x, b = ctx.saved_tensors
    dim, act, alpha, gain, clamp = ctx.args
    d_grad = d_x = d_b = None
    if ctx.needs_input_grad[0]:
        d_grad = ops.bias_act_backward(grad_grad, x, b, dim, act, alpha, gain, clamp)
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        if act in _PIECEWISE_LINEAR:
            # Zero, but a tensor rather than None: parameters reached only through this path
            # still get a gradient (as with torch's own ops; DDP counts them as used).
            # An expanded scalar allocates nothing.
            d_x = x.new_zeros(()).expand(x.shape)
        else:
            d_x = ops.bias_act_backward2(grad_grad, grad, x, b, dim, act, alpha, gain, clamp)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_b = b.new_zeros(b.shape) if act in _PIECEWISE_LINEAR else _per_channel_sum(d_x, dim)
    return d_grad, d_x, d_b, None, None, None, None, None


torch.library.register_autograd(
    "ganops::bias_act_backward", _bias_act_backward_backward, setup_context=_bias_act_backward_setup
)


def _bias_act_backward_bias_setup(ctx, inputs, output):
    pass


def _bias_act_backward_bias_backward(ctx, grad_dz, grad_db):
    raise RuntimeError(
        "ganops.bias_act_backward_bias is the first-order backward only and has no derivative; "
        "for higher orders differentiate ganops.bias_act itself (which uses bias_act_backward "
        "under create_graph=True)."
    )


torch.library.register_autograd(
    "ganops::bias_act_backward_bias", _bias_act_backward_bias_backward,
    setup_context=_bias_act_backward_bias_setup,
)


def _bias_act_backward2_setup(ctx, inputs, output):
    ctx.act = inputs[5]


def _bias_act_backward2_backward(ctx, grad):
    raise RuntimeError(
        f"ganops.bias_act: third-order gradients are not supported (act={ctx.act!r}); first and "
        "second order are exact. Use ganops.torch.reference.bias_act for higher orders."
    )


torch.library.register_autograd(
    "ganops::bias_act_backward2", _bias_act_backward2_backward, setup_context=_bias_act_backward2_setup
)
