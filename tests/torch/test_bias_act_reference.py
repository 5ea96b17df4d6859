"""ganops.torch.bias_act against the pure-PyTorch reference: every activation, dtype, layout."""
import math

import pytest
import torch

import ganops.torch as gt
from conftest import ACTS, DTYPES, TOL

LAYOUTS = {
    "nchw": lambda: (torch.randn(2, 5, 4, 3), 1),
    "channels_last": lambda: (torch.randn(2, 5, 4, 3).contiguous(memory_format=torch.channels_last), 1),
    "nhwc_dim_last": lambda: (torch.randn(2, 4, 3, 5), -1),
    "dense_nc": lambda: (torch.randn(7, 5), 1),
    "rank1": lambda: (torch.randn(5), 0),
    "rank3_dim2": lambda: (torch.randn(3, 2, 5), 2),
}


def _inputs(layout, dtype, with_bias):
    x, dim = LAYOUTS[layout]()
    x = (x * 2).to(dtype)
    b = torch.randn(x.shape[dim]).to(dtype) if with_bias else None
    return x, b, dim


@pytest.mark.parametrize("clamp", [None, 0.7])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_forward_and_gradients_match_reference(act, dtype, layout, with_bias, clamp):
    x, b, dim = _inputs(layout, dtype, with_bias)
    atol, rtol = TOL[dtype]
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    bs = [None, None] if b is None else [b.clone().requires_grad_(), b.clone().requires_grad_()]
    y = gt.bias_act(xs[0], bs[0], dim=dim, act=act, clamp=clamp)
    y_ref = gt.reference.bias_act(xs[1], bs[1], dim=dim, act=act, clamp=clamp)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.stride() == x.stride(), "output keeps the input's layout"
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=rtol)

    dy = torch.randn_like(y)
    y.backward(dy)
    y_ref.backward(dy)
    # Half-precision gradients pass through one more rounding than the forward.
    torch.testing.assert_close(xs[0].grad, xs[1].grad, atol=atol * 4, rtol=rtol * 4)
    if b is not None:
        torch.testing.assert_close(bs[0].grad, bs[1].grad, atol=atol * 40, rtol=rtol * 4)


@pytest.mark.parametrize("act,gain", [("linear", 1), ("relu", math.sqrt(2)), ("lrelu", math.sqrt(2)),
                                      ("tanh", 1), ("swish", math.sqrt(2)), ("gelu", 1)])
def test_stylegan_default_gains(act, gain):
    x = torch.randn(4, 3)
    expected = gt.reference.bias_act(x, act=act, gain=gain, alpha=0.2 if act == "lrelu" else None)
    torch.testing.assert_close(gt.bias_act(x, act=act), expected)


def test_lrelu_default_alpha_is_0_2():
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(gt.bias_act(x, act="lrelu", gain=1.0), torch.tensor([-0.2, 2.0]))


def test_clamp_masks_gradient_where_output_clamped():
    x = torch.tensor([-3.0, -0.5, 0.5, 3.0], requires_grad=True)
    y = gt.bias_act(x, act="linear", gain=1.0, clamp=1.0)
    torch.testing.assert_close(y, torch.tensor([-1.0, -0.5, 0.5, 1.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))


def test_extreme_inputs_stay_finite():
    x = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=torch.float32, requires_grad=True)
    for act in ACTS:
        y = gt.bias_act(x, act=act)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), x) if act not in ("linear", "relu", "lrelu") else (torch.zeros(1),)
        y_ref = gt.reference.bias_act(x.detach(), act=act)
        assert torch.isfinite(y).all() and torch.isfinite(g).all() and torch.isfinite(gg).all(), act
        torch.testing.assert_close(y, y_ref, atol=1e-3, rtol=1e-5)


def test_nan_propagates_through_clamp():
    y = gt.bias_act(torch.tensor([float("nan"), 1.0]), act="linear", clamp=0.5)
    assert torch.isnan(y[0]) and y[1] == 0.5


def test_empty_tensor():
    x = torch.empty(0, 3, 4)
    b = torch.zeros(3)
    assert gt.bias_act(x, b, act="lrelu").shape == (0, 3, 4)


def test_expanded_upstream_gradient_is_read_in_x_layout():
    # y.sum() sends a stride-0 gradient; channels_last x needs it in its own layout.
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(3, requires_grad=True)
    gt.bias_act(x, b, act="swish").sum().backward()
    x2, b2 = x.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    gt.reference.bias_act(x2, b2, act="swish").sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(b.grad, b2.grad)
