"""Argument checks for the ganops.tf ops, shared by the op wrappers and the pure-TF reference so
both reject the same inputs with the same messages. bias_act's scalar arguments (act, alpha,
gain, clamp) are resolved by ganops._activations.resolve, shared with the PyTorch front end."""
import math
import numbers

import tensorflow as tf

FLOAT_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)


def check_tensors(x, b, dim):
    """Convert x and b to tensors and check what is known statically.

    Returns (x, b, dim): b is None for no bias; dim is normalised to be non-negative when x's
    rank is known (otherwise the kernel normalises it against the runtime rank).
    """
    x = tf.convert_to_tensor(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32, float64, float16 or bfloat16, got {x.dtype.name}")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if b is None:
        return x, None, dim  # dim is unused without a bias, as in the PyTorch front end
    b = tf.convert_to_tensor(b, dtype_hint=x.dtype)
    if b.dtype != x.dtype:
        raise TypeError(
            f"b has dtype {b.dtype.name} but x has {x.dtype.name}; cast b with tf.cast(b, x.dtype)"
        )
    rank = x.shape.rank
    if rank is not None:
        if rank < 1:
            raise ValueError("x must have at least one dim when b is given")
        if not -rank <= dim < rank:
            raise ValueError(f"dim {dim} is out of range for x with {rank} dims")
        dim %= rank
    if b.shape.rank is not None and b.shape.rank != 1:
        raise ValueError(f"b must be 1-D, got shape {b.shape}")
    if rank is not None and b.shape.rank == 1:
        channels, length = x.shape[dim], b.shape[0]
        if channels is not None and length is not None and channels != length:
            raise ValueError(
                f"b must be 1-D with x.shape[{dim}] = {channels} elements, got shape {b.shape}"
            )
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
        raise ValueError(f"{SN}: {name} must be an int >= 1, got {value!r}")
    return int(value)


def resolve_eps(eps, name="eps"):
    """eps for normalize(a) = a / max(||a||, eps): None means keras.config.epsilon() (1e-7
    unless changed), the value keras.layers.SpectralNormalization uses."""
    if eps is None:
        import keras  # only for its configured epsilon

        eps = keras.config.epsilon()
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (
            math.isfinite(eps) and eps > 0):
        raise ValueError(f"{SN}: {name} must be a finite number > 0, got {eps!r}")
    return float(eps)
