"""The spectral-norm ops against the pure-TF reference (and Keras' own formula) in every dtype, on
the weight layouts of Dense, Conv2D, Conv2DTranspose and Embedding: power iteration (u, v,
sigma), W / sigma, its gradient, the functional spectral_norm, tf.function with unknown shapes."""
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf._library import ops
from sn_cases import (DTYPES, SHAPES, TOLERANCES, assert_close, ids, keras_power_iteration,
                      random_u, random_weight)

shapes = pytest.mark.parametrize("shape", [s for _, s in SHAPES], ids=[n for n, _ in SHAPES])
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=ids(DTYPES))


@shapes
@dtypes
@pytest.mark.parametrize("n", [1, 3])
def test_power_iteration_matches_reference(shape, dtype, n):
    w, u = random_weight(shape, dtype), random_u(shape[-1], dtype)
    u_new, v, sigma = gtf.power_iteration(w, u, power_iterations=n)
    u_ref, v_ref, sigma_ref = gtf.reference.spectral_norm_power_iteration(w, u, power_iterations=n)
    assert u_new.shape == u.shape and u_new.dtype == dtype
    assert v.shape == (np.prod(shape[:-1]),) and v.dtype == dtype
    assert sigma.shape == () and sigma.dtype == (tf.float64 if dtype == tf.float64 else tf.float32)
    rtol, atol = TOLERANCES[dtype]
    assert_close(u_new, u_ref, rtol, atol, "u")
    assert_close(v, v_ref, rtol, atol, "v")
    assert_close(sigma, sigma_ref, rtol, atol, "sigma")


@shapes
@pytest.mark.parametrize("n", [1, 2])
def test_power_iteration_matches_keras_formula(shape, n):
    # Keras' normalize is a * min(rsqrt(|a|^2), 1 / 1e-7): the same function as a / max(|a|, 1e-7).
    w, u = random_weight(shape, tf.float32, seed=3), random_u(shape[-1], tf.float32, seed=4)
    u_new, v, sigma = gtf.power_iteration(w, u, power_iterations=n)
    u_k, v_k, sigma_k = keras_power_iteration(w, u, n)
    rtol, atol = TOLERANCES[tf.float32]
    assert_close(u_new, u_k, rtol, atol, "u")
    assert_close(v, v_k, rtol, atol, "v")
    assert_close(sigma, sigma_k, rtol, atol, "sigma")


