"""The fused gradient-penalty ops for TensorFlow: per_sample_lerp / per_sample_add and the
norm-and-penalty with its backward, against NumPy and the pure-TF reference in every dtype;
tf.test.compute_gradient of first, second and third order in float64; a zero gradient; float32
accumulation for half inputs; bad input."""
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf._library import ops

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
OP_KINDS = ["norm", "squared", "two-sided", "one-sided"]
USER_KINDS = ["wgan-gp", "one-sided", "zero-gp", "dragan", "r1", "r2"]
REDUCTIONS = ["none", "mean", "sum"]
# (N, ...) shapes: NHWC images, a flat batch, one sample, and one with 3 x 2^14 + 5 elements per
# sample so the sums run in several parallel chunks.
SHAPES = [(4, 3, 5, 2), (6, 7), (1, 9), (2, 3 * 2**14 + 5)]
# Penalties and mixes are rounded once to the dtype; the sums run in float32 (float64).
TOL = {tf.float32: 2e-6, tf.float64: 1e-12, tf.float16: 1e-3, tf.bfloat16: 8e-3}
DELTA = 1e-6
GRAD_TOL = 1e-7


def ids(values):
    return [getattr(v, "name", str(v)) for v in values]


def random(shape, dtype, seed, low=-1.0, high=1.0):
    return tf.constant(np.random.default_rng(seed).uniform(low, high, size=shape), dtype)


def np64(t):
    return tf.cast(t, tf.float64).numpy()


def per_sample(c, rank):
    return np.reshape(c, [-1] + [1] * (rank - 1))


def check_gradients(f, inputs, tol=GRAD_TOL, vanishing=False):
    """Analytic against numerical Jacobians; `vanishing` says the true one is 0 (then the
    finite differences must agree that it is)."""
    theoretical, numerical = tf.test.compute_gradient(f, inputs, delta=DELTA)
    for i, (t, n) in enumerate(zip(theoretical, numerical)):
        if not vanishing:
            assert np.abs(t).max() > 0, f"input {i}: a vanishing Jacobian proves nothing"
        np.testing.assert_allclose(t, n, rtol=tol, atol=tol, err_msg=f"input {i}")


def fused(g, kind, reduction="mean", weight=3.0, target=0.75, scale=1.0):
    """The op itself, with the op kinds (norm included), scale a float or tensor."""
    acc = tf.float64 if g.dtype == tf.float64 else tf.float32
    return ops.ganops_gradient_penalty(g, tf.cast(scale, acc), kind=kind, target=target,
                                       weight=weight, reduction=reduction)


