"""ganops.tf.layers.SpectralNormalization against keras.layers.SpectralNormalization: the same
vector_u, kernel, v, sigma, outputs and gradients over many training steps on Dense, Conv2D,
Conv2DTranspose and Embedding; inference; all-zero kernels; tf.function; model.fit; and the
paper's formulation (gradient_through_sigma=True) against a GradientTape through sigma."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from sn_cases import assert_close, keras_power_iteration
from sn_keras_cases import (KINDS, build, build_pair, dense_grads, inputs, target_like,
                            train_step)

STEPS = 25
# float32 matmuls summed in different orders, over 25 SGD-with-momentum steps.
RTOL, ATOL = 1e-5, 1e-6

kinds = pytest.mark.parametrize("kind", list(KINDS))


def test_is_a_keras_spectral_normalization_with_keras_variables():
    k, g = build_pair("conv2d")
    assert isinstance(g, keras.layers.SpectralNormalization)
    assert [v.name for v in g.weights] == [v.name for v in k.weights] == [
        "kernel", "vector_u", "bias"]
    assert [v.shape for v in g.weights] == [v.shape for v in k.weights]
    assert g.vector_u.shape == (1, 6) and not g.vector_u.trainable
    assert g.vector_u.dtype == g.kernel.dtype == "float32"
    assert g.vector_u.aggregation == k.vector_u.aggregation
    assert g.vector_u.synchronization == k.vector_u.synchronization
    assert g.kernel is g.layer.kernel


def test_vector_u_initializer_is_keras():
    g = build(gtf.layers.SpectralNormalization, "dense", seed=3)
    k = build(keras.layers.SpectralNormalization, "dense", seed=3)
    # Same seed, same draws in the same order: identical variables, vector_u included.
    for a, b in zip(g.get_weights(), k.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.abs(g.vector_u.numpy()).max() <= 0.04  # TruncatedNormal(stddev=0.02)


@kinds
@pytest.mark.parametrize("power_iterations", [1, 2])
def test_training_parity_with_keras(kind, power_iterations):
    k, g = build_pair(kind, power_iterations)
    opt_k = keras.optimizers.SGD(0.05, momentum=0.9)
    opt_g = keras.optimizers.SGD(0.05, momentum=0.9)
    for step in range(STEPS):
        x = inputs(kind, seed=step)
        # v and sigma of this step, from Keras' formula on Keras' state and from the op on ours.
        _, v_k, sigma_k = keras_power_iteration(k.kernel.value, k.vector_u.value, power_iterations)
        _, v_g, sigma_g = gtf.power_iteration(g.kernel.value, g.vector_u.value, power_iterations)
        assert_close(v_g, v_k, RTOL, ATOL, f"v, step {step}")
        assert_close(sigma_g, sigma_k, RTOL, ATOL, f"sigma, step {step}")
        y_k, grads_k = train_step(k, opt_k, x, seed=1000 + step)
        y_g, grads_g = train_step(g, opt_g, x, seed=1000 + step)
        assert_close(y_g, y_k, RTOL, ATOL, f"outputs, step {step}")
        for a, b, var in zip(grads_g, grads_k, k.trainable_variables):
            assert_close(a, b, RTOL, ATOL, f"gradient of {var.path}, step {step}")
        assert_close(g.vector_u.value, k.vector_u.value, RTOL, ATOL, f"vector_u, step {step}")
        assert_close(g.kernel.value, k.kernel.value, RTOL, ATOL, f"kernel, step {step}")
    # The kernel really is normalized after a training call (up to the last optimizer step).
    kernel = g.kernel.numpy()
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    assert 0.5 < top < 2.0


@kinds
def test_inference_changes_nothing_and_matches_keras(kind):
    k, g = build_pair(kind)
    x = inputs(kind, seed=1)
    before = [w.copy() for w in g.get_weights()]
    assert_close(g(x), k(x), RTOL, ATOL)
    assert_close(g(x, training=False), k(x, training=False), RTOL, ATOL)
    for a, b in zip(g.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@kinds
def test_all_zero_kernel_is_skipped_like_keras(kind):
    k, g = build_pair(kind)
    for layer in (k, g):
        layer.kernel.assign(tf.zeros_like(layer.kernel))
    u_before = g.vector_u.numpy().copy()
    x = inputs(kind, seed=2)
    assert_close(g(x, training=True), k(x, training=True), RTOL, ATOL)
    np.testing.assert_array_equal(g.vector_u.numpy(), u_before)
    np.testing.assert_array_equal(g.vector_u.numpy(), k.vector_u.numpy())
    assert not np.any(g.kernel.numpy())


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("in_function", [False, True], ids=["eager", "tf_function"])
def test_training_update_is_the_fused_ops_bit_for_bit(dtype, in_function):
    # The training call computes kernel / sigma with TF's Mul by 1 / sigma where the kernel is
    # in sigma's dtype (the fused op elsewhere): the same arithmetic as normalized_weights().
    keras.utils.set_random_seed(6)
    g = gtf.layers.SpectralNormalization(keras.layers.Conv2D(6, 3, dtype=dtype), dtype=dtype,
                                         power_iterations=2)
    g.build((None, 7, 7, 4))
    assert g.kernel.dtype == dtype
    x = tf.cast(inputs("conv2d", seed=3), dtype)
    call = tf.function(lambda x: g(x, training=True)) if in_function else (
        lambda x: g(x, training=True))
    for _ in range(3):
        u_new, kernel_new = g.normalized_weights()
        y = call(x)
        np.testing.assert_array_equal(g.vector_u.numpy(), u_new.numpy())
        np.testing.assert_array_equal(g.kernel.numpy(), kernel_new.numpy())
        np.testing.assert_array_equal(y.numpy(), g.layer(x).numpy())
        g.kernel.assign(g.kernel * tf.constant(1.5, dtype))  # sigma != 1 at the next step


def test_embedding_with_integer_ids_returns_floats():
    g = build(gtf.layers.SpectralNormalization, "embedding")
    ids = tf.constant([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], tf.int32)
    y = g(ids, training=True)
    assert y.dtype == tf.float32
    np.testing.assert_array_equal(y.numpy(), tf.gather(g.kernel, ids).numpy())


@pytest.mark.parametrize("through_sigma", [False, True], ids=["keras", "through_sigma"])
def test_tf_function_matches_eager(through_sigma):
    eager = build(gtf.layers.SpectralNormalization, "conv2d", seed=4,
                  gradient_through_sigma=through_sigma)
    graph = build(gtf.layers.SpectralNormalization, "conv2d", seed=4,
                  gradient_through_sigma=through_sigma)
    opt_e, opt_g = keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05)
    step = tf.function(lambda x, seed: train_step(graph, opt_g, x, seed))
    for i in range(5):
        x = inputs("conv2d", seed=i)
        y_e, grads_e = train_step(eager, opt_e, x, seed=i)
        y_g, grads_g = step(x, i)
        assert_close(y_g, y_e, 1e-6, 1e-7, f"outputs, step {i}")
        for a, b in zip(grads_g, grads_e):
            assert_close(a, b, 1e-6, 1e-7, f"gradients, step {i}")
        for a, b in zip(graph.get_weights(), eager.get_weights()):
            assert_close(a, b, 1e-6, 1e-7, f"weights, step {i}")
    assert step.experimental_get_tracing_count() <= 5  # seed is a Python int: a trace per step


@pytest.mark.parametrize("through_sigma", [False, True], ids=["keras", "through_sigma"])
def test_model_fit_matches_keras_model(through_sigma):
    def model(sn_cls, **kwargs):
        keras.utils.set_random_seed(7)
        return keras.Sequential([
            keras.Input((8, 8, 3)),
            sn_cls(keras.layers.Conv2D(8, 3, strides=2), **kwargs),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Flatten(),
            sn_cls(keras.layers.Dense(1), **kwargs),
        ])

    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    g = model(gtf.layers.SpectralNormalization, gradient_through_sigma=through_sigma)
    g.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    history = g.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
    if through_sigma:
        return  # the models differ by design; parity is checked against the reference below
    k = model(keras.layers.SpectralNormalization)
    k.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    history_k = k.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    np.testing.assert_allclose(history.history["loss"], history_k.history["loss"], rtol=1e-5)
    for a, b in zip(g.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


# --- the paper's formulation -------------------------------------------------------------------


def apply_wrapped(kind, x, kernel, bias):
    """What the wrapped layer computes, with plain TF ops and the given kernel."""
    if kind == "dense":
        return tf.matmul(x, kernel) + bias
    if kind == "conv2d":
        return tf.nn.conv2d(x, kernel, 1, "VALID") + bias
    if kind == "conv2d_transpose":
        n, h, w, _ = x.shape
        out = [n, (h - 1) * 2 + 3, (w - 1) * 2 + 3, kernel.shape[2]]
        return tf.nn.conv2d_transpose(x, kernel, out, 2, "VALID") + bias
    return tf.gather(kernel, tf.cast(x, tf.int32))


@kinds
def test_gradient_through_sigma_matches_reference_tape(kind):
    _, g = build_pair(kind, gradient_through_sigma=True)
    kernel = tf.Variable(g.kernel.numpy())
    bias = tf.Variable(g.layer.bias.numpy()) if kind != "embedding" else None
    u = tf.Variable(g.vector_u.numpy())
    ref_vars = [kernel] + ([bias] if bias is not None else [])
    opt_g, opt_r = keras.optimizers.SGD(0.05, momentum=0.9), keras.optimizers.SGD(0.05,
                                                                                    momentum=0.9)
    for step in range(STEPS):
        x = inputs(kind, seed=step)
        with tf.GradientTape(persistent=True) as tape:
            w_sn, u_new = gtf.reference.spectral_norm(kernel, u)
            y_r = apply_wrapped(kind, x, w_sn, bias)
            loss = tf.reduce_mean(tf.square(y_r - target_like(y_r, 1000 + step)))
        grads_r = dense_grads(tape.gradient(loss, ref_vars))
        if step == 0:
            # The torch-style formula: dL/dW = (G - <G, W_sn> u v^T) / sigma, G = dL/dW_sn.
            big_g = tf.convert_to_tensor(tape.gradient(loss, w_sn))
            u1, v1, sigma1 = gtf.reference.spectral_norm_power_iteration(kernel, u)
            p = tf.reshape(tf.reshape(v1, [-1, 1]) * tf.reshape(u1, [1, -1]), kernel.shape)
            formula = (big_g - tf.reduce_sum(big_g * w_sn) * p) / sigma1
            assert_close(grads_r[0], formula, 1e-5, 1e-7, "reference vs formula")
        u.assign(u_new)
        opt_r.apply(grads_r, ref_vars)
        y_g, grads_g = train_step(g, opt_g, x, seed=1000 + step)
        assert_close(y_g, y_r, RTOL, ATOL, f"outputs, step {step}")
        for a, b in zip(grads_g, grads_r):
            assert_close(a, b, RTOL, ATOL, f"gradients, step {step}")
        assert_close(g.vector_u.value, u, RTOL, ATOL, f"vector_u, step {step}")
        assert_close(g.kernel.value, kernel, RTOL, ATOL, f"raw kernel, step {step}")
    # The variable holds the raw weight, which is not normalized.
    raw = g.kernel.numpy()
    assert np.linalg.svd(raw.reshape(-1, raw.shape[-1]), compute_uv=False)[0] > 1.05


def test_gradient_through_sigma_inference_uses_stored_u_and_changes_nothing():
    g = build(gtf.layers.SpectralNormalization, "dense", gradient_through_sigma=True)
    x = inputs("dense", seed=3)
    before = [w.copy() for w in g.get_weights()]
    y = g(x, training=False)
    for a, b in zip(g.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    w_sn, _ = gtf.reference.spectral_norm(g.kernel, g.vector_u, training=False)
    assert_close(y, tf.matmul(x, w_sn) + g.layer.bias, RTOL, ATOL)
    # The gradient flows through sigma in inference too (e.g. a penalty on a frozen D).
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(g(x) ** 2)
    assert tape.gradient(loss, g.kernel) is not None


def test_gradient_through_sigma_differs_from_keras_gradient():
    # Sanity: the two modes are different formulations, not the same one twice.
    x = inputs("dense", seed=9)
    grads = []
    for through_sigma in (False, True):
        g = build(gtf.layers.SpectralNormalization, "dense", seed=2,
                  gradient_through_sigma=through_sigma)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(g(x, training=True) ** 2)
        grads.append(tape.gradient(loss, g.kernel).numpy())
    assert np.abs(grads[0] - grads[1]).max() > 1e-3


# --- mixed precision ---------------------------------------------------------------------------


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("through_sigma", [False, True], ids=["keras", "through_sigma"])
@pytest.mark.parametrize("kind", ["dense", "conv2d"])
def test_mixed_precision(mixed_policy, kind, through_sigma):
    compute = tf.float16 if mixed_policy == "mixed_float16" else tf.bfloat16
    g = build(gtf.layers.SpectralNormalization, kind, seed=6, gradient_through_sigma=through_sigma)
    keras.mixed_precision.set_global_policy("float32")
    full = build(gtf.layers.SpectralNormalization, kind, seed=6,
                 gradient_through_sigma=through_sigma)
    keras.mixed_precision.set_global_policy(mixed_policy)
    assert g.kernel.dtype == "float32" and g.vector_u.dtype == "float32"
    x = inputs(kind, seed=4)
    with tf.GradientTape() as tape:
        y = g(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    grad = tape.gradient(loss, g.kernel)
    assert y.dtype == compute and grad.dtype == tf.float32
    with tf.GradientTape() as tape:
        y_full = full(x, training=True)
        loss_full = tf.reduce_sum(y_full ** 2)
    grad_full = tape.gradient(loss_full, full.kernel)
    # The update runs on the float32 variables with float32 sums whatever the policy: the same
    # bits as under the float32 policy.
    np.testing.assert_array_equal(g.vector_u.numpy(), full.vector_u.numpy())
    np.testing.assert_array_equal(g.kernel.numpy(), full.kernel.numpy())
    tol = 1e-2 if compute == tf.float16 else 5e-2
    assert_close(y, y_full, tol, tol, "outputs")
    scale = np.abs(grad_full.numpy()).max()
    assert_close(grad, grad_full, tol, tol * scale, "kernel gradient")


def test_mixed_precision_close_to_keras_layer(mixed_policy):
    compute = tf.float16 if mixed_policy == "mixed_float16" else tf.bfloat16
    k, g = build_pair("conv2d")
    x = inputs("conv2d", seed=4)
    y_k, y_g = k(x, training=True), g(x, training=True)
    assert y_k.dtype == y_g.dtype == compute
    # Keras runs its power iteration on the compute-dtype copies, so its kernel carries that
    # rounding; ganops' stays float32.
    tol = 2e-3 if compute == tf.float16 else 1.6e-2
    assert_close(g.kernel.value, k.kernel.value, tol, tol)
    assert_close(g.vector_u.value, k.vector_u.value, tol, tol)
    assert_close(y_g, y_k, 4 * tol, 4 * tol)


@pytest.mark.parametrize("through_sigma", [False, True], ids=["keras", "through_sigma"])
def test_mixed_float16_fit_with_loss_scaling(through_sigma):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(3)
        model = keras.Sequential([
            keras.Input((8, 8, 3)),
            gtf.layers.SpectralNormalization(keras.layers.Conv2D(8, 3),
                                             gradient_through_sigma=through_sigma),
            keras.layers.Flatten(),
            gtf.layers.SpectralNormalization(keras.layers.Dense(1, dtype="float32"),
                                             gradient_through_sigma=through_sigma),
        ])
        model.compile(optimizer="adam", loss="mse")  # wrapped in a LossScaleOptimizer
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        rng = np.random.default_rng(0)
        history = model.fit(rng.normal(size=(8, 8, 8, 3)), rng.normal(size=(8, 1)),
                            batch_size=4, epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        assert all(w.dtype == "float32" for w in model.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_epsilon_floor_matches_keras():
    # A vector_u so small that ||u W^T|| < 1e-7: Keras' normalize floors the norm at
    # keras.config.epsilon() (as a * min(rsqrt(|a|^2), 1 / eps)), and so must the op.
    k, g = build_pair("dense")
    tiny = np.full((1, 6), 1e-10, "float32")
    for layer in (k, g):
        layer.vector_u.assign(tiny)
    kernel = k.kernel.numpy().astype("float64")
    a = tiny @ kernel.T
    assert np.linalg.norm(a) < 1e-7
    t = (a / 1e-7) @ kernel  # v = a / max(|a|, 1e-7); then |t| > eps, so sigma = |t|
    _, _, sigma = gtf.power_iteration(k.kernel.value, tiny)
    np.testing.assert_allclose(float(sigma), np.linalg.norm(t), rtol=1e-5)
    assert np.linalg.norm(t) < 1e-2  # a floor of sqrt(1e-7) would give a 300x smaller sigma
    x = inputs("dense", seed=0)
    assert_close(g(x, training=True), k(x, training=True), RTOL, ATOL)
    assert_close(g.vector_u.value, k.vector_u.value, RTOL, ATOL)
    assert_close(g.kernel.value, k.kernel.value, RTOL, ATOL)


def test_epsilon_argument_is_used():
    g = build(gtf.layers.SpectralNormalization, "dense", epsilon=1e-3)
    u = np.full((1, 6), 1e-5, "float32")  # ||u W^T|| < 1e-3: the floor bites
    g.vector_u.assign(u)
    kernel = g.kernel.numpy()
    g(inputs("dense", seed=0), training=True)
    w_ref, u_ref = gtf.reference.spectral_norm(kernel, u, eps=1e-3)
    assert_close(g.vector_u.value, u_ref, RTOL, ATOL)
    assert_close(g.kernel.value, w_ref, RTOL, ATOL)
    w_default, _ = gtf.reference.spectral_norm(kernel, u)
    assert np.abs(w_default.numpy() - w_ref.numpy()).max() > 1e-3


def test_layer_lets_keras_choose_xla():
    # Under XLA the fused ops become their plain-TF formulas (tests/tf/test_tf_xla.py), so the
    # layer must not veto Keras' jit_compile (Keras consults supports_jit on every layer; a veto
    # silently turns jit_compile=True off, and "auto" on a GPU machine).
    from keras.src.trainers.trainer import model_supports_jit

    model = keras.Sequential([keras.Input((5,)),
                              gtf.layers.SpectralNormalization(keras.layers.Dense(2))])
    assert model.layers[0].supports_jit is True
    assert model_supports_jit(model)


@pytest.mark.parametrize("through_sigma", [False, True], ids=["keras", "through_sigma"])
def test_wrapped_layer_losses_are_kept(through_sigma):
    # The paper mode runs the wrapped layer inside a StatelessScope; the activity-regularization
    # loss it adds there must still reach model.losses, once.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), gtf.layers.SpectralNormalization(
        keras.layers.Dense(3, activity_regularizer="l2"), gradient_through_sigma=through_sigma)])
    y = model(inputs("dense", seed=0), training=True)
    assert len(model.losses) == 1
    expected = 0.01 * tf.reduce_sum(y**2) / y.shape[0]  # Keras' l2, divided by the batch size
    np.testing.assert_allclose(float(model.losses[0]), float(expected), rtol=1e-6)
