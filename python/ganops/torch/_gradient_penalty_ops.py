"""Fake (meta) kernels and autograd for torch.ops.ganops.per_sample_* and gradient_penalty*.

    per_sample_lerp(input, end, weight)  = input + weight_b * (end - input)
    per_sample_add(input, other, alpha)  = input + alpha_b * other
        --grad-->  plain torch ops (they are linear in the tensors), so any order works.
    gradient_penalty(grad, kind, target, weight, grad_scale, reduction) -> (penalty, norms)
        --grad (C++)-->  gradient_penalty_backward: one read of grad, one write of
                   d penalty / d grad. norms are not differentiable (the "norm" kind gives a
                   differentiable n_b).
    gradient_penalty_backward(grad_output, grad, norms, ...)
        --grad-->  the exact second-order formula below, in plain torch ops. norms must be the
                   ones gradient_penalty returned for this grad: the formula includes their
                   dependence on grad, so they get no gradient of their own.

What is saved for backward: grad (the input itself, no copy) and norms (N values).
"""
import math

import torch

ops = torch.ops.ganops

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
KINDS = ("norm", "squared", "two-sided", "one-sided")
REDUCTIONS = ("none", "mean", "sum")


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_dense(t):
    """No gaps and no overlaps: the strides, sorted, are the running products of the sizes."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _batch_major_like(t):
    """The layout the kernels write: t's own when its batch dim is outermost and it is dense."""
    n = t.shape[0]
    if _is_dense(t) and (n <= 1 or t.stride(0) * n == t.numel()):
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    return torch.empty(t.shape, dtype=t.dtype, device=t.device)


def _check_batched(t, op, name):
    torch._check_type(t.dtype in _FLOATS, lambda: (
        f"ganops.{op}: {name} must be float32, float64, float16 or bfloat16, got {t.dtype}"))
    torch._check_value(t.ndim >= 1, lambda: (
        f"ganops.{op}: {name} must have a batch dim (at least 1 dim), got a 0-d tensor"))


def _check_mix(input, other, coef, op, other_name, coef_name):
    """The C++ checks (gradient_penalty_args.h), for fake tensors that never reach C++."""
    _check_batched(input, op, "input")
    torch._check_value(other.shape == input.shape, lambda: (
        f"ganops.{op}: {other_name} has shape {list(other.shape)} but input has {list(input.shape)}"))
    torch._check_type(other.dtype == input.dtype, lambda: (
        f"ganops.{op}: {other_name} has dtype {other.dtype} but input has {input.dtype}"))
    # One meta argument sends the whole call here (Meta outranks CPU in dispatch): a device
    # mismatch must be caught here, or a CPU input with a meta coefficient "succeeds" with an
    # uninitialised CPU result.
    for t, name in ((other, other_name), (coef, coef_name)):
        torch._check_value(t.device == input.device, lambda: (
            f"ganops.{op}: {name} is on {t.device} but input is on {input.device}"))
    n = input.shape[0]
    torch._check_type(coef.dtype.is_floating_point, lambda: (
        f"ganops.{op}: {coef_name} must be a floating tensor, got {coef.dtype}"))
    torch._check_value(coef.numel() == n and (coef.ndim == 0 or coef.shape[0] == n or n == 1),
                       lambda: (f"ganops.{op}: {coef_name} must hold one value per sample ({n}), "
                                f"got shape {list(coef.shape)}"))


@torch.library.register_fake("ganops::per_sample_lerp")
def _lerp_fake(input, end, weight):
    _check_mix(input, end, weight, "per_sample_lerp", "end", "weight")
    return _batch_major_like(input)


@torch.library.register_fake("ganops::per_sample_add")
def _add_fake(input, other, alpha):
    _check_mix(input, other, alpha, "per_sample_add", "other", "alpha")
    return _batch_major_like(input)


def _per_sample(c, like):
    """(N,) coefficients as a broadcastable (N, 1, ..., 1) tensor in like's dtype."""
    return c.reshape((like.shape[0],) + (1,) * (like.ndim - 1)).to(like.dtype)


