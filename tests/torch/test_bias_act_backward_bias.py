"""bias_act_backward_bias: dz and the bias gradient db in one pass, for every bias layout of the
CPU loops, against torch's own autograd of the formula; deterministic across thread counts."""
import math

import pytest
import torch
import torch.nn.functional as F

import ganops.torch as gt
from conftest import DTYPES

ops = torch.ops.ganops

# (make x, dim). Each walks a different BiasLayout; the odd sizes over 32768 elements span
# several chunks of the parallel split, and those over 8 * channels * 32768 several with wide
# channel partials.
LAYOUTS = {
    "nchw_odd": (lambda: torch.randn(3, 7, 41, 43), 1),                      # blocks of 1763
    "channels_last_odd": (lambda: torch.randn(3, 7, 41, 43).contiguous(memory_format=torch.channels_last), 1),
    "nhwc_dim_last": (lambda: torch.randn(3, 41, 43, 7), -1),                # table, period 7
    "nc_wide": (lambda: torch.randn(20, 5001), 1),                           # the bias as table
    "n1": (lambda: torch.randn(40001, 1), 1),                                # one value
    "one_channel_map": (lambda: torch.randn(9, 1, 67, 61), 1),
    "map2x2": (lambda: torch.randn(8, 37, 2, 2), 1),                         # table, period 148
    "map2x2_wide": (lambda: torch.randn(10, 1001, 2, 2), 1),                 # blocks of 4
    "map4x4": (lambda: torch.randn(16, 150, 4, 4), 1),                       # blocks of 16
    "map4x4_channels_last": (lambda: torch.randn(16, 150, 4, 4).contiguous(memory_format=torch.channels_last), 1),
    "stylegan_4x128": (lambda: torch.randn(4, 128), 1),
    "rank1": (lambda: torch.randn(300), 0),
}

# Relative tolerance of db for the rounding of the result to the dtype, on top of the
# accumulation error (bounded by the sum of |dz| over the channel).
RESULT_RTOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 8e-3}
ACC_EPS = {torch.float64: 1e-13}


def _formula(x, b, dim, act, clamp):
    """The math written out in torch ops, for torch's autograd."""
    shape = [1] * x.ndim
    shape[dim] = -1
    z = x + b.view(shape)
    if act == "lrelu":
        y = F.leaky_relu(z, 0.2) * math.sqrt(2)
    else:
        y = F.silu(z) * math.sqrt(2)
    return y if clamp is None else y.clamp(-clamp, clamp)


def _inputs(layout, dtype):
    make, dim = LAYOUTS[layout]
    x = (make() * 2).to(dtype)
    b = torch.randn(x.shape[dim]).to(dtype)
    dy = torch.randn(x.shape).to(dtype)
    return x, b, dy, dim


def _reference_db(x, b, dy, dim, act, clamp):
    """db from torch's autograd of the formula in float64 on the same (rounded) inputs, and the
    per-channel sum of |dz| that bounds the accumulation error."""
    x64, b64 = x.double().requires_grad_(), b.double().requires_grad_()
    y = _formula(x64, b64, dim, act, clamp)
    dx, db = torch.autograd.grad(y, (x64, b64), dy.double())
    others = [d for d in range(x.ndim) if d != dim % x.ndim]
    abs_sum = dx.abs().sum(others) if others else dx.abs()
    return db, abs_sum


@pytest.mark.parametrize("act", ["lrelu", "swish"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_db_matches_torch_autograd(dtype, layout, act):
    x, b, dy, dim = _inputs(layout, dtype)
    alpha, gain = (0.2, math.sqrt(2))
    clamp = 1.5 if act == "swish" else None
    dz, db = ops.bias_act_backward_bias(dy, x, b, dim, act, alpha if act == "lrelu" else 0.0, gain, clamp)
    assert dz.dtype == dtype and dz.shape == x.shape and dz.stride() == x.stride()
    assert db.dtype == dtype and db.shape == b.shape
    # dz is bias_act_backward's, bit for bit.
    expected_dz = ops.bias_act_backward(dy, x, b, dim, act, alpha if act == "lrelu" else 0.0, gain, clamp)
    assert torch.equal(dz, expected_dz)

    ref, abs_sum = _reference_db(x, b, dy, dim, act, clamp)
    # The kernel computes and sums dz in float32 (float64 for float64); the reference in
    # float64, so the two differ by float32 rounding (a few ulps for the activation's math) of
    # each term and of the sum.
    eps = ACC_EPS.get(dtype, 1e-5)
    err = (db.double() - ref).abs()
    bound = eps * abs_sum + RESULT_RTOL[dtype] * ref.abs() + 1e-30
    assert bool((err <= bound).all()), f"max error {err.max().item()} over bound {(err / bound).max().item()}x"


@pytest.mark.parametrize("layout", ["nchw_odd", "channels_last_odd", "nc_wide", "n1", "map4x4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_autograd_uses_the_fused_op(dtype, layout):
    x, b, dy, dim = _inputs(layout, dtype)
    dz, db = ops.bias_act_backward_bias(dy, x, b, dim, "lrelu", 0.2, math.sqrt(2), None)
    xg, bg = x.clone().requires_grad_(), b.clone().requires_grad_()
    gt.bias_act(xg, bg, dim=dim, act="lrelu").backward(dy)
    assert torch.equal(xg.grad, dz)
    assert torch.equal(bg.grad, db)


@pytest.mark.parametrize("layout", ["nchw_odd", "channels_last_odd", "nhwc_dim_last", "nc_wide", "n1", "map2x2_wide"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_same_bits_for_any_thread_count(dtype, layout):
    x, b, dy, dim = _inputs(layout, dtype)
    x, dy = x.repeat_interleave(3, dim=0), dy.repeat_interleave(3, dim=0)  # more chunks than threads
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(ops.bias_act_backward_bias(dy, x, b, dim, "swish", 0.0, math.sqrt(2), None))
    finally:
        torch.set_num_threads(threads)
    for dz, db in results[1:]:
        assert torch.equal(dz, results[0][0])
        assert torch.equal(db.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                           results[0][1].view(torch.int16 if dtype == torch.bfloat16 else torch.int32))


def test_empty_x_gives_zero_db():
    x = torch.randn(0, 5)
    dz, db = ops.bias_act_backward_bias(x, x, torch.randn(5), 1, "lrelu", 0.2, 1.0, None)
    assert dz.shape == (0, 5) and torch.equal(db, torch.zeros(5))


def _opcheck_samples():
    x = torch.randn(2, 3, 4, 4)
    b = torch.randn(3)
    cl = x.contiguous(memory_format=torch.channels_last)
    return [
        (torch.randn_like(x), x, b, 1, "lrelu", 0.2, 2 ** 0.5, None),
        (torch.randn_like(cl), cl, b, 1, "swish", 0.0, 2 ** 0.5, 0.5),
        (torch.randn(5, 4), torch.randn(5, 4), torch.randn(4), -1, "gelu", 0.0, 1.0, None),
        (torch.randn(3, 1), torch.randn(3, 1), torch.randn(1), 1, "linear", 0.0, 1.0, 0.3),
    ]


@pytest.mark.parametrize("i", range(4))
def test_opcheck_bias_act_backward_bias(i):
    torch.library.opcheck(ops.bias_act_backward_bias, _opcheck_samples()[i])


def test_differentiating_the_fused_op_raises_clear_error():
    grad, x, b, *rest = _opcheck_samples()[0]
    dz, db = ops.bias_act_backward_bias(grad.requires_grad_(), x, b, *rest)
    with pytest.raises(RuntimeError, match="first-order backward only"):
        db.sum().backward()
