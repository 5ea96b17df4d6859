"""Functional TensorFlow API: bias_act on the compiled ops, with its first- and second-order
gradients registered for GradientTape and tf.function."""
import tensorflow as tf

from ganops._activations import resolve
from ganops.tf._args import check_tensors
from ganops.tf._library import ops

_ATTR_NAMES = ("act", "alpha", "gain", "clamp", "dim", "has_bias")


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

    Gradients with respect to x and b are exact to second order. alpha, gain and clamp are
    TF float attributes, so they carry float32 precision even for float64 inputs.
    """
    alpha, gain, clamp = resolve(act, alpha, gain, clamp)
    x, b, dim = check_tensors(x, b, dim)
    has_bias = b is not None
    if not has_bias:
        b = tf.zeros([0], dtype=x.dtype)  # TF ops have no optional inputs; ignored by the kernel
    return ops.ganops_bias_act(
        x, b, act=act, alpha=alpha, gain=gain, clamp=-1.0 if clamp is None else clamp,
        dim=dim, has_bias=has_bias,
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
