"""Exactness of the spectral-norm gradients: tf.test.compute_gradient (analytic vs finite
differences) of first and second order in float64, and nested-GradientTape second derivatives
(a gradient penalty through a spectrally normalized layer) against the reference's autodiff."""
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf._library import ops
from sn_cases import assert_close, random_u, random_weight

SHAPES = [(4, 3), (2, 3, 2, 4), (3, 7)]
SHAPE_IDS = ["dense", "conv2d", "wide"]
DELTA = 1e-5  # central differences in float64
TOL = 1e-9  # observed errors are ~1e-11 against Jacobian entries of ~0.1

shapes = pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)


def check_gradients(f, inputs):
    theoretical, numerical = tf.test.compute_gradient(f, inputs, delta=DELTA)
    for i, (t, n) in enumerate(zip(theoretical, numerical)):
        assert np.abs(t).max() > 0  # a vanishing Jacobian proves nothing
        np.testing.assert_allclose(t, n, rtol=TOL, atol=TOL, err_msg=f"input {i}")


def fixed_vectors(shape, seed=0):
    """A weight and the (u, v) of a few power iterations on it, then held fixed."""
    w = random_weight(shape, tf.float64, seed=seed)
    u, v, _ = gtf.power_iteration(w, random_u(shape[-1], tf.float64, seed=seed + 1), 3)
    return w, u, v


def sigma_at(w, u, v):
    """u^T M v for the given weight (plain TF ops): the op inputs must see sigma move with W."""
    w2 = tf.reshape(w, [-1, w.shape[-1]])
    return tf.reduce_sum(w2 * (tf.reshape(v, [-1, 1]) * tf.reshape(u, [1, -1])))


@shapes
def test_first_order_compute_gradient(shape):
    w, u, v = fixed_vectors(shape)
    check_gradients(lambda w: gtf.spectral_normalize(w, u, v, sigma_at(w, u, v)), [w])


@shapes
def test_second_order_compute_gradient(shape):
    # The function checked is the first-order gradient op itself, as a function of the upstream
    # gradient G and of W, so both outputs of its registered gradient are checked.
    w, u, v = fixed_vectors(shape, seed=3)
    g = random_weight(shape, tf.float64, seed=9)
    check_gradients(
        lambda g, w: ops.ganops_spectral_normalize_grad(g, w, u, v, sigma_at(w, u, v)), [g, w])


@shapes
def test_second_order_through_tape(shape):
    # dL/dW from a tape, as a function of W and of the upstream weights: second order through
    # the registered gradient of GanopsSpectralNormalize.
    w, u, v = fixed_vectors(shape, seed=5)
    c = random_weight(shape, tf.float64, seed=6)

    def first_order(w, c):
        with tf.GradientTape() as tape:
            tape.watch(w)
            w_sn = gtf.spectral_normalize(w, u, v, sigma_at(w, u, v))
            loss = tf.reduce_sum(tf.sin(w_sn) * c)
        return tape.gradient(loss, w)

    check_gradients(first_order, [w, c])


def test_third_order_compute_gradient():
    # The second-order formula is written in TF ops, so it differentiates again.
    shape = (3, 4)
    w, u, v = fixed_vectors(shape, seed=21)
    g = random_weight(shape, tf.float64, seed=22)
    h = random_weight(shape, tf.float64, seed=23)

    def second_order(w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            out = ops.ganops_spectral_normalize_grad(g, w, u, v, sigma_at(w, u, v))
            loss = tf.reduce_sum(out * h)
        return tape.gradient(loss, w)

    check_gradients(second_order, [w])


def test_sigma_gradient_is_top_singular_pair_at_convergence():
    # The power iteration's sigma is differentiable with u, v held fixed: d sigma / dW2 = v^T u.
    # Once the vectors have converged that is the derivative of the largest singular value, so
    # finite differences through the whole iteration (which move u and v too) agree.
    shape = (5, 4)
    w = random_weight(shape, tf.float64, seed=31)
    u0 = random_u(4, tf.float64, seed=32)
    check_gradients(lambda w: gtf.power_iteration(w, u0, power_iterations=300)[2], [w])


def test_sigma_gradient_matches_reference():
    w, u0 = random_weight((3, 3, 4, 5), tf.float64), random_u(5, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(w)
        sigma = gtf.power_iteration(w, u0, 2)[2]
        sigma_ref = gtf.reference.spectral_norm_power_iteration(w, u0, 2)[2]
    assert_close(tape.gradient(sigma, w), tape.gradient(sigma_ref, w), 1e-12, 1e-14)


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32], ids=["float64", "float32"])
def test_gradient_penalty_through_normalized_dense_matches_reference(dtype):
    # R1-style: || d D(x) / dx ||^2 differentiated with respect to the raw kernel, D(x) =
    # sum(tanh(x @ W_sn)) with W_sn = spectral_norm(W, u).
    rng = np.random.default_rng(41)
    x = tf.constant(rng.normal(size=(6, 5)), dtype)
    w = tf.Variable(rng.normal(size=(5, 4)), dtype=dtype)
    u = random_u(4, dtype, seed=42)

    def penalty(fn):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                w_sn, _ = fn(w, u, power_iterations=2)
                d = tf.reduce_sum(tf.tanh(tf.matmul(x, w_sn)))
            gx = inner.gradient(d, x)
            p = tf.reduce_sum(gx**2)
        return p, outer.gradient(p, w)

    p, grad = penalty(gtf.spectral_norm)
    p_ref, grad_ref = penalty(gtf.reference.spectral_norm)
    rtol, atol = (1e-10, 1e-12) if dtype == tf.float64 else (1e-4, 1e-5)
    assert_close(p, p_ref, rtol, atol, "penalty")
    assert_close(grad, grad_ref, rtol, atol, "d penalty / dW")