def batch_rows(t):
    """t as (N, elements per sample). reshape(N, -1) cannot do this for an empty tensor: -1 is
    ambiguous there ("cannot reshape tensor of 0 elements"), and an empty batch is valid."""
    return t.flatten(1) if t.ndim > 1 else t.unsqueeze(1)


def _sum_per_sample(t, coef):
    """Per-sample sums of t, shaped and typed like the coefficients."""
    return batch_rows(t).sum(1).reshape(coef.shape).to(coef.dtype)


def _mix_setup(ctx, inputs, output):
    input, other, coef = inputs
    ctx.save_for_backward(input, other, coef)


def _lerp_backward(ctx, grad):
    input, end, weight = ctx.saved_tensors
    w = _per_sample(weight, input)
    d_input = grad * (1 - w) if ctx.needs_input_grad[0] else None
    d_end = grad * w if ctx.needs_input_grad[1] else None
    d_weight = _sum_per_sample(grad * (end - input), weight) if ctx.needs_input_grad[2] else None
    return d_input, d_end, d_weight


def _add_backward(ctx, grad):
    input, other, alpha = ctx.saved_tensors
    a = _per_sample(alpha, input)
    d_input = grad if ctx.needs_input_grad[0] else None
    d_other = grad * a if ctx.needs_input_grad[1] else None
    d_alpha = _sum_per_sample(grad * other, alpha) if ctx.needs_input_grad[2] else None
    return d_input, d_other, d_alpha


torch.library.register_autograd("ganops::per_sample_lerp", _lerp_backward, setup_context=_mix_setup)
torch.library.register_autograd("ganops::per_sample_add", _add_backward, setup_context=_mix_setup)


def _check_penalty_args(grad, kind, target, weight, grad_scale, reduction):
    _check_batched(grad, "gradient_penalty", "grad")
    torch._check_value(grad.shape[0] > 0, lambda: (
        f"ganops.gradient_penalty: grad has an empty batch (shape {list(grad.shape)})"))
    torch._check_value(kind in KINDS, lambda: (
        f"ganops.gradient_penalty: kind: unknown penalty '{kind}'; expected one of "
        f"{', '.join(KINDS)}"))
    torch._check_value(reduction in REDUCTIONS, lambda: (
        f"ganops.gradient_penalty: reduction: unknown reduction '{reduction}'; expected one of "
        f"{', '.join(REDUCTIONS)}"))
    torch._check_value(math.isfinite(target), lambda: (
        f"ganops.gradient_penalty: target must be finite, got {target}"))
    torch._check_value(math.isfinite(weight), lambda: (
        f"ganops.gradient_penalty: weight must be finite, got {weight}"))
    torch._check_value(math.isfinite(grad_scale) and grad_scale > 0, lambda: (
        f"ganops.gradient_penalty: grad_scale must be finite and > 0, got {grad_scale}"))


@torch.library.register_fake("ganops::gradient_penalty")
def _penalty_fake(grad, kind, target, weight, grad_scale, reduction):
    _check_penalty_args(grad, kind, target, weight, grad_scale, reduction)
    n = grad.shape[0]
    acc = acc_dtype(grad.dtype)
    penalty = grad.new_empty((n,) if reduction == "none" else (), dtype=acc)
    return penalty, grad.new_empty((n,), dtype=acc)


@torch.library.register_fake("ganops::gradient_penalty_backward")
def _penalty_backward_fake(grad_output, grad, norms, kind, target, weight, grad_scale, reduction):
    _check_penalty_args(grad, kind, target, weight, grad_scale, reduction)
    n = grad.shape[0]
    acc = acc_dtype(grad.dtype)
    for t, name, count in ((grad_output, "grad_output", n if reduction == "none" else 1),
                           (norms, "norms", n)):
        torch._check_value(t.numel() == count, lambda: (
            f"ganops.gradient_penalty_backward: {name} must hold {count} values, got shape "
            f"{list(t.shape)}"))
        torch._check_type(t.dtype == acc, lambda: (
            f"ganops.gradient_penalty_backward: {name} must be {acc} for a {grad.dtype} grad, "
            f"got {t.dtype}"))
        torch._check_value(t.device == grad.device, lambda: (  # see _check_mix
            f"ganops.gradient_penalty_backward: {name} is on {t.device} but grad is on "
            f"{grad.device}"))
    return _batch_major_like(grad)


