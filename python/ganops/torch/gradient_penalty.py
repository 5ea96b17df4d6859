"""Gradient penalties for PyTorch: one call from a discriminator and a batch to
the penalty, on the fused ops of _gradient_penalty_ops.py.

    gp = gt.gradient_penalty(D, real, fake, kind="wgan-gp")          # 10 * E[(||dD/dx|| - 1)^2]
    r1 = gt.r1_penalty(D, real, gamma=10.0)                           # gamma / 2 * E[||dD/dx||^2]
    loss_d = d_loss + gp

| kind      | x                                              | penalty per sample     | weight |
|-----------|------------------------------------------------|------------------------|--------|
| wgan-gp   | fake + eps_b (real - fake), eps_b ~ U[0,1)     | (n_b - target)^2       | 10     |
| one-sided | same                                           | max(0, n_b - target)^2 | 10     |
| zero-gp   | same                                           | n_b^2                  | 10     |
| dragan    | real + alpha_b 0.5 std(real) U[0,1)^shape      | (n_b - target)^2       | 10     |
| r1        | real                                           | weight / 2 * n_b^2     | 10     |
| r2        | fake                                           | weight / 2 * n_b^2     | 10     |

with n_b the L2 norm of dD/dx over all of sample b's elements. Random draws, in this order,
with `generator` when one is given: eps (N values, float32; float64 for float64 samples) for the
interpolating kinds; alpha (N values) then the noise (real's shape and dtype) for dragan.
"""
import math
from typing import Callable, Optional

import torch
from torch import nn

from ganops.torch import _args
from ganops.torch import _gradient_penalty_ops as _ops

ops = torch.ops.ganops

# kind -> (where x comes from, op kind, default weight, factor applied to the weight)
_KINDS = {
    "wgan-gp": ("interpolate", "two-sided", 10.0, 1.0),
    "one-sided": ("interpolate", "one-sided", 10.0, 1.0),
    "zero-gp": ("interpolate", "squared", 10.0, 1.0),
    "dragan": ("perturb", "two-sided", 10.0, 1.0),
    "r1": ("real", "squared", 10.0, 0.5),
    "r2": ("fake", "squared", 10.0, 0.5),
}
KINDS = tuple(_KINDS)


def _kind(kind):
    if kind not in _KINDS:
        raise ValueError(f"ganops.gradient_penalty: kind: unknown penalty {_args.describe(kind)}; "
                         f"expected one of {', '.join(KINDS)}")
    return _KINDS[kind]


