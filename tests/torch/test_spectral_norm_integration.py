"""The spectral-norm ops inside PyTorch's machinery: opcheck, autograd facts (versions, no grad
through the power method), torch.compile(fullgraph=True) in train and eval mode, autocast."""
import copy

import pytest
import torch
from torch import nn

import ganops.torch as gt

ops = torch.ops.ganops
P = torch.nn.utils.parametrizations


def _uv(weight, dim):
    rows = weight.shape[dim]
    u = nn.functional.normalize(torch.randn(rows, dtype=torch.float64), dim=0).to(weight.dtype)
    v = nn.functional.normalize(torch.randn(weight.numel() // rows, dtype=torch.float64), dim=0).to(weight.dtype)
    return u, v


def _samples():
    """(weight, dim): contiguous, channels_last, a transposed view, ConvTranspose, 1-D, 3-D, half."""
    return [
        (torch.randn(7, 5), 0),
        (torch.randn(6, 4, 3, 3).contiguous(memory_format=torch.channels_last), 0),
        (torch.randn(5, 7, dtype=torch.float64).t(), 0),
        (torch.randn(4, 6, 3, 3, dtype=torch.float64), 1),
        (torch.randn(6), 0),
        (torch.randn(3, 4, 5), -1),
        (torch.randn(6, 4, 3, 3).to(torch.bfloat16), 0),
    ]


@pytest.mark.parametrize("weight_requires_grad", [False, True])
@pytest.mark.parametrize("i", range(7))
def test_opcheck_power_iteration(i, weight_requires_grad):
    w, dim = _samples()[i]
    u, v = _uv(w, dim)
    w = w.clone(memory_format=torch.preserve_format).requires_grad_(weight_requires_grad)
    torch.library.opcheck(ops.spectral_norm_power_iteration, (w, u, v, dim, 2, 1e-12))
    torch.library.opcheck(ops.spectral_norm_power_iteration, (w, u, v, dim, 0, 1e-12))


@pytest.mark.parametrize("i", range(7))
def test_opcheck_normalize(i):
    w, dim = _samples()[i]
    u, v = _uv(w, dim)
    sigma, u, v = gt.power_iteration(w, u, v, dim, 1)
    w = w.clone(memory_format=torch.preserve_format).requires_grad_()
    torch.library.opcheck(ops.spectral_normalize, (w, u, v, sigma, dim))


@pytest.mark.parametrize("i", range(7))
def test_opcheck_normalize_backward(i):
    w, dim = _samples()[i]
    u, v = _uv(w, dim)
    sigma, u, v = gt.power_iteration(w, u, v, dim, 1)
    g = torch.randn_like(w).requires_grad_()
    w = w.clone(memory_format=torch.preserve_format).requires_grad_()
    torch.library.opcheck(ops.spectral_normalize_backward, (g, w, u, v, sigma, dim))


@pytest.mark.parametrize("n", [0, 2])
@pytest.mark.parametrize("i", range(7))
def test_spectral_norm_weight_is_the_two_ops_in_one_call(i, n):
    w, dim = _samples()[i]
    u, v = _uv(w, dim)
    w = w.clone(memory_format=torch.preserve_format).requires_grad_()
    u1, v1, u2, v2 = u.clone(), v.clone(), u.clone(), v.clone()
    got = ops.spectral_norm_weight(w, u1, v1, dim, n, 1e-12)
    sigma, uc, vc = ops.spectral_norm_power_iteration(w, u2, v2, dim, n, 1e-12)
    want = ops.spectral_normalize(w, uc, vc, sigma, dim)
    assert torch.equal(got, want) and torch.equal(u1, u2) and torch.equal(v1, v2)
    assert u1._version == u2._version and v1._version == v2._version
    g = torch.randn_like(got)
    assert torch.equal(torch.autograd.grad(got, w, g)[0], torch.autograd.grad(want, w, g)[0])
    torch.library.opcheck(ops.spectral_norm_weight, (w, u.clone(), v.clone(), dim, n, 1e-12))


def test_power_iteration_outputs_never_require_grad():
    # Not differentiable (torch runs its power method under no_grad), even when called on a
    # weight that requires grad without the Python wrapper's detach().
    w = torch.randn(4, 3, requires_grad=True)
    u, v = _uv(w, 0)
    for out in ops.spectral_norm_power_iteration(w, u, v, 0, 1, 1e-12):
        assert not out.requires_grad and out.grad_fn is None


def test_power_iteration_bumps_the_versions_of_u_and_v():
    # Like torch's F.normalize(..., out=u): overwriting a u or v saved for backward is detected.
    w = torch.randn(4, 3)
    u, v = _uv(w, 0)
    x = torch.randn(4, requires_grad=True)
    y = (x * u).sum()  # saves u
    gt.power_iteration(w, u, v, 0, 1)
    assert u._version == 1 and v._version == 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
    # No iteration (eval mode) writes nothing and leaves the versions alone.
    gt.power_iteration(w, u, v, 0, 0)
    assert u._version == 1 and v._version == 1


def test_two_forwards_in_one_graph():
    # The GAN pattern D(real) - D(fake): the second forward's update of _u/_v must not
    # invalidate what the first saved (u, v copies are saved, not the buffers).
    d = gt.spectral_norm(nn.Linear(5, 3))
    loss = d(torch.randn(2, 5)).mean() - d(torch.randn(2, 5)).mean()
    loss.backward()
    assert d.parametrizations.weight.original.grad is not None


def test_inference_mode_and_no_grad():
    d = gt.spectral_norm(nn.Linear(5, 3))
    t = P.spectral_norm(copy.deepcopy(nn.Linear(5, 3)))
    t.load_state_dict(d.state_dict())
    x = torch.randn(2, 5)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            torch.testing.assert_close(d(x), t(x))
    torch.testing.assert_close(d.parametrizations.weight[0]._u, t.parametrizations.weight[0]._u)


class _SNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = gt.spectral_norm(nn.Conv2d(3, 4, 3, padding=1))
        self.up = gt.spectral_norm(nn.ConvTranspose2d(4, 2, 2, stride=2))
        self.fc = gt.spectral_norm(nn.Linear(2 * 8 * 8, 1))

    def forward(self, x):
        h = nn.functional.leaky_relu(self.conv(x), 0.2)
        h = nn.functional.leaky_relu(self.up(h), 0.2)
        return self.fc(h.flatten(1))


def _buffers(model):
    return {k: b for k, b in model.named_buffers()}


def test_torch_compile_fullgraph_train_and_eval():
    torch._dynamo.reset()
    eager = _SNModel()
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True)
    buffers = _buffers(model)
    ptrs = {k: b.data_ptr() for k, b in buffers.items()}
    x = torch.randn(2, 3, 4, 4)
    for step in range(3):
        before = {k: b.clone() for k, b in buffers.items()}
        y = compiled(x)
        y_eager = eager(x)
        torch.testing.assert_close(y, y_eager)
        # train mode: the same buffer objects, updated in place with the eager values
        for k, b in _buffers(model).items():
            assert b is buffers[k] and b.data_ptr() == ptrs[k], k
            torch.testing.assert_close(b, _buffers(eager)[k], atol=1e-6, rtol=1e-5)
        assert any(not torch.equal(b, before[k]) for k, b in buffers.items()), "no buffer updated"
        y.square().sum().backward()
        y_eager.square().sum().backward()
        for (k, p), p_eager in zip(model.named_parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, p_eager.grad, atol=1e-6, rtol=1e-5, msg=k)
            p.grad = p_eager.grad = None
    model.eval()
    eager.eval()
    before = {k: b.clone() for k, b in buffers.items()}
    torch.testing.assert_close(compiled(x), eager(x))
    for k, b in buffers.items():
        assert torch.equal(b, before[k]), f"{k} changed in eval mode"


def test_no_graph_break():
    torch._dynamo.reset()
    model = _SNModel()
    x = torch.randn(2, 3, 4, 4)
    for mode in (model.train, model.eval):
        mode()
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


def _conv_model(sn, param_dtype):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
                      nn.Linear(4 * 6 * 6, 1)).to(param_dtype)
    torch.manual_seed(1)
    sn(m[0])
    sn(m[3])
    return m


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast(autocast_dtype, param_dtype):
    """Forward + backward under torch.autocast('cpu') against torch's parametrization in the same
    context: same outputs and gradients, _u/_v stay in the parameter dtype.

    Where torch's own parametrization fails: on CPU (torch 2.13) it works in all four of these
    combinations, because neither mv nor vdot is on CPU autocast's lower-precision list, so its
    power method runs in the parameter dtype. On CUDA, mv *is* on autocast's float16 list, so
    its power method mixes a float16 mv result with float32 _u/_v (F.normalize(..., out=_u),
    vdot); that broke torch's parametrization under CUDA autocast in torch 2.3
    (pytorch/pytorch#125544, a regression, since closed) -- not checkable on this CPU-only
    machine. ganops' ops are on no autocast list and accumulate in float32 whatever the weight
    dtype, so they see one dtype throughout. Both implementations fail, with an error, when only
    the parameters are cast to half and the buffers are not
    (test_half_parameter_with_float_buffers below).
    """
    x = torch.randn(2, 3, 6, 6)
    results = []
    for sn in (P.spectral_norm, gt.spectral_norm):
        m = _conv_model(sn, param_dtype)
        with torch.autocast("cpu", dtype=autocast_dtype):
            y = m(x.to(param_dtype))
            y2 = m(x.to(param_dtype))  # a second training step of the power method
        assert y.dtype == autocast_dtype
        (y.float().sum() + y2.float().sum()).backward()
        for layer in (m[0], m[3]):
            assert layer.parametrizations.weight[0]._u.dtype == param_dtype
            assert layer.parametrizations.weight[0]._v.dtype == param_dtype
        results.append((y.float(), [p.grad.float() for p in m.parameters()],
                        [b.float() for b in m.buffers()]))
    (y_t, g_t, b_t), (y_g, g_g, b_g) = results
    if param_dtype == torch.float32:
        tol = dict(atol=1e-2, rtol=1e-2) if autocast_dtype == torch.bfloat16 else dict(atol=2e-3, rtol=2e-3)
    else:
        # bfloat16 parameters: torch runs the power method in bfloat16, ganops accumulates in
        # float32 and rounds u, v once per step, so sigma differs by a few bfloat16 ulps.
        tol = dict(atol=6e-2, rtol=6e-2)
    torch.testing.assert_close(y_g, y_t, **tol)
    for a, b in zip(g_g, g_t):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(b_g, b_t):
        torch.testing.assert_close(a, b, **tol)


def test_autocast_does_not_change_the_weight_dtype_seen_by_the_ops():
    # The parametrization runs on the float32 parameter; the conv then casts W / sigma.
    m = _conv_model(gt.spectral_norm, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = m[0].weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(torch.linalg.matrix_norm(w.flatten(1), ord=2), torch.tensor(1.0), atol=0.05, rtol=0)


def test_half_parameter_with_float_buffers():
    # Parameters cast by hand, buffers left in float32: torch's fails inside addmv; ganops
    # raises a TypeError that names u.
    for sn, err, match in ((P.spectral_norm, RuntimeError, "dtype"),
                           (gt.spectral_norm, TypeError, "u has dtype Float but weight has Half")):
        m = sn(nn.Linear(4, 3))
        m.parametrizations.weight.original.data = m.parametrizations.weight.original.data.half()
        with pytest.raises(err, match=match):
            m(torch.randn(2, 4).half())
