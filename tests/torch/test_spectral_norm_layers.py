"""ganops.torch.spectral_norm as a drop-in for torch.nn.utils.parametrizations.spectral_norm:
training parity with an optimizer, state_dict keys and checkpoints both ways,
remove_parametrizations, the old-API converter, apply_spectral_norm, deepcopy (EMA)."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import ganops.torch as gt

P = torch.nn.utils.parametrizations
OLD = torch.nn.utils.spectral_norm

TOL = dict(atol=2e-5, rtol=1e-4)  # float32 after dozens of optimizer steps


class _Vector(nn.Module):
    """A module whose weight is 1-D (torch normalizes it exactly, without a power method)."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return x * self.weight


MODULES = {
    "linear": (lambda: nn.Linear(6, 5), lambda: torch.randn(4, 6)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3), lambda: torch.randn(2, 3, 5, 5)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 3, 3, stride=2), lambda: torch.randn(2, 4, 3, 3)),
    "embedding": (lambda: nn.Embedding(10, 6), lambda: torch.randint(0, 10, (7,))),
    "conv1d_dim1": (lambda: nn.Conv1d(3, 4, 3), lambda: torch.randn(2, 3, 6)),
    "vector": (lambda: _Vector(5), lambda: torch.randn(3, 5)),
    "batchnorm": (lambda: nn.BatchNorm1d(5), lambda: torch.randn(4, 5)),
}
KWARGS = {"conv1d_dim1": dict(dim=1)}


def _pair(kind, dtype=torch.float32, **kwargs):
    """The same module under torch's and ganops' spectral_norm, seeded identically."""
    make, _ = MODULES[kind]
    torch.manual_seed(0)
    base = make().to(dtype)
    kwargs = {**KWARGS.get(kind, {}), **kwargs}
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(1)
    P.spectral_norm(theirs, **kwargs)
    torch.manual_seed(1)
    gt.spectral_norm(ours, **kwargs)
    return theirs, ours


def _input(kind, dtype=torch.float32):
    torch.manual_seed(2)
    x = MODULES[kind][1]()
    return x if not x.is_floating_point() else x.to(dtype)


def _sn(module):
    return module.parametrizations.weight


