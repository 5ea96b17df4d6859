"""Mistakes in the arguments of the Python front end are reported as a TypeError or ValueError
that starts with `ganops.<function>:` and names the argument and what it expects, instead of an
error from deep inside torch that names neither (an AttributeError on a list, "'>' not supported
between instances of 'str' and 'int'", "cannot reshape tensor of 0 elements", an OverflowError).
Inputs that are valid but unusual (an empty batch, a huge grad_scale) simply work."""
import numpy as np
import pytest
import torch
from torch import nn

import ganops.torch as gt

ops = torch.ops.ganops


# --- bias_act and its layers -------------------------------------------------------------------

@pytest.mark.parametrize("dim, shown", [(None, "None"), (1.5, "1.5"), ("1", "'1'"), (True, "True")])
def test_fused_bias_act_dim_must_be_an_int(dim, shown):
    with pytest.raises(TypeError, match=rf"^ganops.FusedBiasAct: dim must be an int, got {shown}$"):
        gt.FusedBiasAct(3, dim=dim)


def test_fused_bias_act_channels_must_be_an_int():
    with pytest.raises(TypeError, match="ganops.FusedBiasAct: channels must be an int, got None"):
        gt.FusedBiasAct(None)
    with pytest.raises(TypeError, match="ganops.FusedBiasAct: channels must be an int, got 2.5"):
        gt.FusedBiasAct(2.5)  # int() would silently make 2 channels
    with pytest.raises(TypeError, match="ganops.FusedLeakyReLU: channel must be an int, got None"):
        gt.FusedLeakyReLU(None)


def test_numpy_ints_are_ints():
    layer = gt.FusedBiasAct(np.int64(3), act="lrelu", dim=np.int64(1))
    assert layer.channels == 3 and layer.dim == 1 and type(layer.dim) is int
    assert layer(torch.randn(2, 3)).shape == (2, 3)


def test_fused_leaky_relu_bias_given_as_a_list():
    with pytest.raises(TypeError, match="^ganops.fused_leaky_relu: bias must be a tensor or None, got list$"):
        gt.fused_leaky_relu(torch.randn(2, 3), [0.5] * 3)


def test_fused_leaky_relu_other_arguments():
    with pytest.raises(TypeError, match="ganops.fused_leaky_relu: input must be a tensor, got list"):
        gt.fused_leaky_relu([1.0, 2.0])
    with pytest.raises(TypeError, match="ganops.fused_leaky_relu: negative_slope must be a float, got 'a'"):
        gt.fused_leaky_relu(torch.randn(2, 3), None, negative_slope="a")
    with pytest.raises(TypeError, match="ganops.FusedLeakyReLU: scale must be a float, got '2'"):
        gt.FusedLeakyReLU(3, scale="2")


def test_bias_act_tensor_arguments():
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="^ganops.bias_act: x must be a tensor, got NoneType$"):
        gt.bias_act(None)
    with pytest.raises(TypeError, match="^ganops.bias_act: b must be a tensor or None, got list$"):
        gt.bias_act(x, [0.0] * 3)
    for dim, shown in ((None, "None"), (1.5, "1.5")):
        with pytest.raises(TypeError, match=f"^ganops.bias_act: dim must be an int, got {shown}$"):
            gt.bias_act(x, torch.zeros(3), dim=dim)


# --- spectral norm -----------------------------------------------------------------------------

def test_spectral_norm_eps_given_as_a_string():
    with pytest.raises(TypeError, match=r"^ganops.spectral_norm: eps must be a positive float, got '1e-12'$"):
        gt.spectral_norm(nn.Linear(3, 4), eps="1e-12")


def test_a_long_bad_string_is_cut_in_the_message():
    with pytest.raises(TypeError) as info:
        gt.spectral_norm(nn.Linear(3, 4), eps="1" * 10_000)
    message = str(info.value)
    assert message.startswith("ganops.spectral_norm: eps must be a positive float, got '111")
    assert message.endswith("...") and len(message) < 150
    with pytest.raises(ValueError) as info:
        gt.penalty_from_gradient(torch.randn(2, 3), kind="k" * 10_000)
    assert "unknown penalty 'kkk" in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize("dim, shown", [("0", "'0'"), (0.5, "0.5"), (None, "None")])
