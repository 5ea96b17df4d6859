"""Gradient penalties for TensorFlow / Keras 3 on the fused ops.

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

StyleGAN2's helpers: LazyRegularization(interval) (run a regularizer every interval steps, its
loss times interval, Adam's hyper-parameters corrected) and PathLengthRegularizer (G's
path-length penalty on the fused norm op, its running mean a saved, non-trainable weight).
"""
import math
import numbers

import keras
import tensorflow as tf

from ganops.tf import _args, _xla
from ganops.tf import _gradient_penalty_ops  # noqa: F401  (registers the gradients)
from ganops.tf import _penalty_args as _pa
from ganops.tf._library import ops

__all__ = ["LazyRegularization", "PathLengthRegularizer", "dragan_penalty", "gradient_penalty",
           "path_length_noise", "penalty_from_gradient", "per_sample_add", "per_sample_lerp",
           "r1_penalty", "r2_penalty", "wgan_gp_penalty"]


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


def _lerp(input, end, weight):
    if _xla.compiling_with_xla():
        return _xla.per_sample_mix(input, end, weight, lerp=True)
    return ops.ganops_per_sample_lerp(input, end, weight)


def _add(input, other, alpha):
    if _xla.compiling_with_xla():
        return _xla.per_sample_mix(input, other, alpha, lerp=False)
    return ops.ganops_per_sample_add(input, other, alpha)


def per_sample_lerp(input, end, weight):
    """``input + weight_b * (end - input)`` with one weight per sample (dim 0), in one pass.

    weight: shape (N,) or (N, 1, ...), any float dtype; read in float32 (float64 for float64
    inputs). Differentiable in all three arguments.
    """
    input, end, weight = _check_mix("per_sample_lerp", input, end, weight, "end", "weight")
    return _lerp(input, end, weight)


def per_sample_add(input, other, alpha):
    """``input + alpha_b * other`` with one alpha per sample (dim 0), in one pass (DRAGAN's
    perturbation). Same conventions as per_sample_lerp."""
    input, other, alpha = _check_mix("per_sample_add", input, other, alpha, "other", "alpha")
    return _add(input, other, alpha)


def _fused_penalty(grad, op_kind, target, weight, grad_scale, reduction):
    """(penalty, norms) of the fused op; grad_scale may be a tensor (1 / a dynamic loss scale)."""
    acc = _pa.acc_dtype(grad.dtype)
    grad_scale = tf.stop_gradient(_pa.scalar_tensor(grad_scale, acc))
    if _xla.compiling_with_xla():
        return _xla.gradient_penalty(grad, grad_scale, op_kind, target, weight, reduction)
    return ops.ganops_gradient_penalty(grad, grad_scale, kind=op_kind, reduction=reduction,
                                       **_args.scalar_attrs(target=target, weight=weight))


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
    _pa.check_scalar_range(op_weight, target, grad.dtype)
    grad_scale = _pa.check_grad_scale(grad_scale, grad.dtype)
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
        return _lerp(fake, real, eps)
    alpha = _pa.uniform(batch, acc, seed, _pa.ALPHA_STREAM)
    noise = _pa.uniform(tf.shape(real), real.dtype, seed, _pa.NOISE_STREAM)
    std = _pa.sample_std(tf.cast(real, acc))
    return _add(real, noise, alpha * (0.5 * std))