def _assert_same_state(theirs, ours, tol=TOL):
    for (k, a), (k2, b) in zip(theirs.state_dict().items(), ours.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(b, a, **tol, msg=lambda m, k=k: f"{k}: {m}")


def _train_both(theirs, ours, x, steps, tol=TOL, lr=1e-2):
    opt_t = torch.optim.Adam(theirs.parameters(), lr=lr)
    opt_o = torch.optim.Adam(ours.parameters(), lr=lr)
    target = None
    for _ in range(steps):
        y_t, y_o = theirs(x), ours(x)
        torch.testing.assert_close(y_o, y_t, **tol)
        if target is None:
            target = torch.randn_like(y_t)
        loss_t = (y_t - target).square().mean()
        loss_o = (y_o - target).square().mean()
        opt_t.zero_grad()
        opt_o.zero_grad()
        loss_t.backward()
        loss_o.backward()
        for (k, a), b in zip(theirs.named_parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad, **tol, msg=lambda m, k=k: f"{k}: {m}")
        opt_t.step()
        opt_o.step()
        _assert_same_state(theirs, ours, tol)


@pytest.mark.parametrize("kind", list(MODULES))
def test_initial_state_matches_torch(kind):
    theirs, ours = _pair(kind)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    # the same random draws, then 15 warm-up iterations (in float32 accumulation: rounding only)
    _assert_same_state(theirs, ours, dict(atol=1e-6, rtol=1e-5))
    if kind in ("vector", "batchnorm"):
        assert not hasattr(_sn(ours)[0], "_u") and not hasattr(_sn(theirs)[0], "_u")


@pytest.mark.parametrize("kind", list(MODULES))
def test_training_parity_with_torch(kind):
    theirs, ours = _pair(kind)
    x = _input(kind)
    _train_both(theirs, ours, x, steps=30)
    theirs.eval()
    ours.eval()
    before = copy.deepcopy(ours.state_dict())
    for _ in range(3):
        torch.testing.assert_close(ours(x), theirs(x), **TOL)
    for k, b in ours.state_dict().items():
        assert torch.equal(b, before[k]), f"{k} changed in eval mode"
    # eval-mode training steps (u, v frozen) also agree
    _train_both(theirs, ours, x, steps=5)


@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv_transpose2d", "embedding"])
def test_parity_with_three_power_iterations_and_custom_eps(kind):
    # eps = 0.3 is large enough to matter for these weights' small Wv in early iterations
    theirs, ours = _pair(kind, n_power_iterations=3, eps=0.3)
    assert _sn(ours)[0].eps == 0.3 and _sn(ours)[0].n_power_iterations == 3
    _train_both(theirs, ours, _input(kind), steps=30)


def test_parity_in_float64():
    theirs, ours = _pair("conv2d", torch.float64)
    x = _input("conv2d", torch.float64)
    _train_both(theirs, ours, x, steps=30, tol=dict(atol=1e-12, rtol=1e-10))


def test_parametrization_applies_to_other_names_and_default_dims():
    theirs, ours = _pair("conv_transpose2d")
    assert _sn(ours)[0].dim == _sn(theirs)[0].dim == 1
    theirs, ours = _pair("linear")
    assert _sn(ours)[0].dim == _sn(theirs)[0].dim == 0
    # name= another parameter than weight
    m = gt.spectral_norm(nn.Bilinear(2, 3, 4), name="weight", dim=1)
    assert _sn(m)[0]._u.shape == (2,)


@pytest.mark.parametrize("direction", ["torch_to_ganops", "ganops_to_torch"])
@pytest.mark.parametrize("kind", ["conv2d", "conv_transpose2d", "embedding"])
def test_checkpoint_round_trip(kind, direction):
    theirs, ours = _pair(kind)
    src, dst = (theirs, ours) if direction == "torch_to_ganops" else (ours, theirs)
    x = _input(kind)
    opt = torch.optim.SGD(src.parameters(), lr=0.1)
    for _ in range(5):  # move src away from dst
        opt.zero_grad()
        src(x).square().mean().backward()
        opt.step()
    dst.load_state_dict(src.state_dict())
    _assert_same_state(src, dst, dict(atol=0, rtol=0))
    # then both train on, step after step
    first, second = (src, dst) if direction == "torch_to_ganops" else (dst, src)
    _train_both(first, second, x, steps=10)
    first.eval()
    second.eval()
    torch.testing.assert_close(second(x), first(x), **TOL)
    # and back again
    src.load_state_dict(dst.state_dict())
    _assert_same_state(src, dst, dict(atol=0, rtol=0))
    torch.testing.assert_close(src(x), dst(x), **TOL)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("leave_parametrized", [True, False])
def test_remove_parametrizations(leave_parametrized, training):
    theirs, ours = _pair("conv2d")
    theirs.train(training)
    ours.train(training)
    x = _input("conv2d")
    ours(x)
    theirs(x)
    parametrize.remove_parametrizations(theirs, "weight", leave_parametrized=leave_parametrized)
    parametrize.remove_parametrizations(ours, "weight", leave_parametrized=leave_parametrized)
    assert not parametrize.is_parametrized(ours)
    assert type(ours) is nn.Conv2d and isinstance(ours.weight, nn.Parameter)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    torch.testing.assert_close(ours.weight, theirs.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-5)


def _old_model():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.fc = nn.Linear(8, 8, bias=False)  # followed by BatchNorm
            self.bn = nn.BatchNorm1d(8)
            self.up = nn.ConvTranspose2d(2, 3, 3)
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, i):
            h = self.bn(self.fc(self.emb(i)))
            return self.conv(self.up(h.view(-1, 2, 2, 2)))

    torch.manual_seed(0)
    return M()


_OLD_SN = ("emb", "fc", "bn", "up", "conv")


