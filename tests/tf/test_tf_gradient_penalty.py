"""ganops.tf.gradient_penalty on a discriminator: the value and the gradients with respect to
D's variables (through the double backward) against the pure-TF reference for every kind,
eagerly and in tf.function with an unknown batch size; D's output shapes; a zero gradient;
the random draws; bad input."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf

KINDS = ["wgan-gp", "one-sided", "zero-gp", "dragan", "r1", "r2"]
SHAPE = (5, 6, 6, 2)
RTOL, ATOL = 2e-5, 1e-6  # float32: the two sides sum in different orders


def samples(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=shape), tf.float32),
            tf.constant(rng.normal(size=shape), tf.float32))


def smooth_discriminator(seed=0, patch=False):
    """A small D whose input gradient depends on its input and on every kernel (tanh, silu),
    so the double backward is not trivially linear."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(SHAPE[1:]), keras.layers.Conv2D(4, 3, activation="tanh")]
    if patch:
        layers += [keras.layers.Conv2D(1, 2)]  # (N, 3, 3, 1): a PatchGAN map
    else:
        layers += [keras.layers.Flatten(), keras.layers.Dense(8, activation="silu"),
                   keras.layers.Dense(1)]
    return keras.Sequential(layers)


def fake_for(kind, fake):
    return None if kind in ("dragan", "r1") else fake


def value_and_grads(penalty_fn, D, *args, variables=None, **kwargs):
    with tf.GradientTape() as tape:
        penalty = penalty_fn(D, *args, **kwargs)
    grads = tape.gradient(penalty, variables or D.trainable_variables)
    return penalty, grads


def assert_grads_close(got, want, rtol=RTOL, atol=ATOL):
    checked = 0
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=rtol, atol=atol)
            checked += int(np.abs(w.numpy()).max() > 0)
    assert checked >= 2, "the penalty must reach at least two variables of D"


@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind):
    D = smooth_discriminator()
    real, fake = samples()
    args = (real, fake_for(kind, fake))
    # This D's norms are 0.65 to 0.83: target 0.75 puts one-sided's samples on both sides.
    kwargs = dict(kind=kind, weight=3.0, target=0.75, seed=11)
    got, got_grads = value_and_grads(gtf.gradient_penalty, D, *args, **kwargs)
    want, want_grads = value_and_grads(gtf.reference.gradient_penalty, D, *args, **kwargs)
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL)
    assert_grads_close(got_grads, want_grads)


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_reductions_and_norms_match_reference(reduction):
    D = smooth_discriminator(1)
    real, fake = samples(1)
    got, norms = gtf.gradient_penalty(D, real, fake, reduction=reduction, return_norms=True,
                                      seed=3)
    want, want_norms = gtf.reference.gradient_penalty(D, real, fake, reduction=reduction,
                                                      return_norms=True, seed=3)
    assert norms.shape == (5,)
    assert got.shape == ((5,) if reduction == "none" else ())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL)
    np.testing.assert_allclose(norms.numpy(), want_norms.numpy(), rtol=RTOL)


def test_shorthands_are_the_kinds():
    D = smooth_discriminator(2)
    real, fake = samples(2)
    pairs = [
        (gtf.wgan_gp_penalty(D, real, fake, seed=1), gtf.gradient_penalty(D, real, fake, seed=1)),
        (gtf.dragan_penalty(D, real, weight=2.0, seed=1),
         gtf.gradient_penalty(D, real, kind="dragan", weight=2.0, seed=1)),
        (gtf.r1_penalty(D, real, gamma=4.0), gtf.reference.gradient_penalty(D, real, kind="r1",
                                                                            weight=4.0)),
        (gtf.r2_penalty(D, fake), gtf.reference.gradient_penalty(D, None, fake, kind="r2")),
    ]
    for got, want in pairs:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL)