def _loss_scale(optimizer, where=_pa.GP):
    """The factor D's outputs are scaled by: the optimizer's loss scale (Keras' scale_loss, as
    its train_step applies it to the loss; 1 for an optimizer without one)."""
    if optimizer is None:
        return tf.constant(1.0, tf.float32)
    if not hasattr(optimizer, "scale_loss"):
        raise TypeError(f"{where}: optimizer must be a Keras optimizer (with scale_loss), such "
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
    _pa.check_scalar_range(op_weight, target, (real if real is not None else fake).dtype)
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


# --- StyleGAN2's lazy regularization and path-length regularizer -----------------------------


class LazyRegularization:
    """StyleGAN2's lazy regularization: a regularizer runs every `interval` steps only, with its
    loss multiplied by `interval`, and Adam's hyper-parameters are corrected for the
    regularization steps' share, c = interval / (interval + 1): learning_rate * c, beta ** c.

        lazy = gtf.LazyRegularization(interval=16)
        optimizer = keras.optimizers.Adam(**lazy.adam_kwargs(0.0025, beta_1=0.0, beta_2=0.99))

    due(step) takes a Python int (a Python bool comes back, for a Python `if` in an eager loop
    or to pick one of two tf.functions) or an integer tensor or variable such as
    optimizer.iterations (a bool tensor comes back). Inside a tf.function, branch on the tensor
    with tf.cond, so the regularizer's graph only runs on its steps:

        step = self.optimizer.iterations
        loss += tf.cond(lazy.due(step), lambda: lazy.scale(gtf.r1_penalty(D, real)),
                        lambda: tf.zeros(()))

    (a Python `if lazy.due(step):` in a train_step that AutoGraph converts, as Keras'
    train_step, becomes the same tf.cond). `bool(lazy.due(tensor))` only works eagerly.
    """

    def __init__(self, interval=16):
        if isinstance(interval, bool) or not isinstance(interval, numbers.Integral) or interval < 1:
            raise ValueError(f"ganops.tf.LazyRegularization: interval must be an int >= 1, got "
                             f"{interval!r}")
        self.interval = int(interval)

    @property
    def ratio(self):
        """interval / (interval + 1): the share of minibatches that are not regularization
        steps."""
        return self.interval / (self.interval + 1)

    def due(self, step):
        """Whether the regularizer runs at this 0-based step: a Python bool for a Python int, a
        scalar bool tensor for an integer tensor or variable (optimizer.iterations)."""
        if isinstance(step, bool):
            raise TypeError(f"ganops.tf.LazyRegularization.due: step must be an int or an "
                            f"integer tensor, got {step!r}")
        if isinstance(step, numbers.Integral):
            return int(step) % self.interval == 0
        try:
            step = tf.convert_to_tensor(step)
        except (TypeError, ValueError) as error:
            raise TypeError(f"ganops.tf.LazyRegularization.due: step must be an int or an "
                            f"integer tensor, got {type(step).__name__}") from error
        if not step.dtype.is_integer or step.shape.rank not in (0, None):
            raise TypeError(f"ganops.tf.LazyRegularization.due: step must be an int or a scalar "
                            f"integer tensor, got {step.dtype.name} of shape "
                            f"{tuple(step.shape)}")
        return tf.equal(tf.math.floormod(step, tf.cast(self.interval, step.dtype)), 0)

    def scale(self, loss):
        """The regularizer's loss times interval, so its average effect matches every-step use."""
        return loss * self.interval

    def adam_kwargs(self, learning_rate, beta_1=0.9, beta_2=0.999):
        """Corrected keyword arguments for keras.optimizers.Adam (or AdamW) of the regularized
        network: {"learning_rate": learning_rate * c, "beta_1": beta_1 ** c,
        "beta_2": beta_2 ** c}."""
        where = "ganops.tf.LazyRegularization.adam_kwargs"
        if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
                or not learning_rate > 0 or not math.isfinite(learning_rate)):
            raise ValueError(f"{where}: learning_rate must be a finite number > 0, got "
                             f"{learning_rate!r} (a schedule: multiply its values by "
                             f"ratio yourself)")
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 <= beta < 1:
                raise ValueError(f"{where}: {name} must be a number in [0, 1), got {beta!r}")
        c = self.ratio
        return {"learning_rate": learning_rate * c, "beta_1": beta_1 ** c, "beta_2": beta_2 ** c}

    def __repr__(self):
        return f"LazyRegularization(interval={self.interval})"


PL = "ganops.tf.PathLengthRegularizer"


