"""gradcheck / gradgradcheck in float64 for W / sigma and its backward, for several matrix views.

sigma is an input of the ops, but it stands for u^T M(W) v: the functions checked here recompute
it from W with plain torch ops, so the numeric derivative sees sigma move with W, and the op's
analytic gradient (which returns none for sigma and folds its dependence on W into dW) must
agree with it."""
import pytest
import torch

import ganops.torch as gt

ops = torch.ops.ganops

CASES = {
    "linear": ((4, 3), 0),
    "conv2d": ((3, 2, 2, 2), 0),
    "conv_transpose2d": ((2, 3, 2, 2), 1),
    "rank3_dim2": ((2, 3, 4), 2),
    "rank3_dim_minus1": ((2, 3, 4), -1),
    "one_row": ((1, 4), 0),
    "rank1": ((5,), 0),
}


def _matrix(weight, dim):
    dim = dim % weight.ndim
    w = weight.permute(dim, *(d for d in range(weight.ndim) if d != dim))
    return w.reshape(w.shape[0], -1)


def _setup(case):
    shape, dim = CASES[case]
    w = torch.randn(shape, dtype=torch.float64)
    rows = shape[dim]
    u = torch.randn(rows, dtype=torch.float64)
    v = torch.randn(w.numel() // rows, dtype=torch.float64)
    _, u, v = gt.power_iteration(w, u, v, dim, 3)  # u, v near the singular vectors
    return w, u, v, dim


def _sigma(w, u, v, dim):
    return u @ _matrix(w, dim) @ v


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_spectral_normalize(case):
    w, u, v, dim = _setup(case)

    def f(w):
        return ops.spectral_normalize(w, u, v, _sigma(w, u, v, dim), dim)

    w = w.requires_grad_()
    assert torch.autograd.gradcheck(f, (w,))
    assert torch.autograd.gradgradcheck(f, (w,))


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_spectral_normalize_with_frozen_sigma_input(case):
    # Passing sigma as a separate leaf: no gradient flows to it, the weight's gradient still
    # includes sigma's dependence on W -- so it matches the recomputed-sigma function above.
    w, u, v, dim = _setup(case)
    sigma = _sigma(w, u, v, dim).requires_grad_()
    w = w.requires_grad_()
    y = ops.spectral_normalize(w, u, v, sigma, dim)
    g = torch.randn_like(y)
    dw, ds = torch.autograd.grad(y, (w, sigma), g, allow_unused=True)
    assert ds is None
    w2 = w.detach().clone().requires_grad_()
    (dw2,) = torch.autograd.grad(w2 / _sigma(w2, u, v, dim), w2, g)
    torch.testing.assert_close(dw, dw2)


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_spectral_normalize_backward(case):
    w, u, v, dim = _setup(case)
    g = torch.randn_like(w)

    def f(grad, w):
        return ops.spectral_normalize_backward(grad, w, u, v, _sigma(w, u, v, dim), dim)

    inputs = (g.requires_grad_(), w.requires_grad_())
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("case", ["linear", "conv2d", "conv_transpose2d", "rank3_dim2"])
def test_gradcheck_through_the_module(case):
    # The parametrization in eval mode (u, v fixed) is a function of the weight alone, equal to
    # torch's parametrization: check gradcheck/gradgradcheck of the module path too.
    shape, dim = CASES[case]
    holder = torch.nn.Module()
    holder.weight = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64))
    gt.spectral_norm(holder, dim=dim).eval()
    param = holder.parametrizations.weight.original

    def f(w):
        return holder.parametrizations.weight[0](w)

    assert torch.autograd.gradcheck(f, (param,))
    assert torch.autograd.gradgradcheck(f, (param,))
