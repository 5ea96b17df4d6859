"""XLA support for the ganops TF ops: the compiled kernels have no XLA implementation, so inside
a graph that XLA will compile (tf.function(jit_compile=True), Keras' compile(jit_compile=True)
and its "auto" on GPU machines) every op wrapper builds its pure-TF formula instead, which XLA
fuses. Each formula gives the op's values and, by TF's autodiff, the gradients its registered
gradient functions give (first and second order): the same conventions at the edges (a zero
gradient has a zero penalty gradient, not NaN; the gradient of W / sigma flows through
sigma = u^T M v with u and v fixed).

    if compiling_with_xla():
        return _xla.<op>(...)
"""
import tensorflow as tf

from ganops.tf import reference
from ganops.tf._gradient_penalty_ops import per_sample_view
from ganops.tf._spectral_norm_ops import rank_one

try:
    # TF's own test for "this graph is compiled by XLA": tf.function(jit_compile=True) enters
    # an XLAControlFlowContext around its tracing (polymorphic_function.OptionalXlaContext),
    # and the graphs it traces (cond branches, nested functions) reach it through outer_graph.
    # TF's cond_v2, while_v2 and array_grad branch on it the same way. There is no public API.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
except ImportError:  # a TF without it: the ops keep their kernels (and fail under XLA as before)
    GraphOrParentsInXlaContext = None


def compiling_with_xla():
    """True while tracing a graph that XLA will compile; False eagerly and in plain graphs."""
    if GraphOrParentsInXlaContext is None or tf.executing_eagerly():
        return False
    return bool(GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def bias_act(x, b, dim, act, alpha, gain, clamp):
    """The reference formula, on arguments the wrapper has already resolved and checked."""
    return reference.bias_act(x, b, dim=dim, act=act, alpha=alpha if act == "lrelu" else None,
                              gain=gain, clamp=clamp)


def power_iteration(weight, u, n, eps):
    return reference.spectral_norm_power_iteration(weight, u, n, eps)


def spectral_normalize(weight, u, v, sigma):
    """weight / sigma with the ganops gradient (G - <G, W / sigma> P) / sigma, P = u v^T: the
    divisor is sigma in value, and its gradient is the one of <P, W> (u, v and sigma fixed)."""
    acc = sigma.dtype
    w = tf.cast(weight, acc)
    p = tf.stop_gradient(rank_one(u, v, weight, acc))
    dot = tf.reduce_sum(p * w)
    divisor = tf.stop_gradient(tf.reshape(sigma, [])) + (dot - tf.stop_gradient(dot))
    return tf.cast(w / divisor, weight.dtype)


def per_sample_mix(input, other, coef, lerp):
    """input + c_b (other - input) (lerp) or input + c_b other, in c's dtype, rounded to input's."""
    acc = coef.dtype
    a, b = tf.cast(input, acc), tf.cast(other, acc)
    c = per_sample_view(tf.reshape(coef, [-1]), a)
    mixed = a + c * (b - a) if lerp else a + c * b
    return tf.cast(mixed, input.dtype)


def gradient_penalty(grad, grad_scale, kind, target, weight, reduction):
    """(penalty, norms) of GanopsGradientPenalty for the op kinds (norm, squared, two-sided,
    one-sided), in grad_scale's dtype. The norm's gradient is taken as 0 at a zero gradient,
    as the kernels' phi'(n) / n is, so no order of the gradient is NaN there."""
    acc = grad_scale.dtype
    g = tf.cast(grad, acc)
    g = tf.reshape(g, tf.stack([tf.shape(g)[0], -1]))
    sum_sq = tf.reduce_sum(g * g, axis=1)
    zero = tf.equal(sum_sq, 0)  # NaN is not 0: a NaN gradient gives a NaN norm and penalty
    root = tf.sqrt(tf.where(zero, tf.ones_like(sum_sq), sum_sq))
    norms = grad_scale * tf.where(zero, tf.zeros_like(root), root)
    weight = tf.constant(weight, acc)
    target = tf.constant(target, acc)
    if kind == "norm":
        per_sample = weight * norms
    elif kind == "squared":
        per_sample = weight * (grad_scale * grad_scale * sum_sq)
    elif kind == "two-sided":
        per_sample = weight * tf.square(norms - target)
    else:  # one-sided; tf.maximum keeps NaN
        per_sample = weight * tf.square(tf.maximum(norms - target, tf.zeros_like(norms)))
    return reference.reduce_penalty(per_sample, reduction), norms