def _check_latents(latents):
    latents = tf.convert_to_tensor(latents)
    if latents.dtype not in _pa.FLOAT_DTYPES:
        raise TypeError(f"{PL}: latents must be float32, float64, float16 or bfloat16, got "
                        f"{latents.dtype.name}")
    if latents.shape.rank not in (2, 3) or latents.shape[0] == 0:
        raise ValueError(f"{PL}: latents must be (N, w_dim) or (N, num_ws, w_dim) with N > 0, "
                         f"got shape {tuple(latents.shape)}")
    return latents


def _check_images(images, latents):
    if isinstance(images, (list, tuple, dict)):
        raise ValueError(f"{PL}: synthesis_fn must return one tensor of images, got a "
                         f"{type(images).__name__}")
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        raise TypeError(f"{PL}: synthesis_fn must return float images, got {images.dtype.name}")
    if images.shape.rank is not None and images.shape.rank < 2:
        raise ValueError(f"{PL}: synthesis_fn must return images (N, H, W, C), got shape "
                         f"{tuple(images.shape)}")
    rows, batch = images.shape[0], latents.shape[0]
    if rows is not None and batch is not None and rows != batch:
        raise ValueError(f"{PL}: synthesis_fn must return one image per latent (the same N), "
                         f"got images {tuple(images.shape)} for latents {tuple(latents.shape)}")
    return images


def _pixels(images):
    """H * W of NHWC images (all dims between the batch and the channels; 1 for (N, C))."""
    static = images.shape[1:-1]
    if static.is_fully_defined():
        return math.prod(static.as_list())
    return tf.reduce_prod(tf.shape(images)[1:-1])


def _num_ws(latents):
    if latents.shape.rank == 2:
        return 1
    return latents.shape[1] if latents.shape[1] is not None else tf.shape(latents)[1]


def path_length_noise(shape, dtype, seed=None):
    """The y ~ N(0, 1) that PathLengthRegularizer draws for images of `shape` (before the
    division by sqrt(H * W)): TF's global generator for seed None, else
    tf.random.stateless_normal(shape, seed) (an int seed s is the pair (0, s))."""
    seed = _pa.check_seed(seed)
    if seed is None:
        return tf.random.normal(shape, dtype=dtype)
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)


