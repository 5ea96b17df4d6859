"""Spectral norm on CUDA against the CPU ops (and torch's parametrization). Runs where torch sees
a GPU and ganops was built with CUDA kernels; skipped as one module otherwise (CI has no GPU)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ganops.torch as gt
from conftest import DTYPES, TOL, assert_no_host_wait, require_cuda_kernels

require_cuda_kernels()

pytestmark = pytest.mark.usefixtures("full_float32")

ops = torch.ops.ganops
EPS = 1e-12

# (weight shape, dim). The matrix view is [outer][rows][inner] with rows = shape[dim]; the
# comments say which kernel paths a shape takes (see csrc/core/cuda/spectral_norm.cu).
SHAPES = {
    "linear": ((64, 96), 0),                # outer 1
    "conv2d": ((32, 16, 3, 3), 0),          # outer 1, M^T u split over rows
    "conv_transpose2d": ((16, 32, 4, 4), 1),  # outer and inner > 1
    "dim_last_2d": ((48, 40), 1),           # inner 1 (Keras' view)
    "dim_last_3d": ((5, 7, 3), 2),          # inner 1, outer 35
    "rank1": ((7,), 0),
    "one_row_3d": ((3, 1, 5), 1),
    "one_row": ((1, 300), 0),
    "one_col": ((300, 1), 0),
    "two_cols_many_rows": ((2, 5000), 1),   # M v over 157 tiles, M^T u split
    "tall": ((1000, 70), 0),                # 125 row tiles; M^T u split in 17
    "wide_dim1": ((70, 1000), 1),
    "long_inner": ((3, 8, 5000), 1),        # M v split along inner with outer > 1
    "long_rows_small_inner": ((4, 4096, 3, 3), 1),  # M^T u split over rows, 9 columns per tile
    "long_v": ((8, 20000), 0),              # rows + cols > 16384: u, v written by a separate kernel
    "long_v_dim_last": ((20000, 8), 1),
}
BIG = {
    "conv_512x512x3x3": ((512, 512, 3, 3), 0),
    "conv_transpose_512x256x3x3": ((512, 256, 3, 3), 1),
    "dense_4608x512_dim_last": ((4608, 512), 1),
    # 9.4M elements: more than one grid-stride pass of the elementwise kernels on any GPU
    # (grid_size caps at 32 blocks per SM: 4.3M elements on 132 SMs)
    "linear_4096x2304": ((4096, 2304), 0),
}


def _state(shape, dim, dtype):
    """A weight and unit u, v in the weight dtype, as SpectralNorm registers them (on the CPU)."""
    w = torch.randn(shape, dtype=torch.float64).to(dtype)
    rows = shape[dim]
    u = F.normalize(torch.randn(rows, dtype=torch.float64), dim=0).to(dtype)
    v = F.normalize(torch.randn(w.numel() // rows, dtype=torch.float64), dim=0).to(dtype)
    return w, u, v


def _sigma_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _compare_power_iteration(w, u, v, dim, n, dtype, sigma_rtol=1e-5):
    u_cpu, v_cpu = u.clone(), v.clone()
    u_gpu, v_gpu = u.cuda(), v.cuda()
    sigma_cpu, uc, vc = ops.spectral_norm_power_iteration(w, u_cpu, v_cpu, dim, n, EPS)
    sigma, ug, vg = ops.spectral_norm_power_iteration(w.cuda(), u_gpu, v_gpu, dim, n, EPS)
    assert sigma.is_cuda and sigma.shape == () and sigma.dtype == _sigma_dtype(dtype)
    assert ug.is_cuda and vg.is_cuda and ug.dtype == dtype and vg.dtype == dtype
    assert ug.data_ptr() != u_gpu.data_ptr() and vg.data_ptr() != v_gpu.data_ptr()
    atol, rtol = TOL[dtype]
    # sigma accumulates in float32 (float64) from the same inputs on both devices.
    s_atol, s_rtol = (1e-12, 1e-10) if dtype == torch.float64 else (1e-5, sigma_rtol)
    torch.testing.assert_close(sigma.cpu(), sigma_cpu, atol=s_atol, rtol=s_rtol)
    # u and v are updated in place, and the returned copies hold the same values.
    torch.testing.assert_close(u_gpu.cpu(), u_cpu, atol=atol, rtol=rtol)
    torch.testing.assert_close(v_gpu.cpu(), v_cpu, atol=atol, rtol=rtol)
    torch.testing.assert_close(ug, u_gpu, atol=0, rtol=0)
    torch.testing.assert_close(vg, v_gpu, atol=0, rtol=0)
    if n == 0:  # evaluation: u and v are left alone
        assert torch.equal(u_gpu.cpu(), u) and torch.equal(v_gpu.cpu(), v)
    return sigma_cpu, u_cpu, v_cpu


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_power_iteration_matches_cpu(dtype, shape, n):
    shape, dim = SHAPES[shape]
    w, u, v = _state(shape, dim, dtype)
    _compare_power_iteration(w, u, v, dim, n, dtype)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_normalize_and_backward_match_cpu(dtype, shape):
    shape, dim = SHAPES[shape]
    w, u, v = _state(shape, dim, dtype)
    sigma, u, v = ops.spectral_norm_power_iteration(w, u, v, dim, 2, EPS)
    g = torch.randn(shape, dtype=torch.float64).to(dtype)
    atol, rtol = TOL[dtype]

    out_cpu = ops.spectral_normalize(w, u, v, sigma, dim)
    out = ops.spectral_normalize(w.cuda(), u.cuda(), v.cuda(), sigma.cuda(), dim)
    assert out.is_cuda and out.dtype == dtype and out.shape == w.shape and out.is_contiguous()
    torch.testing.assert_close(out.cpu(), out_cpu, atol=atol, rtol=rtol)

    dw_cpu = ops.spectral_normalize_backward(g, w, u, v, sigma, dim)
    dw = ops.spectral_normalize_backward(g.cuda(), w.cuda(), u.cuda(), v.cuda(), sigma.cuda(), dim)
    assert dw.is_cuda and dw.dtype == dtype and dw.shape == w.shape and dw.is_contiguous()
    torch.testing.assert_close(dw.cpu(), dw_cpu, atol=atol, rtol=rtol)


def test_non_contiguous_weight_and_grad():
    # channels_last and transposed inputs are read through a contiguous copy, as on the CPU.
    w, u, v = _state((8, 6, 3, 3), 0, torch.float32)
    sigma, u, v = ops.spectral_norm_power_iteration(w, u, v, 0, 1, EPS)
    wc = w.cuda().contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(w)
    gc = g.cuda().contiguous(memory_format=torch.channels_last)
    out = ops.spectral_normalize(wc, u.cuda(), v.cuda(), sigma.cuda(), 0)
    torch.testing.assert_close(out.cpu(), ops.spectral_normalize(w, u, v, sigma, 0))
    dw = ops.spectral_normalize_backward(gc, wc, u.cuda(), v.cuda(), sigma.cuda(), 0)
    torch.testing.assert_close(dw.cpu(), ops.spectral_normalize_backward(g, w, u, v, sigma, 0))
    w2, u2, v2 = _state((9, 5), 1, torch.float32)
    s_cpu = ops.spectral_norm_power_iteration(w2.t().contiguous().t(), u2.clone(), v2.clone(), 1, 1, EPS)[0]
    s_gpu = ops.spectral_norm_power_iteration(w2.cuda().t().contiguous().t(), u2.cuda(), v2.cuda(), 1, 1, EPS)[0]
    torch.testing.assert_close(s_gpu.cpu(), s_cpu)


@pytest.mark.parametrize("shape", list(BIG))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_large_weight_matches_cpu(dtype, shape):
    shape, dim = BIG[shape]
    w, u, v = _state(shape, dim, dtype)
    # Sums of millions of products in another order: sigma agrees to a few float32 ulps per term.
    sigma, u1, v1 = _compare_power_iteration(w, u, v, dim, 1, dtype, sigma_rtol=1e-4)
    g = torch.randn(shape, dtype=torch.float64).to(dtype)
    atol, rtol = TOL[dtype]
    args_gpu = (w.cuda(), u1.cuda(), v1.cuda(), sigma.cuda(), dim)
    torch.testing.assert_close(ops.spectral_normalize(*args_gpu).cpu(),
                               ops.spectral_normalize(w, u1, v1, sigma, dim), atol=atol, rtol=rtol)
    torch.testing.assert_close(ops.spectral_normalize_backward(g.cuda(), *args_gpu).cpu(),
                               ops.spectral_normalize_backward(g, w, u1, v1, sigma, dim),
                               atol=atol, rtol=rtol)


@pytest.mark.parametrize("shape", list(BIG) + ["long_v", "long_inner"])
def test_deterministic(shape):
    # Every sum runs in an order fixed by the shape: two runs agree bit for bit.
    shape, dim = BIG.get(shape) or SHAPES[shape]
    w, u, v = _state(shape, dim, torch.float32)
    w, u, v = w.cuda(), u.cuda(), v.cuda()
    runs = []
    for _ in range(2):
        uu, vv = u.clone(), v.clone()
        sigma, _, _ = ops.spectral_norm_power_iteration(w, uu, vv, dim, 3, EPS)
        g = torch.ones_like(w)
        dw = ops.spectral_normalize_backward(g, w, uu, vv, sigma, dim)
        runs.append((sigma, uu, vv, dw))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shape,dim", [((6, 5), 0), ((3, 4, 2, 2), 1), ((5, 6), 1), ((2, 3, 4), 2),
                                       ((1, 4), 0), ((5,), 0)])
def test_cuda_gradcheck_and_gradgradcheck(shape, dim):
    w = torch.randn(shape, dtype=torch.float64, device="cuda")
    rows = shape[dim]
    u = torch.randn(rows, dtype=torch.float64, device="cuda")
    v = torch.randn(w.numel() // rows, dtype=torch.float64, device="cuda")
    _, u, v = gt.power_iteration(w, u, v, dim, 3)

    def fn(w):  # sigma = u^T M(w) v, recomputed by the op (n_power_iterations=0)
        sigma, _, _ = gt.power_iteration(w, u.clone(), v.clone(), dim, 0)
        return gt.spectral_normalize(w, u, v, sigma, dim)

    w.requires_grad_()
    assert torch.autograd.gradcheck(fn, (w,))
    assert torch.autograd.gradgradcheck(fn, (w,))

    g = torch.randn_like(w, requires_grad=True)

    def bw(grad, w):
        sigma, _, _ = gt.power_iteration(w, u.clone(), v.clone(), dim, 0)
        return ops.spectral_normalize_backward(grad, w, u, v, sigma, dim)

    assert torch.autograd.gradcheck(bw, (g, w))
    assert torch.autograd.gradgradcheck(bw, (g, w))


@pytest.mark.parametrize("shape,dim", [((8, 4, 3, 3), 0), ((4, 6, 3, 3), 1), ((7, 5), 1)])
def test_cuda_opcheck(shape, dim):
    w, u, v = (t.cuda() for t in _state(shape, dim, torch.float32))
    sigma, u, v = ops.spectral_norm_power_iteration(w, u, v, dim, 1, EPS)
    torch.library.opcheck(ops.spectral_norm_power_iteration, (w, u.clone(), v.clone(), dim, 1, EPS))
    torch.library.opcheck(ops.spectral_norm_power_iteration, (w, u.clone(), v.clone(), dim, 0, EPS))
    wg = w.clone().requires_grad_()
    torch.library.opcheck(ops.spectral_normalize, (wg, u, v, sigma, dim))
    g = torch.randn_like(w).requires_grad_()
    torch.library.opcheck(ops.spectral_normalize_backward, (g, wg, u, v, sigma, dim))


def test_cuda_compile_fullgraph():
    torch._dynamo.reset()
    layer = gt.spectral_norm(nn.Conv2d(4, 8, 3)).cuda()
    eager = copy.deepcopy(layer)
    x = torch.randn(2, 4, 9, 9, device="cuda")
    x_eager = x.clone().requires_grad_()
    x.requires_grad_()
    y = torch.compile(layer, fullgraph=True)(x)
    y.square().mean().backward()
    y_eager = eager(x_eager)
    y_eager.square().mean().backward()
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(x.grad, x_eager.grad)
    torch.testing.assert_close(layer.parametrizations.weight.original.grad,
                               eager.parametrizations.weight.original.grad)
    torch.testing.assert_close(layer.parametrizations.weight[0]._u, eager.parametrizations.weight[0]._u)
    torch.testing.assert_close(layer.parametrizations.weight[0]._v, eager.parametrizations.weight[0]._v)


# name -> (module factory, input shape, dim passed to spectral_norm: None = the default)
MODULES = {
    "linear": (lambda: nn.Linear(16, 32), (8, 16), None),
    "conv2d": (lambda: nn.Conv2d(3, 8, 3), (2, 3, 8, 8), None),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(8, 4, 4, stride=2), (2, 8, 5, 5), None),  # dim 1
    "linear_dim1": (lambda: nn.Linear(16, 32), (8, 16), 1),  # inner == 1
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("module", list(MODULES))
def test_parametrization_matches_torch_over_training(module, dtype):
    make, x_shape, dim = MODULES[module]
    torch.manual_seed(0)
    ref = make().to(dtype)
    nn.utils.parametrizations.spectral_norm(ref, dim=dim)
    torch.manual_seed(0)
    ours = make().to(dtype)
    gt.spectral_norm(ours, dim=dim)
    ref.cuda()
    ours.cuda()
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    tol = dict(atol=1e-10, rtol=1e-9) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
    gen = torch.Generator(device="cuda").manual_seed(1)
    for step in range(20):
        x = torch.randn(x_shape, device="cuda", dtype=dtype, generator=gen)
        y_ref, y = ref(x), ours(x)
        torch.testing.assert_close(y, y_ref, **tol, msg=lambda m: f"step {step}: {m}")
        (y_ref - 0.5).square().mean().backward()
        (y - 0.5).square().mean().backward()
        torch.testing.assert_close(ours.parametrizations.weight.original.grad,
                                   ref.parametrizations.weight.original.grad, **tol,
                                   msg=lambda m: f"step {step}: {m}")
        opt_ref.step()
        opt_ours.step()
        opt_ref.zero_grad()
        opt_ours.zero_grad()
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, **tol, msg=lambda m: f"{key}: {m}")
    ref.eval()
    ours.eval()
    x = torch.randn(x_shape, device="cuda", dtype=dtype, generator=gen)
    torch.testing.assert_close(ours(x), ref(x), **tol)


def test_no_host_sync():
    # sigma stays on the device: forward (power iteration + W / sigma) and backward never wait.
    layer = gt.spectral_norm(nn.Conv2d(8, 16, 3)).cuda()
    original = layer.parametrizations.weight.original

    def step():
        return torch.autograd.grad(layer.weight.square().sum(), original)[0]
    step()  # first call: lazy initialisation may synchronize
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        grad = assert_no_host_wait(step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert grad.is_cuda


def test_cuda_mismatched_device():
    w, u, v = _state((6, 4), 0, torch.float32)
    sigma = ops.spectral_norm_power_iteration(w, u.clone(), v.clone(), 0, 1, EPS)[0]
    wc, uc, vc = w.cuda(), u.cuda(), v.cuda()
    with pytest.raises(ValueError, match="u is on"):
        ops.spectral_norm_power_iteration(wc, u.clone(), vc.clone(), 0, 1, EPS)
    with pytest.raises(ValueError, match="v is on"):
        ops.spectral_norm_power_iteration(wc, uc.clone(), v.clone(), 0, 1, EPS)
    with pytest.raises(ValueError, match="u is on"):
        ops.spectral_norm_power_iteration(w, uc.clone(), v.clone(), 0, 1, EPS)
    with pytest.raises(ValueError, match="sigma is on"):
        ops.spectral_normalize(wc, uc, vc, sigma, 0)
    with pytest.raises(ValueError, match="sigma is on"):
        ops.spectral_normalize_backward(torch.randn_like(wc), wc, uc, vc, sigma, 0)
    with pytest.raises(ValueError, match="grad is on"):
        ops.spectral_normalize_backward(torch.randn_like(w), wc, uc, vc, sigma.cuda(), 0)
    with pytest.raises(TypeError, match="sigma must be"):
        ops.spectral_normalize(wc, uc, vc, sigma.cuda().double(), 0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    w, u, v = _state((16, 8, 3, 3), 0, torch.float32)
    sigma_cpu, u1, v1 = ops.spectral_norm_power_iteration(w, u.clone(), v.clone(), 0, 2, EPS)
    dev = torch.device("cuda", 1)
    uu, vv = u.to(dev), v.to(dev)
    sigma, _, _ = ops.spectral_norm_power_iteration(w.to(dev), uu, vv, 0, 2, EPS)
    assert sigma.device == dev
    torch.testing.assert_close(sigma.cpu(), sigma_cpu)
    out = ops.spectral_normalize(w.to(dev), uu, vv, sigma, 0)
    assert out.device == dev
    torch.testing.assert_close(out.cpu(), ops.spectral_normalize(w, u1, v1, sigma_cpu, 0))


def test_more_than_2_to_the_31_elements():
    free, _ = torch.cuda.mem_get_info()
    if free < 16 * 2 ** 30:
        pytest.skip("needs 16 GiB of free GPU memory")
    n = 46341  # n * n = 2^31 + 4634: 64-bit indexing, u and v stay small
    w = torch.ones(n, n, dtype=torch.float16, device="cuda")  # rank 1: sigma = n
    u = F.normalize(torch.randn(n, device="cuda"), dim=0).half()
    v = F.normalize(torch.randn(n, device="cuda"), dim=0).half()
    sigma, u, v = ops.spectral_norm_power_iteration(w, u, v, 0, 1, EPS)
    assert sigma.item() == pytest.approx(n, rel=1e-4)
    ref = 1 / n ** 0.5
    assert u.float().abs().sub(ref).abs().max().item() < 1e-5
    assert v.float().abs().sub(ref).abs().max().item() < 1e-5
    out = ops.spectral_normalize(w, u, v, sigma, 0)
    # 1 / n is a float16 subnormal (spacing 6e-8): a few 1e-3 relative
    assert out[0, 0].item() == pytest.approx(1 / n, rel=5e-3)
    assert out[-1, -1].item() == pytest.approx(1 / n, rel=5e-3)
    del out
    # G = W: <G, W / sigma> u v^T = sigma * (1 / sigma) * ones = W, so dW is ~0 everywhere.
    dw = ops.spectral_normalize_backward(w, w, u, v, sigma, 0)
    assert dw[0, 0].abs().item() < 1e-6 and dw[-1, -1].abs().item() < 1e-6
    assert dw.abs().max().item() < 1e-6