def test_r1_is_gamma_over_two_times_the_squared_norm():
    # An analytic D: D(x) = sum(w * x^2) per sample, so g = 2 w x and R1 = gamma / 2 * ||2 w x||^2.
    w = tf.Variable(tf.random.stateless_normal(SHAPE[1:], seed=[1, 2]))
    real, _ = samples(3)

    def D(x):
        return tf.reduce_sum(w * x * x, axis=[1, 2, 3])

    with tf.GradientTape() as tape:
        penalty = gtf.r1_penalty(D, real, gamma=6.0)
    dw = tape.gradient(penalty, w)
    x, wv = real.numpy(), w.numpy()
    expected = 3.0 * np.mean(np.sum((2 * wv * x) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(penalty.numpy(), expected, rtol=1e-5)
    # d/dw of 3 * mean_b sum (2 w x_b)^2 = 3 * mean_b 8 w x_b^2
    np.testing.assert_allclose(dw.numpy(), 3.0 * np.mean(8 * wv * x * x, axis=0), rtol=1e-5)


def test_tf_function_with_unknown_batch_matches_eager():
    D = smooth_discriminator(4)
    real, fake = samples(4)
    spec = tf.TensorSpec([None, *SHAPE[1:]], tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([2], tf.int64)])
    def step(real, fake, seed):
        with tf.GradientTape() as tape:
            penalty = gtf.gradient_penalty(D, real, fake, kind="one-sided", target=0.5,
                                           seed=seed)
        return penalty, tape.gradient(penalty, D.trainable_variables)

    seed = tf.constant([4, 2], tf.int64)
    got, got_grads = step(real, fake, seed)
    want, want_grads = value_and_grads(gtf.reference.gradient_penalty, D, real, fake,
                                       kind="one-sided", target=0.5, seed=seed)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL)
    assert_grads_close(got_grads, want_grads)
    # Another batch size through the same graph.
    got3, _ = step(real[:3], fake[:3], seed)
    want3 = gtf.reference.gradient_penalty(D, real[:3], fake[:3], kind="one-sided", target=0.5,
                                           seed=seed)
    np.testing.assert_allclose(got3.numpy(), want3.numpy(), rtol=RTOL)


def test_patchgan_outputs_and_plain_callables_with_kwargs():
    patch = smooth_discriminator(5, patch=True)
    real, fake = samples(5)
    got, got_grads = value_and_grads(gtf.gradient_penalty, patch, real, fake, kind="zero-gp",
                                     seed=2)
    want, want_grads = value_and_grads(gtf.reference.gradient_penalty, patch, real, fake,
                                       kind="zero-gp", seed=2)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL)
    assert_grads_close(got_grads, want_grads)

    seen = {}

    def conditional(x, labels, training=None):
        seen.update(labels=labels, training=training)
        return patch(x) * labels

    labels = tf.constant([1.0, 2.0, 0.5, 1.0, 3.0])[:, None, None, None]
    got = gtf.gradient_penalty(conditional, real, fake, seed=2, labels=labels)
    want = gtf.reference.gradient_penalty(conditional, real, fake, seed=2, labels=labels)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=RTOL)
    assert seen["training"] is None  # training is passed to Keras layers only


def test_keras_discriminator_gets_training_flag():
    calls = []

    class Recorder(keras.layers.Layer):
        def call(self, x, training=None):
            calls.append(training)
            return tf.reduce_sum(x * x, axis=[1, 2, 3])

    real, fake = samples(6)
    gtf.gradient_penalty(Recorder(), real, fake)
    gtf.gradient_penalty(Recorder(), real, fake, training=False)
    assert calls == [True, False]


def test_seed_reproduces_draws_and_unseeded_draws_differ():
    D = smooth_discriminator(7)
    real, fake = samples(7)
    for kind in ("wgan-gp", "dragan"):
        f = fake_for(kind, fake)
        a = gtf.gradient_penalty(D, real, f, kind=kind, seed=5, reduction="none")
        b = gtf.gradient_penalty(D, real, f, kind=kind, seed=5, reduction="none")
        c = gtf.gradient_penalty(D, real, f, kind=kind, seed=6, reduction="none")
        d = gtf.gradient_penalty(D, real, f, kind=kind, reduction="none")
        e = gtf.gradient_penalty(D, real, f, kind=kind, reduction="none")
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert not np.allclose(a.numpy(), c.numpy())
        assert not np.allclose(d.numpy(), e.numpy())


