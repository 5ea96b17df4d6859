"""Gradient penalties for TensorFlow / Keras 3 (DESIGN section 5) on the fused ops.

    penalty = gtf.gradient_penalty(D, real, fake, kind="wgan-gp")     # inside your GradientTape
    penalty = gtf.r1_penalty(D, real, gamma=10.0)

A penalty is a function of D's parameters through g = dD/dx, so the outer tape differentiates
through a nested GradientTape: the double backward through D. The ganops parts are the mix that
makes x (one read of each input, one write), the per-sample norm and penalty of g (one read) and
its backward (one read of g, one write of dL/dg); all accumulate in float32 for half inputs.

Kinds (x, the per-sample penalty with n_b = ||g_b|| over all non-batch dims, default weight):

    wgan-gp    x = fake + eps_b (real - fake), eps_b ~ U[0, 1)   weight (n_b - target)^2     10
    one-sided  same x                                            weight max(0, n_b - target)^2  10
    zero-gp    same x                                            weight n_b^2                10
    dragan     x = real + alpha_b * 0.5 std(real) * U[0, 1)^shape   weight (n_b - target)^2  10
               (std over all of real's elements, with Bessel's correction as torch's std())
    r1         x = real                                          gamma / 2 * n_b^2   gamma = 10
    r2         x = fake                                          gamma / 2 * n_b^2   gamma = 10

With Keras mixed precision, pass the LossScaleOptimizer: D's outputs are scaled by its loss
scale before the inner gradient (so float16 gradients of x do not underflow) and the fused op
reads g unscaled (grad_scale = 1 / scale, no extra pass). The returned penalty is unscaled: add
it to the loss that you then pass to optimizer.scale_loss, as Keras' own train_step does.
"""
import tensorflow as tf

from ganops.tf import _gradient_penalty_ops  # noqa: F401  (registers the gradients)
from ganops.tf import _penalty_args as _pa
from ganops.tf._library import ops

__all__ = ["dragan_penalty", "gradient_penalty", "penalty_from_gradient", "per_sample_add",
           "per_sample_lerp", "r1_penalty", "r2_penalty", "wgan_gp_penalty"]


# --- the fused ops ---------------------------------------------------------------------------


def _check_mix(op, input, other, coef, other_name, coef_name):
    input = tf.convert_to_tensor(input)
    if input.dtype not in _pa.FLOAT_DTYPES:
        raise TypeError(f"ganops.{op}: input must be float32, float64, float16 or bfloat16, "
                        f"got {input.dtype.name}")
    if input.shape.rank == 0:
        raise ValueError(f"ganops.{op}: input must have a batch dim (at least 1 dim), got a "
                         "0-d tensor")
    other = tf.convert_to_tensor(other, dtype_hint=input.dtype)
    if other.dtype != input.dtype:
        raise TypeError(f"ganops.{op}: {other_name} has dtype {other.dtype.name} but input has "
                        f"{input.dtype.name}")
    if not other.shape.is_compatible_with(input.shape):
        raise ValueError(f"ganops.{op}: {other_name} has shape {tuple(other.shape)} but input "
                         f"has {tuple(input.shape)}")
    coef = tf.convert_to_tensor(coef, dtype_hint=_pa.acc_dtype(input.dtype))
    if not coef.dtype.is_floating:
        raise TypeError(f"ganops.{op}: {coef_name} must be a float tensor, got {coef.dtype.name}")
    batch, size = input.shape[0] if input.shape.rank else None, coef.shape.num_elements()
    if batch is not None and size is not None and size != batch:
        raise ValueError(f"ganops.{op}: {coef_name} must hold one value per sample ({batch}), "
                         f"e.g. shape ({batch},) or ({batch}, 1, ...), got shape "
                         f"{tuple(coef.shape)}")
    return input, other, tf.cast(coef, _pa.acc_dtype(input.dtype))


def per_sample_lerp(input, end, weight):
    """``input + weight_b * (end - input)`` with one weight per sample (dim 0), in one pass.

    weight: shape (N,) or (N, 1, ...), any float dtype; read in float32 (float64 for float64
    inputs). Differentiable in all three arguments.
    """
    input, end, weight = _check_mix("per_sample_lerp", input, end, weight, "end", "weight")
    return ops.ganops_per_sample_lerp(input, end, weight)


