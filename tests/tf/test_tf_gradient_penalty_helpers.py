"""StyleGAN2's helpers on the TF front end: LazyRegularization (its values, Keras' Adam taking
its keywords, due() on ints, tensors and optimizer.iterations, eagerly and in tf.function) and
PathLengthRegularizer against the pure-TF StyleGAN2-ADA formula over several steps (penalty,
pl_mean and the gradients of a small generator's variables, in float64), for both latent ranks,
with a loss-scale optimizer, under mixed precision, in tf.function with a lazy tf.cond, saved
and restored, and its errors."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf import reference as ref

W_DIM = 6


class Generator(keras.Model):
    """A small synthesis network: Dense -> tanh -> (4, 4, 2) -> Conv2D(3), times
    (1 + the first latent element) so the images depend on the latents in two ways."""

    def __init__(self, dtype="float64", seed=3):
        super().__init__(dtype=dtype)
        init = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
        self.fc = keras.layers.Dense(4 * 4 * 2, kernel_initializer=init,
                                     bias_initializer=keras.initializers.RandomNormal(seed=seed + 1),
                                     dtype=dtype)
        self.conv = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer=init,
                                        dtype=dtype)

    def call(self, ws):
        w = tf.reduce_mean(ws, axis=1) if ws.shape.rank == 3 else ws
        h = tf.reshape(tf.tanh(self.fc(w)), [-1, 4, 4, 2])
        gate = 1 + tf.reshape(ws, [tf.shape(ws)[0], -1])[:, :1]
        return self.conv(h) * gate[:, :, None, None]


def latents(shape, seed, dtype=tf.float64):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), dtype)


def reference_step(G, mapping_scale, z, pl_mean, seed):
    """(penalty, new pl_mean, gradients of G's variables and mapping_scale) by the formula."""
    variables = G.trainable_variables + [mapping_scale]
    noise = gtf.path_length_noise(G(z).shape, tf.float64, seed)
    with tf.GradientTape() as tape:
        penalty, pl_mean = ref.path_length_penalty(G, z * mapping_scale, pl_mean, noise)
    return penalty, pl_mean, tape.gradient(penalty, variables)


# --- LazyRegularization ----------------------------------------------------------------------


def test_lazy_regularization_values():
    lazy = gtf.LazyRegularization(interval=16)
    assert [s for s in range(40) if lazy.due(s)] == [0, 16, 32]
    assert lazy.ratio == pytest.approx(16 / 17)
    assert lazy.scale(tf.constant(2.0)).numpy() == 32.0
    assert lazy.scale(tf.constant(2.0, tf.float16)).dtype == tf.float16
    kw = lazy.adam_kwargs(0.0025, beta_1=0.0, beta_2=0.99)
    assert kw == pytest.approx({"learning_rate": 0.0025 * 16 / 17, "beta_1": 0.0,
                                "beta_2": 0.99 ** (16 / 17)})
    assert gtf.LazyRegularization(1).adam_kwargs(1.0) == {
        "learning_rate": 0.5, "beta_1": 0.9 ** 0.5, "beta_2": 0.999 ** 0.5}
    assert repr(lazy) == "LazyRegularization(interval=16)"


def test_keras_adam_takes_the_corrected_keywords():
    lazy = gtf.LazyRegularization(interval=4)
    adam = keras.optimizers.Adam(**lazy.adam_kwargs(1e-3, beta_1=0.5, beta_2=0.99))
    assert float(adam.learning_rate) == pytest.approx(1e-3 * 0.8)
    assert adam.beta_1 == pytest.approx(0.5 ** 0.8)
    assert adam.beta_2 == pytest.approx(0.99 ** 0.8)


def test_due_on_tensors_variables_and_in_tf_function():
    lazy = gtf.LazyRegularization(interval=3)
    want = [s % 3 == 0 for s in range(10)]
    assert [bool(lazy.due(tf.constant(s))) for s in range(10)] == want
    assert [bool(lazy.due(np.int64(s))) for s in range(10)] == want
    due = tf.function(lazy.due, input_signature=[tf.TensorSpec([], tf.int64)])
    assert [bool(due(tf.constant(s, tf.int64))) for s in range(10)] == want
    optimizer = keras.optimizers.SGD(0.1)
    variable = keras.Variable(1.0)
    got = []
    for _ in range(4):  # optimizer.iterations counts the applied steps
        got.append(bool(lazy.due(optimizer.iterations)))
        optimizer.apply([tf.constant(1.0)], [variable])
    assert got == [True, False, False, True]


def test_lazy_regularization_errors():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="interval must be an int >= 1"):
            gtf.LazyRegularization(bad)
    lazy = gtf.LazyRegularization()
    for bad in (2.5, True, tf.constant(1.0), tf.constant([0, 1]), "3"):
        with pytest.raises(TypeError, match="step must be an int"):
            lazy.due(bad)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        lazy.adam_kwargs(keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9))
    with pytest.raises(ValueError, match="beta_2 must be a number in"):
        lazy.adam_kwargs(1e-3, beta_2=1.0)