def _check_samples(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"ganops.gradient_penalty: {name} must be a tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"ganops.gradient_penalty: {name} must be a floating tensor, got {t.dtype}")
    if t.ndim < 1 or t.shape[0] == 0:
        raise ValueError(f"ganops.gradient_penalty: {name} must have a non-empty batch dim, got "
                         f"shape {list(t.shape)}")


def penalty_inputs(real: Optional[torch.Tensor], fake: Optional[torch.Tensor] = None,
                   kind: str = "wgan-gp",
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The points where `kind` evaluates D's gradient: a new leaf tensor that requires grad
    (real and fake are detached). The interpolation and the DRAGAN perturbation are one fused
    op each (one read of each input, one write)."""
    source = _kind(kind)[0]
    needs_real = source in ("interpolate", "perturb", "real")
    needs_fake = source in ("interpolate", "fake")
    if needs_real:
        _check_samples(real, "real")
    if needs_fake:
        if fake is None:
            raise ValueError(f"ganops.gradient_penalty: kind {kind!r} needs fake samples; got "
                             "fake=None")
        _check_samples(fake, "fake")
    if source == "perturb" and fake is not None:
        raise ValueError("ganops.gradient_penalty: kind 'dragan' perturbs the real samples and "
                         "takes no fake ones; pass fake=None")
    if source == "interpolate":
        if real.shape != fake.shape:
            raise ValueError(f"ganops.gradient_penalty: real and fake must have the same shape, "
                             f"got {list(real.shape)} and {list(fake.shape)}")
        if real.device != fake.device:
            raise ValueError(f"ganops.gradient_penalty: real is on {real.device} but fake is on "
                             f"{fake.device}")
    with torch.no_grad():
        if source == "interpolate":
            r = real.detach()
            f = fake.detach().to(r.dtype)  # a generator under autocast may return half samples
            eps = torch.rand(r.shape[0], generator=generator, device=r.device,
                             dtype=_ops.acc_dtype(r.dtype))
            x = ops.per_sample_lerp(f, r, eps)
        elif source == "perturb":
            r = real.detach()
            alpha = torch.rand(r.shape[0], generator=generator, device=r.device,
                               dtype=_ops.acc_dtype(r.dtype))
            noise = torch.rand(r.shape, generator=generator, device=r.device, dtype=r.dtype)
            x = ops.per_sample_add(r, noise, alpha * (0.5 * r.to(alpha.dtype).std()))
        else:
            x = (real if source == "real" else fake).detach()
    return x.requires_grad_(True)


def _loss_scale(scaler, like):
    """The scaler's current scale as a 0-d float32 tensor on like's device, or None when there
    is no scaling. Its value is never read on the host: scaler.get_scale() is .item(), a device
    sync on every call."""
    if scaler is None or not scaler.is_enabled():
        return None
    scale = getattr(scaler, "_scale", None)  # GradScaler's own tensor, once initialised
    if not isinstance(scale, torch.Tensor):
        # A GradScaler creates its tensor at its first scale() call (as it would for D's loss a
        # moment later); any other scaler is reached through the same public method.
        scale = scaler.scale(torch.ones((), dtype=torch.float32, device=like.device))
    return scale.to(device=like.device, non_blocking=True)


def input_gradient(outputs: torch.Tensor, inputs: torch.Tensor, scaler=None):
    """(d sum(outputs) / d inputs, grad_scale) with create_graph=True, so a penalty on it
    back-propagates into D's parameters (the double backward). With an enabled GradScaler the
    outputs are scaled first (PyTorch's AMP recipe for gradient penalties) and grad_scale is
    1 / scale as a 0-d tensor on the device (without a scaler, the float 1.0): the value that
    penalty_from_gradient's grad_scale takes to unscale the gradient. The scale stays a tensor,
    so no call waits for the device."""
    _args.tensor(outputs, "input_gradient", "outputs")
    _args.tensor(inputs, "input_gradient", "inputs")
    total = outputs.sum()
    scale = _loss_scale(scaler, total)
    if scale is None:
        (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
        return grad, 1.0
    (grad,) = torch.autograd.grad(total * scale, inputs, create_graph=True)
    return grad, scale.reciprocal()


def _check_grad_scale(grad_scale, grad):
    """The penalty's second-order terms hold grad_scale^2 (times O(1) factors), computed in
    float32 (float64 for float64 grad): a scale whose square overflows there gives inf and NaN
    gradients, so it is refused up front."""
    if grad.dtype not in _ops._FLOATS or not (math.isfinite(grad_scale) and grad_scale > 0):
        return  # the op's own checks name these
    acc = _ops.acc_dtype(grad.dtype)
    if grad_scale * grad_scale > torch.finfo(acc).max:
        raise ValueError(f"ganops.gradient_penalty: grad_scale must have a square that fits in "
                         f"{acc} (the compute type for a {grad.dtype} grad), got {grad_scale!r}")


def _penalty_with_scale_tensor(grad, op_kind, target, weight, reduction, grad_scale):
    """The penalty of grad * grad_scale for a 0-d tensor grad_scale (AMP's 1 / scale, which
    must not be read on the host). The op takes grad_scale as a float, so the scale is applied
    to N-element results instead of to grad (which would be one more pass over it, and one more
    in the backward):
      squared:               weight (s n)^2 = s^2 * (the fused penalty at s = 1), exact at every
                             order, reduction included (it is linear);
      two-sided, one-sided:  (s n - target)^2 is no multiple of the unscaled penalty, so the
                             fused op gives the differentiable per-sample norms n (kind "norm":
                             zero gradient at a zero gradient, as the other kinds) and the rest is
                             a few ops on N values."""
    if grad_scale.numel() != 1 or not grad_scale.dtype.is_floating_point:
        raise ValueError(f"ganops.gradient_penalty: grad_scale must be a float or a one-element "
                         f"floating tensor, got a {grad_scale.dtype} tensor of shape "
                         f"{list(grad_scale.shape)}")
    for value, arg in ((target, "target"), (weight, "weight")):  # the "norm" op sees neither
        if not math.isfinite(value):
            raise ValueError(f"ganops.gradient_penalty: {arg} must be finite, got {value}")
    if reduction not in _ops.REDUCTIONS:  # checked before any work, as the op checks it
        raise ValueError(f"ganops.gradient_penalty: reduction: unknown reduction "
                         f"{_args.describe(reduction)}; expected one of {', '.join(_ops.REDUCTIONS)}")
    if op_kind == "squared":
        penalty, norms = ops.gradient_penalty(grad, op_kind, target, weight, 1.0, reduction)
        s = grad_scale.reshape(()).to(device=penalty.device, dtype=penalty.dtype, non_blocking=True)
        return penalty * (s * s), norms * s
    n, norms = ops.gradient_penalty(grad, "norm", 0.0, 1.0, 1.0, "none")
    s = grad_scale.reshape(()).to(device=n.device, dtype=n.dtype, non_blocking=True)
    distance = n * s - target
    if op_kind == "one-sided":
        distance = torch.relu(distance)  # 0 gradient at n = target, as the fused one-sided kind
    per = distance.square() * weight
    if reduction == "mean":
        per = per.mean()
    elif reduction == "sum":
        per = per.sum()
    return per, norms * s


def penalty_from_gradient(grad: torch.Tensor, kind: str = "wgan-gp", weight: Optional[float] = None,
                          target: float = 1.0, reduction: str = "mean", grad_scale=1.0,
                          return_norms: bool = False):
    """The fused penalty of `kind` on a gradient you computed yourself (e.g. StyleGAN2's R1 on
    the real logits of the main D pass): per-sample norm, penalty, weight and reduction in one
    op, with its backward in one more. grad_scale multiplies grad as it is read (AMP's unscale):
    a float, or a one-element tensor such as the 1 / scale that input_gradient returns under a
    GradScaler (applied on the device, without reading it on the host).
    Returns the penalty (float32, float64 for float64 grad), and the per-sample norms
    n_b = grad_scale * ||grad_b|| when return_norms is set."""
    _, op_kind, default_weight, factor = _kind(kind)
    _args.tensor(grad, "gradient_penalty", "grad")
    w = default_weight if weight is None else _args.real(weight, "gradient_penalty", "weight")
    target = _args.real(target, "gradient_penalty", "target")
    _args.string(reduction, "gradient_penalty", "reduction")
    if isinstance(grad_scale, torch.Tensor):
        result = _penalty_with_scale_tensor(grad, op_kind, target, w * factor, reduction, grad_scale)
    else:
        grad_scale = _args.real(grad_scale, "gradient_penalty", "grad_scale")
        _check_grad_scale(grad_scale, grad)
        result = ops.gradient_penalty(grad, op_kind, target, w * factor, grad_scale, reduction)
    return result if return_norms else result[0]


def gradient_penalty(D: Callable[..., torch.Tensor], real: Optional[torch.Tensor],
                     fake: Optional[torch.Tensor] = None, kind: str = "wgan-gp",
                     weight: Optional[float] = None, target: float = 1.0, scaler=None,
                     return_norms: bool = False, reduction: str = "mean",
                     generator: Optional[torch.Generator] = None,
                     use_all_parameters: Optional[bool] = None, **d_kwargs):
    """The gradient penalty of `kind` for discriminator D (a module or any callable).

    Makes the penalty's inputs (see the module docstring), calls ``D(x, **d_kwargs)`` (extra
    arguments, e.g. class labels of a conditional D, pass through), takes dD/dx with
    create_graph=True and applies the fused penalty. Add the result to D's loss: its backward
    runs through D's double backward into D's parameters.

    D must return one score per sample or a tensor whose first dim is the batch (e.g. PatchGAN
    maps); the gradient is that of the sum of its outputs. With ``scaler`` (a
    torch.amp.GradScaler), D's output is scaled by the scaler's scale tensor before
    autograd.grad and the penalty unscales its N per-sample norms (no pass over the gradient, and
    the scale is never read on the host, so no device sync): call this inside your autocast
    region and pass the scaler you use for D's loss. Returns the penalty (a scalar for reduction "mean" or "sum", one value per sample
    for "none"), and the per-sample gradient norms as well when return_norms is set.

    use_all_parameters adds 0 * sum(D's output) to the penalty, so every parameter D's output
    depends on gets a (zero) gradient from the penalty's backward, even those the input gradient
    does not depend on (e.g. the last bias). DistributedDataParallel needs this when the penalty
    has a backward of its own (lazy regularization steps); it costs a backward through D's
    forward graph. Default: on when D is a DistributedDataParallel module.
    """
    if not callable(D):
        raise TypeError(f"ganops.gradient_penalty: D must be a module or a callable, got "
                        f"{type(D).__name__}")
    x = penalty_inputs(real, fake, kind, generator)
    out = D(x, **d_kwargs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"ganops.gradient_penalty: D must return a tensor of scores, got "
                        f"{type(out).__name__}")
    # An integer output never requires grad: without this check it would be reported as
    # "does not depend on its input", which sends the user looking in the wrong place.
    if not out.dtype.is_floating_point:
        raise TypeError(f"ganops.gradient_penalty: D's output must be floating point (real "
                        f"scores to differentiate), got {out.dtype}")
    if out.ndim < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(f"ganops.gradient_penalty: D must return one score per sample (first dim "
                         f"{x.shape[0]}), got output shape {list(out.shape)}")
    if not out.requires_grad:
        raise ValueError("ganops.gradient_penalty: D's output does not depend on its input "
                         "(it does not require grad); is D running under torch.no_grad()?")
    grad, grad_scale = input_gradient(out, x, scaler)
    result = penalty_from_gradient(grad, kind, weight, target, reduction, grad_scale, True)
    if use_all_parameters is None:
        use_all_parameters = isinstance(D, nn.parallel.DistributedDataParallel)
    penalty = result[0] + out.sum() * 0 if use_all_parameters else result[0]
    return (penalty, result[1]) if return_norms else penalty


def wgan_gp_penalty(D, real, fake, weight: float = 10.0, target: float = 1.0, **kwargs):
    """WGAN-GP (Gulrajani et al.): weight * E[(||dD/dx|| - target)^2] at interpolates."""
    return gradient_penalty(D, real, fake, kind="wgan-gp", weight=weight, target=target, **kwargs)


def r1_penalty(D, real, gamma: float = 10.0, **kwargs):
    """R1 (Mescheder et al.): gamma / 2 * E[||dD/dx||^2] at real samples."""
    return gradient_penalty(D, real, None, kind="r1", weight=gamma, **kwargs)


def r2_penalty(D, fake, gamma: float = 10.0, **kwargs):
    """R2: gamma / 2 * E[||dD/dx||^2] at fake samples."""
    return gradient_penalty(D, None, fake, kind="r2", weight=gamma, **kwargs)


def dragan_penalty(D, real, weight: float = 10.0, target: float = 1.0, **kwargs):
    """DRAGAN (Kodali et al.): weight * E[(||dD/dx|| - target)^2] around perturbed real samples."""
    return gradient_penalty(D, real, None, kind="dragan", weight=weight, target=target, **kwargs)


class LazyRegularization:
    """StyleGAN2's lazy regularization: a regularizer runs every `interval` steps only, with its
    loss multiplied by `interval`, and Adam's hyper-parameters are corrected for the
    regularization steps' share, c = interval / (interval + 1): lr * c, betas ** c.

        lazy = gt.LazyRegularization(interval=16)
        opt_d = torch.optim.Adam(D.parameters(), **lazy.adam_kwargs(lr=0.0025, betas=(0, 0.99)))
        for step, real in enumerate(loader):
            loss = d_loss(...)
            if lazy.due(step):
                loss = loss + lazy.scale(gt.r1_penalty(D, real, gamma=10))
    """

    def __init__(self, interval: int = 16):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"ganops.LazyRegularization: interval must be an int >= 1, got "
                             f"{interval!r}")
        self.interval = interval

    @property
    def ratio(self) -> float:
        """interval / (interval + 1): the share of minibatches that are not regularization steps."""
        return self.interval / (self.interval + 1)

    def due(self, step: int) -> bool:
        """Whether the regularizer runs at this (0-based) step."""
        return step % self.interval == 0

    def scale(self, loss):
        """The regularizer's loss times interval, so its average effect matches every-step use."""
        return loss * self.interval

    def adam_kwargs(self, lr: float, betas=(0.9, 0.999)) -> dict:
        """Corrected lr and betas for torch.optim.Adam (or AdamW) of the regularized network."""
        c = self.ratio
        return {"lr": lr * c, "betas": tuple(b ** c for b in betas)}

    def __repr__(self):
        return f"LazyRegularization(interval={self.interval})"


class PathLengthRegularizer(nn.Module):
    """StyleGAN2's generator path-length regularization, as a module holding the running mean.

        pl = gt.PathLengthRegularizer(decay=0.01, weight=2.0)
        images = G.synthesis(ws)                      # ws: (N, num_ws, w_dim) or (N, w_dim)
        loss_g = loss_g + pl(images, ws)              # on its lazy steps, times the interval

    Per sample, with y ~ N(0, 1) / sqrt(H * W) shaped like the images and J the Jacobian of the
    images with respect to ws: length_b = sqrt(mean over ws of the squared norm of (J^T y)_b),
    the running mean a <- a + decay * (mean(length) - a) (the buffer `pl_mean`), and the
    penalty weight * mean_b (length_b - a)^2 with the gradient flowing through both terms, as
    StyleGAN2-ADA computes it. The per-sample lengths are the fused norm op (0 gradient, not
    NaN, at a zero Jacobian). Pass your GradScaler as `scaler` under AMP.
    """

    def __init__(self, decay: float = 0.01, weight: float = 2.0):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ganops.PathLengthRegularizer: decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.weight = float(weight)
        self.register_buffer("pl_mean", torch.zeros(()))

    def forward(self, images: torch.Tensor, latents: torch.Tensor, scaler=None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        _args.tensor(images, "PathLengthRegularizer", "images")
        _args.tensor(latents, "PathLengthRegularizer", "latents")
        if images.ndim < 2 or latents.ndim not in (2, 3) or images.shape[0] != latents.shape[0]:
            raise ValueError(f"ganops.PathLengthRegularizer: expected images (N, C, ...) and "
                             f"latents (N, w_dim) or (N, num_ws, w_dim) with the same N, got "
                             f"{list(images.shape)} and {list(latents.shape)}")
        if not latents.requires_grad:
            raise ValueError("ganops.PathLengthRegularizer: latents must require grad and be the "
                             "input the images were computed from")
        pixels = math.prod(images.shape[2:]) if images.ndim > 2 else 1
        noise = torch.randn(images.shape, generator=generator, device=images.device,
                            dtype=images.dtype) / math.sqrt(pixels)
        grad, grad_scale = input_gradient(images * noise, latents, scaler)
        num_ws = latents.shape[1] if latents.ndim == 3 else 1
        if isinstance(grad_scale, torch.Tensor):  # under a GradScaler: the norm is linear in it
            lengths, _ = ops.gradient_penalty(grad, "norm", 0.0, 1.0, 1 / math.sqrt(num_ws), "none")
            lengths = lengths * grad_scale.to(lengths.dtype)
        else:
            lengths, _ = ops.gradient_penalty(grad, "norm", 0.0, 1.0,
                                              grad_scale / math.sqrt(num_ws), "none")
        pl_mean = self.pl_mean.to(lengths.dtype).lerp(lengths.mean(), self.decay)
        with torch.no_grad():
            self.pl_mean.copy_(pl_mean.detach())
        return (lengths - pl_mean).square().mean() * self.weight

    def extra_repr(self):
        return f"decay={self.decay}, weight={self.weight}"
