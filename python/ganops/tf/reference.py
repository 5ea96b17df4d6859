"""Pure-TensorFlow bias_act: the ground truth for the tests and the baseline for the benchmarks.

Written from the formulas in DESIGN.md section 3 with plain TF ops, so TF's own autodiff gives
its gradients of every order. Half types compute in float32 and are cast back, as the kernels do.
"""
import math

import tensorflow as tf

from ganops._activations import resolve
from ganops.tf._args import check_tensors

# torch.nn.SELU's constants.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _negative_part_expm1(z):
    # exp(min(z, 0)) - 1: tf.where differentiates both branches, and expm1 of a large positive
    # z would overflow to inf and turn the masked-out gradient into NaN.
    return tf.math.expm1(tf.minimum(z, 0.0))


def _apply(act, z, alpha):
    if act == "linear":
        return z
    if act == "relu":
        return tf.nn.relu(z)
    if act == "lrelu":
        return tf.where(z >= 0, z, z * alpha)
    if act == "tanh":
        return tf.tanh(z)
    if act == "sigmoid":
        return tf.sigmoid(z)
    if act == "elu":
        return tf.where(z >= 0, z, _negative_part_expm1(z))
    if act == "selu":
        return SELU_SCALE * tf.where(z >= 0, z, SELU_ALPHA * _negative_part_expm1(z))
    if act == "softplus":
        return tf.nn.softplus(z)
    if act == "swish":
        return z * tf.sigmoid(z)
    if act == "gelu":
        return 0.5 * z * (1.0 + tf.math.erf(z / math.sqrt(2.0)))  # exact, not the tanh form
    raise AssertionError(f"reference bias_act lacks activation {act!r}")  # resolve checked


def _bias_shape(x, dim):
    """Shape that broadcasts a length-C vector along `dim` of x."""
    rank = x.shape.rank
    if rank is not None:
        shape = [1] * rank
        shape[dim % rank] = -1
        return shape
    rank = tf.rank(x)
    return tf.tensor_scatter_nd_update(tf.ones([rank], tf.int32), [[dim % rank]], [-1])


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """``clip(act(x + b) * gain, -clamp, clamp)`` with plain TF ops; same arguments as
    ganops.tf.bias_act."""
    alpha, gain, clamp = resolve(act, alpha, gain, clamp)
    x, b, dim = check_tensors(x, b, dim)
    dtype = x.dtype
    compute_dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
    z = tf.cast(x, compute_dtype)
    if b is not None:
        z = z + tf.reshape(tf.cast(b, compute_dtype), _bias_shape(x, dim))
    y = _apply(act, z, tf.constant(alpha, compute_dtype)) * tf.constant(gain, compute_dtype)
    if clamp is not None:
        y = tf.clip_by_value(y, -clamp, clamp)
    return tf.cast(y, dtype)
