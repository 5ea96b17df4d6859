"""Edge values of the ops against the true math, checked with torch's own ops (never with
ganops' outputs): NaN propagates as torch propagates it, the derivative at exactly z = x + b = 0
is torch's one-sided choice, gelu's second derivative does not turn 0 * inf into NaN far out,
and arguments that cannot be right (a meta tensor among CPU ones, a gain or grad_scale that
overflows the compute type, an activation name with a NUL in it) are refused with a ValueError
that names them."""
import math

import pytest
import torch
import torch.nn.functional as F

import ganops.torch as gt
from conftest import ACTS

ops = torch.ops.ganops

# The activations with gain 1, written with torch's own functions (whose autograd is the
# reference for the derivative at 0).
TORCH_ACT = {
    "linear": lambda z: z,
    "relu": torch.relu,
    "lrelu": lambda z: F.leaky_relu(z, 0.2),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "swish": F.silu,
    "gelu": F.gelu,
}
NAN = float("nan")


# --- NaN in, NaN out ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [None, 1.0])
def test_relu_keeps_nan(dtype, clamp):
    x = torch.tensor([[NAN, -1.0, 0.0, 2.0], [3.0, NAN, -NAN, 0.5]], dtype=dtype)
    b = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=dtype)
    gain = math.sqrt(2)
    want = torch.relu(x) * gain
    if clamp is not None:
        want = want.clamp(-clamp, clamp)  # clamp keeps NaN too
    assert torch.isnan(want).sum() == 3
    for got in (gt.bias_act(x, act="relu", clamp=clamp), gt.bias_act(x, b, act="relu", clamp=clamp)):
        torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("act", ACTS)
def test_every_activation_keeps_nan(act):
    x = torch.tensor([NAN, -1.0, 2.0], dtype=torch.float64)
    got = gt.bias_act(x[None], act=act, gain=1.0, dim=1)[0]
    want = TORCH_ACT[act](x)
    assert torch.isnan(want[0])
    torch.testing.assert_close(got, want, equal_nan=True, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_one_sided_penalty_of_a_nan_gradient_is_nan(reduction):
    g = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    g[1, 2] = NAN
    n = g.norm(dim=1)
    want = 10 * torch.relu(n - 1) ** 2  # relu(NaN) is NaN: a one-sided penalty does not hide it
    want = {"none": want, "mean": want.mean(), "sum": want.sum()}[reduction]
    got = gt.penalty_from_gradient(g, "one-sided", reduction=reduction)
    assert torch.isnan(got).any()
    torch.testing.assert_close(got, want, equal_nan=True, rtol=1e-6, atol=0)


# --- the first derivative at exactly z = 0 -----------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", ACTS)
def test_first_derivative_at_zero_is_torchs(act, dtype):
    """relu 0, lrelu alpha, elu and selu their negative branch (selu: scale * alpha = 1.7581),
    as torch's autograd gives; x + b = 0 exactly, with and without a bias."""
    z = torch.zeros(1, dtype=dtype, requires_grad=True)
    (want,) = torch.autograd.grad(TORCH_ACT[act](z).sum(), z)
    if act == "selu":
        assert want.item() == pytest.approx(1.0507009873554805 * 1.6732632423543772)
    for x0, b0 in ((0.0, None), (0.5, -0.5), (-0.25, 0.25)):
        x = torch.full((2, 3), x0, dtype=dtype, requires_grad=True)
        b = None if b0 is None else torch.full((3,), b0, dtype=dtype, requires_grad=True)
        y = gt.bias_act(x, b, act=act, gain=1.0)
        grads = torch.autograd.grad(y.sum(), (x,) if b is None else (x, b))
        torch.testing.assert_close(grads[0], want.expand(2, 3), rtol=1e-6, atol=0,
                                   msg=lambda m: f"d/dx at x={x0}, b={b0}: {m}")
        if b is not None:
            torch.testing.assert_close(grads[1], 2 * want.expand(3), rtol=1e-6, atol=0,
                                       msg=lambda m: f"d/db at x={x0}, b={b0}: {m}")


# --- gelu's second derivative far out -----------------------------------------------------------

@pytest.mark.parametrize("dtype, z", [(torch.float32, 1e20), (torch.float64, 1e300)])
def test_gelu_second_derivative_far_out_is_zero(dtype, z):
    # gelu''(z) = phi(z) (2 - z^2): exp(-z^2 / 2) underflows to 0 long before z^2 overflows,
    # so the product is 0, not 0 * inf = NaN (torch's own F.gelu double backward gives NaN here).
    x = torch.tensor([z, -z, 40.0, -40.0], dtype=dtype, requires_grad=True)
    y = gt.bias_act(x[None], act="gelu", gain=1.0, dim=1)
    (d,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d.sum(), x)
    torch.testing.assert_close(d.detach(), torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype))
    assert torch.equal(d2, torch.zeros_like(d2)), d2


