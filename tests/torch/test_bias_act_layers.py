"""Drop-in layers: swapped into a discriminator written with torch's own ops, same outputs and
gradients (first order and through a gradient penalty), and StyleGAN2 checkpoint layout."""
import copy
import math

import torch
from torch import nn
import torch.nn.functional as F

import ganops.torch as gt


class _RosinalityFusedLeakyReLU(nn.Module):
    """The math of the layer in popular StyleGAN2 code, written with torch ops (no ganops)."""

    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x):
        if self.bias is not None:
            x = x + self.bias.view(1, -1, *([1] * (x.ndim - 2)))
        return F.leaky_relu(x, self.negative_slope) * self.scale


def _discriminator(act_layer):
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), act_layer(16),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), act_layer(32),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 32, bias=False), act_layer(32),
        nn.Linear(32, 1),
    )


def _pair():
    torch.manual_seed(1)
    ours = _discriminator(gt.FusedLeakyReLU).double()
    theirs = _discriminator(_RosinalityFusedLeakyReLU).double()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def test_fused_leaky_relu_swaps_in_same_outputs_and_gradients():
    ours, theirs = _pair()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y1, y2 = ours(x), theirs(x)
    torch.testing.assert_close(y1, y2)
    y1.sum().backward()
    y2.sum().backward()
    for (name, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)


def test_r1_penalty_through_fused_layers_matches():
    # The double backward of a gradient penalty runs through bias_act's second-order op.
    ours, theirs = _pair()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    penalties = []
    for model in (ours, theirs):
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(model(xr).sum(), xr, create_graph=True)
        penalty = g.pow(2).sum()
        penalty.backward()
        penalties.append(penalty)
    torch.testing.assert_close(penalties[0], penalties[1])
    for (name, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)


def test_swish_discriminator_penalty_matches_reference():
    torch.manual_seed(2)
    layer = gt.FusedBiasAct(6, act="swish", clamp=3.0).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for f in (layer, lambda t: gt.reference.bias_act(t, layer.bias, act="swish", clamp=3.0)):
        layer.zero_grad()
        (g,) = torch.autograd.grad(f(x).pow(2).sum(), x, create_graph=True)
        g.pow(2).sum().backward()
        results.append(layer.bias.grad.clone())
    torch.testing.assert_close(results[0], results[1])


def test_fused_leaky_relu_state_dict_layout_and_signature():
    layer = gt.FusedLeakyReLU(8, bias=True, negative_slope=0.1, scale=3.0)
    assert list(layer.state_dict()) == ["bias"]
    assert layer.bias.shape == (8,) and (layer.bias == 0).all()
    layer.load_state_dict({"bias": torch.arange(8.0)})
    x = torch.randn(2, 8, 3, 3)
    expected = F.leaky_relu(x + torch.arange(8.0).view(1, -1, 1, 1), 0.1) * 3.0
    torch.testing.assert_close(layer(x), expected)
    assert list(gt.FusedLeakyReLU(8, bias=False).state_dict()) == []


def test_fused_leaky_relu_functional_on_dense_input():
    x, b = torch.randn(5, 7), torch.randn(7)
    torch.testing.assert_close(gt.fused_leaky_relu(x, b), F.leaky_relu(x + b, 0.2) * math.sqrt(2))
    torch.testing.assert_close(gt.fused_leaky_relu(x), F.leaky_relu(x, 0.2) * math.sqrt(2))


def test_fused_bias_act_layer_under_autocast_bfloat16():
    layer = gt.FusedBiasAct(4, act="lrelu", bias_init=0.5)
    x = torch.randn(2, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.bfloat16())
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.bias.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), gt.reference.bias_act(x, layer.bias.detach(), act="lrelu"),
                               atol=5e-2, rtol=2e-2)


def test_deepcopy_and_repr():
    layer = gt.FusedBiasAct(4, act="gelu", clamp=2.0)
    clone = copy.deepcopy(layer)
    x = torch.randn(3, 4)
    torch.testing.assert_close(clone(x), layer(x))
    assert "gelu" in repr(layer) and "clamp=2.0" in repr(layer)
