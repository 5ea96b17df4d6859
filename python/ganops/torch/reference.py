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
