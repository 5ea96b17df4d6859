"""bias_act on CUDA against the CPU reference. Runs where torch sees a GPU and ganops was built
with CUDA kernels; skipped as one module otherwise (CI has no GPU)."""
import pytest
import torch

import ganops.torch as gt
from conftest import ACTS, DTYPES, TOL, require_cuda_kernels

require_cuda_kernels()

pytestmark = pytest.mark.usefixtures("full_float32")

LAYOUTS = {
    "nchw": (lambda: torch.randn(4, 7, 5, 3), 1),
    "channels_last": (lambda: torch.randn(4, 7, 5, 3).contiguous(memory_format=torch.channels_last), 1),
    "dense_nc": (lambda: torch.randn(33, 7), 1),
    "nhwc_dim_last": (lambda: torch.randn(4, 5, 3, 7), -1),
}


@pytest.mark.parametrize("clamp", [None, 0.7])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_cuda_matches_reference(act, dtype, layout, clamp):
    make, dim = LAYOUTS[layout]
    x_cpu = (make() * 2).to(dtype)
    b_cpu = torch.randn(x_cpu.shape[dim]).to(dtype)
    atol, rtol = TOL[dtype]
    x = x_cpu.cuda().requires_grad_()
    b = b_cpu.cuda().requires_grad_()
    xr, br = x_cpu.clone().requires_grad_(), b_cpu.clone().requires_grad_()
    y = gt.bias_act(x, b, dim=dim, act=act, clamp=clamp)
    y_ref = gt.reference.bias_act(xr, br, dim=dim, act=act, clamp=clamp)
    assert y.is_cuda and y.stride() == x.stride()
    torch.testing.assert_close(y.cpu(), y_ref, atol=atol, rtol=rtol)
    dy = torch.randn_like(y_ref)
    y.backward(dy.cuda())
    y_ref.backward(dy)
    torch.testing.assert_close(x.grad.cpu(), xr.grad, atol=atol * 4, rtol=rtol * 4)
    torch.testing.assert_close(b.grad.cpu(), br.grad, atol=atol * 40, rtol=rtol * 4)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("act", ["lrelu", "swish"])
def test_cuda_large_channels_last_matches_reference(act, bias):
    # 8.4M elements: more than one grid-stride pass (grid_size caps at 32 blocks per SM), in
    # channels_last, with and without a bias.
    x_cpu = torch.randn(16, 512, 32, 32).contiguous(memory_format=torch.channels_last)
    b_cpu = torch.randn(512) if bias else None
    x = x_cpu.cuda().requires_grad_()
    b = b_cpu.cuda().requires_grad_() if bias else None
    y = gt.bias_act(x, b, act=act)
    y_ref = gt.reference.bias_act(x_cpu.double(), None if b_cpu is None else b_cpu.double(), act=act)
    assert y.stride() == x.stride()
    torch.testing.assert_close(y.cpu().double(), y_ref, atol=1e-5, rtol=1e-5)
    dy = torch.randn_like(x_cpu)
    y.backward(dy.cuda())
    xr = x_cpu.double().requires_grad_()
    br = None if b_cpu is None else b_cpu.double().requires_grad_()
    gt.reference.bias_act(xr, br, act=act).backward(dy.double())
    torch.testing.assert_close(x.grad.cpu().double(), xr.grad, atol=1e-5, rtol=1e-5)
    if bias:  # a sum over 16 * 32 * 32 products per channel
        torch.testing.assert_close(b.grad.cpu().double(), br.grad, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("act", ACTS)
def test_cuda_gradcheck_and_gradgradcheck(act):
    x = torch.randn(3, 4, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device="cuda", requires_grad=True)

    def fn(x, b):
        return gt.bias_act(x, b, act=act, clamp=1.5)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_cuda_opcheck():
    x = torch.randn(2, 3, 4, 4, device="cuda", requires_grad=True)
    b = torch.randn(3, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.ganops.bias_act, (x, b, 1, "swish", 0.0, 2 ** 0.5, 1.0))


@pytest.mark.parametrize("layout", list(LAYOUTS) + ["rank1"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_backward_bias_matches_cpu(dtype, layout):
    make, dim = LAYOUTS[layout] if layout != "rank1" else (lambda: torch.randn(300), 0)
    x = make().to(dtype)
    b = torch.randn(x.shape[dim]).to(dtype)
    dy = torch.randn(x.shape).to(dtype)
    args = (dim, "swish", 0.0, 2 ** 0.5, 1.5)
    atol, rtol = TOL[dtype]
    dz, db = torch.ops.ganops.bias_act_backward_bias(dy.cuda(), x.cuda(), b.cuda(), *args)
    dz_cpu, db_cpu = torch.ops.ganops.bias_act_backward_bias(dy, x, b, *args)
    assert dz.stride() == x.stride()
    torch.testing.assert_close(dz.cpu(), dz_cpu, atol=atol * 4, rtol=rtol * 4)
    torch.testing.assert_close(db.cpu(), db_cpu, atol=atol * 40, rtol=rtol * 4)
    torch.library.opcheck(torch.ops.ganops.bias_act_backward_bias, (dy.cuda(), x.cuda(), b.cuda(), *args))


def test_cuda_compile_fullgraph():
    torch._dynamo.reset()
    layer = gt.FusedLeakyReLU(8).cuda()
    x = torch.randn(4, 8, 6, 6, device="cuda", requires_grad=True)
    y = torch.compile(layer, fullgraph=True)(x)
    y.sum().backward()
    torch.testing.assert_close(y, gt.reference.bias_act(x.detach(), layer.bias.detach(), act="lrelu"))


def test_cuda_mismatched_device():
    with pytest.raises(ValueError, match="b is on"):
        gt.bias_act(torch.randn(2, 3, device="cuda"), torch.randn(3))


def test_cuda_more_than_2_to_the_31_elements():
    free, _ = torch.cuda.mem_get_info()
    if free < 10 * 2 ** 30:
        pytest.skip("needs 10 GiB of free GPU memory")
    n = 2 ** 30 + 3
    x = torch.full((2, n), -1.0, dtype=torch.float16, device="cuda")
    b = torch.tensor([0.0, 3.0], dtype=torch.float16, device="cuda")
    y = gt.bias_act(x, b, dim=0, act="lrelu", gain=1.0)
    assert y[0, -1].item() == pytest.approx(-0.2, abs=1e-3)
    assert y[1, 0].item() == 2.0 and y[1, -1].item() == 2.0
