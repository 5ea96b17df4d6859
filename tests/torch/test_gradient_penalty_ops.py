"""The gradient-penalty ops against plain torch: values in every dtype and layout, gradcheck and
gradgradcheck in float64 (the norms input is recomputed from grad in the checked functions, so
the numeric derivative sees it move with grad, as the op's formula assumes), the zero-gradient
case, opcheck and torch.compile."""
import pytest
import torch

import ganops.torch as gt
from conftest import DTYPES

ops = torch.ops.ganops

KINDS = ("norm", "squared", "two-sided", "one-sided")
REDUCTIONS = ("none", "mean", "sum")
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-3, torch.bfloat16: 1e-3}


def _plain_penalty(grad, kind, target, weight, grad_scale, reduction):
    acc = torch.float64 if grad.dtype == torch.float64 else torch.float32
    g = grad.to(acc).reshape(grad.shape[0], -1)
    n = grad_scale * g.norm(dim=1)
    per = {"norm": n, "squared": (grad_scale**2) * g.pow(2).sum(1), "two-sided": (n - target) ** 2,
           "one-sided": torch.clamp(n - target, min=0) ** 2}[kind] * weight
    reduced = {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
    return reduced, n


def _layouts(shape, dtype):
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    yield "contiguous", x
    yield "channels_last", x.contiguous(memory_format=torch.channels_last)
    yield "sliced", torch.randn(shape[0], shape[1] * 2, *shape[2:]).to(dtype)[:, ::2]
    yield "batch_inner", x.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_penalty_matches_plain_torch(dtype, kind, reduction):
    torch.manual_seed(0)
    for name, g in _layouts((5, 3, 4, 6), dtype):
        for scale in (1.0, 0.25):
            got, norms = ops.gradient_penalty(g, kind, 4.0, 10.0, scale, reduction)
            want, want_norms = _plain_penalty(g, kind, 4.0, 10.0, scale, reduction)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            torch.testing.assert_close(got, want, rtol=TOL[dtype], atol=TOL[dtype], msg=name)
            torch.testing.assert_close(norms, want_norms, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_autograd_of_plain_torch(dtype, kind):
    torch.manual_seed(1)
    for name, g in _layouts((4, 3, 5, 5), dtype):
        for reduction in REDUCTIONS:
            a = g.detach().clone().requires_grad_(True)
            b = g.detach().to(torch.float64).requires_grad_(True)
            got, _ = ops.gradient_penalty(a, kind, 5.0, 3.0, 0.5, reduction)
            want, _ = _plain_penalty(b, kind, 5.0, 3.0, 0.5, reduction)
            upstream = torch.rand(got.shape, dtype=torch.float64)
            (got.to(torch.float64) * upstream).sum().backward()
            (want * upstream).sum().backward()
            assert a.grad.dtype == dtype and a.grad.shape == a.shape
            tol = 1e-10 if dtype == torch.float64 else 2e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
            torch.testing.assert_close(a.grad.to(torch.float64), b.grad, rtol=tol, atol=tol,
                                       msg=f"{name} {reduction}")


def test_large_sample_sums_in_chunks_like_a_single_pass():
    # 3 samples of 100k elements: several chunks per sample, summed in chunk order.
    g = torch.randn(3, 100_000, dtype=torch.float64)
    got, norms = ops.gradient_penalty(g, "two-sided", 1.0, 1.0, 1.0, "none")
    torch.testing.assert_close(norms, g.norm(dim=1), rtol=1e-13, atol=0)
    torch.testing.assert_close(got, (g.norm(dim=1) - 1) ** 2, rtol=1e-12, atol=0)


def test_result_does_not_depend_on_thread_count():
    g = torch.randn(8, 50_000)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.gradient_penalty(g, "two-sided", 1.0, 10.0, 1.0, "mean")
        torch.set_num_threads(max(2, threads))
        many = ops.gradient_penalty(g, "two-sided", 1.0, 10.0, 1.0, "mean")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


@pytest.mark.parametrize("kind", KINDS)
def test_zero_gradient_gives_finite_penalty_and_zero_gradient(kind):
    g = torch.zeros(3, 2, 4, requires_grad=True)
    g2 = torch.cat([torch.zeros(1, 2, 4), torch.randn(2, 2, 4)]).requires_grad_(True)
    for t in (g, g2):
        penalty, _ = ops.gradient_penalty(t, kind, 1.0, 10.0, 1.0, "sum")
        (d,) = torch.autograd.grad(penalty, t, create_graph=True)
        assert torch.isfinite(penalty).all() and torch.isfinite(d).all()
        assert torch.equal(d[0], torch.zeros_like(d[0]))
        (dd,) = torch.autograd.grad(d.pow(2).sum(), t)
        assert torch.isfinite(dd).all()
    want = {"norm": 0.0, "squared": 0.0, "two-sided": 30.0, "one-sided": 0.0}[kind]
    assert ops.gradient_penalty(g, kind, 1.0, 10.0, 1.0, "sum")[0].item() == want


def _with_norms(kind, target, weight, scale, reduction):
    def f(grad):
        return ops.gradient_penalty(grad, kind, target, weight, scale, reduction)[0]
    return f


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck(kind, reduction):
    torch.manual_seed(2)
    g = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    # target between the samples' norms, so one-sided has an active and an inactive sample
    target = float(g.detach().reshape(3, -1).norm(dim=1).median()) * 0.75
    f = _with_norms(kind, target, 2.5, 0.7, reduction)
    assert torch.autograd.gradcheck(f, (g,))
    assert torch.autograd.gradgradcheck(f, (g,))


@pytest.mark.parametrize("kind", KINDS)
def test_backward_op_gradcheck_in_grad_output_and_grad(kind):
    torch.manual_seed(3)
    g = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    gout = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def f(gout, grad):
        # recomputed from grad, as gradient_penalty returns them: the op's formula includes
        # their dependence on grad and gives them no gradient of their own
        norms = 0.7 * grad.reshape(3, -1).norm(dim=1)
        return ops.gradient_penalty_backward(gout, grad, norms, kind, 1.5, 2.0, 0.7, "none")

    assert torch.autograd.gradcheck(f, (gout, g))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_per_sample_lerp_and_add_match_plain_torch(dtype):
    torch.manual_seed(4)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    for name, a in _layouts((4, 3, 5, 6), dtype):
        b = torch.randn(a.shape, dtype=torch.float64).to(dtype)
        c = torch.rand(4, dtype=acc)
        x = ops.per_sample_lerp(a, b, c)
        cc, aa, bb = c.view(-1, 1, 1, 1), a.to(acc), b.to(acc)
        torch.testing.assert_close(x, (aa + cc * (bb - aa)).to(dtype), rtol=TOL[dtype],
                                   atol=TOL[dtype], msg=name)
        y = ops.per_sample_add(a, b, c.view(4, 1, 1, 1))
        torch.testing.assert_close(y, (aa + cc * bb).to(dtype), rtol=TOL[dtype], atol=TOL[dtype],
                                   msg=name)
        if name in ("contiguous", "channels_last"):
            assert x.stride() == a.stride()  # the layout is kept, no copy


def test_per_sample_ops_gradcheck():
    torch.manual_seed(5)
    a = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    c = torch.rand(3, dtype=torch.float64, requires_grad=True)
    for op in (ops.per_sample_lerp, ops.per_sample_add):
        assert torch.autograd.gradcheck(op, (a, b, c))
        assert torch.autograd.gradgradcheck(op, (a, b, c))


def _opcheck_cases():
    g = torch.randn(4, 3, 5, 5)
    yield "penalty", ops.gradient_penalty.default, (g, "two-sided", 1.0, 10.0, 1.0, "mean")
    yield "penalty_none_cl", ops.gradient_penalty.default, (
        g.contiguous(memory_format=torch.channels_last).requires_grad_(), "one-sided", 0.5, 2.0,
        0.5, "none")
    yield "penalty_norm_f64", ops.gradient_penalty.default, (
        g.double().requires_grad_(), "norm", 0.0, 1.0, 1.0, "sum")
    p, n = ops.gradient_penalty(g, "squared", 0.0, 5.0, 1.0, "mean")
    yield "backward", ops.gradient_penalty_backward.default, (
        torch.ones(()), g, n, "squared", 0.0, 5.0, 1.0, "mean")
    r, f = torch.randn(4, 3, 5, 5, requires_grad=True), torch.randn(4, 3, 5, 5, requires_grad=True)
    yield "lerp", ops.per_sample_lerp.default, (f, r, torch.rand(4, requires_grad=True))
    yield "add_cl", ops.per_sample_add.default, (
        r.detach().contiguous(memory_format=torch.channels_last), f.detach(), torch.rand(4, 1, 1, 1))
    yield "lerp_sliced", ops.per_sample_lerp.default, (
        torch.randn(4, 6, 5)[:, ::2], torch.randn(4, 3, 5), torch.rand(4))


@pytest.mark.parametrize("name,op,args", list(_opcheck_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck(name, op, args):
    torch.library.opcheck(op, args)


def test_compile_fullgraph_forward_and_backward():
    g = torch.randn(6, 3, 8, 8, requires_grad=True)
    compiled = torch.compile(gt.penalty_from_gradient, fullgraph=True)
    want = gt.penalty_from_gradient(g, "wgan-gp")
    got = compiled(g, "wgan-gp")
    torch.testing.assert_close(got, want)
    got.backward()
    (d_want,) = torch.autograd.grad(gt.penalty_from_gradient(g, "wgan-gp"), g)
    torch.testing.assert_close(g.grad, d_want)
