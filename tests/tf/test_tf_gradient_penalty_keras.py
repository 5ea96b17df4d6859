"""Gradient penalties in Keras use: a discriminator built from ganops layers (FusedBiasAct,
SpectralNormalization) against the same one built from Keras' own layers under every penalty
(the second-order gradients of the fused ops in real use); mixed_float16 with a
LossScaleOptimizer against float32; a keras.Model whose custom train_step adds the penalty,
trained with model.fit, against the same model on the pure-TF penalty."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf

KINDS = ["wgan-gp", "one-sided", "zero-gp", "dragan", "r1", "r2"]
SHAPE = (4, 6, 6, 3)


def samples(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=shape), tf.float32),
            tf.constant(rng.normal(size=shape), tf.float32))


def keras_discriminator():
    """Keras' layers: SN(Conv2D) -> silu -> SN(Dense) -> leaky ReLU -> Dense."""
    return keras.Sequential([
        keras.Input(SHAPE[1:]),
        keras.layers.SpectralNormalization(keras.layers.Conv2D(4, 3)),
        keras.layers.Activation("silu"),
        keras.layers.Flatten(),
        keras.layers.SpectralNormalization(keras.layers.Dense(8)),
        keras.layers.LeakyReLU(0.2),
        keras.layers.Dense(1),
    ])


def ganops_discriminator():
    """The same network on ganops layers: the biases and activations are FusedBiasAct (swish is
    silu; gain 1 to match Keras' activations), the spectral norms are ganops' drop-in."""
    return keras.Sequential([
        keras.Input(SHAPE[1:]),
        gtf.layers.SpectralNormalization(keras.layers.Conv2D(4, 3, use_bias=False)),
        gtf.layers.FusedBiasAct("swish", gain=1.0),
        keras.layers.Flatten(),
        gtf.layers.SpectralNormalization(keras.layers.Dense(8, use_bias=False)),
        gtf.layers.FusedBiasAct("lrelu", alpha=0.2, gain=1.0),
        keras.layers.Dense(1),
    ])


def twin_discriminators(seed=0):
    """(keras D, ganops D, pairs of corresponding variables), with equal random weights (the
    biases too, so the bias's second-order terms are not zero)."""
    keras.utils.set_random_seed(seed)
    kd, gd = keras_discriminator(), ganops_discriminator()
    rng = np.random.default_rng(seed)
    k_sn1, _, _, k_sn2, _, k_out = kd.layers
    g_sn1, g_ba1, _, g_sn2, g_ba2, g_out = gd.layers
    pairs = [(k_sn1.layer.kernel, g_sn1.layer.kernel), (k_sn1.layer.bias, g_ba1.bias),
             (k_sn2.layer.kernel, g_sn2.layer.kernel), (k_sn2.layer.bias, g_ba2.bias),
             (k_out.kernel, g_out.kernel), (k_out.bias, g_out.bias),
             (k_sn1.vector_u, g_sn1.vector_u), (k_sn2.vector_u, g_sn2.vector_u)]
    for k, g in pairs:
        value = rng.normal(scale=0.5, size=k.shape).astype(np.float32)
        k.assign(value)
        g.assign(value)
    return kd, gd, pairs[:6]


def critic_loss(D, real, fake, penalty_fn, **kwargs):
    """A WGAN critic's loss with the penalty: D is called in training mode three times, so the
    spectral norms update their vectors (and, Keras' way, their kernels) along the way."""
    adversarial = tf.reduce_mean(D(fake, training=True)) - tf.reduce_mean(D(real, training=True))
    return adversarial + penalty_fn(D, real, fake, **kwargs)


def penalty_kwargs(kind):
    return dict(kind=kind, seed=5, target=0.5)


def call_penalty(penalty_fn, kind):
    def call(D, real, fake, **kwargs):
        return penalty_fn(D, real, None if kind in ("dragan", "r1") else fake, **kwargs)
    return call