def per_sample_add(input, other, alpha):
    """``input + alpha_b * other`` with one alpha per sample (dim 0), in one pass (DRAGAN's
    perturbation). Same conventions as per_sample_lerp."""
    input, other, alpha = _check_mix("per_sample_add", input, other, alpha, "other", "alpha")
    return ops.ganops_per_sample_add(input, other, alpha)


def _fused_penalty(grad, op_kind, target, weight, grad_scale, reduction):
    """(penalty, norms) of the fused op; grad_scale may be a tensor (1 / a dynamic loss scale)."""
    acc = _pa.acc_dtype(grad.dtype)
    grad_scale = tf.stop_gradient(tf.cast(grad_scale, acc))
    return ops.ganops_gradient_penalty(grad, grad_scale, kind=op_kind, target=target,
                                       weight=weight, reduction=reduction)


def _check_gradient(grad):
    grad = tf.convert_to_tensor(grad)
    if grad.dtype not in _pa.FLOAT_DTYPES:
        raise TypeError(f"{_pa.GP}: grad must be float32, float64, float16 or bfloat16, got "
                        f"{grad.dtype.name}")
    if grad.shape.rank == 0:
        raise ValueError(f"{_pa.GP}: grad must have a batch dim (shape (N, ...)), got a scalar")
    if grad.shape.rank is not None and grad.shape[0] == 0:
        raise ValueError(f"{_pa.GP}: grad has an empty batch (shape {tuple(grad.shape)})")
    return grad


def penalty_from_gradient(grad, kind="wgan-gp", weight=None, target=1.0, reduction="mean",
                          grad_scale=1.0, return_norms=False):
    """The penalty of `kind` for a gradient you computed yourself (g = dD/dx, batch on dim 0).

    The same kinds, weights and reductions as gradient_penalty (r1/r2: weight is gamma and the
    penalty gamma / 2 * n^2). grad_scale multiplies g before the norm (1 / the loss scale of a
    scaled gradient); a float or a scalar tensor. Returns the penalty, float32 (float64 for a
    float64 grad), shape () or (N,) for reduction="none"; with return_norms, (penalty, norms)
    with norms[b] = grad_scale * ||g_b||.
    """
    spec, op_weight, target, reduction = _pa.resolve_scalars(kind, weight, target, reduction)
    grad = _check_gradient(grad)
    if not tf.is_tensor(grad_scale) and not (grad_scale > 0 and grad_scale != float("inf")):
        raise ValueError(f"{_pa.GP}: grad_scale must be finite and > 0, got {grad_scale!r}")
    penalty, norms = _fused_penalty(grad, spec.op_kind, target, op_weight, grad_scale, reduction)
    return (penalty, norms) if return_norms else penalty


# --- the penalties on a discriminator --------------------------------------------------------


def _penalty_samples(spec, real, fake, seed):
    """x for the kind: a per-sample mix of the (stopped) real and fake samples, or one of them."""
    if spec.samples == "real":
        return real
    if spec.samples == "fake":
        return fake
    batch = tf.shape(real)[:1]
    acc = _pa.acc_dtype(real.dtype)
    if spec.samples == "interpolate":
        eps = _pa.uniform(batch, acc, seed, _pa.EPS_STREAM)
        return ops.ganops_per_sample_lerp(fake, real, eps)
    alpha = _pa.uniform(batch, acc, seed, _pa.ALPHA_STREAM)
    noise = _pa.uniform(tf.shape(real), real.dtype, seed, _pa.NOISE_STREAM)
    std = _pa.sample_std(tf.cast(real, acc))
    return ops.ganops_per_sample_add(real, noise, alpha * (0.5 * std))


def _loss_scale(optimizer):
    """The factor D's outputs are scaled by: the optimizer's loss scale (Keras' scale_loss, as
    its train_step applies it to the loss; 1 for an optimizer without one)."""
    if optimizer is None:
        return tf.constant(1.0, tf.float32)
    if not hasattr(optimizer, "scale_loss"):
        raise TypeError(f"{_pa.GP}: optimizer must be a Keras optimizer (with scale_loss), such "
                        f"as keras.optimizers.LossScaleOptimizer, got {type(optimizer).__name__}")
    scale = optimizer.scale_loss(tf.constant(1.0, tf.float32))
    return tf.stop_gradient(tf.cast(scale, tf.float32))


