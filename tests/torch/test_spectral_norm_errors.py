"""Bad input to the spectral-norm ops and module raises a clear Python exception naming the
argument; the process survives. The fake (meta) kernels that torch.compile and opcheck run
raise the same exception types with the same words, and so does a call that mixes devices."""
import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import ganops.torch as gt

ops = torch.ops.ganops
P = torch.nn.utils.parametrizations


def _args():
    w = torch.randn(6, 4, 3, 3)
    u = nn.functional.normalize(torch.randn(6), dim=0)
    v = nn.functional.normalize(torch.randn(36), dim=0)
    return w, u, v


def _sigma():
    w, u, v = _args()
    return gt.power_iteration(w, u, v, 0, 1)[0]


# (name, function of (w, u, v, sigma) -> the bad call, exception type, message regex)
CASES = [
    ("0-d weight", lambda w, u, v, s: ops.spectral_norm_power_iteration(w[0, 0, 0, 0], u[:1], v[:1], 0, 1, 1e-12),
     ValueError, "weight must have at least 1 dim"),
    ("empty weight", lambda w, u, v, s: ops.spectral_norm_power_iteration(w[:0], u[:0], v, 0, 1, 1e-12),
     ValueError, "weight is empty"),
    ("integer weight", lambda w, u, v, s: ops.spectral_norm_power_iteration(w.long(), u, v, 0, 1, 1e-12),
     TypeError, "weight must be float32, float64, float16 or bfloat16"),
    ("u of the wrong size", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u[:5], v, 0, 1, 1e-12),
     ValueError, r"u must be 1-D with 6 elements \(weight.shape\[dim\]\)"),
    ("u 2-D", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u[None], v, 0, 1, 1e-12),
     ValueError, "u must be 1-D"),
    ("v of the wrong size", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u, v[:35], 0, 1, 1e-12),
     ValueError, "v must be 1-D with 36 elements"),
    ("u of the wrong dtype", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u.double(), v, 0, 1, 1e-12),
     TypeError, "u has dtype"),
    ("v of the wrong dtype", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u, v.half(), 0, 1, 1e-12),
     TypeError, "v has dtype"),
    ("u non-contiguous", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, torch.randn(12)[::2], v, 0, 1, 1e-12),
     ValueError, "u must be contiguous"),
    ("negative n_power_iterations", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u, v, 0, -1, 1e-12),
     ValueError, "n_power_iterations must be >= 0"),
    ("zero eps", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u, v, 0, 1, 0.0),
     ValueError, "eps must be > 0"),
    ("negative eps", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u, v, 0, 1, -1e-12),
     ValueError, "eps must be > 0"),
    ("dim out of range", lambda w, u, v, s: ops.spectral_norm_power_iteration(w, u, v, 4, 1, 1e-12),
     IndexError, "dim 4 is out of range"),
    ("dim out of range (negative)", lambda w, u, v, s: ops.spectral_normalize(w, u, v, s, -5),
     IndexError, "dim -5 is out of range"),
    ("normalize: u of the wrong size", lambda w, u, v, s: ops.spectral_normalize(w, u[:3], v, s, 0),
     ValueError, "u must be 1-D with 6 elements"),
    ("normalize: sigma of the wrong dtype", lambda w, u, v, s: ops.spectral_normalize(w, u, v, s.double(), 0),
     TypeError, "sigma must be Float"),
    ("normalize: sigma with two elements", lambda w, u, v, s: ops.spectral_normalize(w, u, v, s.repeat(2), 0),
     ValueError, "sigma must hold one element"),
    ("backward: grad of the wrong shape", lambda w, u, v, s: ops.spectral_normalize_backward(w[:, :2], w, u, v, s, 0),
     ValueError, "grad has shape"),
    ("backward: grad of the wrong dtype", lambda w, u, v, s: ops.spectral_normalize_backward(w.double(), w, u, v, s, 0),
     TypeError, "grad has dtype"),
    ("backward: v of the wrong size", lambda w, u, v, s: ops.spectral_normalize_backward(w, w, u, v[:7], s, 0),
     ValueError, "v must be 1-D with 36 elements"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,call,exc,match", CASES, ids=IDS)
def test_op_errors(name, call, exc, match):
    w, u, v = _args()
    with pytest.raises(exc, match=match):
        call(w, u, v, _sigma())


@pytest.mark.parametrize("name,call,exc,match", CASES, ids=IDS)
def test_fake_kernel_errors_match(name, call, exc, match):
    # What torch.compile / opcheck see: the same exception type and words as the CPU kernel.
    w, u, v = _args()
    s = _sigma()
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fw, fu, fv, fs = (mode.from_tensor(t) for t in (w, u, v, s))
        with pytest.raises(exc, match=match):
            call(fw, fu, fv, fs)


@pytest.mark.parametrize("which", ["u", "v", "sigma", "grad"])
def test_wrong_device(which):
    # Only the CPU is certain to be here: a meta tensor stands for "another device". Mixing it
    # with CPU tensors sends the call to the meta kernel, which must check devices as C++ does.
    w, u, v = _args()
    s = _sigma()
    meta = lambda t: torch.empty_like(t, device="meta")  # noqa: E731
    with pytest.raises(ValueError, match=f"{which} is on meta"):
        if which == "u":
            ops.spectral_norm_power_iteration(w, meta(u), v, 0, 1, 1e-12)
        elif which == "v":
            ops.spectral_normalize(w, u, meta(v), s, 0)
        elif which == "sigma":
            ops.spectral_normalize(w, u, v, meta(s), 0)
        else:
            ops.spectral_normalize_backward(meta(w), w, u, v, s, 0)


def test_errors_leave_u_and_v_untouched():
    w, u, v = _args()
    u0, v0 = u.clone(), v.clone()
    for bad in (dict(n=-1, eps=1e-12), dict(n=1, eps=0.0)):
        with pytest.raises(ValueError):
            ops.spectral_norm_power_iteration(w, u, v, 0, bad["n"], bad["eps"])
    assert torch.equal(u, u0) and torch.equal(v, v0)


# The module: torch's checks and exception types, plus eps.
def test_module_n_power_iterations_must_be_positive():
    for n in (0, -1):
        with pytest.raises(ValueError, match="n_power_iterations"):
            P.spectral_norm(nn.Linear(3, 4), n_power_iterations=n)  # torch's behaviour ...
        with pytest.raises(ValueError, match="n_power_iterations must be a positive int"):
            gt.spectral_norm(nn.Linear(3, 4), n_power_iterations=n)  # ... is ours


def test_module_dim_out_of_range():
    for dim in (2, -3):
        with pytest.raises(IndexError):
            P.spectral_norm(nn.Linear(3, 4), dim=dim)
        with pytest.raises(IndexError, match=f"dim {dim} is out of range"):
            gt.spectral_norm(nn.Linear(3, 4), dim=dim)


@pytest.mark.parametrize("eps", [0.0, -1e-12, float("nan"), float("inf")])
def test_module_eps_must_be_positive(eps):
    with pytest.raises(ValueError, match="ganops.spectral_norm: eps must be a positive float"):
        gt.spectral_norm(nn.Linear(3, 4), eps=eps)


def test_module_zero_dim_weight():
    m = nn.Module()
    m.weight = nn.Parameter(torch.tensor(2.0))
    with pytest.raises(IndexError):
        P.spectral_norm(m)
    with pytest.raises(IndexError, match="out of range for a weight with 0 dims"):
        gt.spectral_norm(m)


def test_module_missing_parameter():
    with pytest.raises(ValueError, match="has no parameter or buffer with name 'kernel'"):
        gt.spectral_norm(nn.Linear(3, 4), name="kernel")
    with pytest.raises(ValueError, match="has no parameter or buffer with name 'bias'"):
        gt.spectral_norm(nn.Linear(3, 4, bias=False), name="bias")


def test_module_integer_weight():
    m = nn.Module()
    m.register_buffer("weight", torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="weight must be floating point"):
        gt.spectral_norm(m)


def test_not_a_module():
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        gt.spectral_norm(torch.randn(3, 4))


def test_convert_old_state_dict_without_v():
    # torch < 1.1 saved weight_orig, weight and weight_u but no weight_v.
    sd = {"weight_orig": torch.randn(4, 3), "weight": torch.randn(4, 3), "weight_u": torch.randn(4)}
    with pytest.raises(ValueError, match="'weight_u' but no 'weight_v'"):
        gt.convert_old_state_dict(sd)