# --- PathLengthRegularizer -------------------------------------------------------------------


@pytest.mark.parametrize("latent_shape", [(4, W_DIM), (4, 3, W_DIM)])
def test_path_length_regularizer_matches_stylegan2_formula(latent_shape):
    G = Generator()
    mapping_scale = tf.Variable(tf.constant(1.5, tf.float64))  # stands in for the mapping net
    pl = gtf.PathLengthRegularizer(decay=0.01, weight=2.0, dtype="float64")
    assert pl.pl_mean.dtype == "float64"
    pl_mean = tf.constant(0.0, tf.float64)
    for step in range(3):
        z = latents(latent_shape, step)
        with tf.GradientTape() as tape:
            got = pl(G, z * mapping_scale, seed=100 + step)
        got_grads = tape.gradient(got, G.trainable_variables + [mapping_scale])
        want, pl_mean, want_grads = reference_step(G, mapping_scale, z, pl_mean, 100 + step)
        assert got.dtype == tf.float64
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
        np.testing.assert_allclose(pl.pl_mean.numpy(), pl_mean.numpy(), rtol=1e-12)
        for g, w in zip(got_grads, want_grads):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-9, atol=1e-12)
    assert pl.pl_mean.numpy() > 0


def test_loss_scale_optimizer_gives_the_unscaled_penalty():
    G = Generator("float32")
    z = latents((4, 3, W_DIM), 0, tf.float32)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(),
                                                    initial_scale=2.0 ** 12)
    plain, scaled = gtf.PathLengthRegularizer(), gtf.PathLengthRegularizer()
    with tf.GradientTape(persistent=True) as tape:
        want = plain(G, z, seed=7)
        got = scaled(G, z, seed=7, optimizer=optimizer)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(scaled.pl_mean.numpy(), plain.pl_mean.numpy(), rtol=1e-5)
    for g, w in zip(tape.gradient(got, G.trainable_variables),
                    tape.gradient(want, G.trainable_variables)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-6)


def test_mixed_float16_keeps_pl_mean_float32():
    G32, G16 = Generator("float32"), Generator("mixed_float16")
    z = latents((4, W_DIM), 1, tf.float32)
    G32(z), G16(z)
    for v16, v32 in zip(G16.weights, G32.weights):
        v16.assign(v32)
    pl32, pl16 = gtf.PathLengthRegularizer(), gtf.PathLengthRegularizer(dtype="mixed_float16")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(),
                                                    initial_scale=2.0 ** 8)
    assert G16(z).dtype == tf.float16
    got, want = pl16(G16, z, seed=3, optimizer=optimizer), pl32(G32, z, seed=3)
    assert pl16.pl_mean.dtype == "float32" and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-2)
    np.testing.assert_allclose(pl16.pl_mean.numpy(), pl32.pl_mean.numpy(), rtol=1e-2)
    # A scale whose float16 gradients overflow: the optimizer would skip the step (non-finite
    # penalty), and pl_mean keeps its value instead of turning NaN for good.
    before = pl16.pl_mean.numpy()
    overflowing = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(),
                                                      initial_scale=2.0 ** 20)
    assert not np.isfinite(pl16(G16, z, seed=4, optimizer=overflowing).numpy())
    assert pl16.pl_mean.numpy() == before


def test_zero_jacobian_gives_zero_gradients_not_nan():
    scale = tf.Variable(2.0)

    def constant_images(ws):  # connected to ws, but with a zero Jacobian
        return tf.zeros([4, 4, 4, 3]) * scale + 0.0 * tf.reduce_sum(ws) * scale

    pl = gtf.PathLengthRegularizer()
    with tf.GradientTape() as tape:
        penalty = pl(constant_images, latents((4, W_DIM), 0, tf.float32))
    (grad,) = tape.gradient(penalty, [scale])
    assert penalty.numpy() == 0.0 and pl.pl_mean.numpy() == 0.0
    assert grad is None or grad.numpy() == 0.0


