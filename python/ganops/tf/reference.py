"""Pure-TensorFlow bias_act, spectral normalization and gradient penalties: the ground truth for
the tests and the baseline for the benchmarks.

Written from the formulas in README.md (bias_act, spectral normalization, gradient penalties)
with plain TF ops, so TF's own autodiff gives their gradients of every order. Half types compute in float32 and are cast back, as the
kernels do.
"""
import math

import tensorflow as tf

from ganops.tf import _args
from ganops.tf import _penalty_args as _pa
from ganops.tf._args import check_tensors

# torch.nn.SELU's constants.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _negative_part_expm1(z):
    # exp(min(z, 0)) - 1: tf.where differentiates both branches, and expm1 of a large positive
    # z would overflow to inf and turn the masked-out gradient into NaN.
    return tf.math.expm1(tf.minimum(z, 0.0))


def _apply(act, z, alpha):
    # At z = 0 the piecewise activations take the negative branch's derivative, as torch and
    # tf.nn.leaky_relu do (relu 0, lrelu alpha, elu 1, selu scale * alpha); tf.nn.selu takes the
    # positive branch there, torch's convention is kept.
    if act == "linear":
        return z
    if act == "relu":
        return tf.nn.relu(z)
    if act == "lrelu":
        return tf.where(z > 0, z, z * alpha)
    if act == "tanh":
        return tf.tanh(z)
    if act == "sigmoid":
        return tf.sigmoid(z)
    if act == "elu":
        return tf.where(z > 0, z, _negative_part_expm1(z))
    if act == "selu":
        return SELU_SCALE * tf.where(z > 0, z, SELU_ALPHA * _negative_part_expm1(z))
    if act == "softplus":
        return tf.nn.softplus(z)
    if act == "swish":
        return z * tf.sigmoid(z)
    if act == "gelu":
        return 0.5 * z * (1.0 + tf.math.erf(z / math.sqrt(2.0)))  # exact, not the tanh form
    raise AssertionError(f"reference bias_act lacks activation {act!r}")  # resolve checked


def _bias_shape(x, dim):
    """Shape that broadcasts a length-C vector along `dim` of x."""
    rank = x.shape.rank
    if rank is not None:
        shape = [1] * rank
        shape[dim % rank] = -1
        return shape
    rank = tf.rank(x)
    return tf.tensor_scatter_nd_update(tf.ones([rank], tf.int32), [[dim % rank]], [-1])


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """``clip(act(x + b) * gain, -clamp, clamp)`` with plain TF ops; same arguments as
    ganops.tf.bias_act."""
    alpha, gain, clamp = _args.resolve_bias_act(act, alpha, gain, clamp)
    x, b, dim = check_tensors(x, b, dim)
    _args.check_bias_act_range(alpha, gain, x.dtype)
    dtype = x.dtype
    compute_dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
    z = tf.cast(x, compute_dtype)
    if b is not None:
        z = z + tf.reshape(tf.cast(b, compute_dtype), _bias_shape(x, dim))
    y = _apply(act, z, tf.constant(alpha, compute_dtype)) * tf.constant(gain, compute_dtype)
    if clamp is not None:
        y = tf.clip_by_value(y, -clamp, clamp)
    return tf.cast(y, dtype)


# --- spectral normalization (Keras' convention) ----------------------------------------------


def _normalize(a, eps):
    """a / max(||a||, eps): keras.ops.normalize over all elements."""
    # tf.constant, not tf.cast: tf.cast would make the Python float a float32 tensor first.
    return a / tf.maximum(tf.norm(a), tf.constant(eps, a.dtype))


