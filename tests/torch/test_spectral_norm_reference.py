"""torch.ops.ganops.spectral_* against the pure-PyTorch reference (and, for sigma, against the
exact largest singular value): every dtype, every matrix view of a weight, 0/1/5 iterations."""
import pytest
import torch

import ganops.torch as gt
from conftest import DTYPES

ops = torch.ops.ganops
R = gt.reference

# name -> (weight shape, dim). rows = shape[dim]; the matrix is torch's permute(dim).flatten(1).
SHAPES = {
    "linear": ((7, 5), 0),
    "conv2d": ((6, 4, 3, 3), 0),
    "conv_transpose2d": ((4, 6, 3, 3), 1),  # ConvTranspose weight (in, out, kh, kw): rows = out
    "rank3_dim2": ((3, 4, 5), 2),
    "rank3_dim_minus1": ((3, 4, 5), -1),
    "rank3_dim1": ((3, 4, 5), 1),
    "one_row": ((1, 5), 0),  # Linear(5, 1)
    "one_col": ((5, 1), 0),  # Linear(1, 5)
    "conv_size1_rows": ((4, 1, 3, 3), 1),  # ConvTranspose with one output channel
    "conv_size1_inner": ((6, 4, 1, 1), 0),  # 1x1 conv
    "rank1": ((6,), 0),
    "rank1_dim_minus1": ((6,), -1),
}

