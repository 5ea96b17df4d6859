"""Drop-in nn.Modules built on torch.ops.ganops.*. Their forward calls the op directly, so
they script with torch.jit.script and compile with torch.compile(fullgraph=True)."""
import math
from typing import Optional

import torch
from torch import nn

from ganops import _activations
from ganops.torch import _args


class FusedBiasAct(nn.Module):
    """Owns a bias of ``channels`` elements and applies ``clamp(act(x + bias) * gain)``.

    Args:
        channels: size of x along ``dim``.
        act, alpha, gain, clamp: as ganops.torch.bias_act (StyleGAN2 defaults).
        dim: the dim of x that carries the channels (1 for NCHW and [N, C]).
        bias: create a learnable bias (state_dict key ``bias``); False for none.
        bias_init: initial value of the bias.
    The bias is cast to x's dtype, so the layer works under torch.autocast.
    """

    def __init__(self, channels: int, act: str = "linear", alpha: Optional[float] = None,
                 gain: Optional[float] = None, clamp: Optional[float] = None, dim: int = 1,
                 bias: bool = True, bias_init: float = 0.0, device=None, dtype=None):
        super().__init__()
        # int() would turn 1.5 into 1 and fail on None with a message that names no argument.
        self.channels = _args.integer(channels, "FusedBiasAct", "channels")
        self.act = act
        self.alpha, self.gain, self.clamp = _activations.resolve(act, alpha, gain, clamp)
        self.dim = _args.integer(dim, "FusedBiasAct", "dim")
        if bias:
            init = _args.real(bias_init, "FusedBiasAct", "bias_init")
            self.bias = nn.Parameter(torch.full((self.channels,), init, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
        return torch.ops.ganops.bias_act(x, b, self.dim, self.act, self.alpha, self.gain, self.clamp)

    def extra_repr(self) -> str:
        clamp = "" if self.clamp is None else f", clamp={self.clamp}"
        return (f"{self.channels}, act={self.act!r}, alpha={self.alpha}, gain={self.gain:.6g}{clamp}, "
                f"dim={self.dim}, bias={self.bias is not None}")


class FusedLeakyReLU(nn.Module):
    """``leaky_relu(x + bias, negative_slope) * scale``, bias on dim 1.

    Same constructor, attribute names and state_dict (a single ``bias`` of ``channel``
    zeros) as the FusedLeakyReLU of popular StyleGAN2 PyTorch code, so checkpoints load and
    the layer swaps in.
    """

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2,
                 scale: float = math.sqrt(2)):
        super().__init__()
        channel = _args.integer(channel, "FusedLeakyReLU", "channel")
        if bias:
            self.bias = nn.Parameter(torch.zeros(channel))
        else:
            self.register_parameter("bias", None)
        self.negative_slope = _args.real(negative_slope, "FusedLeakyReLU", "negative_slope")
        self.scale = _args.real(scale, "FusedLeakyReLU", "scale")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        b = self.bias
        if b is not None:
            b = b.to(input.dtype)
        return torch.ops.ganops.bias_act(input, b, 1, "lrelu", self.negative_slope, self.scale, None)
