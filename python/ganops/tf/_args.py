"""Argument checks for the ganops.tf ops, shared by the op wrappers and the pure-TF reference so
both reject the same inputs with the same messages. bias_act's scalar arguments (act, alpha,
gain, clamp) are resolved by ganops._activations.resolve, shared with the PyTorch front end;
every message raised here starts with "ganops.", like the kernels' own."""
import math
import numbers
import struct

import numpy as np
import tensorflow as tf

from ganops import _activations

FLOAT_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)
BA = "ganops.bias_act"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def short_repr(value, limit=60):
    """repr(value) for a message, cut to about `limit` characters: a bad 10000-character string
    should not make a 10000-character error."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, (str, bytes)) else ""
    return f"{text[:limit]}...{size}"


def compute_dtype(dtype):
    """The type the kernels compute a tensor of `dtype` in: float64 for float64, else float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def check_compute_range(where, name, value, dtype, tensor_name):
    """A finite Python float `value` must stay finite in the compute type of a `dtype` tensor:
    1e308 is a double, but inf in float32, and the outputs would be NaN."""
    if compute_dtype(dtype) == tf.float64 or abs(value) <= FLOAT32_MAX:
        return
    with np.errstate(over="ignore"):
        if np.isfinite(np.float32(value)):  # rounds down to float32's largest value
            return
    raise ValueError(f"{where}: {name} {value!r} must be within the float32 range (|{name}| <= "
                     f"{FLOAT32_MAX!r}) for {tf.as_dtype(dtype).name} {tensor_name}, which "
                     f"computes in float32; use float64 {tensor_name} for larger values")


def scalar_attrs(**values):
    """The attributes carrying the op's double scalars: `name`, TF's float32 attribute, rounded
    here (to inf beyond float32's range), and `name_bits`, the double's IEEE-754 bit pattern as
    an int64, which the kernels read exactly (see GetExactScalarAttr in csrc/tf/tf_adapter.h)."""
    attrs = {}
    for name, value in values.items():
        value = float(value)
        with np.errstate(over="ignore"):
            attrs[name] = float(np.float32(value))
        attrs[name + "_bits"] = struct.unpack("<q", struct.pack("<d", value))[0]
    return attrs


def exact_scalar_attr(op, name):
    """An op's scalar as its kernel reads it: the double of `name_bits` where it rounds to the
    float32 attribute `name`, else that attribute (a graph from before `_bits`, where it reads 0)."""
    rounded = op.get_attr(name)
    try:
        bits = op.get_attr(name + "_bits")
    except ValueError:
        return rounded
    exact = struct.unpack("<d", struct.pack("<q", bits))[0]
    with np.errstate(over="ignore"):
        refines = np.float32(exact) == np.float32(rounded)
    return exact if refines else rounded


def resolve_bias_act(act, alpha=None, gain=None, clamp=None):
    """ganops._activations.resolve with messages that start with "ganops.bias_act:" and quote
    at most a short prefix of a bad act. Returns (alpha, gain, clamp) as floats (clamp None for
    no clamp)."""
    if isinstance(act, str) and act not in _activations.defaults():
        raise ValueError(f"{BA}: act: unknown activation {short_repr(act)}; expected one of "
                         f"{', '.join(_activations.defaults())}")
    try:
        alpha, gain, clamp = _activations.resolve(act, alpha, gain, clamp)
    except (TypeError, ValueError) as error:
        message = str(error)
        if message.startswith("ganops."):
            raise
        raise type(error)(f"{BA}: {message}") from None
    if not math.isfinite(alpha):
        raise ValueError(f"{BA}: alpha must be finite, got {alpha!r}")
    return alpha, gain, clamp


def check_bias_act_range(alpha, gain, dtype):
    """alpha and gain must be finite in x's compute type (clamp may overflow to inf, which
    clips nothing, as clamp=inf does)."""
    check_compute_range(BA, "alpha", alpha, dtype, "x")
    check_compute_range(BA, "gain", gain, dtype, "x")


def check_dim(dim, where=BA):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{where}: dim must be an int (the axis the bias runs along), got "
                        f"{short_repr(dim)} of type {type(dim).__name__}")
    return int(dim)


