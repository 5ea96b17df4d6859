"""ganops.torch.gradient_penalty and friends against straightforward pure-torch penalties
(ganops.torch.reference): values and the gradients with respect to D's parameters, which run
through D's double backward. The discriminators are built twice, from ganops layers
(FusedLeakyReLU, spectral_norm) and from torch's own (conv bias + leaky_relu * sqrt(2),
torch.nn.utils.parametrizations.spectral_norm), with the same weights: this is where the
second-order gradients of the fused ops are used for real."""
import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ganops.torch as gt
from ganops.torch import reference as ref

KINDS = ("wgan-gp", "one-sided", "zero-gp", "dragan", "r1", "r2")
TAKES_FAKE = {"wgan-gp": True, "one-sided": True, "zero-gp": True, "dragan": False, "r1": False,
              "r2": True}


class TorchLReLU(nn.Module):
    """StyleGAN2's FusedLeakyReLU written with torch ops (the ganops layer's reference)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return F.leaky_relu(x + self.bias.reshape(shape), 0.2) * math.sqrt(2)


def _discriminator(fused, spectral, dtype=torch.float64, in_channels=3, classes=0):
    """A small DCGAN-style D: conv(4x4, s2) -> lrelu -> conv -> lrelu -> linear (+ projection)."""
    torch.manual_seed(10)
    act = gt.FusedLeakyReLU if fused else TorchLReLU
    sn = (gt.spectral_norm if fused else nn.utils.parametrizations.spectral_norm) if spectral else (lambda m: m)
    layers = nn.ModuleDict({
        "conv1": sn(nn.Conv2d(in_channels, 8, 4, 2, 1, bias=False)), "act1": act(8),
        "conv2": sn(nn.Conv2d(8, 16, 4, 2, 1, bias=False)), "act2": act(16),
        "fc": sn(nn.Linear(16 * 2 * 2, 1)),
    })
    if classes:
        layers["embed"] = sn(nn.Embedding(classes, 16 * 2 * 2))
    with torch.no_grad():  # non-zero biases, the same on both sides
        for name in ("act1", "act2"):
            layers[name].bias.copy_(torch.linspace(-0.3, 0.3, layers[name].bias.numel()))

    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def forward(self, x, labels=None):
            h = self.layers["act1"](self.layers["conv1"](x))
            h = self.layers["act2"](self.layers["conv2"](h)).flatten(1)
            out = self.layers["fc"](h)
            if labels is not None:
                out = out + (self.layers["embed"](labels) * h).sum(1, keepdim=True)
            return out

    return D().to(dtype)


def _batch(dtype=torch.float64, n=4):
    g = torch.Generator().manual_seed(7)
    return (torch.randn(n, 3, 8, 8, generator=g, dtype=dtype),
            torch.randn(n, 3, 8, 8, generator=g, dtype=dtype))


def _reference_inputs(kind, real, fake, seed, draw_dtype=None):
    """The same draws as gt.penalty_inputs (its docstring gives the order), made in draw_dtype
    (default: as penalty_inputs would for real's dtype)."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.float64 if real.dtype == torch.float64 else torch.float32
    acc = draw_dtype or acc
    if kind in ("wgan-gp", "one-sided", "zero-gp"):
        return ref.interpolate(real, fake, torch.rand(real.shape[0], generator=g, dtype=acc))
    if kind == "dragan":
        alpha = torch.rand(real.shape[0], generator=g, dtype=acc)
        noise = torch.rand(real.shape, generator=g, dtype=draw_dtype or real.dtype)
        return ref.dragan_perturb(real, alpha, noise.to(real.dtype))
    return real if kind == "r1" else fake


def _param_grads(module):
    return {k: (torch.zeros_like(p) if p.grad is None else p.grad.clone())
            for k, p in module.named_parameters()}


def _ganops_penalty(D, kind, real, fake, seed, **kw):
    D.zero_grad()
    p = gt.gradient_penalty(D, real, fake if TAKES_FAKE[kind] else None, kind=kind,
                            generator=torch.Generator().manual_seed(seed), **kw)
    p.backward()
    return p.detach(), _param_grads(D)


def _reference_penalty(D, kind, real, fake, seed, weight=10.0, target=1.0, draw_dtype=None,
                       **d_kwargs):
    D.zero_grad()
    x = _reference_inputs(kind, real, fake, seed, draw_dtype)
    p = ref.gradient_penalty(D, x, kind, weight, target, **d_kwargs)
    p.backward()
    return p.detach(), _param_grads(D)


def _assert_grads_close(got, want, rtol, atol):
    assert list(got) == list(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", ["ganops", "ganops_spectral"])
def test_penalty_and_d_gradients_match_the_reference(kind, layers):
    spectral = layers == "ganops_spectral"
    real, fake = _batch()
    ours = _discriminator(fused=True, spectral=spectral)
    theirs = _discriminator(fused=False, spectral=spectral)
    theirs.load_state_dict(ours.state_dict())
    # a target among the samples' gradient norms (about 0.13-0.15 without spectral norm,
    # 0.44-0.49 with it): one-sided then has active and inactive samples
    target = 0.46 if spectral else 0.14
    for step in range(2):  # the second step runs after spectral norm's u, v have moved
        p, g = _ganops_penalty(ours, kind, real, fake, seed=step, target=target)
        q, h = _reference_penalty(theirs, kind, real, fake, seed=step, target=target)
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        _assert_grads_close(g, h, rtol=1e-8, atol=1e-10)
        assert any(v.abs().sum() > 0 for v in g.values())


@pytest.mark.parametrize("kind", ["wgan-gp", "dragan", "r1"])
def test_float32_matches_float64_reference(kind):
    real, fake = _batch(torch.float64)
    ours = _discriminator(True, True, torch.float32)
    theirs = _discriminator(False, True, torch.float64)
    theirs.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    p, g = _ganops_penalty(ours, kind, real.float(), fake.float(), seed=3)
    q, h = _reference_penalty(theirs, kind, real, fake, seed=3, draw_dtype=torch.float32)
    torch.testing.assert_close(p.double(), q, rtol=1e-4, atol=1e-6)
    _assert_grads_close({k: v.double() for k, v in g.items()}, h, rtol=1e-3, atol=1e-5)


def test_conditional_discriminator_gets_extra_arguments():
    real, fake = _batch()
    labels = torch.tensor([0, 2, 1, 2])
    ours = _discriminator(True, True, classes=3)
    theirs = _discriminator(False, True, classes=3)
    theirs.load_state_dict(ours.state_dict())
    p, g = _ganops_penalty(ours, "wgan-gp", real, fake, seed=5, labels=labels)
    q, h = _reference_penalty(theirs, "wgan-gp", real, fake, seed=5, labels=labels)
    torch.testing.assert_close(p, q)
    _assert_grads_close(g, h, rtol=1e-8, atol=1e-10)
    assert g["layers.embed.parametrizations.weight.original"].abs().sum() > 0


def test_patch_discriminator_output():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3)).double()
    real, fake = _batch()
    p, g = _ganops_penalty(D, "wgan-gp", real, fake, seed=1)
    q, h = _reference_penalty(D, "wgan-gp", real, fake, seed=1)
    torch.testing.assert_close(p, q)
    _assert_grads_close(g, h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_reduction_weight_target_and_norms(reduction):
    real, fake = _batch()
    D = _discriminator(True, False)
    p, norms = gt.gradient_penalty(D, real, fake, weight=3.0, target=2.0, reduction=reduction,
                                   return_norms=True, generator=torch.Generator().manual_seed(0))
    x = _reference_inputs("wgan-gp", real, fake, 0).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    torch.testing.assert_close(norms, grad.flatten(1).norm(dim=1))
    torch.testing.assert_close(p, ref.penalty_from_gradient(grad, "wgan-gp", 3.0, 2.0, reduction))


def test_thin_names_are_the_kinds():
    real, fake = _batch()
    D = _discriminator(True, False)
    calls = {
        "wgan-gp": lambda g: gt.wgan_gp_penalty(D, real, fake, generator=g),
        "r1": lambda g: gt.r1_penalty(D, real, gamma=4.0, generator=g),
        "r2": lambda g: gt.r2_penalty(D, fake, gamma=4.0, generator=g),
        "dragan": lambda g: gt.dragan_penalty(D, real, generator=g),
    }
    weights = {"wgan-gp": 10.0, "r1": 4.0, "r2": 4.0, "dragan": 10.0}
    for kind, call in calls.items():
        got = call(torch.Generator().manual_seed(2))
        want = ref.gradient_penalty(D, _reference_inputs(kind, real, fake, 2), kind, weights[kind])
        torch.testing.assert_close(got, want, msg=kind)


def test_penalty_from_gradient_matches_the_reference_formula():
    g = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    for kind in KINDS:
        torch.testing.assert_close(gt.penalty_from_gradient(g, kind, weight=7.0, target=3.0),
                                   ref.penalty_from_gradient(g, kind, 7.0, 3.0), msg=kind)


def test_discriminator_with_zero_input_gradient_gives_finite_results():
    D = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1)).double()
    with torch.no_grad():
        D[1].weight.zero_()
    real, fake = _batch()
    for kind in KINDS:
        D.zero_grad()
        p = gt.gradient_penalty(D, real, fake if TAKES_FAKE[kind] else None, kind=kind)
        p.backward()
        assert torch.isfinite(p) and torch.isfinite(D[1].weight.grad).all(), kind
    assert gt.gradient_penalty(D, real, fake, kind="wgan-gp").item() == pytest.approx(10.0)


