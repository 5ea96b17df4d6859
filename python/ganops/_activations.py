"""Argument resolution shared by the PyTorch and TensorFlow front ends. The activation table
(names, default alpha and gain) lives in the C++ core; this reads it from ganops._core."""
import math
import numbers

from ganops import _core

# {act name: (default alpha, default gain)}, read once: a plain dict that torch.compile
# traces as a constant (a call into the extension module would break the graph).
DEFAULTS = dict(_core.activations())


def defaults():
    """{act name: (default alpha, default gain)} from the compiled core."""
    return DEFAULTS


_PREFIX = "ganops.bias_act:"
_MAX_SHOWN = 60  # characters of a bad value quoted in a message


def describe(value):
    """repr(value), cut to a length that fits in one line of an error message (a bad argument
    can be a whole file's contents). Shared by both front ends' argument checks."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def _real(value, name):
    """A number as a float; a string or bool is a mistake, not a number (float('2') would hide
    it)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{_PREFIX} {name} must be a float, got {describe(value)}")


def resolve(act, alpha=None, gain=None, clamp=None):
    """Validate bias_act's scalar arguments and fill in the activation's defaults.

    Returns (alpha, gain, clamp) as floats (clamp stays None for no clamp). Whether gain and
    alpha fit the compute type depends on x's dtype: the ops check that.
    """
    table = DEFAULTS
    if not isinstance(act, str):
        raise TypeError(f"{_PREFIX} act must be a string, got {type(act).__name__}")
    if act not in table:
        raise ValueError(f"{_PREFIX} act: unknown activation {describe(act)}; expected one of "
                         f"{', '.join(table)}")
    default_alpha, default_gain = table[act]
    if alpha is not None and act != "lrelu":
        raise ValueError(f"{_PREFIX} alpha is only used by act='lrelu', got alpha={alpha!r} with "
                         f"act={act!r}")
    alpha = default_alpha if alpha is None else _real(alpha, "alpha")
    gain = default_gain if gain is None else _real(gain, "gain")
    if not math.isfinite(alpha):
        raise ValueError(f"{_PREFIX} alpha must be finite, got {alpha!r}")
    if not math.isfinite(gain):
        raise ValueError(f"{_PREFIX} gain must be finite, got {gain!r}")
    if clamp is not None:
        clamp = _real(clamp, "clamp")
        if not clamp >= 0:
            raise ValueError(f"{_PREFIX} clamp must be None or >= 0, got {clamp!r}")
    return alpha, gain, clamp
