"""Pure-PyTorch reference implementations: ground truth for the tests, baseline for the
benchmarks. Written from the formulas in README.md (and the
core headers' file-top comments) with torch's own functions."""
from typing import Optional

import torch
import torch.nn.functional as F

from ganops import _activations

_ACTIVATIONS = {
    "linear": lambda z, alpha: z,
    "relu": lambda z, alpha: F.relu(z),
    "lrelu": lambda z, alpha: F.leaky_relu(z, alpha),
    "tanh": lambda z, alpha: torch.tanh(z),
    "sigmoid": lambda z, alpha: torch.sigmoid(z),
    "elu": lambda z, alpha: F.elu(z),
    "selu": lambda z, alpha: F.selu(z),
    "softplus": lambda z, alpha: F.softplus(z),
    "swish": lambda z, alpha: F.silu(z),
    "gelu": lambda z, alpha: F.gelu(z),
}


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None) -> torch.Tensor:
    """Reference ``clamp(act(x + b) * gain, -clamp, clamp)``; half types compute in float32."""
    alpha, gain, clamp = _activations.resolve(act, alpha, gain, clamp)
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
        b = None if b is None else b.float()
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    y = _ACTIVATIONS[act](x, alpha) * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return y.to(dtype)


def _weight_to_matrix(weight: torch.Tensor, dim: int) -> torch.Tensor:
    dim = dim % weight.ndim
    if dim != 0:
        weight = weight.permute(dim, *(d for d in range(weight.ndim) if d != dim))
    return weight.flatten(1) if weight.ndim > 1 else weight.unsqueeze(1)


def spectral_norm_power_iteration(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                                  dim: int = 0, n_power_iterations: int = 1,
                                  eps: float = 1e-12) -> torch.Tensor:
    """Reference power method (README's spectral normalization, torch's order): n times u = normalize(M v),
    v = normalize(M^T u), updating u and v in place; returns sigma = u^T M v (not
    differentiable). Computes in float32 for half types, float64 for float64."""
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        m = _weight_to_matrix(weight.detach(), dim).to(acc)
        uu, vv = u.to(acc), v.to(acc)
        for _ in range(n_power_iterations):
            uu = F.normalize(m @ vv, dim=0, eps=eps)
            vv = F.normalize(m.T @ uu, dim=0, eps=eps)
        u.copy_(uu)
        v.copy_(vv)
        return uu @ m @ vv


def spectral_normalize(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                       dim: int = 0) -> torch.Tensor:
    """Reference W / sigma with sigma = u^T M v computed in the graph, so autograd gives the
    gradient through sigma with u and v held fixed."""
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
    m = _weight_to_matrix(weight, dim).to(acc)
    sigma = u.detach().to(acc) @ m @ v.detach().to(acc)
    return (weight.to(acc) / sigma).to(weight.dtype)


# Gradient penalties (README's table of kinds), written the way GAN code usually writes them.

def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """fake + eps_b (real - fake)."""
    e = eps.reshape((-1,) + (1,) * (real.ndim - 1)).to(real.dtype)
    return fake + e * (real - fake)


def dragan_perturb(real: torch.Tensor, alpha: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """real + alpha_b * 0.5 * std(real) * noise (noise ~ U[0,1) in the original)."""
    a = alpha.reshape((-1,) + (1,) * (real.ndim - 1)).to(real.dtype)
    return real + a * (0.5 * real.std() * noise)


def penalty_from_gradient(grad: torch.Tensor, kind: str = "wgan-gp", weight: float = 10.0,
                          target: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """The penalty of `kind` (wgan-gp, one-sided, zero-gp, dragan, r1, r2) on D's input gradient,
    computed in float32 (float64 for float64)."""
    acc = torch.float64 if grad.dtype == torch.float64 else torch.float32
    g = grad.to(acc).reshape(grad.shape[0], -1)
    if kind in ("wgan-gp", "dragan"):
        per = weight * (g.norm(2, dim=1) - target) ** 2
    elif kind == "one-sided":
        per = weight * torch.clamp(g.norm(2, dim=1) - target, min=0) ** 2
    elif kind == "zero-gp":
        per = weight * g.pow(2).sum(1)
    elif kind in ("r1", "r2"):
        per = (weight / 2) * g.pow(2).sum(1)
    else:
        raise ValueError(f"unknown penalty kind {kind!r}")
    return {"mean": per.mean, "sum": per.sum, "none": lambda: per}[reduction]()


def gradient_penalty(D, x: torch.Tensor, kind: str = "wgan-gp", weight: float = 10.0,
                     target: float = 1.0, reduction: str = "mean", **d_kwargs) -> torch.Tensor:
    """The penalty of `kind` at the points x (already interpolated or perturbed): D(x), the
    input gradient with create_graph=True, the penalty."""
    x = x.detach().requires_grad_(True)
    out = D(x, **d_kwargs)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return penalty_from_gradient(grad, kind, weight, target, reduction)


def path_length_penalty(images: torch.Tensor, latents: torch.Tensor, pl_mean: torch.Tensor,
                        noise: torch.Tensor, decay: float = 0.01, weight: float = 2.0):
    """StyleGAN2-ADA's path-length penalty: (penalty, new pl_mean). noise ~ N(0, 1) in the
    images' shape (divided by sqrt(H * W) here)."""
    pixels = 1
    for s in images.shape[2:]:
        pixels *= s
    pl_noise = noise / pixels ** 0.5
    (pl_grads,) = torch.autograd.grad((images * pl_noise).sum(), latents, create_graph=True)
    if pl_grads.ndim == 2:
        pl_grads = pl_grads.unsqueeze(1)
    pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
    new_mean = pl_mean.lerp(pl_lengths.mean(), decay)
    return (pl_lengths - new_mean).square().mean() * weight, new_mean.detach()