def test_real_and_fake_are_not_differentiated():
    real, fake = (t.requires_grad_(True) for t in _batch())
    D = _discriminator(True, False)
    gt.gradient_penalty(D, real, fake).backward()
    assert real.grad is None and fake.grad is None


@pytest.mark.parametrize("call,error,match", [
    (lambda D, r, f: gt.gradient_penalty(D, r, f, kind="wgan"), ValueError, "kind: unknown penalty 'wgan'"),
    (lambda D, r, f: gt.gradient_penalty(D, r, f[:3]), ValueError, r"same shape, got \[4, 3, 8, 8\] and \[3, 3, 8, 8\]"),
    (lambda D, r, f: gt.gradient_penalty(D, r, None), ValueError, "kind 'wgan-gp' needs fake samples"),
    (lambda D, r, f: gt.gradient_penalty(D, r, f, kind="dragan"), ValueError, "takes no fake"),
    (lambda D, r, f: gt.gradient_penalty(lambda x: D(x).sum(), r, f), ValueError, r"one score per sample \(first dim 4\), got output shape \[\]"),
    (lambda D, r, f: gt.gradient_penalty(lambda x: D(x).reshape(2, 2), r, f), ValueError, r"output shape \[2, 2\]"),
    (lambda D, r, f: gt.gradient_penalty(lambda x: (D(x), x), r, f), TypeError, "D must return a tensor"),
    (lambda D, r, f: gt.gradient_penalty(lambda x: torch.zeros(4, 1), r, f), ValueError, "does not depend on its input"),
    (lambda D, r, f: gt.gradient_penalty(D, r.numpy(), f), TypeError, "real must be a tensor"),
    (lambda D, r, f: gt.gradient_penalty(D, r.long(), f), TypeError, "real must be a floating tensor"),
    (lambda D, r, f: gt.gradient_penalty(D, r, f, reduction="avg"), ValueError, "reduction: unknown reduction 'avg'"),
    (lambda D, r, f: gt.r2_penalty(D, None), ValueError, "needs fake samples"),
    (lambda D, r, f: gt.penalty_from_gradient(torch.zeros(0, 3), "r1"), ValueError, "empty batch"),
    (lambda D, r, f: gt.penalty_from_gradient(torch.randn(4, 3).long(), "r1"), TypeError, "grad must be float32"),
    (lambda D, r, f: gt.penalty_from_gradient(torch.randn(4, 3), "r1", weight=float("nan")), ValueError, "weight must be finite"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    real, fake = _batch()
    D = _discriminator(True, False)
    with pytest.raises(error, match=match):
        call(D, real, fake)


def test_autocast_with_grad_scaler_matches_float32():
    """PyTorch's AMP recipe: D runs under autocast, its output is scaled by the GradScaler before
    autograd.grad and the gradient unscaled as the penalty reads it. With a power-of-two scale
    the scaled run must equal the unscaled autocast run (the scale is undone exactly), and both
    must be float32's result to bfloat16's precision. (CPU autocast in bfloat16 here; CUDA
    float16, where the scale keeps small gradients from flushing to zero, is the same path.)"""
    real, fake = (t.float() for t in _batch())

    def run(kind, autocast, scaler):
        D = _discriminator(True, True, torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            p = gt.gradient_penalty(D, real, fake if TAKES_FAKE[kind] else None, kind=kind,
                                    scaler=scaler, generator=torch.Generator().manual_seed(4))
        assert p.dtype == torch.float32
        if scaler is None:
            p.backward()
        else:
            scaler.scale(p).backward()
            scaler.unscale_(torch.optim.SGD(D.parameters(), lr=0.0))
        return p.detach(), _param_grads(D)

    for kind in ("wgan-gp", "r1"):
        want, want_grads = run(kind, False, None)
        plain, plain_grads = run(kind, True, None)
        scaled, scaled_grads = run(kind, True, torch.amp.GradScaler("cpu", init_scale=2.0**14))
        torch.testing.assert_close(scaled, plain, rtol=1e-6, atol=0)
        torch.testing.assert_close(scaled, want, rtol=5e-2, atol=1e-3)
        for k, v in scaled_grads.items():
            torch.testing.assert_close(v, plain_grads[k], rtol=1e-5, atol=1e-6 * v.abs().max().item())
            if want_grads[k].abs().max() == 0:  # lrelu's biases: the input gradient ignores them
                assert v.abs().max() == 0, k
                continue
            err = (v - want_grads[k]).norm() / want_grads[k].norm()  # bfloat16 keeps ~3 digits
            assert err < 0.15, f"{kind} {k}: relative error {err:.3g}"


def test_disabled_scaler_is_ignored():
    real, fake = _batch()
    D = _discriminator(True, False)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    a = gt.gradient_penalty(D, real, fake, scaler=scaler, generator=torch.Generator().manual_seed(0))
    b = gt.gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


class _StandInScaler:
    """A scaler with GradScaler's public interface and no `_scale` attribute (a wrapper, or a
    scaler of another library): reached through scale() only."""

    def __init__(self, scale):
        self._value = torch.tensor(scale, dtype=torch.float32)

    def is_enabled(self):
        return True

    def scale(self, outputs):
        return outputs * self._value

    def get_scale(self):
        raise AssertionError("get_scale() is .item(): a host sync per penalty")


@contextlib.contextmanager
def _no_host_reads():
    """Makes every Python-side read of a tensor's value on the host fail: on a GPU each is a
    device sync (GradScaler.get_scale() is one, through .item())."""
    def fail(*args, **kwargs):
        raise AssertionError("a tensor's value was read on the host (a device sync on a GPU)")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            patch.setattr(torch.Tensor, name, fail)
        patch.setattr(torch.amp.GradScaler, "get_scale", fail)
        yield


def _scalers():
    used = torch.amp.GradScaler("cpu", init_scale=2.0**14)
    used.scale(torch.ones(()))  # initialised: its scale tensor exists
    return {"GradScaler before its first scale()": torch.amp.GradScaler("cpu", init_scale=2.0**14),
            "GradScaler in use": used, "stand-in": _StandInScaler(2.0**14)}


@pytest.mark.parametrize("scaler_name", ["GradScaler before its first scale()", "GradScaler in use", "stand-in"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_grad_scaler_without_host_sync_matches_the_unscaled_run(scaler_name, reduction):
    """The scale stays a device tensor: the scaled run reads no tensor on the host (get_scale()
    would, once per call) and gives the unscaled run's penalty, norms and parameter gradients
    (a power-of-two scale is undone exactly; the last ulps may differ where the penalty is
    computed from the norms in torch ops rather than in the fused op)."""
    real, fake = _batch()
    for kind in KINDS:
        f = fake if TAKES_FAKE[kind] else None
        D = _discriminator(True, False)
        want, want_norms = gt.gradient_penalty(D, real, f, kind=kind, reduction=reduction, return_norms=True,
                                               generator=torch.Generator().manual_seed(5))
        want.sum().backward()
        want_grads = _param_grads(D)
        D.zero_grad()
        scaler = _scalers()[scaler_name]
        with _no_host_reads():
            got, got_norms = gt.gradient_penalty(D, real, f, kind=kind, reduction=reduction, scaler=scaler,
                                                 return_norms=True, generator=torch.Generator().manual_seed(5))
            got.sum().backward()
        assert got.dtype == want.dtype and got.shape == want.shape
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-13, atol=0)
        torch.testing.assert_close(got_norms, want_norms, rtol=0, atol=0)
        _assert_grads_close(_param_grads(D), want_grads, rtol=1e-12, atol=1e-15)


def test_scaled_gradient_takes_a_tensor_grad_scale():
    """penalty_from_gradient with grad_scale a 0-d tensor (input_gradient's 1 / scale under a
    scaler) equals the float grad_scale, first and second order, for every kind."""
    g = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g[2] = 0  # a zero gradient: zero gradient, never NaN
    v = torch.randn(g.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for kind in KINDS:
        results = []
        for scale in (0.25, torch.tensor(0.25)):
            t = (g * 4).requires_grad_()
            with _no_host_reads():
                p, n = gt.penalty_from_gradient(t, kind, reduction="sum", grad_scale=scale, return_norms=True)
                (d,) = torch.autograd.grad(p, t, create_graph=True)
                (h,) = torch.autograd.grad((d * v).sum(), t)
            results.append((p, n, d, h))
        for got, want in zip(results[1], results[0]):
            torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)


def test_path_length_regularizer_with_a_scaler():
    G = _Generator()
    ws = torch.randn(3, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ws.requires_grad_(True)
    want = gt.PathLengthRegularizer().double()(G(ws), ws, generator=torch.Generator().manual_seed(1))
    want_grad = torch.autograd.grad(want, ws)[0]
    scaler = _scalers()["GradScaler in use"]
    with _no_host_reads():
        got = gt.PathLengthRegularizer().double()(G(ws), ws, scaler=scaler,
                                                  generator=torch.Generator().manual_seed(1))
        got_grad = torch.autograd.grad(got, ws)[0]
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-15)


def test_lazy_regularization():
    lazy = gt.LazyRegularization(interval=16)
    assert [s for s in range(40) if lazy.due(s)] == [0, 16, 32]
    assert lazy.ratio == pytest.approx(16 / 17)
    kw = lazy.adam_kwargs(lr=0.0025, betas=(0.0, 0.99))
    assert kw["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert kw["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    torch.optim.Adam([nn.Parameter(torch.zeros(1))], **kw)  # the keywords Adam takes
    assert lazy.scale(torch.tensor(2.0)).item() == 32.0
    assert gt.LazyRegularization(1).adam_kwargs(1.0, (0.5, 0.9)) == {"lr": 0.5, "betas": (0.5 ** 0.5, 0.9 ** 0.5)}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="interval must be an int >= 1"):
            gt.LazyRegularization(bad)


def test_lazy_r1_training_loop_runs_the_penalty_on_due_steps_only():
    real, fake = _batch(torch.float32)
    D = _discriminator(True, True, torch.float32)
    lazy = gt.LazyRegularization(interval=2)
    opt = torch.optim.Adam(D.parameters(), **lazy.adam_kwargs(lr=1e-3, betas=(0.0, 0.99)))
    ran = []
    for step in range(4):
        loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        if lazy.due(step):
            loss = loss + lazy.scale(gt.r1_penalty(D, real, gamma=1.0))
            ran.append(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ran == [0, 2]
    assert all(torch.isfinite(p).all() for p in D.parameters())


class _Generator(nn.Module):
    def __init__(self, w_dim=6, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(w_dim, 2 * 4 * 4).to(dtype)
        self.conv = nn.Conv2d(2, 3, 3, padding=1).to(dtype)

    def forward(self, ws):
        w = ws.mean(1) if ws.ndim == 3 else ws
        h = torch.tanh(self.fc(w)).reshape(-1, 2, 4, 4)
        return self.conv(h) * (1 + ws.reshape(ws.shape[0], -1)[:, :1, None, None])


@pytest.mark.parametrize("latent_shape", [(4, 3, 6), (4, 6)])
def test_path_length_regularizer_matches_stylegan2_formula(latent_shape):
    G = _Generator()
    pl = gt.PathLengthRegularizer(decay=0.01, weight=2.0).double()  # pl_mean in float64 too
    pl_mean = torch.zeros((), dtype=torch.float64)
    for step in range(3):
        ws = torch.randn(latent_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        ws.requires_grad_(True)
        G.zero_grad()
        got = pl(G(ws), ws, generator=torch.Generator().manual_seed(100 + step))
        got.backward()
        got_grads = _param_grads(G)
        G.zero_grad()
        images = G(ws)
        noise = torch.randn(images.shape, dtype=images.dtype, generator=torch.Generator().manual_seed(100 + step))
        want, pl_mean = ref.path_length_penalty(images, ws, pl_mean, noise, 0.01, 2.0)
        want.backward()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(pl.pl_mean.double(), pl_mean)
        _assert_grads_close(got_grads, _param_grads(G), rtol=1e-9, atol=1e-12)
    assert pl.pl_mean.item() > 0
    assert "pl_mean" in pl.state_dict()


def test_path_length_regularizer_errors():
    pl = gt.PathLengthRegularizer()
    with pytest.raises(ValueError, match="latents must require grad"):
        pl(torch.randn(2, 3, 4, 4), torch.randn(2, 6))
    with pytest.raises(ValueError, match="same N"):
        pl(torch.randn(2, 3, 4, 4), torch.randn(3, 6, requires_grad=True))
    with pytest.raises(ValueError, match="decay must be in"):
        gt.PathLengthRegularizer(decay=2.0)


def test_use_all_parameters_gives_every_parameter_a_zero_gradient_term():
    real, fake = _batch()
    D = _discriminator(True, False)
    p = gt.gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(0))
    p.backward()
    assert D.layers["fc"].bias.grad is None  # the input gradient does not depend on it
    first = _param_grads(D)
    D.zero_grad()
    q = gt.gradient_penalty(D, real, fake, use_all_parameters=True,
                            generator=torch.Generator().manual_seed(0))
    q.backward()
    assert torch.equal(p, q)
    assert torch.equal(D.layers["fc"].bias.grad, torch.zeros(1, dtype=torch.float64))
    _assert_grads_close(_param_grads(D), first, rtol=0, atol=0)