# --- arguments that cannot be right ------------------------------------------------------------

def test_bias_act_with_a_meta_bias():
    with pytest.raises(ValueError, match="ganops.bias_act: b is on meta but x is on cpu"):
        gt.bias_act(torch.ones(2, 3), torch.zeros(3, device="meta"), dim=1, act="linear")
    with pytest.raises(ValueError, match="ganops.bias_act: b is on cpu but x is on meta"):
        gt.bias_act(torch.ones(2, 3, device="meta"), torch.zeros(3), dim=1, act="linear")


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("op, names", [("per_sample_lerp", ("input", "end", "weight")),
                                       ("per_sample_add", ("input", "other", "alpha"))])
def test_per_sample_mix_with_one_meta_argument(op, names, which):
    args = [torch.randn(4, 3), torch.randn(4, 3), torch.rand(4)]
    args[which] = args[which].to("meta")
    with pytest.raises(ValueError, match=rf"ganops.{op}: \w+ is on (meta|cpu) but input is on (cpu|meta)"):
        getattr(ops, op)(*args)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_penalty_backward_with_one_meta_argument(which):
    grad = torch.randn(4, 3)
    _, norms = ops.gradient_penalty(grad, "two-sided", 1.0, 10.0, 1.0, "mean")
    args = [torch.ones(()), grad, norms]
    args[which] = args[which].to("meta")
    with pytest.raises(ValueError, match=r"ganops.gradient_penalty_backward: \w+ is on (meta|cpu) but grad is on"):
        ops.gradient_penalty_backward(*args, "two-sided", 1.0, 10.0, 1.0, "mean")


def test_gain_that_overflows_float32():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="gain"):
        ops.bias_act(x, None, 1, "linear", 0.0, 1e308, None)
    with pytest.raises(ValueError, match="gain"):
        gt.bias_act(x, act="linear", gain=1e308)
    y = ops.bias_act(x.double(), None, 1, "linear", 0.0, 1e308, None)  # float64 computes in float64
    torch.testing.assert_close(y, x.double() * 1e308)


def test_grad_scale_that_overflows_float32():
    g = torch.randn(4, 3)
    with pytest.raises(ValueError, match="grad_scale"):
        ops.gradient_penalty(g, "two-sided", 1.0, 10.0, 1e300, "mean")


@pytest.mark.parametrize("op", ["bias_act", "bias_act_backward", "bias_act_backward2"])
def test_activation_name_with_an_embedded_nul(op):
    # A C string comparison would read 'relu\0junk' as 'relu'.
    x = torch.randn(2, 3)
    tensors = {"bias_act": (x,), "bias_act_backward": (x, x), "bias_act_backward2": (x, x, x)}[op]
    with pytest.raises(ValueError, match="act"):
        getattr(ops, op)(*tensors, None, 1, "relu\x00junk", 0.0, 1.0, None)
