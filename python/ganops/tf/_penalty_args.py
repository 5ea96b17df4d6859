"""Argument resolution for the TF gradient penalties, shared by ganops.tf.gradient_penalty and
the pure-TF reference so both accept the same arguments, reject the same inputs with the same
messages and draw the same random numbers for the same seed."""
import math
import numbers
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ganops.tf._args import FLOAT_DTYPES, check_compute_range, short_repr

GP = "ganops.tf.gradient_penalty"


class PenaltySpec(NamedTuple):
    samples: str  # where x comes from: "interpolate", "perturb", "real" or "fake"
    op_kind: str  # the fused op's penalty: two-sided, one-sided, squared (or norm)
    default_weight: float
    weight_factor: float  # op weight = weight * factor (R1/R2: gamma / 2)


KINDS = {
    "wgan-gp": PenaltySpec("interpolate", "two-sided", 10.0, 1.0),
    "one-sided": PenaltySpec("interpolate", "one-sided", 10.0, 1.0),
    "zero-gp": PenaltySpec("interpolate", "squared", 10.0, 1.0),
    "dragan": PenaltySpec("perturb", "two-sided", 10.0, 1.0),
    "r1": PenaltySpec("real", "squared", 10.0, 0.5),
    "r2": PenaltySpec("fake", "squared", 10.0, 0.5),
}
REDUCTIONS = ("none", "mean", "sum")


def resolve_kind(kind):
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"{GP}: kind: unknown penalty {short_repr(kind)}; expected one of "
                         f"{', '.join(KINDS)}")
    return KINDS[kind]


def _finite(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{GP}: {name} must be a finite number, got {short_repr(value)}")
    return float(value)


def resolve_scalars(kind, weight, target, reduction):
    """(spec, op weight, target, reduction) for a user kind; weight None means the kind's
    default (10; for r1 and r2 it is gamma, and the op weight is gamma / 2)."""
    spec = resolve_kind(kind)
    weight = spec.default_weight if weight is None else _finite(weight, "weight")
    target = _finite(target, "target")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{GP}: reduction: unknown reduction {short_repr(reduction)}; expected "
                         f"one of "
                         f"{', '.join(REDUCTIONS)}")
    return spec, weight * spec.weight_factor, target, reduction


def check_scalar_range(op_weight, target, dtype):
    """The op's weight and target must stay finite in the norms' type for `dtype` samples
    (float32 unless they are float64)."""
    check_compute_range(GP, "weight", op_weight, dtype, "samples")
    check_compute_range(GP, "target", target, dtype, "samples")


def check_grad_scale(grad_scale, dtype):
    """A Python grad_scale must be finite and > 0 in the norms' type for a `dtype` gradient (the
    kernel checks a tensor's value when it runs). Returns it as a float, or the tensor."""
    if tf.is_tensor(grad_scale):
        return grad_scale
    if isinstance(grad_scale, bool) or not isinstance(grad_scale, numbers.Real):
        raise TypeError(f"{GP}: grad_scale must be a number or a scalar tensor, got "
                        f"{short_repr(grad_scale)}")
    value = float(grad_scale)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{GP}: grad_scale must be finite and > 0, got {value!r}")
    check_compute_range(GP, "grad_scale", value, dtype, "grad")
    if acc_dtype(dtype) != tf.float64 and np.float32(value) == 0:
        raise ValueError(f"{GP}: grad_scale {value!r} is 0 in float32, the type of the norms for "
                         f"{tf.as_dtype(dtype).name} grad; it must be > 0 there")
    return value


def scalar_tensor(value, dtype):
    """A Python number or a tensor as a `dtype` tensor; a Python float goes straight to dtype
    (tf.cast would first make it a float32 tensor, which fails for 1e300)."""
    if tf.is_tensor(value):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)


