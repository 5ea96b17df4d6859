"""The ops' scalar arguments: float64 inputs compute with the exact doubles (TF float attributes
are float32, so each scalar also travels as its bit pattern), scalars that overflow the compute
type are refused with a ValueError naming them, and the raw ops refuse a NaN or negative clamp
other than the -1 sentinel and names with an embedded NUL. Expected values come from numpy in
float64."""
import math
import struct

import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf._library import ops

RNG = np.random.default_rng(5)
X64 = RNG.normal(size=(4, 3, 5)) + 0.05  # no exact zeros, where lrelu has its kink
B64 = RNG.normal(size=(3,))


def bits(value):
    return struct.unpack("<q", struct.pack("<d", value))[0]


def assert_rel(actual, expected, rtol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    err = np.max(np.abs(actual - expected) / scale)
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


# --- float64 scalars are exact ----------------------------------------------------------------


def lrelu_np(z, alpha, gain):
    return np.where(z > 0, z, alpha * z) * gain


def test_float64_bias_act_default_lrelu_gain_is_exact():
    # gain sqrt(2) and alpha 0.2 are not float32 values: rounded to float32, y is off by ~3e-8.
    x, b = tf.constant(X64), tf.constant(B64)
    y = gtf.bias_act(x, b, dim=1, act="lrelu")
    z = X64 + B64[None, :, None]
    assert_rel(y, lrelu_np(z, 0.2, math.sqrt(2.0)), 1e-15)


@pytest.mark.parametrize("act,alpha,gain", [("lrelu", 1 / 3, math.pi), ("relu", None, math.e),
                                            ("linear", None, 1e300)])
def test_float64_bias_act_scalars_forward_and_gradients(act, alpha, gain):
    x, b = tf.constant(X64), tf.constant(B64)
    clamp = 0.7 * 1.3 ** 0.5 * abs(gain)  # clips some outputs; not a float32 value either
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = gtf.bias_act(x, b, dim=1, act=act, alpha=alpha, gain=gain, clamp=clamp)
        dx = inner.gradient(y, x)
    z = X64 + B64[None, :, None]
    a = 0.0 if act == "relu" else (alpha if act == "lrelu" else 1.0)
    raw = np.where(z > 0, z, a * z) * gain
    assert_rel(y, np.clip(raw, -clamp, clamp), 1e-15)
    slope = np.where(z > 0, 1.0, a) * gain * (np.abs(raw) <= clamp)
    assert_rel(dx, slope, 1e-15)
    assert outer.gradient(dx, x) is not None  # second order runs through the same attributes


def test_float64_penalty_weight_and_target_are_exact():
    g = RNG.normal(size=(5, 2, 3))
    weight, target = 1 / 3, 0.1  # neither is a float32 value
    n = np.linalg.norm(g.reshape(5, -1), axis=1)
    expected = np.mean(weight * (n - target) ** 2)
    grad = tf.constant(g)
    with tf.GradientTape() as outer:
        outer.watch(grad)
        with tf.GradientTape() as tape:
            tape.watch(grad)
            penalty = gtf.penalty_from_gradient(grad, "wgan-gp", weight=weight, target=target)
        d_grad = tape.gradient(penalty, grad)
        total = tf.reduce_sum(d_grad * grad)
    assert_rel(penalty, expected, 1e-15)
    batch = 5
    coef = 2 * weight * (n - target) / (batch * n)
    assert_rel(d_grad, coef[:, None, None] * g, 1e-14)
    # total = sum_b coef_b n_b^2 = sum_b 2 w (n_b - t) n_b / N, whose gradient is
    # 2 w (2 n_b - t) / (N n_b) g_b: the second-order path reads the weight and target too.
    expected_2 = (2 * weight * (2 * n - target) / (batch * n))[:, None, None] * g
    assert_rel(outer.gradient(total, grad), expected_2, 1e-13)


def test_float64_r1_gamma_and_large_grad_scale_are_exact():
    g = RNG.normal(size=(3, 4)) * 1e-100
    gamma, scale = 10 / 3, 1e100  # the scale is beyond float32's range: fine for float64
    got = gtf.penalty_from_gradient(tf.constant(g), "r1", weight=gamma, grad_scale=scale,
                                    reduction="none")
    n = np.linalg.norm(g * scale, axis=1)
    assert_rel(got, gamma / 2 * n ** 2, 1e-14)


def test_float64_spectral_eps_is_exact():
    # An all-zero weight leaves u = 0 / max(0, eps) = 0 whatever eps is, so test eps through a
    # tiny weight whose norms are below it: v = M^T u / eps exactly.
    eps = 1 / 3 * 1e-3
    w = np.full((2, 3), 1e-9)
    u = np.array([[1.0, 0.0, 0.0]])
    _, v, _ = gtf.power_iteration(tf.constant(w), tf.constant(u), 1, eps=eps)
    assert_rel(v, (w @ u[0]) / eps, 1e-15)


def test_graph_without_bits_uses_the_float_attributes():
    # Graphs written before the *_bits attributes read them as 0: the float attributes apply.
    y = ops.ganops_bias_act(tf.constant([[-1.0, 2.0]]), tf.zeros([0]), act="lrelu", alpha=0.25,
                            gain=2.0, clamp=-1.0, dim=1, has_bias=False)
    np.testing.assert_array_equal(y.numpy(), [[-0.5, 4.0]])


def test_bits_that_do_not_refine_the_float_attribute_are_ignored():
    y = ops.ganops_bias_act(tf.constant([[2.0]], tf.float64), tf.zeros([0], tf.float64),
                            act="linear", alpha=0.0, gain=2.0, gain_bits=bits(3.0), clamp=-1.0,
                            dim=1, has_bias=False)
    assert y.numpy()[0, 0] == 4.0


def test_gradient_functions_pass_the_exact_scalars():
    x = tf.constant(X64)

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = gtf.bias_act(x, act="lrelu", gain=math.pi)
        return tape.gradient(y, x)

    graph = grads.get_concrete_function(x).graph
    grad_ops = [op for op in graph.get_operations() if op.type == "GanopsBiasActGrad"]
    assert grad_ops and grad_ops[0].get_attr("gain_bits") == bits(math.pi)
    assert grad_ops[0].get_attr("alpha_bits") == bits(0.2)


# --- scalars must fit the compute type --------------------------------------------------------


@pytest.mark.parametrize("name,kwargs", [
    ("gain", dict(act="linear", gain=1e308)),
    ("gain", dict(act="relu", gain=-4e38)),
    ("alpha", dict(act="lrelu", alpha=1e300)),
])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16], ids=lambda d: d.name)
@pytest.mark.parametrize("fn", [gtf.bias_act, gtf.reference.bias_act], ids=["ops", "reference"])
def test_bias_act_scalars_beyond_float32_are_refused(fn, dtype, name, kwargs):
    with pytest.raises(ValueError, match=rf"^ganops.bias_act: {name} .* must be within the "
                                         rf"float32 range"):
        fn(tf.zeros([2, 3], dtype), None, **kwargs)