@pytest.mark.parametrize("kind", KINDS)
def test_ganops_layers_match_keras_layers(kind):
    kd, gd, pairs = twin_discriminators()
    real, fake = samples()
    results = []
    for D, variables in ((kd, [k for k, _ in pairs]), (gd, [g for _, g in pairs])):
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:  # the penalty alone, for its gradients
                penalty = call_penalty(gtf.gradient_penalty, kind)(D, real, fake,
                                                                  **penalty_kwargs(kind))
            loss = critic_loss(D, real, fake, call_penalty(gtf.gradient_penalty, kind),
                               **penalty_kwargs(kind))
        results.append((penalty, inner.gradient(penalty, variables), loss,
                        tape.gradient(loss, variables)))
    (kp, kpg, kl, klg), (gp, gpg, gl, glg) = results
    assert float(kp) > 0
    np.testing.assert_allclose(gp.numpy(), kp.numpy(), rtol=1e-5)
    np.testing.assert_allclose(gl.numpy(), kl.numpy(), rtol=1e-5, atol=1e-6)
    nonzero = 0
    for name, got, want in zip(["conv kernel", "conv bias", "dense kernel", "dense bias",
                                "out kernel", "out bias"], gpg, kpg):
        if want is None:  # the output bias does not move dD/dx
            assert got is None, name
            continue
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=f"penalty gradient, {name}")
        nonzero += int(np.abs(want.numpy()).max() > 0)
    assert nonzero >= 4  # every kernel and the biases inside the activations
    for got, want in zip(glg, klg):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)


# --- mixed precision -------------------------------------------------------------------------


def tiny_output_discriminator(scale):
    """D with its output multiplied by `scale`: at 2^-24 the float16 gradients inside D are
    below float16's smallest subnormal (6e-8) unless the loss scale lifts them."""
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input(SHAPE[1:]),
        keras.layers.Conv2D(4, 3, activation="tanh"),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
        keras.layers.Rescaling(scale),
    ])


def penalty_under_policy(policy, kind, optimizer_fn=None, scale=1.0, jit=False):
    """(penalty, gradients as float32 NumPy) of a D built under `policy`, in a tf.function."""
    keras.config.set_dtype_policy(policy)
    try:
        D = tiny_output_discriminator(scale)
        optimizer = optimizer_fn() if optimizer_fn else None
        if optimizer is not None:
            optimizer.build(D.trainable_variables)
        real, fake = samples(4)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                penalty = gtf.gradient_penalty(D, real, None if kind == "r1" else fake,
                                               kind=kind, optimizer=optimizer, seed=2)
                scaled = optimizer.scale_loss(penalty) if optimizer is not None else penalty
            grads = tape.gradient(scaled, D.trainable_variables)
            grads = [g for g in grads if g is not None]  # the output bias does not move dD/dx
            if optimizer is not None:  # what LossScaleOptimizer.apply does before the update
                grads = [g / tf.cast(optimizer.dynamic_scale, g.dtype) for g in grads]
            return penalty, grads

        penalty, grads = step()
        return penalty.numpy(), [g.numpy().astype(np.float32) for g in grads]
    finally:
        keras.config.set_dtype_policy("float32")


def loss_scale_optimizer(initial_scale=2.0**15):
    return keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1),
                                               initial_scale=initial_scale)


@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
def test_mixed_float16_with_loss_scale_matches_float32(kind):
    want, want_grads = penalty_under_policy("float32", kind)
    # At Keras' initial scale (2^15) R1's scaled float16 gradients overflow here; the optimizer
    # would skip that step and halve the scale until they fit. Start where they fit.
    got, got_grads = penalty_under_policy("mixed_float16", kind,
                                          lambda: loss_scale_optimizer(2.0**8))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-2)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=2e-2, atol=2e-2 * np.abs(w).max())


