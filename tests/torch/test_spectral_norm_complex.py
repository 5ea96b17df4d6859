"""Complex weights: torch.nn.utils.parametrizations.spectral_norm accepts them (its own
test_new_spectral_norm_value runs one), so the drop-in must too. They run torch's math rather
than the fused kernels; a seeded module must give torch's buffers, outputs and gradients, in
training and in eval mode, and state_dicts must move between the two."""
import copy

import pytest
import torch
from torch import nn

import ganops.torch as gt

P = torch.nn.utils.parametrizations
# The same torch ops in the same order as torch's parametrization: equal to the last bit.
EXACT = dict(rtol=0, atol=0)


class _Vector(nn.Module):
    """A 1-D weight, which both normalize directly (no power method)."""

    def __init__(self, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(7, dtype=dtype))

    def forward(self, x):
        return x * self.weight


MODULES = {
    "linear": (lambda dt: nn.Linear(5, 4, dtype=dt), (3, 5)),
    "conv2d": (lambda dt: nn.Conv2d(3, 6, 3, dtype=dt), (2, 3, 6, 6)),
    "convT2d (dim=1)": (lambda dt: nn.ConvTranspose2d(3, 4, 3, dtype=dt), (2, 3, 5, 5)),
    "1-D": (_Vector, (2, 7)),
}


def _pair(make, dtype, n_power_iterations):
    torch.manual_seed(0)
    base = make(dtype)
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(1)
    P.spectral_norm(theirs, n_power_iterations=n_power_iterations)
    torch.manual_seed(1)
    gt.spectral_norm(ours, n_power_iterations=n_power_iterations)
    return theirs, ours


def _assert_same_state(theirs, ours):
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert b[k].dtype == a[k].dtype, k
        torch.testing.assert_close(b[k], a[k], **EXACT, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("name", list(MODULES))
def test_complex_weight_matches_torch(name, dtype):
    make, x_shape = MODULES[name]
    theirs, ours = _pair(make, dtype, n_power_iterations=2)
    _assert_same_state(theirs, ours)  # the same draws and 15 warm-up iterations
    x = torch.randn(x_shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    for step in range(3):  # training: each forward runs the power method and moves _u, _v
        outputs = []
        for m in (theirs, ours):
            m.zero_grad()
            xx = x.clone().requires_grad_()
            y = m(xx)
            # A real loss of complex outputs: its gradient is the conjugate Wirtinger one.
            (y.abs() ** 2 + y.real).sum().backward()
            outputs.append((y.detach(), xx.grad, m.parametrizations.weight.original.grad))
        for got, want in zip(outputs[1], outputs[0]):
            torch.testing.assert_close(got, want, **EXACT, msg=lambda m, s=step: f"step {s}: {m}")
        _assert_same_state(theirs, ours)
    theirs.eval()
    ours.eval()
    before = copy.deepcopy(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), **EXACT)
    torch.testing.assert_close(ours.weight, theirs.weight, **EXACT)
    for k, v in ours.state_dict().items():  # eval mode leaves the power-method state alone
        assert torch.equal(v, before[k]), k


def test_complex_state_dict_moves_both_ways():
    theirs, ours = _pair(MODULES["conv2d"][0], torch.complex64, 1)
    x = torch.randn(2, 3, 6, 6, dtype=torch.complex64)
    theirs(x)  # a training step, so the buffers differ from a fresh module's
    ours.load_state_dict(theirs.state_dict())
    theirs.eval()
    ours.eval()
    torch.testing.assert_close(ours(x), theirs(x), **EXACT)


def test_complex_weight_is_removable():
    _, ours = _pair(MODULES["linear"][0], torch.complex128, 1)
    ours.eval()
    w = ours.weight.detach().clone()
    torch.nn.utils.parametrize.remove_parametrizations(ours, "weight")
    assert torch.equal(ours.weight.detach(), w)
    # The largest singular value of the normalized weight is ~1 (15 + 1 power iterations).
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: complex modules, ComplexHalf are experimental
def test_complex_half_is_refused():
    with pytest.raises(TypeError, match="the weight must be floating point, complex64 or complex128"):
        gt.spectral_norm(_Vector(torch.float32).to(torch.complex32))
