"""Gradients of the spectral-norm ops (registered on import).

The matrix is Keras' view of a weight W: reshape(W, [-1, W.shape[-1]]) is M^T, so M has
rows = W.shape[-1] (u runs over them) and K = W.size / rows columns (v runs over W's other axes
flattened). sigma = u^T M v, and P = u v^T laid out like W is P.flat[k * rows + h] = v[k] u[h],
i.e. reshape(outer(v, u), W.shape).

    GanopsSpectralNormPowerIteration(W, u) -> (u_out, v_out, sigma)
        --grad-->  dW = dsigma * P. u_out and v_out are held constant (Keras stops their
                   gradients), so this is the gradient of sigma = u^T M v at fixed vectors, and
                   at convergence the gradient of the largest singular value. u gets none.
    GanopsSpectralNormalize(W, u, v, sigma) -> W / sigma
        --grad-->  GanopsSpectralNormalizeGrad: (G - <G, W / sigma> P) / sigma. This already
                   contains the path through sigma = <P, W>, so sigma, u and v get no gradient
                   (sigma must be the value the power iteration returned for these u and v).
    GanopsSpectralNormalizeGrad(G, W, u, v, sigma)
        --grad-->  the exact second-order formula below, in plain TF ops (so any order works).

What is saved for backward: the op inputs TF keeps anyway (W, the variable's value, no copy;
u, v and sigma, vectors and a scalar; G for the second order). Nothing of W's size is
allocated for backward beyond the gradient itself.
"""
import tensorflow as tf

from ganops.tf._library import ops


def rank_one(u, v, weight, dtype):
    """P = u v^T in weight's layout, in `dtype`."""
    uu = tf.reshape(tf.cast(u, dtype), [1, -1])
    vv = tf.reshape(tf.cast(v, dtype), [-1, 1])
    return tf.reshape(vv * uu, tf.shape(weight))


@tf.RegisterGradient("GanopsSpectralNormPowerIteration")
def _power_iteration_grad(op, grad_u, grad_v, grad_sigma):
    weight, _ = op.inputs
    u_out, v_out, sigma = op.outputs
    if grad_sigma is None:
        return None, None
    p = rank_one(u_out, v_out, weight, sigma.dtype)
    d_weight = tf.cast(tf.cast(grad_sigma, sigma.dtype) * p, weight.dtype)
    return d_weight, None


@tf.RegisterGradient("GanopsSpectralNormalize")
def _normalize_grad(op, grad):
    weight, u, v, sigma = op.inputs
    return ops.ganops_spectral_normalize_grad(grad, weight, u, v, sigma), None, None, None


# GanopsSpectralNormalizeGrad(G, W) = G / s - (a / s^2) P with s = <P, W>, a = <G, W>.
# For an incoming H, with h = <H, G> and q = <H, P>:
#     dG = H / s - (q / s^2) W
#     dW = -(q / s^2) G + (2 a q / s^3 - h / s^2) P
# computed in sigma's dtype (float32, or float64 for float64 weights).
@tf.RegisterGradient("GanopsSpectralNormalizeGrad")
def _normalize_grad_grad(op, hess):
    grad, weight, u, v, sigma = op.inputs
    acc = sigma.dtype
    g, w, h = tf.cast(grad, acc), tf.cast(weight, acc), tf.cast(hess, acc)
    s = tf.reshape(sigma, [])
    p = rank_one(u, v, weight, acc)
    q = tf.reduce_sum(h * p)
    d_grad = h / s - (q / s**2) * w
    a = tf.reduce_sum(g * w)
    d_weight = -(q / s**2) * g + (2.0 * a * q / s**3 - tf.reduce_sum(h * g) / s**2) * p
    return tf.cast(d_grad, grad.dtype), tf.cast(d_weight, weight.dtype), None, None, None