# (atol, rtol) for u, v (stored in the weight dtype) and sigma (float32 for half types).
VEC_TOL = {
    torch.float64: (1e-12, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
SIGMA_TOL = {
    torch.float64: (1e-12, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-5, 1e-5),  # accumulated in float32 from the same half inputs
    torch.bfloat16: (1e-5, 1e-5),
}


def _matrix(weight, dim):
    dim = dim % weight.ndim
    w = weight.permute(dim, *(d for d in range(weight.ndim) if d != dim))
    return w.reshape(w.shape[0], -1)


def _state(shape, dim, dtype):
    """A weight and unit u, v as SpectralNorm registers them (in the weight dtype)."""
    w = torch.randn(shape, dtype=torch.float64).to(dtype)
    rows = shape[dim]
    cols = w.numel() // rows
    u = torch.nn.functional.normalize(torch.randn(rows, dtype=torch.float64), dim=0).to(dtype)
    v = torch.nn.functional.normalize(torch.randn(cols, dtype=torch.float64), dim=0).to(dtype)
    return w, u, v


def _expected_sigma_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@pytest.mark.parametrize("n", [0, 1, 5])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_power_iteration_matches_reference(dtype, shape, n):
    shape, dim = SHAPES[shape]
    w, u, v = _state(shape, dim, dtype)
    u_ref, v_ref = u.clone(), v.clone()
    u0, v0 = u.clone(), v.clone()
    w_before = w.clone()

    sigma, u_out, v_out = ops.spectral_norm_power_iteration(w, u, v, dim, n, 1e-12)
    sigma_ref = R.spectral_norm_power_iteration(w, u_ref, v_ref, dim, n)

    assert sigma.dtype == _expected_sigma_dtype(dtype) and sigma.shape == ()
    assert sigma_ref.dtype == sigma.dtype
    torch.testing.assert_close(sigma, sigma_ref, atol=SIGMA_TOL[dtype][0], rtol=SIGMA_TOL[dtype][1])
    atol, rtol = VEC_TOL[dtype]
    # u and v are updated in place ...
    assert u.dtype == dtype and v.dtype == dtype
    torch.testing.assert_close(u, u_ref, atol=atol, rtol=rtol)
    torch.testing.assert_close(v, v_ref, atol=atol, rtol=rtol)
    if n == 0:
        assert torch.equal(u, u0) and torch.equal(v, v0), "no iteration must leave u, v untouched"
    else:
        assert not torch.equal(u, u0) or not torch.equal(v, v0)
    # ... and the returned copies hold the same values but are not aliases.
    assert torch.equal(u_out, u) and torch.equal(v_out, v)
    assert u_out.data_ptr() != u.data_ptr() and v_out.data_ptr() != v.data_ptr()
    assert u_out.dtype == dtype and v_out.dtype == dtype
    u.add_(1.0)
    v.add_(1.0)
    assert not torch.equal(u_out, u) and not torch.equal(v_out, v)
    assert torch.equal(w, w_before), "the weight is read only"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_power_iteration_on_a_non_contiguous_weight(dtype):
    # A channels_last conv weight and a transposed Linear view: same numbers as contiguous.
    for w in (torch.randn(6, 4, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last),
              torch.randn(5, 7).to(dtype).t()):
        _, u, v = _state(w.shape, 0, dtype)
        u2, v2 = u.clone(), v.clone()
        s = ops.spectral_norm_power_iteration(w, u, v, 0, 2, 1e-12)[0]
        s2 = ops.spectral_norm_power_iteration(w.contiguous(), u2, v2, 0, 2, 1e-12)[0]
        torch.testing.assert_close(s, s2, atol=0, rtol=1e-6)
        torch.testing.assert_close(u, u2, atol=0, rtol=0)


@pytest.mark.parametrize("shape", ["linear", "conv2d", "conv_transpose2d", "rank3_dim2", "rank1"])
def test_sigma_converges_to_the_largest_singular_value(shape):
    # Independent of the reference: the exact spectral norm from an SVD.
    shape, dim = SHAPES[shape]
    w, u, v = _state(shape, dim, torch.float64)
    sigma = gt.power_iteration(w, u, v, dim, 200)[0]
    torch.testing.assert_close(sigma, torch.linalg.matrix_norm(_matrix(w, dim), ord=2), atol=1e-9, rtol=1e-9)
    # and W / sigma has spectral norm 1
    w_sn = gt.spectral_normalize(w, u, v, sigma, dim)
    torch.testing.assert_close(torch.linalg.matrix_norm(_matrix(w_sn, dim), ord=2),
                               torch.tensor(1.0, dtype=torch.float64), atol=1e-9, rtol=1e-9)


def test_eps_bounds_the_normalization():
    # normalize(a) = a / max(||a||, eps): a zero weight gives u = v = 0 and sigma = 0, no NaN.
    w = torch.zeros(3, 4)
    _, u, v = _state((3, 4), 0, torch.float32)
    sigma = ops.spectral_norm_power_iteration(w, u, v, 0, 1, 1e-12)[0]
    assert sigma.item() == 0.0 and torch.count_nonzero(u) == 0 and torch.count_nonzero(v) == 0
    # A huge eps makes normalize a division by eps, as in the reference.
    w = torch.randn(3, 4)
    _, u, v = _state((3, 4), 0, torch.float32)
    u_ref, v_ref = u.clone(), v.clone()
    s = ops.spectral_norm_power_iteration(w, u, v, 0, 1, 1e3)[0]
    s_ref = R.spectral_norm_power_iteration(w, u_ref, v_ref, 0, 1, eps=1e3)
    torch.testing.assert_close(s, s_ref)
    torch.testing.assert_close(u, u_ref)
    torch.testing.assert_close(v, v_ref)


# W / sigma and its backward, against the reference's autograd.
NORMALIZE_TOL = {
    torch.float64: (1e-12, 1e-10),
    torch.float32: (1e-6, 1e-5),
    torch.float16: (1e-3, 2e-3),
    torch.bfloat16: (8e-3, 1.6e-2),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_normalize_forward_and_backward_match_reference(dtype, shape):
    shape, dim = SHAPES[shape]
    w, u, v = _state(shape, dim, dtype)
    sigma, u, v = ops.spectral_norm_power_iteration(w, u, v, dim, 3, 1e-12)
    w1 = w.clone().requires_grad_()
    w2 = w.clone().requires_grad_()
    y = ops.spectral_normalize(w1, u, v, sigma, dim)
    y_ref = R.spectral_normalize(w2, u, v, dim)
    assert y.dtype == dtype and y.shape == w.shape
    atol, rtol = NORMALIZE_TOL[dtype]
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=rtol)

    g = torch.randn(shape, dtype=torch.float64).to(dtype)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(w1.grad, w2.grad, atol=atol * 4, rtol=rtol * 4)
    # the backward op called directly gives the same gradient
    d = ops.spectral_normalize_backward(g, w, u, v, sigma, dim)
    torch.testing.assert_close(d, w1.grad, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_normalize_non_contiguous_weight_and_grad(dtype):
    w = torch.randn(6, 4, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    _, u, v = _state(w.shape, 0, dtype)
    sigma, u, v = gt.power_iteration(w, u, v, 0, 2)
    g = torch.randn(6, 3, 3, 4, dtype=dtype).permute(0, 3, 1, 2)  # a channels_last-strided grad
    w1 = w.clone().requires_grad_()
    w2 = w.clone().requires_grad_()
    y = gt.spectral_normalize(w1, u, v, sigma)
    y_ref = R.spectral_normalize(w2, u, v)
    torch.testing.assert_close(y, y_ref)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(w1.grad, w2.grad)
    # a stride-0 (expanded) gradient, as y.sum() sends
    w1.grad = w2.grad = None
    gt.spectral_normalize(w1, u, v, sigma).sum().backward()
    R.spectral_normalize(w2, u, v).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad)


def test_gradient_is_orthogonal_to_the_singular_direction():
    # d/dW of W / sigma(W): the u v^T component of G is removed. For G = u v^T (and W with
    # sigma = u^T M v), <dW, u v^T> = (1 - <W_sn, u v^T>) / sigma = 0 at convergence.
    w, u, v = _state((5, 4), 0, torch.float64)
    sigma, u, v = gt.power_iteration(w, u, v, 0, 100)
    p = torch.outer(u, v)
    d = ops.spectral_normalize_backward(p, w, u, v, sigma, 0)
    assert abs((d * p).sum().item()) < 1e-10