# --- mixes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=ids(DTYPES))
@pytest.mark.parametrize("shape", SHAPES[:3], ids=str)
@pytest.mark.parametrize("coef_shape", ["flat", "broadcast"])
def test_mixes_match_numpy(dtype, shape, coef_shape):
    a, b = random(shape, dtype, 1), random(shape, dtype, 2)
    c = np.random.default_rng(3).uniform(size=shape[0])
    coef = c if coef_shape == "flat" else per_sample(c, len(shape))
    coef = tf.constant(coef, tf.float16)  # any float dtype; read in float32
    c = np64(coef).reshape(-1)
    lerp = gtf.per_sample_lerp(a, b, coef)
    add = gtf.per_sample_add(a, b, coef)
    assert lerp.dtype == dtype and lerp.shape == shape
    expected_lerp = np64(a) + per_sample(c, len(shape)) * (np64(b) - np64(a))
    expected_add = np64(a) + per_sample(c, len(shape)) * np64(b)
    np.testing.assert_allclose(np64(lerp), expected_lerp, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(np64(add), expected_add, rtol=TOL[dtype], atol=TOL[dtype])


def test_lerp_endpoints_are_exact():
    a, b = random((3, 8), tf.float32, 4), random((3, 8), tf.float32, 5)
    x = gtf.per_sample_lerp(a, b, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(x.numpy()[0], a.numpy()[0])
    np.testing.assert_allclose(x.numpy()[1], b.numpy()[1], rtol=0, atol=1e-7)


@pytest.mark.parametrize("mix", [gtf.per_sample_lerp, gtf.per_sample_add], ids=["lerp", "add"])
@pytest.mark.parametrize("shape", [(3, 2, 2), (2, 5)], ids=str)
def test_mix_gradients(mix, shape):
    a, b = random(shape, tf.float64, 6), random(shape, tf.float64, 7)
    c = random(shape[:1], tf.float64, 8, 0.0, 1.0)
    check_gradients(lambda a, b, c: tf.sin(mix(a, b, c)), [a, b, c])


# --- norm and penalty ------------------------------------------------------------------------


def expected_penalty(g, kind, reduction, weight, target, scale=1.0):
    g = np64(g).reshape(g.shape[0], -1)
    n = scale * np.sqrt((g * g).sum(axis=1))
    phi = {"norm": n, "squared": n * n, "two-sided": (n - target) ** 2,
           "one-sided": np.maximum(n - target, 0) ** 2}[kind] * weight
    reduced = {"none": phi, "mean": phi.mean(), "sum": phi.sum()}[reduction]
    return reduced, n


@pytest.mark.parametrize("dtype", DTYPES, ids=ids(DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", OP_KINDS)
def test_penalty_matches_numpy(dtype, shape, kind):
    # Uniform on [-1, 1) with ~1/3 mean square: norms straddle target so one-sided has both
    # branches where the sample is small, and grad_scale moves every sample across it.
    g = random(shape, dtype, 11)
    scale = 1.5 / np.sqrt(np.prod(shape[1:]) / 3.0)
    for reduction in REDUCTIONS:
        penalty, norms = fused(g, kind, reduction, scale=scale)
        acc = tf.float64 if dtype == tf.float64 else tf.float32
        assert penalty.dtype == acc and norms.dtype == acc
        assert penalty.shape == ((shape[0],) if reduction == "none" else ())
        value, n = expected_penalty(tf.cast(g, tf.float64), kind, reduction, 3.0, 0.75, scale)
        # The inputs are exact; only float32 sums of up to 5e4 squares (and grad_scale) round.
        tol = 1e-5 if dtype != tf.float64 else 1e-12
        np.testing.assert_allclose(norms.numpy(), n, rtol=tol)
        np.testing.assert_allclose(penalty.numpy(), value, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", USER_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_user_kinds_match_reference(kind, reduction):
    g = random((5, 4, 3), tf.float32, 12, -0.6, 0.6)
    for scale in (1.0, 0.5):
        got, norms = gtf.penalty_from_gradient(g, kind, weight=4.0, target=0.9,
                                               reduction=reduction, grad_scale=scale,
                                               return_norms=True)
        want, want_norms = gtf.reference.penalty_from_gradient(
            g, kind, weight=4.0, target=0.9, reduction=reduction, grad_scale=scale,
            return_norms=True)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-6)
        np.testing.assert_allclose(norms.numpy(), want_norms.numpy(), rtol=2e-6)


def test_default_weights_and_r1_gamma():
    g = random((3, 4), tf.float32, 13)
    n2 = np.square(np.linalg.norm(g.numpy(), axis=1))
    np.testing.assert_allclose(gtf.penalty_from_gradient(g, "zero-gp").numpy(), 10 * n2.mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(gtf.penalty_from_gradient(g, "r1").numpy(), 5 * n2.mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(gtf.penalty_from_gradient(g, "r2", weight=1.0).numpy(),
                               0.5 * n2.mean(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=ids([tf.float16, tf.bfloat16]))
def test_half_inputs_accumulate_in_float32(dtype):
    # 40000 elements of 8 per sample: the sum of squares (2.56e6) overflows float16 (max 65504)
    # and would round away bfloat16's few digits; the norm, 1600, is fine in both.
    g = tf.fill([2, 40000], tf.constant(8.0, dtype))
    penalty, norms = fused(g, "squared", "none", weight=1.0)
    np.testing.assert_allclose(norms.numpy(), [1600.0, 1600.0], rtol=1e-6)
    np.testing.assert_allclose(penalty.numpy(), [1600.0**2] * 2, rtol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(g)
        p, _ = fused(g, "two-sided", "sum", weight=1.0, target=1.0)
    dg = tape.gradient(p, g)
    assert dg.dtype == dtype
    np.testing.assert_allclose(np64(dg), 2 * (1600 - 1) / 1600 * 8.0, rtol=4e-3)


# --- gradients -------------------------------------------------------------------------------

KIND_REDUCTIONS = [(k, r) for k in OP_KINDS for r in REDUCTIONS]


def smooth_grad(seed, shape=(3, 2, 3)):
    """A float64 g whose norms (about 1.4) sit away from the kinks at 0 and target = 0.7 (the
    one-sided kink), with one sample below it: one-sided has both branches."""
    g = np.random.default_rng(seed).uniform(0.3, 1.0, size=shape) * \
        np.random.default_rng(seed + 1).choice([-1, 1], size=shape)
    g[0] *= 0.2  # norm about 0.3 < target
    return tf.constant(g, tf.float64)


def summed(t):
    return tf.reduce_sum(t * tf.range(1, tf.size(t) + 1, dtype=t.dtype) / 3)


@pytest.mark.parametrize("kind,reduction", KIND_REDUCTIONS, ids=[f"{k}-{r}" for k, r in
                                                                  KIND_REDUCTIONS])
def test_first_order_compute_gradient(kind, reduction):
    g = smooth_grad(20)
    check_gradients(lambda g: fused(g, kind, reduction, scale=1.3)[0], [g])


@pytest.mark.parametrize("kind", OP_KINDS)
def test_norms_output_gradient(kind):
    # The norms are an output too; their gradient goes through the norm kind of the same op,
    # alone and together with the penalty's.
    g = smooth_grad(21)
    check_gradients(lambda g: summed(fused(g, kind, "none", scale=0.8)[1]), [g])
    check_gradients(lambda g: summed(tf.concat(fused(g, kind, "none", scale=0.8), 0)), [g])


@pytest.mark.parametrize("kind,reduction", KIND_REDUCTIONS, ids=[f"{k}-{r}" for k, r in
                                                                  KIND_REDUCTIONS])
def test_second_order_compute_gradient(kind, reduction):
    # The function checked is the first-order gradient (through GanopsGradientPenaltyGrad),
    # as a function of g and of the upstream gradient, so every output of the registered
    # second-order gradient is checked (gout, g and, through the norms, g again).
    g = smooth_grad(22)
    upstream = tf.constant([0.7, -1.2, 0.4], tf.float64)

    def first_order(g, upstream):
        with tf.GradientTape() as tape:
            tape.watch(g)
            penalty, _ = fused(g, kind, reduction, scale=1.3)
            weighted = penalty * (upstream if reduction == "none" else upstream[0])
        return tape.gradient(weighted, g)

    check_gradients(first_order, [g, upstream])


@pytest.mark.parametrize("kind", OP_KINDS)
def test_third_order_compute_gradient(kind):
    g = smooth_grad(23, shape=(2, 3))
    direction = smooth_grad(24, shape=(2, 3))

    def second_order(g):
        with tf.GradientTape() as outer:
            outer.watch(g)
            with tf.GradientTape() as inner:
                inner.watch(g)
                penalty, _ = fused(g, kind, "mean")
            dg = inner.gradient(penalty, g)
            directional = tf.reduce_sum(dg * direction)
        return outer.gradient(directional, g)

    # n^2 is quadratic in g: its third derivative is 0.
    check_gradients(second_order, [g], tol=1e-6, vanishing=kind == "squared")


@pytest.mark.parametrize("kind", OP_KINDS)
def test_zero_gradient_gives_finite_penalty_and_zero_gradients(kind):
    g = tf.zeros([3, 4, 2], tf.float32)
    with tf.GradientTape() as outer:
        outer.watch(g)
        with tf.GradientTape() as inner:
            inner.watch(g)
            penalty, norms = fused(g, kind, "mean", target=0.7)
        dg = inner.gradient(penalty, g)
        second = tf.reduce_sum(dg * tf.ones_like(dg))
    ddg = outer.gradient(second, g)
    expected = {"norm": 0.0, "squared": 0.0, "two-sided": 3.0 * 0.49, "one-sided": 0.0}[kind]
    np.testing.assert_allclose(penalty.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(norms.numpy(), 0.0)
    assert np.all(dg.numpy() == 0.0)
    assert np.all(np.isfinite(ddg.numpy()))


def test_gradient_in_tf_function_with_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float64)])
    def grad_of_penalty(g):
        with tf.GradientTape() as tape:
            tape.watch(g)
            penalty = gtf.penalty_from_gradient(g, "wgan-gp", reduction="sum")
        return penalty, tape.gradient(penalty, g)

    g = smooth_grad(25, shape=(4, 5))
    penalty, dg = grad_of_penalty(g)
    n = np.linalg.norm(g.numpy(), axis=1, keepdims=True)
    np.testing.assert_allclose(penalty.numpy(), (10 * (n - 1) ** 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(dg.numpy(), 20 * (n - 1) / n * g.numpy(), rtol=1e-12)


# --- bad input -------------------------------------------------------------------------------

G = tf.zeros([2, 3])


@pytest.mark.parametrize("fn", [gtf.penalty_from_gradient, gtf.reference.penalty_from_gradient],
                         ids=["ops", "reference"])
@pytest.mark.parametrize("kwargs,error,message", [
    (dict(kind="wgan"), ValueError, r"kind: unknown penalty 'wgan'; expected one of wgan-gp, "
                                    r"one-sided, zero-gp, dragan, r1, r2"),
    (dict(reduction="avg"), ValueError, r"reduction: unknown reduction 'avg'"),
    (dict(weight=float("nan")), ValueError, "weight must be a finite number"),
    (dict(target="1"), ValueError, "target must be a finite number"),
])
def test_penalty_rejects_bad_arguments(fn, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(G, **kwargs)


@pytest.mark.parametrize("grad,kwargs,error,message", [
    (tf.zeros([]), {}, ValueError, "grad must have a batch dim"),
    (tf.zeros([0, 3]), {}, ValueError, r"grad has an empty batch \(shape \(0, 3\)\)"),
    (tf.zeros([2, 3], tf.int32), {}, TypeError, "grad must be float32, float64"),
    (G, dict(grad_scale=0.0), ValueError, "grad_scale must be finite and > 0"),
])
def test_penalty_wrapper_rejects_bad_gradients(grad, kwargs, error, message):
    with pytest.raises(error, match=message):
        gtf.penalty_from_gradient(grad, **kwargs)


@pytest.mark.parametrize("call,error,message", [
    (lambda: gtf.per_sample_lerp(tf.zeros([2, 3]), tf.zeros([2, 4]), [0.5, 0.5]), ValueError,
     r"per_sample_lerp: end has shape \(2, 4\) but input has \(2, 3\)"),
    (lambda: gtf.per_sample_lerp(tf.zeros([2, 3]), tf.zeros([2, 3], tf.float64), [0.5, 0.5]),
     TypeError, "end has dtype float64 but input has float32"),
    (lambda: gtf.per_sample_lerp(tf.zeros([2, 3]), tf.zeros([2, 3]), [0.5, 0.5, 0.5]),
     ValueError, r"weight must hold one value per sample \(2\)"),
    (lambda: gtf.per_sample_add(tf.zeros([2, 3]), tf.zeros([2, 3]), tf.constant([1, 2])),
     TypeError, "alpha must be a float tensor"),
    (lambda: gtf.per_sample_add(tf.zeros([]), tf.zeros([]), 1.0), ValueError,
     "per_sample_add: input must have a batch dim"),
])
def test_mix_wrappers_reject_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("call,message", [
    (lambda: ops.ganops_per_sample_lerp(tf.zeros([2, 3]), tf.zeros([2, 3]), tf.zeros([3])),
     r"weight must hold one value per sample \(2\)"),
    (lambda: ops.ganops_per_sample_lerp(tf.zeros([2, 3]), tf.zeros([2, 3]),
                                        tf.zeros([2], tf.float64)),
     "per-sample values must be float for float samples, got double"),
    (lambda: fused(tf.zeros([2, 3]), "both-sided"), "kind: unknown penalty 'both-sided'"),
    (lambda: fused(tf.zeros([2, 3]), "norm", reduction="avg"), "reduction: unknown reduction"),
    (lambda: fused(tf.zeros([2, 3]), "norm", scale=-1.0), "grad_scale must be finite and > 0"),
    (lambda: fused(tf.zeros([0, 3]), "norm"), "grad has an empty batch"),
    (lambda: ops.ganops_gradient_penalty_grad(tf.zeros([3]), tf.zeros([2, 3]), tf.zeros([2]),
                                              1.0, kind="norm", target=1.0, weight=1.0,
                                              reduction="mean"),
     "grad_output must hold 1 values, got shape \\[3\\]"),
    (lambda: ops.ganops_gradient_penalty_grad(tf.zeros([]), tf.zeros([2, 3]), tf.zeros([3]),
                                              1.0, kind="norm", target=1.0, weight=1.0,
                                              reduction="mean"),
     "norms must hold 2 values"),
])
def test_kernels_reject_bad_input(call, message):
    # The raw ops, eagerly: the kernels' own checks (what a graph with unknown shapes relies on).
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        call()


def test_kernel_checks_run_in_graphs_with_unknown_shapes():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)] * 3)
    def lerp(a, b, c):
        return ops.ganops_per_sample_lerp(a, b, c)

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"end has shape \[2,4\] but input "
                                                             r"has \[2,3\]"):
        lerp(tf.zeros([2, 3]), tf.zeros([2, 4]), tf.zeros([2]))
