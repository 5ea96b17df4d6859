"""Edge values through the CPU core (ganops._core on NumPy arrays): the bias walked in every
layout a model produces (one channel, few channels fastest in memory, tiny feature maps, runs
crossing the parallel split), NaN propagation, the derivative convention at z = 0, gelu's far
tails, and strings with an embedded NUL. Ground truth is NumPy, never ganops itself."""
import math

import numpy as np
import pytest

from ganops import _core

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


# (shape, dim): channels = shape[dim], inner = product of the sizes after it. Covers one channel
# (the discriminator's [N, 1] and single-channel maps), channels fastest with few channels
# (to-RGB, channels_last seen as NHWC), short blocks (2x2 and 4x4 maps), blocks of 15/17, long
# periods, and tensors larger than the 32768-element parallel grain (task edges inside runs).
LAYOUTS = [
    ((4096, 1), 1), ((64, 1, 16, 16), 1), ((8, 16, 16, 1), 3), ((8, 16, 16, 3), 3),
    ((8, 16, 17, 3), -1), ((1000, 3), 1), ((3, 255), 1), ((5, 256), 1), ((4, 300), 1),
    ((16, 512, 2, 2), 1), ((8, 512, 4, 4), 1), ((7, 33, 3, 5), 1), ((6, 9, 17), 1),
    ((3, 2048, 2, 2), 1), ((2, 5, 300), 1), ((40, 3, 1031), 1), ((70000,), 0),
]


@pytest.mark.parametrize("shape,dim", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_bias_layout_matches_numpy(shape, dim, dtype):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[dim]).astype(dtype)
    bshape = [1] * len(shape)
    bshape[dim] = -1
    z = x.astype(np.float64) + b.astype(np.float64).reshape(bshape)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    y = _core.bias_act(x, b, dim, "lrelu", 0.2, 1.5, -1.0)
    np.testing.assert_allclose(y, np.where(z >= 0, z, 0.2 * z) * 1.5, **tol)
    dy = rng.standard_normal(shape).astype(dtype)
    dz = _core.bias_act_backward(dy, x, b, dim, "swish", 0.0, 1.0, -1.0)
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(dz, dy * s * (1 + z * (1 - s)), **tol)


@pytest.mark.parametrize("clamp", [-1.0, 0.5])
@pytest.mark.parametrize("act", ["relu", "lrelu", "linear", "elu", "swish", "gelu"])
def test_nan_stays_nan(act, clamp):
    x = np.array([np.nan, -1.0, 0.0, 1.0, np.nan], np.float32)
    y = _core.bias_act(x, None, 1, act, 0.2 if act == "lrelu" else 0.0, 1.0, clamp)
    assert np.isnan(y[0]) and np.isnan(y[4]) and not np.isnan(y[1:4]).any()


# The first derivative at exactly z = 0, as torch's autograd gives it (relu 0, lrelu alpha, elu
# and selu their negative branch); the other activations are smooth there.
DERIVATIVE_AT_ZERO = {"linear": 1.0, "relu": 0.0, "lrelu": 0.2, "tanh": 1.0, "sigmoid": 0.25,
                      "elu": 1.0, "selu": SELU_SCALE * SELU_ALPHA, "softplus": 0.5, "swish": 0.5,
                      "gelu": 0.5}
SECOND_AT_ZERO = {"elu": 1.0, "selu": SELU_SCALE * SELU_ALPHA}  # the negative branch's f''


@pytest.mark.parametrize("act", sorted(DERIVATIVE_AT_ZERO))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivative_at_zero_follows_torch(act, dtype):
    x = np.zeros(3, dtype)
    b = np.zeros(1, dtype)  # z = x + b = 0 exactly, as with a zero-initialised bias
    alpha = 0.2 if act == "lrelu" else 0.0
    dz = _core.bias_act_backward(np.ones((3, 1), dtype), x.reshape(3, 1), b, 1, act, alpha, 1.0, -1.0)
    np.testing.assert_allclose(dz.ravel(), DERIVATIVE_AT_ZERO[act], rtol=1e-6)
    if act in SECOND_AT_ZERO:
        d2 = _core.bias_act_backward2(np.ones((3, 1), dtype), np.ones((3, 1), dtype), x.reshape(3, 1),
                                      b, 1, act, alpha, 1.0, -1.0)
        np.testing.assert_allclose(d2.ravel(), SECOND_AT_ZERO[act], rtol=1e-6)


@pytest.mark.parametrize("dtype,far", [(np.float32, 1e20), (np.float32, 3e38), (np.float64, 1e300)])
def test_gelu_second_derivative_vanishes_in_the_tails(dtype, far):
    z = np.array([-far, far, 40.0, -40.0], dtype)
    ones = np.ones_like(z)
    d2 = _core.bias_act_backward2(ones, ones, z, None, 1, "gelu", 0.0, 1.0, -1.0)
    np.testing.assert_array_equal(d2, np.zeros_like(z))
    d1 = _core.bias_act_backward(ones[2:], z[2:], None, 1, "gelu", 0.0, 1.0, -1.0)
    np.testing.assert_allclose(d1, [1.0, 0.0], atol=1e-30)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kind", ["norm", "squared", "two-sided", "one-sided"])
def test_penalty_of_a_nan_gradient_is_nan(kind, reduction):
    g = np.ones((3, 4), np.float32)
    g[1, 2] = np.nan  # a diverged discriminator
    penalty, norms = _core.gradient_penalty(g, kind, 1.0, 10.0, 1.0, reduction)
    assert np.isnan(norms[1]) and not np.isnan(norms[[0, 2]]).any()
    assert np.isnan(penalty[1] if reduction == "none" else penalty[0])
    gout = np.ones(3 if reduction == "none" else 1, np.float32)
    dg = _core.gradient_penalty_backward(gout, g, norms, kind, 1.0, 10.0, 1.0, reduction)
    # d(n^2)/dg = 2g is NaN only where g is; the other kinds divide by the NaN norm.
    nan_in_sample = np.isnan(g[1]) if kind == "squared" else np.ones(4, bool)
    np.testing.assert_array_equal(np.isnan(dg[1]), nan_in_sample)
    assert not np.isnan(dg[[0, 2]]).any()


def test_one_sided_penalty_is_zero_below_target_and_its_gradient_too():
    g = np.full((2, 4), 0.1, np.float64)  # norm 0.2 < target 1
    penalty, norms = _core.gradient_penalty(g, "one-sided", 1.0, 10.0, 1.0, "none")
    np.testing.assert_array_equal(penalty, [0.0, 0.0])
    dg = _core.gradient_penalty_backward(np.ones(2), g, norms, "one-sided", 1.0, 10.0, 1.0, "none")
    np.testing.assert_array_equal(dg, np.zeros_like(g))


def test_names_with_an_embedded_nul_are_unknown():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        _core.bias_act(x, None, 1, "relu\x00junk")
    g = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError):
        _core.gradient_penalty(g, "squared\x00", 1.0, 1.0, 1.0, "mean")
    with pytest.raises(ValueError):
        _core.gradient_penalty(g, "squared", 1.0, 1.0, 1.0, "mean\x00junk")
