"""Functional TensorFlow API on the compiled ops, with gradients registered for GradientTape and
tf.function: bias_act (first and second order), and spectral normalization in Keras' convention
(power_iteration, spectral_normalize, spectral_norm; gradients of any order, see
ganops.tf._spectral_norm_ops)."""
import tensorflow as tf

from ganops.tf import _args, _xla
from ganops.tf import _spectral_norm_ops  # noqa: F401  (registers the spectral-norm gradients)
from ganops.tf._args import check_tensors
from ganops.tf._library import ops

_ATTR_NAMES = ("act", "alpha", "gain", "clamp", "dim", "has_bias", "alpha_bits", "gain_bits",
               "clamp_bits")


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """Fused ``clip(act(x + b) * gain, -clamp, clamp)``.

    Args:
        x: input of any rank, float32/float64/float16/bfloat16.
        b: optional 1-D bias with ``x.shape[dim]`` elements, same dtype as x.
        dim: the axis of x that b runs along (default 1, as in the PyTorch front end: channels
            of NCHW; pass -1 for channels-last NHWC).
        act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish, gelu.
        alpha: lrelu's negative slope (default 0.2); only lrelu takes it.
        gain: output scale (default sqrt(2) for relu, lrelu, swish; 1 otherwise).
        clamp: clip the output to [-clamp, clamp]; None for no clip.

    Gradients with respect to x and b are exact to second order. alpha, gain and clamp reach
    the kernels as exact doubles, so float64 inputs compute with float64 scalars; for other
    dtypes the kernels compute in float32, and alpha and gain must be within its range.
    Inside a graph that XLA compiles (``tf.function(jit_compile=True)``, Keras'
    ``jit_compile=True``) it is the same formula in plain TF ops, with the same gradients.
    """
    alpha, gain, clamp = _args.resolve_bias_act(act, alpha, gain, clamp)
    x, b, dim = check_tensors(x, b, dim)
    _args.check_bias_act_range(alpha, gain, x.dtype)
    if _xla.compiling_with_xla():
        return _xla.bias_act(x, b, dim, act, alpha, gain, clamp)
    has_bias = b is not None
    if not has_bias:
        b = tf.zeros([0], dtype=x.dtype)  # TF ops have no optional inputs; ignored by the kernel
    return ops.ganops_bias_act(
        x, b, act=act, dim=dim, has_bias=has_bias,
        **_args.scalar_attrs(alpha=alpha, gain=gain, clamp=-1.0 if clamp is None else clamp),
    )


def _attrs(op):
    return {name: op.get_attr(name) for name in _ATTR_NAMES}


def _bias_grad(dz, b, attrs):
    """The gradient for b: dz summed over every axis but `dim` (zeros when there is no bias)."""
    if not attrs["has_bias"]:
        return tf.zeros_like(b)
    rank = dz.shape.rank
    if rank is not None:
        dim = attrs["dim"] % rank
        axes = [axis for axis in range(rank) if axis != dim]
    else:  # unknown rank inside a tf.function: build the axes at run time
        all_axes = tf.range(tf.rank(dz))
        axes = tf.boolean_mask(all_axes, tf.not_equal(all_axes, attrs["dim"] % tf.rank(dz)))
    # Half types accumulate in float32: a sum over N*H*W elements would lose most digits.
    if dz.dtype in (tf.float16, tf.bfloat16):
        return tf.cast(tf.reduce_sum(tf.cast(dz, tf.float32), axis=axes), dz.dtype)
    return tf.reduce_sum(dz, axis=axes)


@tf.RegisterGradient("GanopsBiasAct")
def _bias_act_grad(op, grad):
    x, b = op.inputs
    attrs = _attrs(op)
    dz = ops.ganops_bias_act_grad(grad, x, b, **attrs)
    return dz, _bias_grad(dz, b, attrs)


@tf.RegisterGradient("GanopsBiasActGrad")
def _bias_act_grad_grad(op, grad_dz):
    # dz = grad * f'(z) * gain * mask, z = x + b: linear in grad, and d/dz brings in f''.
    grad, x, b = op.inputs
    attrs = _attrs(op)
    d_grad = ops.ganops_bias_act_grad(grad_dz, x, b, **attrs)
    d_x = ops.ganops_bias_act_grad_grad(grad_dz, grad, x, b, **attrs)
    return d_grad, d_x, _bias_grad(d_x, b, attrs)


@tf.RegisterGradient("GanopsBiasActGradGrad")
def _bias_act_third_order(op, grad):
    raise NotImplementedError(
        "ganops.tf.bias_act: third-order gradients of bias_act are not supported (first and "
        "second order are); use ganops.tf.reference.bias_act where a third derivative is needed"
    )


# --- spectral normalization ------------------------------------------------------------------


def _check_spectral(weight, u, v=None):
    weight = _args.check_weight(weight)
    rows, cols = _args.weight_rows_cols(weight)
    u = _args.check_vector(u, weight, rows, "u", "weight.shape[-1]")
    if v is not None:
        v = _args.check_vector(v, weight, cols, "v", "weight.size / weight.shape[-1]")
    return weight, u, v


