"""opcheck, torch.compile(fullgraph=True), TorchScript, and large tensors."""
import pytest
import torch

import ganops.torch as gt

ops = torch.ops.ganops


def _samples():
    x = torch.randn(2, 3, 4, 4)
    b = torch.randn(3)
    cl = x.contiguous(memory_format=torch.channels_last)
    return [
        (x, b, 1, "lrelu", 0.2, 2 ** 0.5, None),
        (x, None, 1, "swish", 0.0, 2 ** 0.5, 0.5),
        (cl, b, 1, "gelu", 0.0, 1.0, None),
        (torch.randn(5, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64), 1, "tanh", 0.0, 1.0, 2.0),
    ]


@pytest.mark.parametrize("i", range(4))
def test_opcheck_bias_act(i):
    x, b, *rest = _samples()[i]
    x = x.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    torch.library.opcheck(ops.bias_act, (x, b, *rest))


@pytest.mark.parametrize("i", range(4))
def test_opcheck_bias_act_backward(i):
    x, b, *rest = _samples()[i]
    grad = torch.randn_like(x).requires_grad_()
    x = x.clone().requires_grad_()
    torch.library.opcheck(ops.bias_act_backward, (grad, x, b, *rest))


@pytest.mark.parametrize("i", range(4))
def test_opcheck_bias_act_backward2(i):
    x, b, *rest = _samples()[i]
    torch.library.opcheck(ops.bias_act_backward2, (torch.randn_like(x), torch.randn_like(x), x, b, *rest),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


class _TinyD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.act = gt.FusedLeakyReLU(8)
        self.fc = torch.nn.Linear(8 * 8 * 8, 16, bias=False)
        self.out = gt.FusedBiasAct(16, act="swish", clamp=4.0)

    def forward(self, x):
        return self.out(self.fc(self.act(self.conv(x)).flatten(1)))


def test_torch_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    model = _TinyD()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons

    compiled = torch.compile(model, fullgraph=True)
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, expected)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


def test_torchscript_module():
    model = _TinyD()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    torch.testing.assert_close(scripted(x), model(x))
    scripted(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_torchscript_layer_without_bias():
    layer = gt.FusedBiasAct(4, act="lrelu", bias=False)
    x = torch.randn(3, 4)
    torch.testing.assert_close(torch.jit.script(layer)(x), gt.reference.bias_act(x, act="lrelu"))


def test_more_than_2_to_the_31_elements():
    # int64 indexing: 2^31 + 6 half-precision elements (4 GiB), bias channel past 2^31.
    n = 2 ** 30 + 3
    x = torch.full((2, n), -1.0, dtype=torch.float16)
    b = torch.tensor([0.0, 3.0], dtype=torch.float16)
    y = gt.bias_act(x, b, dim=0, act="lrelu", gain=1.0)
    assert y[0, -1].item() == pytest.approx(-0.2, abs=1e-3)
    assert y[1, 0].item() == 2.0 and y[1, -1].item() == 2.0
    del y
    xt = x.t()  # the same storage seen as (n, 2) with the bias dim fastest in memory
    y = gt.bias_act(xt, b, dim=1, act="lrelu", gain=1.0)
    assert y[-1, 1].item() == 2.0 and y[-1, 0].item() == pytest.approx(-0.2, abs=1e-3)