def spectral_norm_power_iteration(weight, u, power_iterations=1, eps=None):
    """Keras' power method with plain TF ops (as keras.layers.SpectralNormalization writes it):
    W2 = reshape(weight, [-1, out]); `power_iterations` times v = normalize(u W2^T),
    u = normalize(v W2); sigma = v W2 u^T. Computes in float32 (float64 for float64 weights).
    Returns (u_new with u's shape and dtype, v of shape (W2.shape[0],) in weight's dtype, sigma in
    the compute dtype), with u_new and v behind stop_gradient, so sigma's gradient is v^T u.
    Same arguments and checks as ganops.tf.power_iteration."""
    weight = _args.check_weight(weight)
    rows, _ = _args.weight_rows_cols(weight)
    u = _args.check_vector(u, weight, rows, "u", "weight.shape[-1]")
    n = _args.check_power_iterations(power_iterations)
    eps = _args.resolve_eps(eps, dtype=weight.dtype)
    acc = _args.sigma_dtype(weight.dtype)
    w2 = tf.reshape(tf.cast(weight, acc), [-1, tf.shape(weight)[-1]])
    uu = tf.reshape(tf.cast(u, acc), [1, -1])
    for _ in range(n):
        vv = _normalize(tf.matmul(uu, w2, transpose_b=True), eps)
        uu = _normalize(tf.matmul(vv, w2), eps)
    uu, vv = tf.stop_gradient(uu), tf.stop_gradient(vv)
    sigma = tf.reshape(tf.matmul(tf.matmul(vv, w2), uu, transpose_b=True), [])
    u_new = tf.cast(tf.reshape(uu, tf.shape(u)), u.dtype)
    return u_new, tf.cast(tf.reshape(vv, [-1]), weight.dtype), sigma


def spectral_normalize(weight, sigma):
    """weight / sigma, divided in sigma's dtype and rounded to weight's."""
    weight = tf.convert_to_tensor(weight)
    return tf.cast(tf.cast(weight, sigma.dtype) / sigma, weight.dtype)


def spectral_norm(w, u, power_iterations=1, eps=None, training=True):
    """ganops.tf.spectral_norm with plain TF ops: (w / sigma, u_new if training else u), the
    gradient flowing through sigma by TF's autodiff with u and v held fixed; an all-zero w
    (sigma = 0) is returned unchanged with u."""
    u_new, _, sigma = spectral_norm_power_iteration(w, u, power_iterations, eps)
    w = tf.convert_to_tensor(w)
    zero = tf.equal(sigma, 0)
    u_new = tf.where(zero, tf.convert_to_tensor(u, u_new.dtype), u_new)
    w_sn = spectral_normalize(w, tf.where(zero, tf.ones_like(sigma), sigma))
    if tf.is_tensor(training):
        return w_sn, tf.where(tf.cast(training, tf.bool), u_new, u)
    return w_sn, (u_new if training else tf.convert_to_tensor(u, u_new.dtype))


# --- gradient penalties ----------------------------------------------------------------------


def penalty_from_gradient(grad, kind="wgan-gp", weight=None, target=1.0, reduction="mean",
                          grad_scale=1.0, return_norms=False):
    """ganops.tf.penalty_from_gradient with tf.norm: n_b = ||grad_scale * g_b|| over all
    non-batch dims, in float32 (float64 for float64 g). tf.norm's gradient is NaN at n_b = 0,
    as plain autodiff of a norm is."""
    spec, weight, target, reduction = _pa.resolve_scalars(kind, weight, target, reduction)
    grad = tf.convert_to_tensor(grad)
    _pa.check_scalar_range(weight, target, grad.dtype)
    grad_scale = _pa.check_grad_scale(grad_scale, grad.dtype)
    acc = _pa.acc_dtype(grad.dtype)
    g = tf.cast(grad, acc) * _pa.scalar_tensor(grad_scale, acc)
    norms = tf.norm(tf.reshape(g, [tf.shape(g)[0], -1]), axis=1)
    if spec.op_kind == "squared":
        per_sample = weight * tf.square(norms)
    elif spec.op_kind == "two-sided":
        per_sample = weight * tf.square(norms - target)
    else:  # one-sided
        per_sample = weight * tf.square(tf.maximum(norms - target, 0.0))
    penalty = reduce_penalty(per_sample, reduction)
    return (penalty, norms) if return_norms else penalty


def reduce_penalty(per_sample, reduction):
    """The per-sample penalties reduced over the batch: mean, sum or none."""
    if reduction == "mean":
        return tf.reduce_mean(per_sample)
    if reduction == "sum":
        return tf.reduce_sum(per_sample)
    return per_sample