def power_iteration(weight, u, power_iterations=1, eps=None):
    """Keras' power method on `weight` viewed as reshape(weight, [-1, weight.shape[-1]]).

    Runs `power_iterations` times, from u:  v = normalize(u W2^T),  u = normalize(v W2)  with
    W2 = reshape(weight, [-1, out]), out = weight.shape[-1], and normalize(a) = a / max(||a||, eps)
    (Keras' ``keras.ops.normalize``; eps=None means ``keras.config.epsilon()``, 1e-7 by default).

    Args:
        weight: float32/float64/float16/bfloat16 tensor of rank >= 2 (a Dense or Conv kernel, an
            Embedding matrix; the last axis is Keras' "out" axis).
        u: shape (out,) or (1, out), weight's dtype (keras' ``vector_u`` is (1, out)).
    Returns:
        (u_new, v, sigma): u_new with u's shape, v of shape (weight.size // out,), both in
        weight's dtype, and sigma = v W2 u_new^T, a scalar that is float64 for float64 weights and
        float32 otherwise (norms and dots accumulate in that type for every weight dtype).
    sigma is differentiable in weight with u_new and v held constant (d sigma / d W2 = v^T u_new),
    as in Keras, where both vectors go through stop_gradient. u gets no gradient.
    """
    weight, u, _ = _check_spectral(weight, u)
    n = _args.check_power_iterations(power_iterations)
    eps = _args.resolve_eps(eps, dtype=weight.dtype)
    if _xla.compiling_with_xla():
        return _xla.power_iteration(weight, u, n, eps)
    return ops.ganops_spectral_norm_power_iteration(
        weight, u, n_power_iterations=n, S=_args.sigma_dtype(weight.dtype),
        **_args.scalar_attrs(eps=eps))


def _normalize(weight, u, v, sigma):
    if _xla.compiling_with_xla():
        return _xla.spectral_normalize(weight, u, v, sigma)
    return ops.ganops_spectral_normalize(weight, u, v, sigma)


def spectral_normalize(weight, u, v, sigma):
    """``weight / sigma`` in one pass, differentiable in weight through sigma = v W2 u^T with u and v
    held fixed:  dL/dW = (G - <G, W / sigma> u v^T) / sigma  (G = dL/d(W / sigma)), fused in one
    kernel; its own gradient (second order) is exact too. u, v and sigma must be what
    power_iteration returned for this weight; they receive no gradient (sigma's dependence on
    the weight is already in the formula). What is saved for backward: weight (no copy), u, v and
    sigma.
    """
    weight, u, v = _check_spectral(weight, u, v)
    sigma = tf.convert_to_tensor(sigma, dtype_hint=_args.sigma_dtype(weight.dtype))
    if sigma.dtype != _args.sigma_dtype(weight.dtype):
        raise TypeError(f"{_args.SN}: sigma must be {_args.sigma_dtype(weight.dtype).name} for a "
                        f"{weight.dtype.name} weight, got {sigma.dtype.name}")
    return _normalize(weight, u, v, sigma)


def spectral_norm(w, u, power_iterations=1, eps=None, training=True):
    """Spectral normalization for users who manage the variables themselves, with the semantics
    of keras.layers.SpectralNormalization's update:

        u_new, v, sigma = power_iteration(w, u, power_iterations, eps)
        w_sn = w / sigma

    Args:
        w: the raw weight, rank >= 2, normalized over reshape(w, [-1, w.shape[-1]]).
        u: the persistent vector, shape (out,) or (1, out) with out = w.shape[-1], w's dtype.
            Keras initialises it with TruncatedNormal(stddev=0.02), shape (1, out).
        power_iterations: int >= 1.
        eps: None for ``keras.config.epsilon()`` (1e-7 by default), the floor of every norm.
        training: True returns u_new for you to store (``u.assign(u_new)``); False returns u
            unchanged. The weight is normalized the same way in both: inference runs the same
            power iteration from the stored u, so it changes no state and divides by the sigma
            the next training step would use.
    Returns:
        (w_sn, u_out). w_sn is differentiable in w through sigma, with u and v held fixed (the
        formulation of Miyato et al. and of torch's spectral_norm; see spectral_normalize).
        Keras' layer instead assigns w_sn to the kernel variable; do that yourself for Keras'
        behaviour.
    When sigma is 0 (an all-zero w) nothing is normalized: w_sn = w (with gradient G) and u_out = u,
    as Keras skips an all-zero kernel.
    """
    w, u, _ = _check_spectral(w, u)
    u_new, v, sigma = power_iteration(w, u, power_iterations, eps)
    zero = tf.equal(sigma, 0)
    u_new = tf.where(zero, u, u_new)
    sigma = tf.where(zero, tf.ones_like(sigma), sigma)  # W / 1 = W; P = 0 so the gradient is G
    w_sn = _normalize(w, u_new, v, sigma)
    if tf.is_tensor(training):
        return w_sn, tf.where(tf.cast(training, tf.bool), u_new, u)
    return w_sn, (u_new if training else u)