def test_spectral_norm_module_dim_must_be_an_int(dim, shown):
    with pytest.raises(TypeError, match=f"^ganops.spectral_norm: dim must be an int, got {shown}$"):
        gt.SpectralNorm(torch.randn(4, 3), dim=dim)
    if dim is not None:  # None means "torch's default" in spectral_norm()
        with pytest.raises(TypeError, match="ganops.spectral_norm: dim must be an int"):
            gt.spectral_norm(nn.Linear(3, 4), dim=dim)


def test_spectral_norm_name_must_be_a_string():
    with pytest.raises(TypeError, match="ganops.spectral_norm: name must be a string, got 3"):
        gt.spectral_norm(nn.Linear(3, 4), name=3)


def test_spectral_norm_functions_name_a_missing_tensor():
    w, u, v = torch.randn(4, 3), torch.randn(4), torch.randn(3)
    sigma = gt.power_iteration(w, u, v)[0]
    with pytest.raises(TypeError, match="^ganops.power_iteration: weight must be a tensor, got NoneType$"):
        gt.power_iteration(None, u, v)
    with pytest.raises(TypeError, match="^ganops.power_iteration: v must be a tensor, got NoneType$"):
        gt.power_iteration(w, u, None)
    with pytest.raises(TypeError, match="^ganops.spectral_normalize: weight must be a tensor, got NoneType$"):
        gt.spectral_normalize(None, u, v, sigma)
    with pytest.raises(TypeError, match="^ganops.spectral_normalize: sigma must be a tensor, got float$"):
        gt.spectral_normalize(w, u, v, 1.0)


# --- gradient penalties ------------------------------------------------------------------------

def test_discriminator_with_integer_scores():
    real, fake = torch.randn(2, 4, 3)

    def D(x):
        return (x.sum(1) > 0).long()  # e.g. a thresholded decision instead of a score

    with pytest.raises(TypeError, match="^ganops.gradient_penalty: D's output must be floating point.*torch.int64$"):
        gt.gradient_penalty(D, real, fake)


def test_discriminator_that_is_not_callable():
    real, fake = torch.randn(2, 4, 3)
    with pytest.raises(TypeError, match="^ganops.gradient_penalty: D must be a module or a callable, got NoneType$"):
        gt.gradient_penalty(None, real, fake)


def test_penalty_functions_name_a_missing_tensor():
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(TypeError, match="^ganops.gradient_penalty: grad must be a tensor, got NoneType$"):
        gt.penalty_from_gradient(None)
    with pytest.raises(TypeError, match="^ganops.gradient_penalty: real must be a tensor, got NoneType$"):
        gt.gradient_penalty(lambda t: t.sum(1), None, x)
    with pytest.raises(TypeError, match="^ganops.input_gradient: outputs must be a tensor, got NoneType$"):
        gt.input_gradient(None, x)
    with pytest.raises(TypeError, match="^ganops.PathLengthRegularizer: images must be a tensor, got NoneType$"):
        gt.PathLengthRegularizer()(None, x)


def test_penalty_scalars_must_be_numbers():
    g = torch.randn(4, 3)
    with pytest.raises(TypeError, match="ganops.gradient_penalty: target must be a float, got '1'"):
        gt.penalty_from_gradient(g, target="1")  # float('1') would accept it
    with pytest.raises(TypeError, match="ganops.gradient_penalty: weight must be a float, got '10'"):
        gt.penalty_from_gradient(g, weight="10")
    with pytest.raises(TypeError, match="ganops.gradient_penalty: grad_scale must be a float, got None"):
        gt.penalty_from_gradient(g, grad_scale=None)
    with pytest.raises(TypeError, match="ganops.gradient_penalty: reduction must be a string, got 3"):
        gt.penalty_from_gradient(g, reduction=3)


