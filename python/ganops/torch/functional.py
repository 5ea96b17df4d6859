"""Functional PyTorch API: thin wrappers that resolve defaults and call torch.ops.ganops.*."""
import math
from typing import Optional

import torch

from ganops import _activations
from ganops.torch import _args


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None) -> torch.Tensor:
    """Fused ``clamp(act(x + b) * gain, -clamp, clamp)``.

    Args:
        x: input of any rank, float32/float64/float16/bfloat16, any dense layout
            (contiguous or channels_last, no copy is made).
        b: optional 1-D bias with ``x.shape[dim]`` elements, same dtype and device as x.
        dim: the dim of x that b runs along (default 1: channels of NCHW).
        act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish, gelu.
        alpha: lrelu's negative slope (default 0.2); only lrelu takes it.
        gain: output scale (default sqrt(2) for relu, lrelu, swish; 1 otherwise).
        clamp: clamp the output to [-clamp, clamp]; None for no clamp.

    First and second derivatives with respect to x and b are exact.
    """
    _args.tensor(x, "bias_act", "x")
    _args.tensor(b, "bias_act", "b", optional=True)
    dim = _args.integer(dim, "bias_act", "dim")
    alpha, gain, clamp = _activations.resolve(act, alpha, gain, clamp)
    return torch.ops.ganops.bias_act(x, b, dim, act, alpha, gain, clamp)


def fused_leaky_relu(input: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     negative_slope: float = 0.2, scale: float = math.sqrt(2)) -> torch.Tensor:
    """``leaky_relu(input + bias, negative_slope) * scale`` with the bias on dim 1: the signature
    and math of the fused op in popular StyleGAN2 PyTorch code (which, on CPU, ignores
    negative_slope; this one does not)."""
    _args.tensor(input, "fused_leaky_relu", "input")
    _args.tensor(bias, "fused_leaky_relu", "bias", optional=True)
    negative_slope = _args.real(negative_slope, "fused_leaky_relu", "negative_slope")
    scale = _args.real(scale, "fused_leaky_relu", "scale")
    if bias is not None:
        bias = bias.to(input.dtype)
    return torch.ops.ganops.bias_act(input, bias, 1, "lrelu", negative_slope, scale, None)
