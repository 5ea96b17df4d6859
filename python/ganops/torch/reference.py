"""Pure-PyTorch reference implementations: ground truth for the tests, baseline for the
benchmarks. Written from the formulas in DESIGN.md with torch's own functions."""
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
    """Reference power method (DESIGN §4, torch's order): n times u = normalize(M v),
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