def _broadcast_per_sample(c, like):
    return tf.reshape(c, tf.concat([[-1], tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def penalty_samples(kind, real, fake=None, seed=None):
    """The x each kind takes its gradient at, with plain TF ops and the same draws as ganops
    for the same seed: fake + eps (real - fake), real + alpha * 0.5 std(real) * U (std with
    Bessel's correction, as torch's), real or fake.
    Mixed in float32 (float64 for float64 samples) and rounded to the samples' dtype."""
    spec = _pa.resolve_kind(kind)
    real, fake = _pa.check_samples(spec, kind, real, fake)
    seed = _pa.check_seed(seed)
    if spec.samples == "real":
        return real
    if spec.samples == "fake":
        return fake
    acc = _pa.acc_dtype(real.dtype)
    batch = tf.shape(real)[:1]
    r = tf.cast(real, acc)
    if spec.samples == "interpolate":
        eps = _broadcast_per_sample(_pa.uniform(batch, acc, seed, _pa.EPS_STREAM), real)
        f = tf.cast(fake, acc)
        return tf.cast(f + eps * (r - f), real.dtype)
    alpha = _pa.uniform(batch, acc, seed, _pa.ALPHA_STREAM)
    noise = tf.cast(_pa.uniform(tf.shape(real), real.dtype, seed, _pa.NOISE_STREAM), acc)
    count = tf.cast(tf.size(r), acc)
    std = tf.math.reduce_std(r) * tf.sqrt(count / (count - 1))
    return tf.cast(r + _broadcast_per_sample(alpha * 0.5 * std, real) * noise, real.dtype)


def gradient_penalty(D, real, fake=None, kind="wgan-gp", weight=None, target=1.0,
                     return_norms=False, reduction="mean", training=True, seed=None, **d_kwargs):
    """ganops.tf.gradient_penalty with plain TF ops: x from penalty_samples, g = the gradient of
    sum(D(x)) from a nested GradientTape, the penalty from penalty_from_gradient. No loss
    scaling."""
    x = penalty_samples(kind, real, fake, seed)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = _pa.check_outputs(_pa.call_discriminator(D, x, training, d_kwargs), x)
        total = tf.reduce_sum(tf.cast(outputs, _pa.acc_dtype(outputs.dtype)))
    grad = _pa.input_gradient(tape, total, x)
    return penalty_from_gradient(grad, kind, weight, target, reduction, return_norms=return_norms)


def path_length_penalty(synthesis_fn, latents, pl_mean, noise, decay=0.01, weight=2.0):
    """StyleGAN2-ADA's path-length penalty with plain TF ops: (penalty, new pl_mean).

    images = synthesis_fn(latents) (NHWC) under a nested GradientTape watching latents; noise
    ~ N(0, 1) in the images' shape, divided by sqrt(H * W) here; latents (N, w_dim) or
    (N, num_ws, w_dim). Computed in float32 (float64 for float64 images); tf.sqrt's gradient is
    inf at a zero length, as plain autodiff of a norm is."""
    latents = tf.convert_to_tensor(latents)
    with tf.GradientTape() as tape:
        tape.watch(latents)
        images = tf.convert_to_tensor(synthesis_fn(latents))
        acc = _pa.acc_dtype(images.dtype)
        images = tf.cast(images, acc)
        pixels = tf.cast(tf.reduce_prod(tf.shape(images)[1:-1]), acc)
        pl_noise = tf.cast(noise, acc) / tf.sqrt(pixels)
        total = tf.reduce_sum(images * pl_noise)
    pl_grads = tf.cast(tape.gradient(total, latents), acc)
    if pl_grads.shape.rank == 2:
        pl_grads = pl_grads[:, tf.newaxis, :]
    pl_lengths = tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(pl_grads), axis=2), axis=1))
    pl_mean = tf.cast(pl_mean, acc)
    new_mean = pl_mean + decay * (tf.reduce_mean(pl_lengths) - pl_mean)
    penalty = tf.reduce_mean(tf.square(pl_lengths - new_mean)) * weight
    return penalty, tf.stop_gradient(new_mean)