def test_convert_old_state_dict():
    """The old torch.nn.utils.spectral_norm saves <name>_orig (the parameter), <name>_u and
    <name>_v (buffers) -- not the normalized weight, which is a plain attribute -- and in eval
    mode uses weight_orig / (u^T M v) with the stored u, v: the formula of the parametrization
    in eval mode. Its power method updates v first, then u; both give the same sigma for the
    stored pair, so mapping the keys is enough. For a 1-D weight the old API kept u (n) and
    v (1) while the parametrization has no buffers (it normalizes exactly): the converter
    drops them (their eval weight is w / ||w|| once the old module trained a step)."""
    base = _old_model()
    old = copy.deepcopy(base)
    for name in _OLD_SN:
        OLD(getattr(old, name))
    i = torch.randint(0, 10, (6,))
    opt = torch.optim.SGD(old.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        old(i).square().mean().backward()
        opt.step()
    old.eval()
    saved = old.state_dict()
    assert "fc.weight_orig" in saved and "fc.weight" not in saved

    converted = gt.convert_old_state_dict(saved)
    assert "fc.weight_orig" not in converted and "bn.parametrizations.weight.0._u" not in converted
    for module_sn in (gt.spectral_norm, P.spectral_norm):  # loads into both, strictly
        new = copy.deepcopy(base)
        for name in _OLD_SN:
            module_sn(getattr(new, name))
        assert set(converted) == set(new.state_dict())
        new.load_state_dict(converted)
        new.eval()
        torch.testing.assert_close(new(i), old(i), atol=1e-6, rtol=1e-5)
    # converted, ganops and torch's parametrizations then train identically
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    for name in _OLD_SN:
        gt.spectral_norm(getattr(ours, name))
        P.spectral_norm(getattr(theirs, name))
    ours.load_state_dict(converted)
    theirs.load_state_dict(converted)
    _train_both(theirs, ours, i, steps=5)


def test_convert_old_state_dict_passes_other_keys():
    old = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    OLD(old[0])
    sd = old.state_dict()
    out = gt.convert_old_state_dict(sd)
    assert out is not sd and list(sd) == ["0.bias", "0.weight_orig", "0.weight_u", "0.weight_v", "1.weight",
                                          "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert list(out) == ["0.bias", "0.parametrizations.weight.original", "0.parametrizations.weight.0._u",
                         "0.parametrizations.weight.0._v", "1.weight", "1.bias", "1.running_mean",
                         "1.running_var", "1.num_batches_tracked"]
    assert out["1.running_var"] is sd["1.running_var"]
    # an already-converted (or new-API) state_dict is returned unchanged
    again = gt.convert_old_state_dict(out)
    assert list(again) == list(out)


class _DCGANDiscriminator(nn.Module):
    """Projection discriminator: Conv, BatchNorm, Linear and a class Embedding."""

    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(8, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.2),
            nn.Flatten())
        self.fc = nn.Linear(16 * 2 * 2, 1)
        self.embed = nn.Embedding(5, 16 * 2 * 2)

    def forward(self, x, y):
        h = self.main(x)
        return self.fc(h).squeeze(1) + (self.embed(y) * h).sum(1)


def test_apply_spectral_norm_on_a_dcgan_discriminator():
    torch.manual_seed(0)
    base = _DCGANDiscriminator()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    # one layer already has torch's spectral norm: it is skipped, not normalized twice
    torch.manual_seed(1)
    P.spectral_norm(ours.main[2])
    torch.manual_seed(1)
    P.spectral_norm(theirs.main[2])
    torch.manual_seed(2)
    assert gt.apply_spectral_norm(ours) is ours
    torch.manual_seed(2)
    for m in (theirs.main[0], theirs.fc, theirs.embed):  # the order of model.modules()
        P.spectral_norm(m)

    for m in (ours.main[0], ours.fc, ours.embed):
        assert len(m.parametrizations.weight) == 1
        assert isinstance(m.parametrizations.weight[0], gt.SpectralNorm)
        assert not parametrize.is_parametrized(m, "bias")
    assert len(ours.main[2].parametrizations.weight) == 1
    assert not isinstance(ours.main[2].parametrizations.weight[0], gt.SpectralNorm)
    assert not parametrize.is_parametrized(ours.main[3]), "BatchNorm is skipped"
    assert list(ours.state_dict()) == list(theirs.state_dict())

    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    opt_t = torch.optim.Adam(theirs.parameters(), 1e-3)
    opt_o = torch.optim.Adam(ours.parameters(), 1e-3)
    for _ in range(5):
        d_t, d_o = theirs(x, y), ours(x, y)
        torch.testing.assert_close(d_o, d_t, **TOL)
        opt_t.zero_grad()
        opt_o.zero_grad()
        d_t.mean().backward()
        d_o.mean().backward()
        opt_t.step()
        opt_o.step()
    _assert_same_state(theirs, ours)
    # applying again changes nothing
    n = len(list(ours.modules()))
    gt.apply_spectral_norm(ours)
    assert len(list(ours.modules())) == n