def test_bias_act_float64_takes_large_scalars():
    x = np.array([[1e-300, -1.5e-300]])  # normal doubles: TF flushes subnormals to zero
    y = gtf.bias_act(tf.constant(x), act="lrelu", alpha=1e300, gain=1e308)
    assert_rel(y, lrelu_np(x, 1e300, 1e308), 1e-15)


def test_bias_act_float32_keeps_float32_max():
    y = gtf.bias_act(tf.constant([[1.0]]), act="linear", gain=float(np.finfo(np.float32).max))
    assert np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("fn", [gtf.penalty_from_gradient, gtf.reference.penalty_from_gradient],
                         ids=["ops", "reference"])
@pytest.mark.parametrize("name,kwargs", [
    ("grad_scale", dict(grad_scale=1e300)),
    ("grad_scale", dict(grad_scale=1e-50)),  # 0 in float32
    ("weight", dict(weight=1e300)),
    ("target", dict(target=-1e39)),
])
def test_penalty_scalars_beyond_float32_are_refused(fn, name, kwargs):
    with pytest.raises(ValueError, match=rf"^ganops.tf.gradient_penalty: {name} "):
        fn(tf.ones([2, 3]), **kwargs)


def test_penalty_scalar_range_is_checked_before_the_discriminator_runs():
    with pytest.raises(ValueError, match="weight .* float32 range"):
        gtf.gradient_penalty(lambda x: x[:, 0], tf.ones([2, 3]), tf.zeros([2, 3]), weight=1e300)


@pytest.mark.parametrize("eps", [1e300, 1e-50], ids=["overflow", "underflow"])
def test_spectral_eps_beyond_float32_is_refused(eps):
    with pytest.raises(ValueError, match=r"^ganops.spectral_norm: eps"):
        gtf.power_iteration(tf.ones([3, 2]), tf.ones([2]), eps=eps)
    gtf.power_iteration(tf.ones([3, 2], tf.float64), tf.ones([2], tf.float64), eps=eps)


