"""Gradients of the gradient-penalty ops (registered on import).

    GanopsPerSampleLerp(a, b, c) = a + c_b (b - a),  GanopsPerSampleAdd(a, b, c) = a + c_b b
        --grad-->  plain TF ops: they are linear in a and b, and c gets the per-sample sum.
    GanopsGradientPenalty(g, s) -> (penalty, norms), n_b = s ||g_b||
        --grad-->  GanopsGradientPenaltyGrad for the penalty (one read of g, one write), and the
                   same op with kind "norm", weight 1 and no reduction for the norms
                   (d n_b / d g_b = s^2 g_b / n_b). s is a loss scale: it gets no gradient.
    GanopsGradientPenaltyGrad(gout, g, norms, s) = gout_b K(n_b) g_b,  K(n) = w s^2 phi'(n) / n
        --grad-->  partial derivatives in plain TF ops and the op itself (below); the norms'
                   part flows back into GanopsGradientPenalty's norms output, which closes the
                   chain rule through n_b(g). Any order works.

TF hands a multi-output op's gradient function zeros for the outputs nobody used; a pass over g
for a zero coefficient would double the backward's traffic, so known zeros are skipped.
"""
import tensorflow as tf

from ganops.tf import _args
from ganops.tf._library import ops


def penalty_attrs(op):
    """The op's attributes for another penalty op, target and weight as their exact doubles."""
    attrs = {name: op.get_attr(name).decode() for name in ("kind", "reduction")}  # bytes
    attrs["target"] = _args.exact_scalar_attr(op, "target")
    attrs["weight"] = _args.exact_scalar_attr(op, "weight")
    return attrs


def _penalty_grad_op(gout, grad, norms, grad_scale, kind, target, weight, reduction):
    return ops.ganops_gradient_penalty_grad(gout, grad, norms, grad_scale, kind=kind,
                                            reduction=reduction,
                                            **_args.scalar_attrs(target=target, weight=weight))


def per_sample_view(c, like):
    """c (one value per sample) shaped to broadcast against `like` along dim 0."""
    rank = like.shape.rank
    if rank is not None:
        return tf.reshape(c, [-1] + [1] * (rank - 1))
    return tf.reshape(c, tf.concat([[-1], tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def per_sample_sum(t):
    """The sum over all non-batch dims: shape (N,). Also for N = 0 and per-sample size 0."""
    rank = t.shape.rank
    axes = list(range(1, rank)) if rank is not None else tf.range(1, tf.rank(t))
    return tf.reduce_sum(t, axis=axes)


def is_known_zero(t):
    """True when t is None or certainly all zeros: a constant, a ZerosLike, or (eagerly) a value
    that is all zeros (N values, so the check is cheap)."""
    if t is None:
        return True
    if tf.executing_eagerly():
        return not bool(tf.reduce_any(tf.not_equal(t, 0)))
    if t.op.type in ("ZerosLike", "Zeros"):
        return True
    value = tf.get_static_value(t)
    return value is not None and not value.any()


def _mix_coefficient_grad(grad, diff, coef):
    """d/dc of sum(grad * (a + c_b * diff)), shaped like c, in c's dtype."""
    acc = coef.dtype
    total = per_sample_sum(tf.cast(grad, acc) * tf.cast(diff, acc))
    return tf.reshape(total, tf.shape(coef))


def _scaled(grad, coef):
    """grad * c_b in c's precision, rounded to grad's dtype (float32 math for half types)."""
    acc = coef.dtype
    return tf.cast(tf.cast(grad, acc) * per_sample_view(coef, grad), grad.dtype)


@tf.RegisterGradient("GanopsPerSampleLerp")
def _per_sample_lerp_grad(op, grad):
    start, end, weight = op.inputs
    d_end = _scaled(grad, weight)
    d_start = _scaled(grad, 1 - weight)
    return d_start, d_end, _mix_coefficient_grad(grad, end - start, weight)


@tf.RegisterGradient("GanopsPerSampleAdd")
def _per_sample_add_grad(op, grad):
    _, other, alpha = op.inputs
    return grad, _scaled(grad, alpha), _mix_coefficient_grad(grad, other, alpha)


@tf.RegisterGradient("GanopsGradientPenalty")
def _gradient_penalty_grad(op, d_penalty, d_norms):
    grad, grad_scale = op.inputs
    _, norms = op.outputs
    terms = []
    if not is_known_zero(d_penalty):
        terms.append(_penalty_grad_op(d_penalty, grad, norms, grad_scale, **penalty_attrs(op)))
    if not is_known_zero(d_norms):
        terms.append(_penalty_grad_op(d_norms, grad, norms, grad_scale, kind="norm",
                                      target=0.0, weight=1.0, reduction="none"))
    if not terms:
        return tf.zeros_like(grad), None
    return tf.add_n(terms), None


def coefficient_and_slope(kind, n, weight, target, scale):
    """K(n) = weight * scale^2 * phi'(n) / n and dK/dn, per sample, 0 where n = 0 (g_b = 0
    there, so the value never matters; the guard keeps NaN out of every order)."""
    positive = n > 0
    safe_n = tf.where(positive, n, tf.ones_like(n))
    zero = tf.zeros_like(n)
    ws2 = weight * scale * scale
    if kind == "squared":
        return 2.0 * ws2 * tf.ones_like(n), zero
    if kind == "norm":
        k, dk = ws2 / safe_n, -ws2 / (safe_n * safe_n)
        mask = positive
    else:  # two-sided, and one-sided where n > target
        k = 2.0 * ws2 * (safe_n - target) / safe_n
        dk = 2.0 * ws2 * target / (safe_n * safe_n)
        mask = positive if kind == "two-sided" else tf.logical_and(positive, n > target)
    return tf.where(mask, k, zero), tf.where(mask, dk, zero)


@tf.RegisterGradient("GanopsGradientPenaltyGrad")
def _gradient_penalty_grad_grad(op, hess):
    # out_i = gout_b K(n_b) g_i for i in sample b. With H = the incoming gradient and
    # <H, g>_b the per-sample dot product:
    #     d gout  = K(n_b) <H, g>_b  (reduced as the forward reduced)
    #     d g     = gout_b K(n_b) H_i           (the op itself, applied to H)
    #     d norms = gout_b K'(n_b) <H, g>_b
    gout, grad, norms, grad_scale = op.inputs
    attrs = penalty_attrs(op)
    acc = norms.dtype
    d_grad = _penalty_grad_op(gout, hess, norms, grad_scale, **attrs)
    n = tf.reshape(norms, [-1])
    k, dk = coefficient_and_slope(attrs["kind"], n, tf.constant(attrs["weight"], acc),
                                  tf.constant(attrs["target"], acc), grad_scale)
    hg = per_sample_sum(tf.cast(hess, acc) * tf.cast(grad, acc))
    reduction = attrs["reduction"]
    if reduction == "none":
        sample_gout = tf.reshape(gout, [-1])
        d_gout = k * hg
    else:
        total = tf.reduce_sum(k * hg)
        sample_gout = tf.reshape(gout, []) * tf.ones_like(n)
        if reduction == "mean":
            batch = tf.cast(tf.size(n), acc)
            sample_gout, total = sample_gout / batch, total / batch
        d_gout = total
    d_norms = sample_gout * dk * hg
    return (tf.reshape(d_gout, tf.shape(gout)), d_grad, tf.reshape(d_norms, tf.shape(norms)),
            None)
