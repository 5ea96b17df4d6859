"""Exactness of bias_act's gradients: tf.test.compute_gradient (analytic vs finite differences)
of first and second order in float64, and nested-GradientTape second derivatives against the
reference's."""
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from tf_cases import ACTS, assert_close, clamp_between_outputs, random_inputs

SHAPE, DIM = (2, 3, 2, 2), 1
DELTA = 1e-5  # central differences in float64: truncation ~1e-10, rounding ~1e-11
# alpha and gain are float32 attributes, so first derivatives carry float32-rounded constants
# while the finite differences see the same constants: both sides agree far below this.
TOL = 1e-6


def case(act, with_bias, with_clamp, seed=0):
    x, b = random_inputs(SHAPE, DIM, tf.float64, seed=seed, with_bias=with_bias)
    clamp = clamp_between_outputs(gtf.reference.bias_act, x, b, DIM, act) if with_clamp else None
    upstream = tf.constant(np.random.default_rng(seed + 1).normal(size=SHAPE), tf.float64)
    return x, b, clamp, upstream


def check_gradients(f, inputs):
    theoretical, numerical = tf.test.compute_gradient(f, inputs, delta=DELTA)
    for i, (t, n) in enumerate(zip(theoretical, numerical)):
        assert np.abs(t).max() > 0 or np.abs(n).max() == 0  # a vanishing Jacobian proves nothing
        np.testing.assert_allclose(t, n, rtol=TOL, atol=TOL, err_msg=f"input {i}")


configs = pytest.mark.parametrize(
    "act,with_bias,with_clamp",
    [(a, wb, wc) for a in ACTS for wb in (True, False) for wc in (False, True)],
    ids=[f"{a}-{'bias' if wb else 'nobias'}-{'clamp' if wc else 'noclamp'}"
         for a in ACTS for wb in (True, False) for wc in (False, True)],
)


@configs
def test_first_order_compute_gradient(act, with_bias, with_clamp):
    x, b, clamp, _ = case(act, with_bias, with_clamp)
    if with_bias:
        check_gradients(lambda x, b: gtf.bias_act(x, b, dim=DIM, act=act, clamp=clamp), [x, b])
    else:
        check_gradients(lambda x: gtf.bias_act(x, dim=DIM, act=act, clamp=clamp), [x])


@configs
def test_second_order_compute_gradient(act, with_bias, with_clamp):
    # The function checked is the first-order gradient itself, as a function of x, b and the
    # upstream gradient w, so all three outputs of GanopsBiasActGrad's gradient are checked.
    x, b, clamp, w = case(act, with_bias, with_clamp)

    def first_order_grads(x, b, w):
        sources = [x] if b is None else [x, b]
        with tf.GradientTape() as tape:
            tape.watch(sources)
            y = gtf.bias_act(x, b, dim=DIM, act=act, clamp=clamp)
            loss = tf.reduce_sum(y * w)
        return tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, sources)], 0)

    if with_bias:
        check_gradients(first_order_grads, [x, b, w])
    else:
        check_gradients(lambda x, w: first_order_grads(x, None, w), [x, w])


def second_derivatives(fn, x, b, dim, act, clamp, w, seed=2):
    """Outer gradient, with respect to x, b and w, of a random projection of dL/dx and dL/db."""
    rng = np.random.default_rng(seed)
    project_x = tf.constant(rng.normal(size=x.shape), x.dtype)
    sources = [x, w] if b is None else [x, b, w]
    with tf.GradientTape() as outer:
        outer.watch(sources)
        inner_sources = [x] if b is None else [x, b]
        with tf.GradientTape() as inner:
            inner.watch(inner_sources)
            loss = tf.reduce_sum(fn(x, b, dim=dim, act=act, clamp=clamp) * w)
        grads = inner.gradient(loss, inner_sources)
        # db enters squared so that its own second derivative is exercised too.
        penalty = tf.reduce_sum(grads[0] * project_x) + tf.reduce_sum(grads[0] ** 2)
        if b is not None:
            penalty += tf.reduce_sum(grads[1] ** 2)
    return outer.gradient(penalty, sources, unconnected_gradients="zero")


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape,dim", [((2, 3, 2, 2), 1), ((2, 2, 2, 3), -1)], ids=["nchw", "nhwc"])
@configs
def test_nested_tape_second_derivatives_match_reference(act, with_bias, with_clamp, shape, dim,
                                                        dtype):
    x, b = random_inputs(shape, dim, dtype, with_bias=with_bias)
    clamp = clamp_between_outputs(gtf.reference.bias_act, x, b, dim, act) if with_clamp else None
    w = tf.constant(np.random.default_rng(5).normal(size=shape), dtype)
    ours = second_derivatives(gtf.bias_act, x, b, dim, act, clamp, w)
    ref = second_derivatives(gtf.reference.bias_act, x, b, dim, act, clamp, w)
    rtol, atol = (1e-6, 1e-7) if dtype == tf.float64 else (1e-4, 1e-4)
    for name, g, g_ref in zip(["x", "b", "w"] if with_bias else ["x", "w"], ours, ref):
        assert_close(g, g_ref, rtol, atol, f"d/d{name}")


def test_third_order_gradient_raises():
    x, b = random_inputs((2, 3), 1, tf.float64)
    with pytest.raises(NotImplementedError, match="third-order"):
        with tf.GradientTape() as t3:
            t3.watch(x)
            with tf.GradientTape() as t2:
                t2.watch(x)
                with tf.GradientTape() as t1:
                    t1.watch(x)
                    y = gtf.bias_act(x, b, act="gelu")
                dx = t1.gradient(y, x)
            ddx = t2.gradient(dx, x)
        t3.gradient(ddx, x)