def gradient_penalty(D, real, fake=None, kind="wgan-gp", weight=None, target=1.0,
                     optimizer=None, return_norms=False, reduction="mean", training=True,
                     seed=None, **d_kwargs):
    """A gradient penalty on discriminator D, differentiable in D's variables.

    Call it inside the GradientTape of your D step and add it to D's loss:

        with tf.GradientTape() as tape:
            loss = d_loss(D(real), D(fake)) + gtf.gradient_penalty(D, real, fake)
        grads = tape.gradient(loss, D.trainable_variables)

    Args:
        D: a Keras layer or model (called as D(x, training=training, **d_kwargs)) or any
            callable (D(x, **d_kwargs)); it must return one row per sample: shape (N,), (N, 1)
            or (N, ...) such as a PatchGAN's map. g is the gradient of the sum of the outputs.
        real, fake: samples with the batch on dim 0, the same shape and dtype; no gradient
            flows into them. wgan-gp, one-sided and zero-gp use both, dragan and r1 the real
            ones (dragan takes no fake; r1 ignores it), r2 the fake ones (it ignores real).
        kind: "wgan-gp", "one-sided", "zero-gp", "dragan", "r1" or "r2" (see the module doc).
        weight: the penalty's weight; for r1 and r2 gamma (the penalty is gamma / 2 * n^2).
            None for 10.
        target: the norm that wgan-gp, one-sided and dragan pull towards (1).
        optimizer: the Keras optimizer of the step; with a LossScaleOptimizer the inner
            gradient is taken at its loss scale and unscaled inside the fused op.
        return_norms: also return the per-sample norms n_b, shape (N,).
        reduction: "mean" (default), "sum", or "none" for one penalty per sample.
        training: passed to a Keras D.
        seed: None draws eps / alpha / noise from TF's global generator; an int or a
            shape-(2,) int tensor draws them statelessly (the same seed, the same draws).
    Returns:
        The penalty (float32; float64 for float64 samples), unscaled, and the norms with
        return_norms. Works eagerly and in tf.function, with unknown batch sizes.
    """
    spec, op_weight, target, reduction = _pa.resolve_scalars(kind, weight, target, reduction)
    real, fake = _pa.check_samples(spec, kind, real, fake)
    seed = _pa.check_seed(seed)
    scale = _loss_scale(optimizer)
    x = _penalty_samples(spec, real, fake, seed)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        outputs = _pa.check_outputs(_pa.call_discriminator(D, x, training, d_kwargs), x)
        if outputs.dtype in (tf.float16, tf.bfloat16):
            outputs = tf.cast(outputs, tf.float32)  # the scale may exceed float16's range
    seeds = tf.fill(tf.shape(outputs), tf.cast(scale, outputs.dtype))
    grad = _pa.input_gradient(tape, outputs, x, output_gradients=seeds)
    penalty, norms = _fused_penalty(grad, spec.op_kind, target, op_weight, 1.0 / scale,
                                    reduction)
    return (penalty, norms) if return_norms else penalty


def wgan_gp_penalty(D, real, fake, weight=10.0, target=1.0, **kwargs):
    """WGAN-GP (Gulrajani et al. 2017): weight * (||dD/dx|| - target)^2 at random
    interpolates."""
    return gradient_penalty(D, real, fake, kind="wgan-gp", weight=weight, target=target,
                            **kwargs)


def dragan_penalty(D, real, weight=10.0, target=1.0, **kwargs):
    """DRAGAN (Kodali et al. 2017): weight * (||dD/dx|| - target)^2 around perturbed real
    samples."""
    return gradient_penalty(D, real, None, kind="dragan", weight=weight, target=target,
                            **kwargs)


def r1_penalty(D, real, gamma=10.0, **kwargs):
    """R1 (Mescheder et al. 2018): gamma / 2 * ||dD/dx||^2 at the real samples."""
    return gradient_penalty(D, real, None, kind="r1", weight=gamma, **kwargs)


def r2_penalty(D, fake, gamma=10.0, **kwargs):
    """R2: gamma / 2 * ||dD/dx||^2 at the fake samples."""
    return gradient_penalty(D, None, fake, kind="r2", weight=gamma, **kwargs)