def test_interpolates_lie_between_real_and_fake():
    # With D(x) = sum(v * x), g = v everywhere: the penalty does not see x. Read x instead.
    seen = []

    def D(x):
        seen.append(x)
        return tf.reduce_sum(x, axis=[1, 2, 3])

    real = tf.ones(SHAPE)
    fake = tf.zeros(SHAPE)
    gtf.gradient_penalty(D, real, fake, seed=9)
    x = seen[0].numpy().reshape(SHAPE[0], -1)
    eps = x[:, 0]
    np.testing.assert_array_equal(x, np.repeat(eps[:, None], x.shape[1], axis=1))  # per sample
    assert np.all((eps >= 0) & (eps < 1)) and len(set(eps)) == SHAPE[0]

    seen.clear()
    real = tf.random.stateless_normal(SHAPE, seed=[3, 3])
    gtf.gradient_penalty(D, real, kind="dragan", seed=9)
    delta = (seen[0] - real).numpy().reshape(SHAPE[0], -1)
    bound = 0.5 * np.std(real.numpy(), ddof=1)  # torch's std(): Bessel's correction
    assert np.all(delta >= 0) and np.all(delta < bound + 1e-6)  # alpha * 0.5 std * U[0, 1)


def test_zero_gradient_gives_finite_penalty_and_gradient():
    # D ignores its input: g = 0, where the norm's derivative is undefined. The penalty is the
    # kind's value at n = 0 and the gradient is 0, never NaN (the tf.norm reference gives NaN).
    v = tf.Variable([1.5])

    def D(x):
        return v * tf.reduce_sum(x * 0.0, axis=[1, 2, 3])

    real, fake = samples(8)
    for kind, expected in [("wgan-gp", 10.0), ("one-sided", 0.0), ("zero-gp", 0.0),
                           ("dragan", 10.0), ("r1", 0.0)]:
        with tf.GradientTape() as tape:
            penalty = gtf.gradient_penalty(D, real, fake_for(kind, fake), kind=kind)
        dv = tape.gradient(penalty, v)
        np.testing.assert_allclose(penalty.numpy(), expected)
        np.testing.assert_array_equal(dv.numpy(), [0.0])


def test_float64_samples_give_float64_penalty():
    w = tf.Variable(tf.random.stateless_normal(SHAPE[1:], seed=[5, 5], dtype=tf.float64))
    real, fake = (tf.cast(t, tf.float64) for t in samples(9))

    def D(x):
        return tf.reduce_sum(tf.sin(w * x), axis=[1, 2, 3])

    got, got_grads = value_and_grads(gtf.gradient_penalty, D, real, fake, seed=1, variables=[w])
    want, want_grads = value_and_grads(gtf.reference.gradient_penalty, D, real, fake, seed=1,
                                       variables=[w])
    assert got.dtype == tf.float64
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got_grads[0].numpy(), want_grads[0].numpy(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["wgan-gp", "dragan"])
def test_half_samples_match_reference(dtype, kind):
    # x, g and D's math in the half type; the norms and the penalty in float32 on both sides.
    w = tf.Variable(tf.random.stateless_normal(SHAPE[1:], seed=[6, 6]))
    real, fake = (tf.cast(t, dtype) for t in samples(12))

    def D(x):
        return tf.reduce_sum(tf.tanh(x * tf.cast(w, dtype)), axis=[1, 2, 3])

    f = fake_for(kind, fake)
    got, (got_dw,) = value_and_grads(gtf.gradient_penalty, D, real, f, kind=kind, seed=4,
                                     variables=[w])
    want, (want_dw,) = value_and_grads(gtf.reference.gradient_penalty, D, real, f, kind=kind,
                                       seed=4, variables=[w])
    assert got.dtype == tf.float32 and got_dw.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(got_dw.numpy(), want_dw.numpy(), rtol=1e-2,
                               atol=1e-2 * np.abs(want_dw.numpy()).max())


# --- bad input -------------------------------------------------------------------------------


def per_sample_sum(x):
    return tf.reduce_sum(x, axis=[1, 2, 3])


