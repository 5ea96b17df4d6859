"""Both frameworks in one process (torch imported first, as users do), both op libraries
loaded, and the two front ends give the same numbers from the one core."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402  (torch first: TF then loads beside it)

import ganops.torch as gt  # noqa: E402
import tensorflow as tf  # noqa: E402
import ganops.tf as gtf  # noqa: E402

# TF op attributes are 32-bit floats, so alpha, gain and clamp reach the float64 TF kernel
# rounded to float32 (sqrt(2) differs by ~3e-8 relative); torch passes them as doubles.
F64_ATTR_TOL = dict(rtol=1e-6, atol=1e-7)

ACTS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "gelu"]


@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("act", ACTS)
def test_same_values_and_gradients_from_both_frameworks(act, clamp):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 3))
    b = rng.standard_normal(4)
    dy = rng.standard_normal(x.shape)

    xt, bt = torch.tensor(x, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = gt.bias_act(xt, bt, dim=1, act=act, clamp=clamp)
    (yt * torch.tensor(dy)).sum().backward()

    xf, bf = tf.constant(x), tf.Variable(b)
    with tf.GradientTape() as tape:
        tape.watch(xf)
        yf = gtf.bias_act(xf, bf, dim=1, act=act, clamp=clamp)
        loss = tf.reduce_sum(yf * dy)
    gx, gb = tape.gradient(loss, [xf, bf])

    np.testing.assert_allclose(yt.detach().numpy(), yf.numpy(), **F64_ATTR_TOL)
    np.testing.assert_allclose(xt.grad.numpy(), gx.numpy(), **F64_ATTR_TOL)
    np.testing.assert_allclose(bt.grad.numpy(), gb.numpy(), **F64_ATTR_TOL)


def test_second_order_agrees_across_frameworks():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5))
    b = rng.standard_normal(5)

    xt, bt = torch.tensor(x, requires_grad=True), torch.tensor(b, requires_grad=True)
    (gxt,) = torch.autograd.grad(gt.bias_act(xt, bt, act="swish").pow(2).sum(), xt, create_graph=True)
    gxt.pow(2).sum().backward()

    xf, bf = tf.Variable(x), tf.Variable(b)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_sum(tf.square(gtf.bias_act(xf, bf, act="swish")))
        gxf = inner.gradient(loss, xf)
        penalty = tf.reduce_sum(tf.square(gxf))
    ggx, ggb = outer.gradient(penalty, [xf, bf])

    np.testing.assert_allclose(xt.grad.numpy(), ggx.numpy(), **F64_ATTR_TOL)
    np.testing.assert_allclose(bt.grad.numpy(), ggb.numpy(), **F64_ATTR_TOL)


def test_build_info_names_both_frameworks():
    import ganops

    info = ganops.build_info()
    assert info["torch"] == torch.__version__
    assert info["tensorflow"] == tf.__version__


@pytest.mark.parametrize("kind", ["wgan-gp", "one-sided", "zero-gp", "dragan", "r1", "r2"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradient_penalty_from_both_frameworks(kind, reduction):
    """The same gradient (NCHW for torch, its NHWC transpose for TF: the per-sample norm does not
    care about the order within a sample) gives the same penalty and d penalty / d grad."""
    g = np.random.default_rng(2).standard_normal((4, 3, 5, 5)) * 0.2
    gt_ = torch.tensor(g, requires_grad=True)
    pt = gt.penalty_from_gradient(gt_, kind, weight=3.0, target=0.5, reduction=reduction)
    (pt * torch.arange(1.0, pt.numel() + 1, dtype=pt.dtype).reshape(pt.shape)).sum().backward()

    gf = tf.constant(g.transpose(0, 2, 3, 1))
    with tf.GradientTape() as tape:
        tape.watch(gf)
        pf = gtf.penalty_from_gradient(gf, kind, weight=3.0, target=0.5, reduction=reduction)
        loss = tf.reduce_sum(pf * tf.reshape(tf.range(1.0, tf.size(pf) + 1, dtype=pf.dtype), tf.shape(pf)))
    dgf = tape.gradient(loss, gf)

    np.testing.assert_allclose(pt.detach().numpy(), pf.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gt_.grad.numpy().transpose(0, 2, 3, 1), dgf.numpy(), rtol=1e-12,
                               atol=1e-15)