def test_in_tf_function_with_a_lazy_tf_cond_on_optimizer_iterations():
    G = Generator("float32")
    z = latents((4, 3, W_DIM), 2, tf.float32)
    G(z)
    lazy, pl = gtf.LazyRegularization(interval=2), gtf.PathLengthRegularizer()
    optimizer = keras.optimizers.SGD(0.01)

    @tf.function
    def train_step(z):
        step = optimizer.iterations
        with tf.GradientTape() as tape:
            images = G(z)
            loss = tf.reduce_mean(tf.square(images))
            loss += tf.cond(lazy.due(step),
                            lambda: lazy.scale(pl(G, z, seed=tf.fill([2], step.value))),
                            lambda: tf.zeros(()))
        grads = tape.gradient(loss, G.trainable_variables)
        optimizer.apply(grads, G.trainable_variables)
        return grads

    eager_G, eager_pl = Generator("float32"), gtf.PathLengthRegularizer()
    eager_G(z)
    for v, w in zip(eager_G.weights, G.weights):
        v.assign(w)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(eager_G(z))) + 2 * eager_pl(eager_G, z, seed=[0, 0])
    want_grads = tape.gradient(loss, eager_G.trainable_variables)

    means = []
    for step in range(4):
        grads = train_step(z)
        if step == 0:
            for g, w in zip(grads, want_grads):
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(pl.pl_mean.numpy(), eager_pl.pl_mean.numpy(), rtol=1e-6)
        means.append(float(pl.pl_mean.numpy()))
    assert means[0] > 0 and means[1] == means[0] and means[2] != means[1] and means[3] == means[2]


def test_pl_mean_is_saved_and_restored(tmp_path):
    pl = gtf.PathLengthRegularizer()
    pl(Generator("float32"), latents((2, W_DIM), 0, tf.float32), seed=1)
    path = tf.train.Checkpoint(pl=pl).save(os.fspath(tmp_path / "ckpt"))
    restored = gtf.PathLengthRegularizer()
    tf.train.Checkpoint(pl=restored).restore(path).assert_consumed()
    assert restored.pl_mean.numpy() == pl.pl_mean.numpy() != 0

    class GeneratorWithRegularizer(keras.Model):
        def __init__(self):
            super().__init__()
            self.synthesis = Generator("float32")
            self.path_length = gtf.PathLengthRegularizer()

        def call(self, ws):
            return self.synthesis(ws)

    model = GeneratorWithRegularizer()
    z = latents((2, W_DIM), 0, tf.float32)
    model(z)
    model.path_length(model.synthesis, z, seed=1)
    model.save_weights(os.fspath(tmp_path / "g.weights.h5"))
    loaded = GeneratorWithRegularizer()
    loaded(z)
    loaded.load_weights(os.fspath(tmp_path / "g.weights.h5"))
    assert loaded.path_length.pl_mean.numpy() == model.path_length.pl_mean.numpy() != 0
    assert all(v is not loaded.path_length.pl_mean for v in loaded.trainable_weights)


def test_path_length_regularizer_errors():
    pl = gtf.PathLengthRegularizer()
    G = Generator("float32")
    z = latents((2, W_DIM), 0, tf.float32)
    with pytest.raises(ValueError, match="latents must be"):
        pl(G, tf.zeros([2, 2, 2, W_DIM]))
    with pytest.raises(TypeError, match="latents must be float"):
        pl(G, tf.zeros([2, W_DIM], tf.int32))
    with pytest.raises(TypeError, match="synthesis_fn must be"):
        pl(G(z), z)
    with pytest.raises(ValueError, match="same N"):
        pl(lambda ws: G(tf.concat([ws, ws], 0)), z)
    with pytest.raises(ValueError, match="do not depend on latents"):
        pl(lambda ws: G(tf.stop_gradient(ws)), z)
    with pytest.raises(TypeError, match="PathLengthRegularizer: optimizer must be"):
        pl(G, z, optimizer="adam")
    with pytest.raises(ValueError, match="decay must be in"):
        gtf.PathLengthRegularizer(decay=2.0)
    with pytest.raises(ValueError, match="weight must be a finite number"):
        gtf.PathLengthRegularizer(weight=float("nan"))
    assert pl.pl_mean.numpy() == 0.0  # the failed calls changed nothing