REAL, FAKE = samples(10)
BAD_CALLS = [
    (dict(fake=REAL[:, :4]), ValueError,
     r"real and fake must have the same shape, got real \(5, 6, 6, 2\) and fake \(5, 4, 6, 2\)"),
    (dict(fake=tf.cast(FAKE, tf.float64)), TypeError, "real has dtype float32 but fake has float64"),
    (dict(kind="wgan"), ValueError,
     r"kind: unknown penalty 'wgan'; expected one of wgan-gp, one-sided, zero-gp, dragan, r1, r2"),
    (dict(kind="dragan"), ValueError, "kind 'dragan' .* takes no fake ones; pass fake=None"),
    (dict(fake=None), ValueError, "kind 'wgan-gp' needs fake samples, got fake=None"),
    (dict(real=None, kind="r1"), ValueError, "kind 'r1' needs real samples"),
    (dict(real=REAL[:0], fake=FAKE[:0]), ValueError,
     r"real must have a non-empty batch dim, got shape \(0, 6, 6, 2\)"),
    (dict(D=lambda x: tf.stop_gradient(per_sample_sum(x))), ValueError,
     "D's output does not depend on its input"),
    (dict(D=lambda x: tf.ones([tf.shape(x)[0]])), ValueError,
     "D's output does not depend on its input"),
    (dict(D=lambda x: tf.reduce_sum(x)), ValueError,
     r"D must return one output per sample, shape \(N, ...\) with N = 5; it returned shape "
     r"\(\), a scalar"),
    (dict(D=lambda x: tf.reshape(x, [-1])[:4]), ValueError,
     r"with N = 5; it returned shape \(4,\)"),
    (dict(D=lambda x: (per_sample_sum(x), x)), ValueError, "D must return one tensor .* tuple"),
    (dict(D=lambda x: tf.cast(per_sample_sum(x), tf.int32)), TypeError,
     "D must return a float tensor, got int32"),
    (dict(D="not a model"), TypeError, "D must be a Keras layer or model or a callable"),
    (dict(weight=float("inf")), ValueError, "weight must be a finite number"),
    (dict(reduction="mean_over_batch"), ValueError, "reduction: unknown reduction"),
    (dict(seed=1.5), TypeError, "seed must be None, an int or a shape-\\(2,\\) int tensor"),
    (dict(real=tf.zeros([5, 6, 6, 2], tf.int32), fake=tf.zeros([5, 6, 6, 2], tf.int32)),
     TypeError, "real must be float32, float64, float16 or bfloat16"),
]


@pytest.mark.parametrize("fn", [gtf.gradient_penalty, gtf.reference.gradient_penalty],
                         ids=["ganops", "reference"])
@pytest.mark.parametrize("kwargs,error,message", BAD_CALLS,
                         ids=[f"{c[1].__name__}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_rejects_bad_input(fn, kwargs, error, message):
    kwargs = dict(kwargs)
    D = kwargs.pop("D", per_sample_sum)
    real, fake = kwargs.pop("real", REAL), kwargs.pop("fake", FAKE)
    with pytest.raises(error, match=message):
        fn(D, real, fake, **kwargs)


def test_r1_ignores_fake_and_r2_ignores_real():
    D = smooth_discriminator(11)
    real, fake = samples(11)
    other = tf.zeros([2, 3])  # unused, so not checked (as in the PyTorch front end)
    np.testing.assert_allclose(gtf.gradient_penalty(D, real, other, kind="r1").numpy(),
                               gtf.r1_penalty(D, real).numpy())
    np.testing.assert_allclose(gtf.gradient_penalty(D, other, fake, kind="r2").numpy(),
                               gtf.r2_penalty(D, fake).numpy())


def test_rejects_an_optimizer_without_loss_scaling_api():
    with pytest.raises(TypeError, match="optimizer must be a Keras optimizer"):
        gtf.gradient_penalty(per_sample_sum, REAL, FAKE, optimizer="adam")


def test_wrong_output_batch_is_caught_in_graphs_with_unknown_batch():
    spec = tf.TensorSpec([None, *SHAPE[1:]], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def penalty(real, fake):
        return gtf.gradient_penalty(lambda x: per_sample_sum(x)[1:], real, fake)

    with pytest.raises(tf.errors.InvalidArgumentError, match="D must return one output per "
                                                             "sample"):
        penalty(REAL, FAKE)