@pytest.mark.parametrize("op", ["lerp", "add"])
def test_per_sample_mix_of_an_empty_batch(op):
    # Zero samples are a valid batch (a data loader's last, empty shard): zero-size gradients.
    a = torch.randn(0, 3, 2, requires_grad=True)
    b = torch.randn(0, 3, 2, requires_grad=True)
    c = torch.rand(0, requires_grad=True)
    mix = ops.per_sample_lerp if op == "lerp" else ops.per_sample_add
    y = mix(a, b, c)
    assert y.shape == (0, 3, 2)
    da, db, dc = torch.autograd.grad(y.sum(), (a, b, c), create_graph=True)
    assert da.shape == a.shape and db.shape == b.shape and dc.shape == c.shape
    # and second order, as WGAN-GP's interpolates would see it
    (dcc,) = torch.autograd.grad(dc.sum(), b, allow_unused=True, materialize_grads=True)
    assert dcc.shape == b.shape


def _reference_penalty(g, kind, s):
    n = s * g.flatten(1).norm(dim=1)
    per = {"two-sided": (n - 1) ** 2, "one-sided": torch.relu(n - 1) ** 2, "squared": n**2,
           "norm": n}[kind]
    return 10 * per.mean()


@pytest.mark.parametrize("kind", ["two-sided", "one-sided", "squared", "norm"])
def test_double_backward_with_a_huge_grad_scale(kind):
    # s = 1e80: s^4 overflows a Python float (and float64), yet every term of the second-order
    # formula is finite (s^2 = 1e160 fits in float64), so the result must be too.
    s = 1e80
    torch.manual_seed(0)
    g = torch.randn(3, 5, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)[:, None]
    v = torch.randn(3, 5, dtype=torch.float64)
    results = []
    for fn in (lambda t: ops.gradient_penalty(t, kind, 1.0, 10.0, s, "mean")[0],
               lambda t: _reference_penalty(t, kind, s)):
        t = g.clone().requires_grad_()
        (d,) = torch.autograd.grad(fn(t), t, create_graph=True)
        (h,) = torch.autograd.grad((d * v).sum(), t)
        results.append((d, h))
    (d, h), (want_d, want_h) = results
    assert torch.isfinite(h).all()
    torch.testing.assert_close(d, want_d, rtol=1e-10, atol=0)
    torch.testing.assert_close(h, want_h, rtol=1e-10, atol=0)


def test_grad_scale_whose_square_overflows_is_refused():
    g = torch.randn(4, 3)
    with pytest.raises(ValueError, match="^ganops.gradient_penalty: grad_scale must have a square "
                                         "that fits in torch.float32.*got 1e\\+20$"):
        gt.penalty_from_gradient(g, grad_scale=1e20)
    gt.penalty_from_gradient(g.double(), grad_scale=1e20)  # float64 computes in float64


def test_tensor_grad_scale_arguments():
    # The tensor path computes the penalty from the norms op, which sees neither target nor
    # weight: it must check them itself, and the scale's shape, as the float path's op does.
    g = torch.randn(4, 3)
    with pytest.raises(ValueError, match="ganops.gradient_penalty: grad_scale must be a float or a one-element floating tensor"):
        gt.penalty_from_gradient(g, grad_scale=torch.ones(2))
    with pytest.raises(ValueError, match="ganops.gradient_penalty: grad_scale must be a float or a one-element floating tensor"):
        gt.penalty_from_gradient(g, grad_scale=torch.ones((), dtype=torch.int64))
    with pytest.raises(ValueError, match="ganops.gradient_penalty: target must be finite"):
        gt.penalty_from_gradient(g, target=float("nan"), grad_scale=torch.tensor(0.5))
    with pytest.raises(ValueError, match="ganops.gradient_penalty: reduction: unknown reduction 'avg'"):
        gt.penalty_from_gradient(g, reduction="avg", grad_scale=torch.tensor(0.5))