def test_apply_spectral_norm_arguments():
    model = nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 3, 3))
    gt.apply_spectral_norm(model, n_power_iterations=2, eps=1e-6, types=(nn.Linear, nn.ConvTranspose2d))
    assert not parametrize.is_parametrized(model[1])
    for m, dim in ((model[0], 0), (model[2], 1)):
        sn = m.parametrizations.weight[0]
        assert (sn.n_power_iterations, sn.eps, sn.dim) == (2, 1e-6, dim)


def _generator():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(4, 8 * 2 * 2), nn.Unflatten(1, (8, 2, 2)), nn.ReLU(),
                      nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh())
    return gt.apply_spectral_norm(g)


@pytest.mark.parametrize("training", [True, False])
def test_deepcopy_ema_generator(training):
    g = _generator()
    g.train(training)
    ema = copy.deepcopy(g)
    z = torch.randn(3, 4)
    for (k, a), b in zip(g.state_dict().items(), ema.state_dict().values()):
        assert a.data_ptr() != b.data_ptr(), f"{k} shares storage with the copy"
    torch.testing.assert_close(ema(z), g(z), atol=0, rtol=0)
    ema_state = copy.deepcopy(ema.state_dict())
    opt = torch.optim.Adam(g.parameters(), 1e-2)
    for _ in range(3):
        opt.zero_grad()
        g(z).square().mean().backward()
        opt.step()
    for k, b in ema.state_dict().items():
        assert torch.equal(b, ema_state[k]), f"training G changed the EMA copy's {k}"
    assert not torch.allclose(ema(z), g(z))
    # the usual EMA update on the parametrized originals, then running the copy
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), g.parameters()):
            p_ema.lerp_(p, 0.5)
    for k, b in g.state_dict().items():
        if k.endswith("_u") or k.endswith("_v"):
            assert b.data_ptr() != ema.state_dict()[k].data_ptr()
    ema(z)


def _gp_discriminator():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Softplus(), nn.Conv2d(4, 4, 3, 2, 1),
                         nn.Softplus(), nn.Flatten(), nn.Linear(4 * 2 * 2, 1))


def _wgan_gp_step(d, real, fake, alpha):
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_()
    (g,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
    return d(fake).mean() - d(real).mean() + 10 * gp


def test_wgan_gp_through_spectral_norm_matches_torch():
    base = _gp_discriminator()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    for sn, model in ((gt.spectral_norm, ours), (P.spectral_norm, theirs)):
        torch.manual_seed(1)
        for i in (0, 2, 5):
            sn(model[i])
    opt_o = torch.optim.Adam(ours.parameters(), 1e-3)
    opt_t = torch.optim.Adam(theirs.parameters(), 1e-3)
    torch.manual_seed(2)
    for _ in range(4):
        real, fake, alpha = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.rand(4, 1, 1, 1)
        loss_o = _wgan_gp_step(ours, real, fake, alpha)
        loss_t = _wgan_gp_step(theirs, real, fake, alpha)
        torch.testing.assert_close(loss_o, loss_t, **TOL)
        opt_o.zero_grad()
        opt_t.zero_grad()
        loss_o.backward()
        loss_t.backward()
        for (k, a), b in zip(theirs.named_parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad, **TOL, msg=lambda m, k=k: f"{k}: {m}")
        opt_o.step()
        opt_t.step()
    _assert_same_state(theirs, ours)


def test_second_order_in_the_weight_matches_torch():
    # d/dW of a function of dL/dW (create_graph through W / sigma itself): needs the
    # derivative of spectral_normalize_backward, in float64 against torch's autograd.
    theirs, ours = _pair("conv2d", torch.float64)
    theirs.eval()
    ours.eval()
    x = _input("conv2d", torch.float64)
    grads = []
    for m in (theirs, ours):
        w = _sn(m).original
        (g,) = torch.autograd.grad(m(x).tanh().sum(), w, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), w)
        grads.append(gg)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-10, rtol=1e-8)
