"""Gradient penalties on CUDA against the CPU ops. Runs where torch sees a GPU and ganops was
built with CUDA kernels; skipped as one module otherwise (CI has no GPU)."""
import pytest
import torch

import ganops.torch as gt
from conftest import DTYPES, assert_no_host_wait, require_cuda_kernels

require_cuda_kernels()

pytestmark = pytest.mark.usefixtures("full_float32")

ops = torch.ops.ganops
KINDS = ("norm", "squared", "two-sided", "one-sided")
REDUCTIONS = ("none", "mean", "sum")
# bfloat16 has 8 bits of mantissa: one rounding step is 0.4-0.8%, so a CPU loop without FMA and
# the GPU's fused multiply-add may round the mix and the backward one step apart.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1e-2}
# (shape): one chunk per sample, several chunks (8192 elements each), a batch above the grid's
# 65535 samples, a 1-element sample.
SHAPES = [(6, 3, 5, 7), (4, 3, 64, 64), (70_000, 2), (9, 1)]


def _layouts(shape, dtype):
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    yield "contiguous", x
    if len(shape) == 4:
        yield "channels_last", x.contiguous(memory_format=torch.channels_last)
        yield "sliced", torch.randn(shape[0], shape[1] * 2, *shape[2:]).to(dtype)[:, ::2]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_penalty_and_backward_match_cpu(dtype, kind, shape):
    torch.manual_seed(0)
    for name, g in _layouts(shape, dtype):
        for reduction in REDUCTIONS:
            want, want_norms = ops.gradient_penalty(g, kind, 2.0, 3.0, 0.5, reduction)
            got, norms = ops.gradient_penalty(g.cuda(), kind, 2.0, 3.0, 0.5, reduction)
            tol = TOL[dtype] * (10 if shape[0] > 1000 and reduction != "none" else 1)
            torch.testing.assert_close(got.cpu(), want, rtol=tol, atol=tol, msg=f"{name} {reduction}")
            torch.testing.assert_close(norms.cpu(), want_norms, rtol=tol, atol=tol)
            gout = torch.rand(want.shape, dtype=want.dtype)
            d_want = ops.gradient_penalty_backward(gout, g, want_norms, kind, 2.0, 3.0, 0.5, reduction)
            d_got = ops.gradient_penalty_backward(gout.cuda(), g.cuda(), norms, kind, 2.0, 3.0, 0.5,
                                                  reduction)
            assert d_got.stride() == d_want.stride()
            torch.testing.assert_close(d_got.cpu(), d_want, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_per_sample_mixes_match_cpu(dtype):
    torch.manual_seed(1)
    for shape in SHAPES:
        for name, a in _layouts(shape, dtype):
            b = torch.randn(a.shape).to(dtype)
            c = torch.rand(shape[0])
            for op in (ops.per_sample_lerp, ops.per_sample_add):
                want = op(a, b, c)
                got = op(a.cuda(), b.cuda(), c.cuda())
                assert got.stride() == want.stride()
                torch.testing.assert_close(got.cpu(), want, rtol=TOL[dtype], atol=TOL[dtype],
                                           msg=f"{op} {name}")


def test_results_repeat_bit_for_bit():
    g = torch.randn(64, 3, 64, 64, device="cuda")
    first = ops.gradient_penalty(g, "two-sided", 1.0, 10.0, 1.0, "mean")
    for _ in range(3):
        again = ops.gradient_penalty(g, "two-sided", 1.0, 10.0, 1.0, "mean")
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_zero_gradient_is_finite():
    g = torch.zeros(4, 3, 8, 8, device="cuda", requires_grad=True)
    for kind in KINDS:
        p, _ = ops.gradient_penalty(g, kind, 1.0, 10.0, 1.0, "mean")
        (d,) = torch.autograd.grad(p, g)
        assert torch.isfinite(p) and torch.equal(d, torch.zeros_like(d))


def test_gradcheck_and_gradgradcheck():
    g = torch.randn(3, 2, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    for kind in KINDS:
        f = lambda t, kind=kind: ops.gradient_penalty(t, kind, 0.5, 2.0, 0.7, "mean")[0]
        assert torch.autograd.gradcheck(f, (g,))
        assert torch.autograd.gradgradcheck(f, (g,))


def test_opcheck():
    g = torch.randn(4, 3, 5, 5, device="cuda", requires_grad=True)
    torch.library.opcheck(ops.gradient_penalty.default, (g, "two-sided", 1.0, 10.0, 1.0, "mean"))
    r, f = torch.randn(4, 3, 5, 5, device="cuda"), torch.randn(4, 3, 5, 5, device="cuda")
    torch.library.opcheck(ops.per_sample_lerp.default, (f, r, torch.rand(4, device="cuda")))
    torch.library.opcheck(ops.per_sample_add.default, (r, f, torch.rand(4, device="cuda")))


def test_gradient_penalty_on_a_cuda_discriminator_matches_cpu():
    torch.manual_seed(2)
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 2, 1, bias=False), gt.FusedLeakyReLU(8),
                            torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 1)).double()
    real, fake = torch.randn(2, 4, 3, 32, 32, dtype=torch.float64)
    results = {}
    for device in ("cpu", "cuda"):
        D.to(device).zero_grad()
        gen = torch.Generator(device).manual_seed(0)
        eps = torch.rand(4, generator=gen, device=device, dtype=torch.float64)
        x = gt.reference.interpolate(real.to(device), fake.to(device), eps)
        p = gt.penalty_from_gradient(torch.autograd.grad(D(x.requires_grad_()).sum(), x,
                                                         create_graph=True)[0])
        p.backward()
        results[device] = (p.detach().cpu(), [q.grad.cpu() for q in D.parameters() if q.grad is not None],
                           eps.cpu())
    # the draws differ per device; recompute CPU with CUDA's eps
    D.cpu().zero_grad()
    x = gt.reference.interpolate(real, fake, results["cuda"][2]).requires_grad_()
    p = gt.penalty_from_gradient(torch.autograd.grad(D(x).sum(), x, create_graph=True)[0])
    p.backward()
    torch.testing.assert_close(results["cuda"][0], p.detach())
    for a, b in zip(results["cuda"][1], [q.grad for q in D.parameters() if q.grad is not None]):
        torch.testing.assert_close(a, b)


def test_autocast_float16_with_grad_scaler():
    torch.manual_seed(3)
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 2, 1), torch.nn.LeakyReLU(0.2),
                            torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 1)).cuda()
    real = torch.randn(8, 3, 16, 16, device="cuda")
    want = gt.r1_penalty(D, real)
    scaler = torch.amp.GradScaler("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        got = gt.r1_penalty(D, real, scaler=scaler)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=2e-2, atol=1e-4)


def test_no_host_sync():
    # The reduction stays on the device: no .item(), no blocking copy, in forward or backward.
    g = torch.randn(8, 3, 64, 64, device="cuda", requires_grad=True)
    real, fake = torch.randn(2, 8, 3, 64, 64, device="cuda")

    def step():
        x = ops.per_sample_lerp(fake, real, torch.rand(8, device="cuda"))
        return torch.autograd.grad(gt.penalty_from_gradient(g, "wgan-gp"), g)[0], x
    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        dg, _ = assert_no_host_wait(step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert dg.is_cuda


def test_device_mismatch_is_a_clear_error():
    g = torch.randn(3, 4, device="cuda")
    with pytest.raises(ValueError, match="weight is on cpu but the samples are on cuda"):
        ops.per_sample_lerp(g, g, torch.rand(3))