class PathLengthRegularizer(keras.layers.Layer):
    """StyleGAN2's generator path-length regularization, holding the running mean pl_mean.

    Call it inside the GradientTape of your G step, with the synthesis network and its latents:

        pl = gtf.PathLengthRegularizer(decay=0.01, weight=2.0)
        with tf.GradientTape() as tape:
            ws = mapping(z)                             # (N, num_ws, w_dim) or (N, w_dim)
            loss = g_loss + lazy.scale(pl(synthesis, ws, optimizer=optimizer))
        grads = tape.gradient(loss, generator.trainable_variables)

    It runs images = synthesis(ws) under an inner tape watching ws (TF needs the generator call
    inside a tape to differentiate it, so it takes the function, as gradient_penalty takes D).
    Per sample, with y ~ N(0, 1) / sqrt(H * W) shaped like the NHWC images and J the Jacobian of
    the images with respect to ws: length_b = sqrt(mean over ws of the squared norm of
    (J^T y)_b), the running mean a <- a + decay * (mean(length) - a), and the penalty
    weight * mean_b (length_b - a)^2 with the gradient flowing through both terms, as
    StyleGAN2-ADA computes it. The lengths are the fused norm op (0 gradient, not NaN, at a zero
    Jacobian).

    A Keras layer rather than a tf.Module so that pl_mean, a non-trainable weight, is saved and
    restored both by tf.train.Checkpoint and by a Keras model that holds the regularizer as an
    attribute (model.save_weights, .keras files); Keras' own tracking ignores tf.Module
    variables. Its input is a function, which Keras' layer call does not take, so calling it
    runs call() directly (it is not a layer of a functional model). pl_mean is float32, also
    under mixed precision (float64 with dtype="float64"), with aggregation "mean" under a
    distribution strategy.
    """

    def __init__(self, decay=0.01, weight=2.0, **kwargs):
        kwargs.setdefault("autocast", False)  # the latents must reach synthesis_fn unchanged
        super().__init__(**kwargs)
        if (isinstance(decay, bool) or not isinstance(decay, numbers.Real)
                or not 0.0 <= decay <= 1.0):
            raise ValueError(f"{PL}: decay must be in [0, 1], got {decay!r}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(
                weight):
            raise ValueError(f"{PL}: weight must be a finite number, got {weight!r}")
        self.decay = float(decay)
        self.weight = float(weight)
        mean_dtype = "float64" if self.variable_dtype == "float64" else "float32"
        self.pl_mean = self.add_weight(shape=(), initializer="zeros", dtype=mean_dtype,
                                       trainable=False, aggregation="mean", name="pl_mean")
        self.built = True

    def __call__(self, synthesis_fn, latents, optimizer=None, seed=None, training=True,
                 **synthesis_kwargs):
        return self.call(synthesis_fn, latents, optimizer=optimizer, seed=seed,
                         training=training, **synthesis_kwargs)

    def call(self, synthesis_fn, latents, optimizer=None, seed=None, training=True,
             **synthesis_kwargs):
        """The penalty (float32; float64 for float64 images), updating pl_mean.

        Args:
            synthesis_fn: a Keras layer or model (called as synthesis_fn(latents,
                training=training, **synthesis_kwargs)) or any callable (synthesis_fn(latents,
                **synthesis_kwargs)) returning NHWC images (N, H, W, C).
            latents: its input, (N, w_dim) or (N, num_ws, w_dim). Gradients flow through it
                into whatever computed it (the mapping network), as in StyleGAN2-ADA.
            optimizer: the Keras optimizer of the step; with a LossScaleOptimizer the inner
                gradient is taken at its loss scale and unscaled inside the fused op. A scale
                that overflows float16 gives a non-finite penalty (the optimizer skips that
                step and lowers its scale) and leaves pl_mean as it was.
            seed: None draws y from TF's global generator; an int or a shape-(2,) int tensor
                draws it statelessly (path_length_noise).
        """
        if not callable(synthesis_fn):
            raise TypeError(f"{PL}: synthesis_fn must be a Keras layer or model or a callable, "
                            f"got {type(synthesis_fn).__name__}")
        latents = _check_latents(latents)
        seed = _pa.check_seed(seed)
        scale = _loss_scale(optimizer, PL)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(latents)
            if isinstance(synthesis_fn, keras.layers.Layer):
                images = synthesis_fn(latents, training=training, **synthesis_kwargs)
            else:
                images = synthesis_fn(latents, **synthesis_kwargs)
            images = _check_images(images, latents)
            acc = _pa.acc_dtype(images.dtype)
            if images.dtype != acc:
                images = tf.cast(images, acc)  # the loss scale may exceed float16's range
        noise = path_length_noise(tf.shape(images), acc, seed)
        seeds = noise * (tf.cast(scale, acc) / tf.sqrt(tf.cast(_pixels(images), acc)))
        grad = tape.gradient(images, latents, output_gradients=seeds)
        if grad is None:
            raise ValueError(f"{PL}: synthesis_fn's images do not depend on latents (the "
                             "gradient is not connected); pass the latents the images are "
                             "computed from")
        grad_scale = 1.0 / (tf.cast(scale, acc) * tf.sqrt(tf.cast(_num_ws(latents), acc)))
        lengths, _ = _fused_penalty(grad, "norm", 0.0, 1.0, grad_scale, "none")
        old_mean = tf.cast(self.pl_mean, lengths.dtype)
        pl_mean = old_mean + self.decay * (tf.reduce_mean(lengths) - old_mean)
        # A loss scale too large for float16 makes the lengths inf; the LossScaleOptimizer then
        # skips the step and lowers the scale, and pl_mean must survive that step unchanged.
        kept_mean = tf.where(tf.math.is_finite(pl_mean), pl_mean, old_mean)
        self.pl_mean.assign(tf.cast(tf.stop_gradient(kept_mean), self.pl_mean.dtype))
        return tf.reduce_mean(tf.square(lengths - pl_mean)) * self.weight

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "weight": self.weight}