def check_tensors(x, b, dim):
    """Convert x and b to tensors and check what is known statically.

    Returns (x, b, dim): b is None for no bias; dim is normalised to be non-negative when x's
    rank is known (otherwise the kernel normalises it against the runtime rank).
    """
    x = tf.convert_to_tensor(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{BA}: x must be float32, float64, float16 or bfloat16, got "
                        f"{x.dtype.name}")
    dim = check_dim(dim)
    if b is None:
        return x, None, dim  # dim is unused without a bias, as in the PyTorch front end
    b = tf.convert_to_tensor(b, dtype_hint=x.dtype)
    if b.dtype != x.dtype:
        raise TypeError(f"{BA}: b has dtype {b.dtype.name} but x has {x.dtype.name}; cast b with "
                        "tf.cast(b, x.dtype)")
    rank = x.shape.rank
    if rank is not None:
        if rank < 1:
            raise ValueError(f"{BA}: x must have at least one dim when b is given")
        if not -rank <= dim < rank:
            raise ValueError(f"{BA}: dim {dim} is out of range for x with {rank} dims")
        dim %= rank
    if b.shape.rank is not None and b.shape.rank != 1:
        raise ValueError(f"{BA}: b must be 1-D, got shape {b.shape}")
    if rank is not None and b.shape.rank == 1:
        channels, length = x.shape[dim], b.shape[0]
        if channels is not None and length is not None and channels != length:
            raise ValueError(f"{BA}: b must be 1-D with x.shape[{dim}] = {channels} elements, "
                             f"got shape {b.shape}")
    return x, b, dim


# --- spectral norm ---------------------------------------------------------------------------

SN = "ganops.spectral_norm"
MATRIX_HINT = "viewed as the matrix reshape(weight, [-1, weight.shape[-1]])"


def sigma_dtype(weight_dtype):
    """The dtype of sigma (and of the norms and dots): float64 for float64 weights, else float32."""
    return tf.float64 if weight_dtype == tf.float64 else tf.float32


def check_weight(weight):
    """A float tensor of rank >= 2 that is not empty (as far as its static shape tells)."""
    weight = tf.convert_to_tensor(weight)
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{SN}: weight must be float32, float64, float16 or bfloat16, "
                        f"got {weight.dtype.name}")
    shape = weight.shape
    if shape.rank is not None:
        if shape.rank < 2:
            raise ValueError(f"{SN}: weight must have at least 2 dims to be {MATRIX_HINT}, "
                             f"got shape {tuple(shape)}")
        if any(d == 0 for d in shape):
            raise ValueError(f"{SN}: weight is empty (shape {tuple(shape)})")
    return weight


def check_vector(t, weight, length, name, what):
    """A vector of shape (n,) or (1, n) with weight's dtype, n = `length` when known."""
    t = tf.convert_to_tensor(t, dtype_hint=weight.dtype)
    if t.dtype != weight.dtype:
        raise TypeError(f"{SN}: {name} has dtype {t.dtype.name} but weight has "
                        f"{weight.dtype.name}; cast it with tf.cast({name}, weight.dtype)")
    shape = t.shape
    if shape.rank is None:
        return t
    bad = shape.rank not in (1, 2) or (shape.rank == 2 and shape[0] not in (1, None))
    if not bad and shape[-1] is not None and length is not None and shape[-1] != length:
        bad = True
    if bad:
        n = length if length is not None else "n"
        raise ValueError(f"{SN}: {name} must have shape ({n},) or (1, {n}) ({what}), "
                         f"got {tuple(shape)}")
    return t


def weight_rows_cols(weight):
    """(rows, cols) of the matrix view, each None when not known statically."""
    shape = weight.shape
    if shape.rank is None:
        return None, None
    rows = shape[-1]
    cols = 1
    for d in shape[:-1]:
        if d is None:
            return rows, None
        cols *= d
    return rows, cols


def check_power_iterations(value, name="power_iterations"):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{SN}: {name} must be an int >= 1, got {short_repr(value)}")
    return int(value)


def resolve_eps(eps, name="eps", dtype=None):
    """eps for normalize(a) = a / max(||a||, eps): None means keras.config.epsilon() (1e-7
    unless changed), the value keras.layers.SpectralNormalization uses. With the weight's dtype,
    it must also be > 0 and finite in the norms' type (float32 unless the weight is float64)."""
    if eps is None:
        import keras  # only for its configured epsilon

        eps = keras.config.epsilon()
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (
            math.isfinite(eps) and eps > 0):
        raise ValueError(f"{SN}: {name} must be a finite number > 0, got {short_repr(eps)}")
    eps = float(eps)
    if dtype is not None and sigma_dtype(dtype) != tf.float64:
        check_compute_range(SN, name, eps, dtype, "weights")
        if np.float32(eps) == 0:
            raise ValueError(f"{SN}: {name} {eps!r} is 0 in float32, the type of the norms for "
                             f"{tf.as_dtype(dtype).name} weights; it must be > 0 there (at least "
                             f"{float(np.finfo(np.float32).smallest_subnormal)!r})")
    return eps
