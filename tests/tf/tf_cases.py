"""Inputs, configurations and tolerances shared by the ganops.tf tests."""
import numpy as np
import tensorflow as tf

from ganops import _core

ACTS = sorted(_core.activations())
DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]

# (name, x shape, dim): NCHW with the bias on dim 1, NHWC with it on the last axis, and [N, C].
LAYOUTS = [
    ("nchw", (2, 3, 4, 5), 1),
    ("nhwc", (2, 4, 5, 3), -1),
    ("rank2", (4, 3), 1),
]

# (rtol, atol) for outputs and dz, per dtype. Half types differ from the reference by an ulp
# or two of the final rounding. float64 is tight: alpha, gain and clamp reach the kernels as
# exact doubles (the *_bits attributes), not as TF's float32 attributes.
TOLERANCES = {
    tf.float32: (1e-5, 1e-6),
    tf.float64: (1e-12, 1e-13),
    tf.float16: (2e-3, 2e-3),
    tf.bfloat16: (1.6e-2, 1.6e-2),
}

CLAMP = 0.6  # small enough that some outputs of every activation are clipped


def tolerance(dtype, terms=1):
    """(rtol, atol) for a value that sums `terms` rounded elements (the bias gradient)."""
    rtol, atol = TOLERANCES[dtype]
    return rtol, atol * np.sqrt(terms)


def ids(values):
    return [getattr(v, "name", str(v)) for v in values]


def random_inputs(shape, dim, dtype, seed=0, with_bias=True):
    """x and b with z = x + b bounded away from 0, where relu, lrelu, elu and selu have kinks."""
    rng = np.random.default_rng(seed)
    channels = shape[dim]
    b = rng.uniform(-0.5, 0.5, size=channels) if with_bias else np.zeros(channels)
    z = rng.normal(scale=1.5, size=shape)
    z = np.sign(z) * (np.abs(z) + 0.1)
    bias_shape = [1] * len(shape)
    bias_shape[dim] = channels
    x = z - b.reshape(bias_shape)
    return tf.constant(x, dtype), (tf.constant(b, dtype) if with_bias else None)


def clamp_between_outputs(reference_fn, x, b, dim, act):
    """A clamp for float64 finite differences: the midpoint of the widest gap between sorted
    |y| values in their middle half, so no output sits near the clamp's kink."""
    y = np.sort(np.abs(reference_fn(x, b, dim=dim, act=act).numpy().ravel()))
    lo, hi = len(y) // 4, 3 * len(y) // 4
    gaps = np.diff(y[lo:hi + 1])
    k = int(np.argmax(gaps))
    return float(0.5 * (y[lo + k] + y[lo + k + 1]))


def assert_close(actual, expected, rtol, atol, what=""):
    np.testing.assert_allclose(
        np.asarray(tf.cast(actual, tf.float64)), np.asarray(tf.cast(expected, tf.float64)),
        rtol=rtol, atol=atol, err_msg=what,
    )
