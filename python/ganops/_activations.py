"""Argument resolution shared by the PyTorch and TensorFlow front ends. The activation table
(names, default alpha and gain) lives in the C++ core; this reads it from ganops._core."""
import math

from ganops import _core

# {act name: (default alpha, default gain)}, read once: a plain dict that torch.compile
# traces as a constant (a call into the extension module would break the graph).
DEFAULTS = dict(_core.activations())


def defaults():
    """{act name: (default alpha, default gain)} from the compiled core."""
    return DEFAULTS


def resolve(act, alpha=None, gain=None, clamp=None):
    """Validate bias_act's scalar arguments and fill in the activation's defaults.

    Returns (alpha, gain, clamp) as floats (clamp stays None for no clamp).
    """
    table = DEFAULTS
    if not isinstance(act, str):
        raise TypeError(f"act must be a string, got {type(act).__name__}")
    if act not in table:
        raise ValueError(f"act: unknown activation {act!r}; expected one of {', '.join(table)}")
    default_alpha, default_gain = table[act]
    if alpha is not None and act != "lrelu":
        raise ValueError(f"alpha is only used by act='lrelu', got alpha={alpha!r} with act={act!r}")
    alpha = default_alpha if alpha is None else float(alpha)
    gain = default_gain if gain is None else float(gain)
    if not math.isfinite(gain):
        raise ValueError(f"gain must be finite, got {gain!r}")
    if clamp is not None:
        clamp = float(clamp)
        if not clamp >= 0:
            raise ValueError(f"clamp must be None or >= 0, got {clamp!r}")
    return alpha, gain, clamp