@pytest.mark.parametrize("shape", [(6, 4), (3, 3, 4, 8)], ids=["dense", "conv2d"])
def test_sigma_converges_to_largest_singular_value(shape):
    w, u = random_weight(shape, tf.float64, seed=5), random_u(shape[-1], tf.float64)
    _, _, sigma = gtf.power_iteration(w, u, power_iterations=200)
    top = np.linalg.svd(w.numpy().reshape(-1, shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(sigma.numpy(), top, rtol=1e-10)
    w_sn, _ = gtf.spectral_norm(w, u, power_iterations=200)
    top_sn = np.linalg.svd(w_sn.numpy().reshape(-1, shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(top_sn, 1.0, rtol=1e-10)


def test_u_may_be_a_vector_and_eps_is_honoured():
    w = random_weight((5, 3), tf.float64)
    u = random_u(3, tf.float64, keras_shape=False)
    u_new, v, sigma = gtf.power_iteration(w, u, eps=1e-3)
    u_ref, v_ref, sigma_ref = gtf.reference.spectral_norm_power_iteration(w, u, eps=1e-3)
    assert u_new.shape == (3,)
    assert_close(u_new, u_ref, 1e-12, 1e-14)
    assert_close(sigma, sigma_ref, 1e-12, 1e-14)
    # eps floors the norm: a tiny weight gives vectors of norm |.| / eps, not 1.
    tiny = w * 1e-9
    u_small, v_small, _ = gtf.power_iteration(tiny, u, eps=1e-3)
    u_ref, v_ref, _ = gtf.reference.spectral_norm_power_iteration(tiny, u, eps=1e-3)
    assert np.linalg.norm(v_small.numpy()) < 1e-3
    assert_close(v_small, v_ref, 1e-12, 1e-20)
    assert_close(u_small, u_ref, 1e-12, 1e-20)


@shapes
@dtypes
def test_spectral_normalize_and_its_gradient_match_reference(shape, dtype):
    w, u = random_weight(shape, dtype), random_u(shape[-1], dtype)
    g = random_weight(shape, dtype, seed=7)
    u_new, v, sigma = gtf.power_iteration(w, u)
    rtol, atol = TOLERANCES[dtype]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(w)
        out = gtf.spectral_normalize(w, u_new, v, sigma)
        loss = tf.reduce_sum(tf.cast(out, tf.float64) * tf.cast(g, tf.float64))
        # Reference: W / sigma(W) with sigma = v W2 u^T at fixed u, v, by autodiff.
        acc = sigma.dtype
        w2 = tf.reshape(tf.cast(w, acc), [-1, shape[-1]])
        sigma_of_w = tf.reduce_sum(w2 * (tf.reshape(tf.cast(v, acc), [-1, 1]) *
                                         tf.reshape(tf.cast(u_new, acc), [1, -1])))
        out_ref = gtf.reference.spectral_normalize(w, sigma_of_w)
        loss_ref = tf.reduce_sum(tf.cast(out_ref, tf.float64) * tf.cast(g, tf.float64))
    assert out.dtype == dtype and out.shape == shape
    assert_close(out, out_ref, rtol, atol, "W / sigma")
    grad, grad_ref = tape.gradient(loss, w), tape.gradient(loss_ref, w)
    assert grad.dtype == dtype
    # The reference's gradient rounds G / sigma and the rank-one term separately to the dtype.
    assert_close(grad, grad_ref, rtol, atol * 2, "dL/dW")


@shapes
@dtypes
def test_spectral_norm_functional_matches_reference(shape, dtype):
    w, u = random_weight(shape, dtype, seed=11), random_u(shape[-1], dtype, seed=12)
    g = random_weight(shape, dtype, seed=13)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(w)
        w_sn, u_new = gtf.spectral_norm(w, u, power_iterations=2)
        w_ref, u_ref = gtf.reference.spectral_norm(w, u, power_iterations=2)
        loss = tf.reduce_sum(tf.cast(w_sn, tf.float64) * tf.cast(g, tf.float64))
        loss_ref = tf.reduce_sum(tf.cast(w_ref, tf.float64) * tf.cast(g, tf.float64))
    rtol, atol = TOLERANCES[dtype]
    assert_close(w_sn, w_ref, rtol, atol, "w_sn")
    assert_close(u_new, u_ref, rtol, atol, "u")
    assert_close(tape.gradient(loss, w), tape.gradient(loss_ref, w), rtol, atol * 2, "dL/dw")


def test_training_false_keeps_u_and_normalizes_like_training():
    w, u = random_weight((3, 3, 4, 6), tf.float32), random_u(6, tf.float32)
    w_train, u_train = gtf.spectral_norm(w, u, training=True)
    w_eval, u_eval = gtf.spectral_norm(w, u, training=False)
    np.testing.assert_array_equal(u_eval.numpy(), u.numpy())
    assert not np.array_equal(u_train.numpy(), u.numpy())
    np.testing.assert_array_equal(w_eval.numpy(), w_train.numpy())
    w_ref, u_ref = gtf.reference.spectral_norm(w, u, training=False)
    np.testing.assert_array_equal(u_ref.numpy(), u.numpy())
    assert_close(w_eval, w_ref, *TOLERANCES[tf.float32])
    # A boolean tensor works too (inside a tf.function with a traced flag).
    w_t, u_t = tf.function(lambda t: gtf.spectral_norm(w, u, training=t))(tf.constant(False))
    np.testing.assert_array_equal(u_t.numpy(), u.numpy())


@dtypes
def test_all_zero_weight_is_left_alone(dtype):
    # Keras skips an all-zero kernel; sigma is 0 and W / sigma would be NaN.
    w, u = tf.zeros([4, 3], dtype), random_u(3, dtype)
    with tf.GradientTape() as tape:
        tape.watch(w)
        w_sn, u_new = gtf.spectral_norm(w, u)
        loss = tf.reduce_sum(tf.reshape(tf.cast(w_sn, tf.float32), [-1]) * tf.range(12.0))
    np.testing.assert_array_equal(w_sn.numpy(), np.zeros([4, 3]))
    np.testing.assert_array_equal(u_new.numpy(), u.numpy())
    grad = tape.gradient(loss, w)
    np.testing.assert_array_equal(tf.cast(grad, tf.float32).numpy().ravel(), np.arange(12.0))
    _, _, sigma = gtf.power_iteration(w, u)
    assert float(sigma) == 0.0
    w_ref, u_ref = gtf.reference.spectral_norm(w, u)
    np.testing.assert_array_equal(w_ref.numpy(), np.zeros([4, 3]))
    np.testing.assert_array_equal(u_ref.numpy(), u.numpy())


def test_unknown_shapes_in_tf_function():
    # Shapes known only at run time: the shape functions pass unknown dims through and the
    # kernels check them.
    fn = tf.function(
        lambda w, u: gtf.spectral_norm(w, u, power_iterations=2),
        input_signature=[tf.TensorSpec([None, None, None, None], tf.float32),
                         tf.TensorSpec([1, None], tf.float32)])
    concrete = fn.get_concrete_function()
    assert concrete.structured_outputs[0].shape.as_list() == [None, None, None, None]
    w, u = random_weight((3, 3, 4, 6), tf.float32), random_u(6, tf.float32)
    w_sn, u_new = fn(w, u)
    w_ref, u_ref = gtf.reference.spectral_norm(w, u, power_iterations=2)
    assert_close(w_sn, w_ref, *TOLERANCES[tf.float32])
    assert_close(u_new, u_ref, *TOLERANCES[tf.float32])
    shapes_fn = tf.function(lambda w, u: gtf.power_iteration(w, u))
    out = shapes_fn.get_concrete_function(tf.TensorSpec([3, 3, 4, 6]), tf.TensorSpec([6]))
    u_spec, v_spec, sigma_spec = out.structured_outputs
    assert u_spec.shape == (6,) and v_spec.shape == (36,) and sigma_spec.shape == ()


def test_raw_ops_are_deterministic_and_do_not_modify_inputs():
    w, u = random_weight((4, 4, 64, 96), tf.float32), random_u(96, tf.float32)
    u_copy = u.numpy().copy()
    first = ops.ganops_spectral_norm_power_iteration(w, u, n_power_iterations=3, eps=1e-7)
    for _ in range(3):
        again = ops.ganops_spectral_norm_power_iteration(w, u, n_power_iterations=3, eps=1e-7)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(u.numpy(), u_copy)
