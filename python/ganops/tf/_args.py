"""Tensor checks for ganops.tf.bias_act, shared by the op wrapper and the pure-TF reference so
both reject the same inputs with the same messages. The scalar arguments (act, alpha, gain,
clamp) are resolved by ganops._activations.resolve, shared with the PyTorch front end."""
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