def raw(x, **overrides):
    attrs = dict(act="relu", alpha=0.0, gain=1.0, clamp=-1.0, dim=1, has_bias=False)
    attrs.update(overrides)
    return ops.ganops_bias_act(x, tf.zeros([0], x.dtype), **attrs)


@pytest.mark.parametrize("attrs,message,float64_ok", [
    (dict(gain=1e300, gain_bits=bits(1e300)), "gain 1e.300 must be finite in float32", True),
    (dict(gain=float("inf")), "gain inf must be finite in float32", False),
    (dict(act="lrelu", alpha=float("nan")), "alpha nan must be finite", False),
])
def test_raw_bias_act_refuses_scalars_beyond_the_compute_type(attrs, message, float64_ok):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        raw(tf.ones([2, 3]), **attrs)
    if float64_ok:
        assert np.isfinite(raw(tf.ones([2, 3], tf.float64), **attrs).numpy()).all()
    else:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("32", "64")):
            raw(tf.ones([2, 3], tf.float64), **attrs)


def test_raw_penalty_refuses_a_weight_beyond_float32():
    with pytest.raises(tf.errors.InvalidArgumentError, match="weight 1e.300 must be finite"):
        ops.ganops_gradient_penalty(tf.ones([2, 3]), tf.constant(1.0), kind="squared",
                                    target=0.0, weight=1e300, weight_bits=bits(1e300),
                                    reduction="mean")


def test_raw_tensor_grad_scale_beyond_float32_is_refused_when_run():
    # A tensor grad_scale is only known at run time; cast to float32 it is inf.
    with pytest.raises(tf.errors.InvalidArgumentError, match="grad_scale must be finite"):
        gtf.penalty_from_gradient(tf.ones([2, 3]), grad_scale=tf.constant(1e300, tf.float64))


# --- raw ops: clamp and names -----------------------------------------------------------------


@pytest.mark.parametrize("clamp", [float("nan"), -2.0, -0.5, -float("inf")])
def test_raw_bias_act_refuses_nan_and_negative_clamp(clamp):
    with pytest.raises(tf.errors.InvalidArgumentError, match="clamp must be >= 0, or -1 for no "
                                                             "clamp"):
        raw(tf.ones([2, 3]), clamp=clamp)


def test_raw_bias_act_minus_one_means_no_clamp():
    x = tf.constant([[-3.0, 5.0]])
    np.testing.assert_array_equal(raw(x, clamp=-1.0).numpy(), tf.nn.relu(x).numpy())
    np.testing.assert_array_equal(raw(x, clamp=0.0).numpy(), [[0.0, 0.0]])


@pytest.mark.parametrize("op", ["forward", "grad", "grad_grad"])
def test_raw_bias_act_refuses_act_with_embedded_nul(op):
    x = tf.ones([2, 3])
    b = tf.zeros([0])
    attrs = dict(act="relu\x00junk", alpha=0.0, gain=1.0, clamp=-1.0, dim=1, has_bias=False)
    calls = {"forward": lambda: ops.ganops_bias_act(x, b, **attrs),
             "grad": lambda: ops.ganops_bias_act_grad(x, x, b, **attrs),
             "grad_grad": lambda: ops.ganops_bias_act_grad_grad(x, x, x, b, **attrs)}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"act: unknown activation 'relu\\x00junk'"):
        calls[op]()


@pytest.mark.parametrize("name", ["kind", "reduction"])
@pytest.mark.parametrize("op", ["penalty", "grad"])
def test_raw_penalty_refuses_names_with_embedded_nul(name, op):
    attrs = dict(kind="squared", target=0.0, weight=1.0, reduction="mean")
    attrs[name] = attrs[name] + "\x00junk"
    g, s = tf.ones([2, 3]), tf.constant(1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{name}: unknown .*\\x00junk"):
        if op == "penalty":
            ops.ganops_gradient_penalty(g, s, **attrs)
        else:
            ops.ganops_gradient_penalty_grad(tf.ones([]), g, tf.ones([2]), s, **attrs)


def test_raw_long_act_is_cut_in_the_message():
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        raw(tf.ones([2, 3]), act="x" * 10000)
    assert "10000 characters" in str(info.value) and len(str(info.value)) < 600
