"""Exact first and second derivatives: gradcheck and gradgradcheck in float64."""
import pytest
import torch

import ganops.torch as gt
from conftest import ACTS


def _inputs(with_bias, layout="nchw"):
    x = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    b = torch.randn(3, dtype=torch.float64, requires_grad=True) if with_bias else None
    return x, b


@pytest.mark.parametrize("clamp", [None, 0.9])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_and_gradgradcheck(act, with_bias, clamp):
    x, b = _inputs(with_bias)
    inputs = (x, b) if with_bias else (x,)

    def fn(x, b=None):
        return gt.bias_act(x, b, act=act, clamp=clamp)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("act", ["lrelu", "swish", "gelu"])
def test_gradgradcheck_channels_last_with_gain_and_alpha(act):
    x, b = _inputs(True, "channels_last")
    alpha = 0.1 if act == "lrelu" else None

    def fn(x, b):
        return gt.bias_act(x, b, act=act, alpha=alpha, gain=1.7)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("act", ["swish", "tanh", "gelu"])
def test_second_derivative_matches_reference(act):
    x, b = _inputs(True)
    x2, b2 = x.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    results = []
    for f, xx, bb in ((gt.bias_act, x, b), (gt.reference.bias_act, x2, b2)):
        y = f(xx, bb, act=act)
        (gx,) = torch.autograd.grad((y * y).sum(), xx, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), (xx, bb)))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref)


def test_third_order_raises_clear_error():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = gt.bias_act(x, act="swish")
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(gg.sum(), x)
