"""XLA (on XLA_CPU): inside tf.function(jit_compile=True) and Keras' compile(jit_compile=True)
every ganops TF op lowers to its plain-TF formula, with the values and the gradients (first and
second order) of the compiled kernels, compared here with the ops run eagerly. Before, every
op failed there with "No registered 'Ganops...' OpKernel for XLA_CPU_JIT devices"."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf import _xla
from ganops.tf.layers import FusedBiasAct, SpectralNormalization

ACTS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "gelu"]
TOL = {tf.float32: (2e-5, 2e-6), tf.float64: (1e-12, 1e-13), tf.float16: (2e-3, 2e-3)}


def xla(fn):
    return tf.function(fn, jit_compile=True)


def assert_all_close(got, want, dtype):
    rtol, atol = TOL[dtype]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g is not None and w is not None
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64),
                                   rtol=rtol, atol=atol)


def compare(fn, *args, dtype=tf.float32):
    """fn run eagerly (the compiled kernels) and under XLA (the lowering) give the same
    values; fn returns a flat list of tensors."""
    eager = [t.numpy() for t in fn(*args)]
    compiled = [t.numpy() for t in xla(fn)(*args)]
    assert_all_close(compiled, eager, dtype)
    return eager


def random(shape, dtype, seed, low=-2.0, high=2.0):
    rng = np.random.default_rng(seed)
    values = rng.uniform(low, high, size=shape)
    values = np.sign(values) * (np.abs(values) + 0.05)  # away from the activations' kinks
    return tf.constant(values, dtype)


# --- detection -------------------------------------------------------------------------------


def test_compiling_with_xla_is_true_only_in_graphs_xla_compiles():
    seen = {}

    def probe(name):
        seen[name] = _xla.compiling_with_xla()

    @tf.function
    def plain_inner(x):
        probe("plain function called from an XLA one")
        return x

    @tf.function(jit_compile=True)
    def compiled(x):
        probe("jit_compile=True")
        y = tf.cond(x[0] > 0, lambda: (probe("cond branch"), x)[1], lambda: x)
        return plain_inner(y)

    @tf.function(jit_compile=False)
    def not_compiled(x):
        probe("jit_compile=False")
        return x

    @tf.function
    def default(x):
        probe("tf.function")
        return x

    probe("eager")
    for f in (compiled, not_compiled, default):
        f(tf.ones([2]))
    assert seen == {"eager": False, "jit_compile=True": True, "cond branch": True,
                    "plain function called from an XLA one": True, "jit_compile=False": False,
                    "tf.function": False}


def test_ops_have_no_xla_kernels_so_the_lowering_is_needed():
    # What the lowering avoids: the raw op inside an XLA cluster.
    from ganops.tf._library import ops

    @tf.function(jit_compile=True)
    def raw(x):
        return ops.ganops_bias_act(x, tf.zeros([0]), act="relu", alpha=0.0, gain=1.0, clamp=-1.0,
                                   dim=1, has_bias=False)

    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.NotFoundError),
                       match="OpKernel for XLA"):
        raw(tf.ones([2, 3]))


# --- bias_act ----------------------------------------------------------------------------------


def bias_act_grads(x, b, dim, **kwargs):
    """y, dy/dx, dy/db (weighted by a fixed cotangent), and the second-order gradients of
    sum(dx * w2) with respect to x and b."""
    w1 = tf.cos(tf.cast(tf.reshape(tf.range(tf.size(x)), tf.shape(x)), x.dtype))
    w2 = tf.sin(tf.cast(tf.reshape(tf.range(tf.size(x)), tf.shape(x)), x.dtype))
    with tf.GradientTape(persistent=True) as outer:
        outer.watch([x, b])
        with tf.GradientTape() as inner:
            inner.watch([x, b])
            y = gtf.bias_act(x, b, dim=dim, **kwargs)
            loss = tf.reduce_sum(tf.cast(y, tf.float64) * tf.cast(w1, tf.float64))
        dx, db = inner.gradient(loss, [x, b])
        second = tf.reduce_sum(tf.cast(dx, tf.float64) * tf.cast(w2, tf.float64))
    # None where dx does not depend on x (piecewise-linear activations without a clamp): TF's
    # autodiff of the lowering knows that, the kernels return zeros.
    second_order = outer.gradient(second, [x, b],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [y, dx, db, *second_order]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
@pytest.mark.parametrize("layout", [((2, 3, 4), 1), ((2, 4, 3), -1)], ids=["dim1", "last"])
@pytest.mark.parametrize("clamp", [None, 0.8])
def test_bias_act_under_xla_matches_the_kernels(act, dtype, layout, clamp):
    shape, dim = layout
    x, b = random(shape, dtype, 1), random((3,), dtype, 2, -0.02, 0.02)
    fn = lambda x, b: bias_act_grads(x, b, dim, act=act, clamp=clamp)  # noqa: E731
    compare(fn, x, b, dtype=dtype)


def test_bias_act_half_under_xla_matches_the_kernels():
    x, b = random((2, 3, 4), tf.float16, 3), random((3,), tf.float16, 4, -0.02, 0.02)

    def fn(x, b):
        with tf.GradientTape() as tape:
            tape.watch([x, b])
            y = gtf.bias_act(x, b, act="lrelu", clamp=1.0)
        return [y, *tape.gradient(y, [x, b])]

    compare(fn, x, b, dtype=tf.float16)


def test_bias_act_without_bias_and_alpha_gain_under_xla():
    x = random((5, 6), tf.float64, 5)
    fn = lambda x: [gtf.bias_act(x, act="lrelu", alpha=0.3, gain=1.7)]  # noqa: E731
    compare(fn, x, dtype=tf.float64)


# --- spectral normalization --------------------------------------------------------------------


def spectral_grads(fn, w, *args):
    """fn(w, *args)'s outputs, the gradient of sum(out[0] * c1) and the second-order gradient of
    sum(dw * c2), both with respect to w."""
    c1 = tf.cos(tf.cast(tf.reshape(tf.range(tf.size(w)), tf.shape(w)), w.dtype))
    c2 = tf.sin(tf.cast(tf.reshape(tf.range(tf.size(w)), tf.shape(w)), w.dtype))
    with tf.GradientTape() as outer:
        outer.watch(w)
        with tf.GradientTape() as inner:
            inner.watch(w)
            outputs = list(fn(w, *args))
            first = outputs[0]
            loss = tf.reduce_sum(first * tf.cast(c1, first.dtype)) if first.shape.rank else first
        dw = inner.gradient(loss, w)
        second = tf.reduce_sum(dw * c2)
    return outputs + [dw, outer.gradient(second, w, unconnected_gradients=tf.UnconnectedGradients.ZERO)]


WEIGHTS = [(4, 3), (3, 3, 2, 5)]


@pytest.mark.parametrize("shape", WEIGHTS, ids=str)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
def test_spectral_norm_under_xla_matches_the_kernels(shape, dtype):
    w, u = random(shape, dtype, 6), random((1, shape[-1]), dtype, 7)
    fn = lambda w, u: spectral_grads(  # noqa: E731
        lambda w, u: gtf.spectral_norm(w, u, power_iterations=2), w, u)
    compare(fn, w, u, dtype=dtype)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
def test_power_iteration_sigma_under_xla_matches_the_kernels(dtype):
    w, u = random((6, 4), dtype, 8), random((4,), dtype, 9)

    def fn(w, u):
        def sigma_first(w, u):
            u_new, v, sigma = gtf.power_iteration(w, u, 3)
            return sigma, u_new, v
        return spectral_grads(sigma_first, w, u)

    compare(fn, w, u, dtype=dtype)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
def test_spectral_normalize_under_xla_matches_the_kernels(dtype):
    w, u = random((5, 2, 3), dtype, 10), random((3,), dtype, 11)

    def fn(w, u):
        u_new, v, sigma = gtf.power_iteration(w, u, 1)
        return spectral_grads(lambda w: [gtf.spectral_normalize(w, u_new, v, sigma)], w)

    compare(fn, w, u, dtype=dtype)


def test_spectral_norm_of_a_zero_weight_under_xla():
    w, u = tf.zeros([3, 2]), random((1, 2), tf.float32, 12)
    fn = lambda w, u: spectral_grads(lambda w, u: gtf.spectral_norm(w, u), w, u)  # noqa: E731
    compare(fn, w, u)


# --- gradient penalty ops ----------------------------------------------------------------------


@pytest.mark.parametrize("mix", ["lerp", "add"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16], ids=lambda d: d.name)
def test_per_sample_mixes_under_xla_match_the_kernels(mix, dtype):
    a, b = random((3, 2, 4), dtype, 13), random((3, 2, 4), dtype, 14)
    c = random((3, 1, 1), tf.float64 if dtype == tf.float64 else tf.float32, 15, 0.0, 1.0)
    op = gtf.per_sample_lerp if mix == "lerp" else gtf.per_sample_add
    k = tf.cast(tf.reshape(tf.range(24), [3, 2, 4]), dtype) / 7 - 1

    def fn(a, b, c):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([a, b, c])
            with tf.GradientTape() as inner:
                inner.watch([a, b, c])
                y = op(a, b, c)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(k, tf.float32))
            da, db, dc = inner.gradient(loss, [a, b, c])
            second = tf.reduce_sum(tf.cast(dc, tf.float32) * tf.constant([1.0, -2.0, 0.5])[
                :, None, None]) + tf.reduce_sum(tf.cast(da, tf.float32))
        return [y, da, db, dc, *[g if g is not None else tf.zeros_like(v) for g, v in zip(
            outer.gradient(second, [a, b, c]), [a, b, c])]]

    compare(fn, a, b, c, dtype=dtype)


def penalty_grads(grad, **kwargs):
    """The penalty, the norms, their gradient with respect to grad (weighted) and the
    second-order gradient of sum(d grad * w2)."""
    w2 = tf.sin(tf.cast(tf.reshape(tf.range(tf.size(grad)), tf.shape(grad)), grad.dtype))
    with tf.GradientTape() as outer:
        outer.watch(grad)
        with tf.GradientTape() as inner:
            inner.watch(grad)
            penalty, norms = gtf.penalty_from_gradient(grad, return_norms=True, **kwargs)
            weights = tf.cast(tf.range(1, tf.size(penalty) + 1), penalty.dtype)
            loss = tf.reduce_sum(penalty * weights) + 0.25 * tf.reduce_sum(norms)
        d_grad = inner.gradient(loss, grad)
        second = tf.reduce_sum(d_grad * w2)
    return [penalty, norms, d_grad, outer.gradient(second, grad)]


@pytest.mark.parametrize("kind", ["wgan-gp", "one-sided", "zero-gp", "r1"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
def test_penalty_from_gradient_under_xla_matches_the_kernels(kind, reduction, dtype):
    grad = random((4, 2, 3), dtype, 16, -0.5, 0.5)
    grad = tf.tensor_scatter_nd_update(grad, [[2]], tf.zeros([1, 2, 3], dtype))  # a zero sample
    fn = lambda g: penalty_grads(g, kind=kind, reduction=reduction, weight=3.0,  # noqa: E731
                                 target=0.6, grad_scale=1.5)
    values = compare(fn, grad, dtype=dtype)
    assert all(np.isfinite(v).all() for v in values)  # no NaN at the zero sample, either way


def variable_grads(tape, target, variables):
    """The gradients for Keras variables, zeros where the target does not depend on one (a
    penalty does not on D's last bias)."""
    grads = tape.gradient(target, variables)
    return [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]


def small_discriminator():
    dense = keras.layers.Dense(1)
    dense.build((None, 15))

    def D(x):
        return dense(gtf.bias_act(tf.reshape(x, [-1, 15]), act="swish"))

    return D, dense.trainable_variables


def test_gradient_penalty_on_a_discriminator_under_xla():
    # r1 and r2 draw nothing, so XLA and the kernels see the same samples.
    real, fake = random((4, 3, 5), tf.float32, 17), random((4, 3, 5), tf.float32, 18)
    D, variables = small_discriminator()

    def fn(real, fake):
        with tf.GradientTape() as tape:
            losses = [gtf.r1_penalty(D, real, gamma=3.0), gtf.r2_penalty(D, fake, gamma=0.5)]
        return losses + variable_grads(tape, tf.add_n(losses), variables)

    compare(fn, real, fake)


@pytest.mark.parametrize("kind", ["wgan-gp", "one-sided", "dragan"])
def test_drawn_penalties_under_xla_match_the_reference_under_xla(kind):
    # TF's stateless random ops draw other numbers under XLA than in its kernels, even for the
    # same seed and algorithm, so the seeded draws are compared inside XLA: the ganops penalty
    # and the pure-TF reference draw the same numbers from the same seed.
    real, fake = random((4, 3, 5), tf.float32, 17), random((4, 3, 5), tf.float32, 18)
    fake = None if kind == "dragan" else fake
    D, variables = small_discriminator()

    def penalty_and_grads(penalty_fn):
        @tf.function(jit_compile=True)
        def run(real, fake):
            with tf.GradientTape() as tape:
                penalty = penalty_fn(D, real, fake, kind=kind, seed=tf.constant([3, 4]))
            return [penalty, *variable_grads(tape, penalty, variables)]
        return [t.numpy() for t in run(real, fake)]

    assert_all_close(penalty_and_grads(gtf.gradient_penalty),
                     penalty_and_grads(gtf.reference.gradient_penalty), tf.float32)


def test_path_length_regularizer_under_xla():
    # Its noise is a seeded draw (other numbers under XLA), so the pure-TF reference, given the
    # same draw, is the yardstick inside the same XLA function.
    latents = random((3, 2, 4), tf.float32, 19)
    dense = keras.layers.Dense(6)
    dense.build((None, 4))
    synthesis = lambda ws: tf.reshape(dense(ws[:, 0]), [-1, 1, 2, 3])  # noqa: E731
    pl = gtf.PathLengthRegularizer(decay=0.5, weight=2.0)
    variables = dense.trainable_variables

    @tf.function(jit_compile=True)
    def both(latents):
        pl.pl_mean.assign(0.5)
        with tf.GradientTape(persistent=True) as tape:
            penalty = pl(synthesis, latents, seed=5)
            noise = gtf.path_length_noise(tf.shape(synthesis(latents)), tf.float32, seed=5)
            ref, ref_mean = gtf.reference.path_length_penalty(synthesis, latents, 0.5, noise,
                                                              decay=0.5, weight=2.0)
        return ([penalty, tf.convert_to_tensor(pl.pl_mean), *variable_grads(tape, penalty,
                                                                             variables)],
                [ref, ref_mean, *variable_grads(tape, ref, variables)])

    got, want = both(latents)
    assert_all_close([t.numpy() for t in got], [t.numpy() for t in want], tf.float32)


# --- a Keras model compiled with XLA -----------------------------------------------------------


class Critic(keras.Model):
    """A custom train_step with a WGAN-GP penalty, written out with the fused ops: TF's
    stateless random ops draw other numbers under XLA, so the interpolation weights come with
    the data for the XLA and non-XLA runs to see the same interpolates."""

    def __init__(self, discriminator):
        super().__init__()
        self.discriminator = discriminator

    def train_step(self, data):
        real, fake, eps = data
        D = self.discriminator
        with tf.GradientTape() as tape:
            loss = (tf.reduce_mean(D(fake, training=True))
                    - tf.reduce_mean(D(real, training=True)))
            x = gtf.per_sample_lerp(fake, real, eps)
            with tf.GradientTape() as inner:
                inner.watch(x)
                scores = D(x, training=True)
            grad = inner.gradient(scores, x)
            loss += gtf.penalty_from_gradient(grad, "wgan-gp", weight=10.0)
        variables = D.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return {"d_loss": loss}


def discriminator():
    keras.utils.set_random_seed(21)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        SpectralNormalization(keras.layers.Conv2D(4, 3, use_bias=False)),
        FusedBiasAct("lrelu"),
        keras.layers.Flatten(),
        SpectralNormalization(keras.layers.Dense(8, use_bias=False), power_iterations=2),
        FusedBiasAct("swish", clamp=4.0),
        SpectralNormalization(keras.layers.Dense(1), gradient_through_sigma=True),
    ])


def train(jit_compile):
    critic = Critic(discriminator())
    critic.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
    assert critic.jit_compile is jit_compile  # no layer vetoes XLA (supports_jit)
    real, fake = random((8, 6, 6, 2), tf.float32, 22), random((8, 6, 6, 2), tf.float32, 23)
    eps = random((8,), tf.float32, 24, 0.0, 1.0)
    data = tf.data.Dataset.from_tensor_slices((real, fake, eps)).batch(4)
    history = critic.fit(data, epochs=1, verbose=0, shuffle=False)  # 2 steps
    return history.history["d_loss"], [v.numpy() for v in critic.discriminator.weights]


def test_keras_model_with_jit_compile_trains_like_without():
    loss_xla, weights_xla = train(True)
    loss_plain, weights_plain = train(False)
    np.testing.assert_allclose(loss_xla, loss_plain, rtol=1e-4, atol=1e-5)
    assert len(weights_xla) == len(weights_plain)
    for got, want in zip(weights_xla, weights_plain):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(weights_plain[0], discriminator().weights[0].numpy())  # it trained
