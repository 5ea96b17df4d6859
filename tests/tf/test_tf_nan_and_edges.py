"""NaN and edge points of the compiled TF ops, against TF's own ops and numpy (never against
ganops' own output): relu keeps NaN as tf.nn.relu does, a one-sided penalty of a NaN gradient is
NaN, the first derivative at exactly z = x + b = 0 follows torch's and TF's convention for every
activation, and gelu's second derivative far out in the tails is 0, not NaN.

These exercise the C++ core (csrc/core/include/ganops/activation.h, gradient_penalty.h); they
fail until its fixes land."""
import math

import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
DTYPES = [tf.float32, tf.float64]


def dtype_ids(dtype):
    return dtype.name


# --- relu keeps NaN ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_relu_keeps_nan(dtype, clamp):
    x = tf.constant([[np.nan, -1.0, 0.25, 2.0], [1.0, np.nan, -np.nan, -3.0]], dtype)
    b = tf.constant([0.0, 0.5, -0.5, 0.0], dtype)
    y = gtf.bias_act(x, b, dim=1, act="relu", gain=1.0, clamp=clamp)
    expected = tf.nn.relu(x + b)
    if clamp is not None:
        expected = tf.clip_by_value(expected, -clamp, clamp)
    assert np.isnan(expected.numpy()).sum() == 3  # TF's relu and clip keep NaN
    np.testing.assert_array_equal(y.numpy(), expected.numpy())  # NaN where TF has NaN


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_relu_with_default_gain_keeps_nan(dtype):
    y = gtf.bias_act(tf.constant([np.nan, 1.0], dtype), act="relu")
    assert np.isnan(y.numpy()[0]) and y.numpy()[1] == pytest.approx(math.sqrt(2.0))


# --- a one-sided penalty of a NaN gradient is NaN ----------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_one_sided_penalty_of_nan_gradient_is_nan(dtype):
    g = np.array([[0.1, 0.2, 0.3], [np.nan, 0.0, 1.0], [3.0, 0.0, 4.0]])
    n = np.linalg.norm(g, axis=1)
    expected = 10.0 * np.maximum(n - 1.0, 0.0) ** 2  # numpy's maximum keeps NaN
    assert np.isnan(expected[1])
    per_sample = gtf.penalty_from_gradient(tf.constant(g, dtype), "one-sided", reduction="none")
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-6)  # NaN where numpy's is
    assert np.isnan(gtf.penalty_from_gradient(tf.constant(g, dtype), "one-sided").numpy())


# --- the first derivative at exactly z = 0 -----------------------------------------------------


def tf_derivative_at_zero(fn, dtype):
    z = tf.zeros([1], dtype)
    with tf.GradientTape() as tape:
        tape.watch(z)
        y = fn(z)
    return float(tape.gradient(y, z).numpy()[0])


# d act / dz at z = 0 from TF's own ops (times the default gain), or the formula where TF has no
# op of its own. selu takes its negative branch there, scale * alpha = 1.7581, as torch's selu
# does (TF's tf.nn.selu takes the positive one, scale; the brief picks torch's convention).
EXPECTED_AT_ZERO = {
    "linear": lambda d: tf_derivative_at_zero(tf.identity, d),
    "relu": lambda d: tf_derivative_at_zero(tf.nn.relu, d) * math.sqrt(2.0),
    "lrelu": lambda d: tf_derivative_at_zero(lambda z: tf.nn.leaky_relu(z, 0.2), d)
    * math.sqrt(2.0),
    "tanh": lambda d: tf_derivative_at_zero(tf.tanh, d),
    "sigmoid": lambda d: tf_derivative_at_zero(tf.sigmoid, d),
    "elu": lambda d: tf_derivative_at_zero(tf.nn.elu, d),
    "selu": lambda d: SELU_SCALE * SELU_ALPHA * math.exp(0.0),
    "softplus": lambda d: tf_derivative_at_zero(tf.nn.softplus, d),
    "swish": lambda d: tf_derivative_at_zero(tf.nn.silu, d) * math.sqrt(2.0),
    "gelu": lambda d: tf_derivative_at_zero(lambda z: tf.nn.gelu(z, approximate=False), d),
}


@pytest.mark.parametrize("act", sorted(EXPECTED_AT_ZERO))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("with_bias", [False, True], ids=["x=0", "x+b=0"])
def test_first_derivative_at_zero_follows_torch_and_tf(act, dtype, with_bias):
    expected = EXPECTED_AT_ZERO[act](dtype)
    if act == "relu":
        assert expected == 0.0
    if act == "lrelu":
        assert expected == pytest.approx(0.2 * math.sqrt(2.0))
    x = tf.constant([[0.5, -0.25]] if with_bias else [[0.0, 0.0]], dtype)
    b = tf.constant([-0.5, 0.25], dtype) if with_bias else None
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = gtf.bias_act(x, b, dim=1, act=act)
    dx = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(dx, np.full(dx.shape, expected), rtol=1e-6, atol=0)


# --- gelu's second derivative far out in the tails ---------------------------------------------


@pytest.mark.parametrize("dtype,z", [(tf.float32, 1e20), (tf.float64, 1e300)],
                         ids=["float32-1e20", "float64-1e300"])
def test_gelu_second_derivative_in_the_tails_is_zero(dtype, z):
    # gelu''(z) = (2 - z^2) * pdf(z) ... -> 0 as |z| grows; z^2 overflows, pdf(z) underflows to
    # 0, and their product must not be inf * 0 = NaN. The first derivative is 1 and 0 there.
    x = tf.constant([z, -z], dtype)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = gtf.bias_act(x, act="gelu")
        dx = inner.gradient(y, x)
    d2x = outer.gradient(dx, x)
    np.testing.assert_array_equal(dx.numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(d2x.numpy(), [0.0, 0.0])