def test_loss_scale_keeps_float16_gradients_from_underflowing():
    # R1 on a D whose output is scaled by 2^-24: without loss scaling the float16 input
    # gradient flushes to zero (so does the penalty); with the optimizer's scale (2^15) it is
    # the float32 value.
    scale = 2.0**-24
    want, _ = penalty_under_policy("float32", "r1", scale=scale)
    unscaled, _ = penalty_under_policy("mixed_float16", "r1", scale=scale)
    got, _ = penalty_under_policy("mixed_float16", "r1", loss_scale_optimizer, scale=scale)
    assert want > 0
    assert unscaled < 0.5 * want  # the failure the loss scale prevents
    np.testing.assert_allclose(got, want, rtol=1e-2)


# --- a custom train_step with model.fit ------------------------------------------------------


class WassersteinCritic(keras.Model):
    """The pattern the README shows: D's loss plus a gradient penalty in a custom train_step."""

    def __init__(self, discriminator, penalty_fn, **kwargs):
        super().__init__(**kwargs)
        self.discriminator = discriminator
        self.penalty_fn = penalty_fn

    def call(self, x, training=False):
        return self.discriminator(x, training=training)

    def train_step(self, data):
        real, fake = data
        # A stateless seed per step: the same draws for both penalty implementations.
        seed = tf.stack([tf.constant(17, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
        with tf.GradientTape() as tape:
            # float32 losses whatever the policy (D's outputs are float16 under mixed_float16).
            d_fake = tf.cast(self.discriminator(fake, training=True), tf.float32)
            d_real = tf.cast(self.discriminator(real, training=True), tf.float32)
            adversarial = tf.reduce_mean(d_fake) - tf.reduce_mean(d_real)
            penalty = self.penalty_fn(self.discriminator, real, fake, seed=seed,
                                      optimizer=self.optimizer)
            loss = self.optimizer.scale_loss(adversarial + penalty)
        variables = self.discriminator.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return {"adversarial": adversarial, "penalty": penalty}


def reference_penalty(D, real, fake, optimizer=None, **kwargs):
    return gtf.reference.gradient_penalty(D, real, fake, **kwargs)


def fit_critic(penalty_fn, batches=3, epochs=2):
    keras.utils.set_random_seed(8)
    critic = WassersteinCritic(ganops_discriminator(), penalty_fn)
    critic.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    real, fake = samples(9, shape=(4 * batches, *SHAPE[1:]))
    data = tf.data.Dataset.from_tensor_slices((real, fake)).batch(4)
    history = critic.fit(data, epochs=epochs, verbose=0, shuffle=False)
    if keras.config.dtype_policy().name == "mixed_float16":
        assert isinstance(critic.optimizer, keras.optimizers.LossScaleOptimizer)
    return history.history, [v.numpy() for v in critic.discriminator.weights]


def test_custom_train_step_with_fit_matches_pure_tf_penalty():
    got_history, got_weights = fit_critic(gtf.gradient_penalty)
    want_history, want_weights = fit_critic(reference_penalty)
    assert len(got_history["penalty"]) == 2  # two epochs of three steps
    np.testing.assert_allclose(got_history["penalty"], want_history["penalty"], rtol=1e-4)
    np.testing.assert_allclose(got_history["adversarial"], want_history["adversarial"],
                               rtol=1e-4, atol=1e-5)
    for got, want in zip(got_weights, want_weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got_weights[0], fit_critic_initial_kernel())  # it trained


def fit_critic_initial_kernel():
    keras.utils.set_random_seed(8)
    return ganops_discriminator().weights[0].numpy()


def test_fit_under_mixed_float16_matches_float32():
    # Keras' compile wraps the optimizer in a LossScaleOptimizer under mixed_float16; the
    # penalty of the first step (before any update) is the float32 one within float16 error.
    want, _ = fit_critic(gtf.gradient_penalty, batches=1, epochs=1)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        got, _ = fit_critic(gtf.gradient_penalty, batches=1, epochs=1)
    finally:
        keras.config.set_dtype_policy("float32")
    assert want["penalty"][0] > 0
    np.testing.assert_allclose(got["penalty"], want["penalty"], rtol=1e-2)