# gradient_penalty's first-order autograd is in C++ (csrc/torch/gradient_penalty_autograd.cpp):
# it runs on every discriminator step, where a Python autograd.Function would cost as much as
# the kernels on CIFAR-sized batches.


def psi(kind, n, target):
    """phi'(n) / n and its derivative in n, 0 where n == 0 (and where one-sided is inactive).
    The masks test n != 0 and n <= target, so a NaN norm gives NaN, as in the C++ kernels."""
    safe = torch.where(n != 0, n, torch.ones_like(n))
    zero = torch.zeros_like(n)
    if kind == "norm":
        value, slope = 1 / safe, -1 / safe**2
    elif kind == "squared":
        return torch.full_like(n, 2.0), zero
    else:
        value, slope = 2 - 2 * target / safe, 2 * target / safe**2
    active = n != 0 if kind != "one-sided" else (n != 0) & ~(n <= target)
    return torch.where(active, value, zero), torch.where(active, slope, zero)


# gradient_penalty_backward: dg_b = c_b k(n_b) g_b with k = weight s^2 psi(n), n = s ||g_b||.
# For an incoming H:  d grad_output: k(n_b) <H_b, g_b> (summed for mean / sum, / N for mean)
#                     d grad:        c_b (k(n_b) H_b + weight s^4 psi'(n_b) / n_b <H_b, g_b> g_b)
def _penalty_backward_setup(ctx, inputs, output):
    grad_output, grad, norms, kind, target, weight, grad_scale, reduction = inputs
    ctx.args = (kind, target, weight, grad_scale, reduction)
    ctx.save_for_backward(grad_output, grad, norms)


def _penalty_backward_backward(ctx, hess):
    grad_output, grad, norms = ctx.saved_tensors
    kind, target, weight, s, reduction = ctx.args
    acc = norms.dtype
    n_batch = grad.shape[0]
    g = batch_rows(grad.to(acc))
    h = batch_rows(hess.to(acc))
    value, slope = psi(kind, norms, target)
    # s^4 alone overflows a Python float (OverflowError) and a float64 for s > ~1e77, while the
    # terms themselves stay finite: n = s ||g||, so s^2 psi'(n) = O(1 / ||g||^2) and
    # s^2 / n = s / ||g||. Hence the products below, each finite whenever the result is.
    s2 = s * s
    k = weight * s2 * value
    hg = (h * g).sum(1)
    if reduction == "none":
        c = grad_output.reshape(n_batch)
    else:
        c = grad_output.reshape(()).expand(n_batch) / (n_batch if reduction == "mean" else 1)
    d_gout = d_grad = None
    if ctx.needs_input_grad[0]:
        per = k * hg
        if reduction == "none":
            d_gout = per.reshape(grad_output.shape)
        else:
            d_gout = (per.sum() / (n_batch if reduction == "mean" else 1)).reshape(grad_output.shape)
    if ctx.needs_input_grad[1]:
        safe = torch.where(norms != 0, norms, torch.ones_like(norms))
        curv = torch.where(norms != 0, weight * (s2 * slope) * (s2 / safe), torch.zeros_like(norms))
        d = c[:, None] * (k[:, None] * h + (curv * hg)[:, None] * g)
        d_grad = d.reshape(grad.shape).to(grad.dtype)
    return d_gout, d_grad, None, None, None, None, None, None


torch.library.register_autograd("ganops::gradient_penalty_backward", _penalty_backward_backward,
                                setup_context=_penalty_backward_setup)