def acc_dtype(dtype):
    """The dtype of the per-sample values (eps, norms, penalties): float64 for float64 samples,
    else float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def _check_sample(t, name):
    t = tf.convert_to_tensor(t)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{GP}: {name} must be float32, float64, float16 or bfloat16, "
                        f"got {t.dtype.name}")
    if t.shape.rank == 0 or (t.shape.rank is not None and t.shape[0] == 0):
        raise ValueError(f"{GP}: {name} must have a non-empty batch dim, got shape "
                         f"{tuple(t.shape)}")
    return tf.stop_gradient(t)


def check_samples(spec, kind, real, fake):
    """(real, fake) as tensors behind stop_gradient, each None where the kind does not use it
    (r1 ignores fake, r2 ignores real, as in the PyTorch front end), checked against what the
    kind needs."""
    needs_real = spec.samples != "fake"
    needs_fake = spec.samples in ("interpolate", "fake")
    if needs_real and real is None:
        raise ValueError(f"{GP}: kind {kind!r} needs real samples, got real=None")
    if needs_fake and fake is None:
        raise ValueError(f"{GP}: kind {kind!r} needs fake samples, got fake=None")
    if spec.samples == "perturb" and fake is not None:
        raise ValueError(f"{GP}: kind 'dragan' perturbs the real samples and takes no fake ones; "
                         "pass fake=None")
    real = _check_sample(real, "real") if needs_real else None
    fake = _check_sample(fake, "fake") if needs_fake else None
    if spec.samples == "interpolate":
        if not real.shape.is_compatible_with(fake.shape):
            raise ValueError(f"{GP}: real and fake must have the same shape, got real "
                             f"{tuple(real.shape)} and fake {tuple(fake.shape)}")
        if real.dtype != fake.dtype:
            raise TypeError(f"{GP}: real has dtype {real.dtype.name} but fake has "
                            f"{fake.dtype.name}")
    return real, fake


def sample_std(t):
    """The standard deviation of all of t's elements with Bessel's correction (n - 1), as
    torch's Tensor.std() computes DRAGAN's scale in the PyTorch front end; in t's dtype."""
    count = tf.cast(tf.size(t), t.dtype)
    centered = t - tf.reduce_mean(t)
    return tf.sqrt(tf.reduce_sum(centered * centered) / tf.maximum(count - 1, 1))


def check_seed(seed):
    """None, an int, or a stateless seed of shape (2,) (a tensor inside tf.function)."""
    if seed is None:
        return None
    if isinstance(seed, bool):
        raise TypeError(f"{GP}: seed must be None, an int or a shape-(2,) int tensor, got {seed!r}")
    if isinstance(seed, numbers.Integral):
        return tf.constant([0, int(seed)], tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or (seed.shape.rank is not None and seed.shape != (2,)):
        raise TypeError(f"{GP}: seed must be None, an int or a shape-(2,) int tensor, got "
                        f"{seed.dtype.name} of shape {tuple(seed.shape)}")
    return tf.cast(seed, tf.int64)


def uniform(shape, dtype, seed, stream):
    """U[0, 1) of `shape`: from the global generator when seed is None, else stateless from
    (seed, stream), so each draw of a penalty (eps, alpha, noise) has its own stream."""
    if seed is None:
        return tf.random.uniform(shape, dtype=dtype)
    stream_seed = tf.random.experimental.stateless_fold_in(seed, stream)
    return tf.random.stateless_uniform(shape, seed=stream_seed, dtype=dtype)


# The streams of the draws, shared with the reference.
EPS_STREAM, ALPHA_STREAM, NOISE_STREAM = 0, 1, 2


def call_discriminator(D, x, training, d_kwargs):
    """D(x, training=training, **d_kwargs) for a Keras layer or model, else D(x, **d_kwargs)."""
    import keras  # the front end works without Keras for plain callables

    if isinstance(D, keras.layers.Layer):
        return D(x, training=training, **d_kwargs)
    if not callable(D):
        raise TypeError(f"{GP}: D must be a Keras layer or model or a callable, got "
                        f"{type(D).__name__}")
    return D(x, **d_kwargs)


def input_gradient(tape, outputs, x, output_gradients=None):
    """d sum(outputs) / dx from the inner tape (times output_gradients where given), or a
    ValueError when D's output does not depend on x at all."""
    grad = tape.gradient(outputs, x, output_gradients=output_gradients)
    if grad is None:
        raise ValueError(f"{GP}: D's output does not depend on its input (its gradient is not "
                         "connected to x); does D stop the gradient of its input?")
    return grad


def check_outputs(outputs, x):
    """D's outputs as a float tensor with one row per sample of x ((N,), (N, 1), (N, 1, H, W),
    ...). Checked statically where the shapes are known, else when the graph runs."""
    if isinstance(outputs, (list, tuple, dict)):
        raise ValueError(f"{GP}: D must return one tensor with one row per sample, got a "
                         f"{type(outputs).__name__}")
    outputs = tf.convert_to_tensor(outputs)
    if not outputs.dtype.is_floating:
        raise TypeError(f"{GP}: D must return a float tensor, got {outputs.dtype.name}")
    batch = x.shape[0]
    hint = (f"D must return one output per sample, shape (N, ...) with N = "
            f"{batch if batch is not None else 'the batch size'}")
    if outputs.shape.rank == 0:
        raise ValueError(f"{GP}: {hint}; it returned shape (), a scalar (do not reduce over the "
                         "batch inside D)")
    rows = outputs.shape[0] if outputs.shape.rank is not None else None
    if rows is not None and batch is not None:
        if rows != batch:
            raise ValueError(f"{GP}: {hint}; it returned shape {tuple(outputs.shape)}")
        return outputs
    check = tf.debugging.assert_equal(
        tf.shape(outputs)[0], tf.shape(x)[0],
        message=f"{GP}: {hint}; D's output has another first dim")
    with tf.control_dependencies([check]):
        return tf.identity(outputs)
