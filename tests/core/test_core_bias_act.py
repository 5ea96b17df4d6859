"""The CPU core kernels through ganops._core on NumPy arrays, with neither framework imported."""
import math
import subprocess
import sys

import numpy as np
import pytest

import ganops
from ganops import _core

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Independent NumPy formulas for f and f' (test ground truth); at z = 0, f' follows torch.
NUMPY_ACTS = {
    "linear": (lambda z, a: z, lambda z, a: np.ones_like(z)),
    "relu": (lambda z, a: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
    "lrelu": (lambda z, a: np.where(z >= 0, z, a * z), lambda z, a: np.where(z > 0, 1.0, a)),
    "tanh": (lambda z, a: np.tanh(z), lambda z, a: 1 - np.tanh(z) ** 2),
    "sigmoid": (lambda z, a: _sigmoid(z), lambda z, a: _sigmoid(z) * (1 - _sigmoid(z))),
    "elu": (lambda z, a: np.where(z >= 0, z, np.expm1(z)), lambda z, a: np.where(z > 0, 1.0, np.exp(z))),
    "selu": (lambda z, a: SELU_SCALE * np.where(z >= 0, z, SELU_ALPHA * np.expm1(z)),
             lambda z, a: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(z))),
    "softplus": (lambda z, a: np.logaddexp(0, z), lambda z, a: _sigmoid(z)),
    "swish": (lambda z, a: z * _sigmoid(z), lambda z, a: _sigmoid(z) * (1 + z * (1 - _sigmoid(z)))),
    "gelu": (lambda z, a: z * 0.5 * (1 + _erf(z / math.sqrt(2))),
             lambda z, a: 0.5 * (1 + _erf(z / math.sqrt(2))) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)),
}


def test_importing_ganops_and_the_core_imports_no_framework():
    code = ("import sys, ganops, ganops._core; ganops.build_info(); "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_info_reports_versions_and_cuda():
    info = ganops.build_info()
    assert info["version"] == ganops.__version__
    for key in ("torch", "tensorflow", "cuda", "cuda_architectures", "torch_cuda_kernels", "compiler"):
        assert key in info


def test_activation_table_has_stylegan_defaults():
    table = _core.activations()
    assert list(table) == list(NUMPY_ACTS)
    assert table["lrelu"] == pytest.approx((0.2, math.sqrt(2)))
    assert table["relu"][1] == pytest.approx(math.sqrt(2)) and table["swish"][1] == pytest.approx(math.sqrt(2))
    assert all(table[a][1] == 1.0 for a in ("linear", "tanh", "sigmoid", "elu", "selu", "softplus", "gelu"))


def _numerical_second(act, z, alpha, h=1e-5):
    df = NUMPY_ACTS[act][1]
    return (df(z + h, alpha) - df(z - h, alpha)) / (2 * h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", list(NUMPY_ACTS))
@pytest.mark.parametrize("shape,dim", [((3, 5, 4, 2), 1), ((7, 5), 1), ((5,), 0), ((2, 3, 5), 2), ((4, 5, 3), 0)])
def test_kernels_match_numpy(act, dtype, shape, dim):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    b = rng.standard_normal(shape[dim]).astype(dtype)
    bshape = [1] * len(shape)
    bshape[dim] = -1
    z = (x.astype(np.float64) + b.astype(np.float64).reshape(bshape))
    alpha, gain, clamp = 0.2, 1.3, 1.5
    f, df = NUMPY_ACTS[act]
    y_expected = np.clip(f(z, alpha) * gain, -clamp, clamp)
    mask = np.abs(f(z, alpha) * gain) <= clamp
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)

    y = _core.bias_act(x, b, dim, act, alpha, gain, clamp)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, y_expected, **tol)

    dy = rng.standard_normal(shape).astype(dtype)
    dz = _core.bias_act_backward(dy, x, b, dim, act, alpha, gain, clamp)
    np.testing.assert_allclose(dz, dy * df(z, alpha) * gain * mask, **tol)

    ddz = rng.standard_normal(shape).astype(dtype)
    out = _core.bias_act_backward2(ddz, dy, x, b, dim, act, alpha, gain, clamp)
    expected = ddz * dy * _numerical_second(act, z, alpha) * gain * mask
    away_from_kinks = np.abs(z) > 1e-3
    np.testing.assert_allclose(out[away_from_kinks], expected[away_from_kinks], rtol=1e-4, atol=1e-4)


def test_without_bias_and_clamp():
    x = np.linspace(-3, 3, 11)
    np.testing.assert_allclose(_core.bias_act(x, None, act="lrelu", alpha=0.2, gain=1.0),
                               np.where(x >= 0, x, 0.2 * x))


def test_parallel_split_matches_serial_result():
    # Large enough that the core splits it into several tasks, with runs crossing task edges.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, 1031, 17)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    y = _core.bias_act(x, b, 1, "swish", 0.0, 1.0, -1.0)
    z = x + b.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(y, z * _sigmoid(z), rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="act: unknown activation"):
        _core.bias_act(x, None, act="nope")
    with pytest.raises(ValueError, match="b: expected a 1-D array"):
        _core.bias_act(x, np.zeros(4, np.float32), 1)
    with pytest.raises(IndexError):
        _core.bias_act(x, np.zeros(3, np.float32), 5)
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.bias_act(np.zeros((2, 3), np.int32))


def test_vectorizable_exp_is_within_a_few_ulp():
    x = np.linspace(-87.3, 88.7, 2_000_003, dtype=np.float32)
    ours = _core.vexp(x).astype(np.float64)
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(ours - exact) / ulp) <= 3.0
    special = _core.vexp(np.array([np.inf, -np.inf, np.nan, 89.0, -104.0, 0.0, 88.8], np.float32))
    assert special[0] == np.inf and special[1] == 0 and np.isnan(special[2])
    assert special[3] == np.inf and special[4] == 0 and special[5] == 1.0 and special[6] == np.inf
    # Below exp(-87.34) the result rounds into the subnormals as exp's does: within an ulp there.
    x = np.linspace(-104, -87.3, 200_001, dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(_core.vexp(x).astype(np.float64) - exact)) <= 2.0**-149


def test_vectorizable_erf_error_is_bounded():
    x = np.linspace(-6, 6, 1_200_001, dtype=np.float32)
    exact = _erf(x.astype(np.float64))
    assert np.max(np.abs(_core.verf(x).astype(np.float64) - exact)) <= 2e-7
    special = _core.verf(np.array([np.inf, -np.inf, np.nan, 0.0], np.float32))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2]) and abs(special[3]) < 1e-8


# Every 997th float32 bit pattern (4.3 million values across the whole range, both signs,
# denormals, inf and NaN included), checked against float64 NumPy. The bounds are a margin over
# the worst errors an exhaustive run over all 2^32 floats measured, on the baseline and the
# AVX2+FMA builds alike: expm1 1.65 ulp, log1p 1.40 ulp, tanh 1.33 ulp.
_ALL_FLOATS = np.arange(0, 2**32, 997, dtype=np.uint64).astype(np.uint32).view(np.float32)


def _max_ulp(ours, x, exact_fn):
    with np.errstate(all="ignore"):
        exact = exact_fn(x.astype(np.float64))
        rounded = exact.astype(np.float32)
    same_special = (np.isnan(exact) & np.isnan(ours)) | (np.isinf(rounded) & (ours == rounded))
    assert np.array_equal(np.isnan(ours), np.isnan(exact))
    keep = ~same_special
    ulp = np.spacing(np.abs(rounded[keep])).astype(np.float64)
    return np.max(np.abs(ours[keep].astype(np.float64) - exact[keep]) / ulp)


@pytest.mark.parametrize("name, exact_fn, bound, dense", [
    ("vexpm1", np.expm1, 2.0, np.linspace(-1, 1, 1_000_001, dtype=np.float32)),
    ("vlog1p", np.log1p, 2.0, np.linspace(-0.99, 1, 1_000_001, dtype=np.float32)),
    ("vtanh", np.tanh, 2.0, np.linspace(-2, 2, 1_000_001, dtype=np.float32)),
])
def test_vectorizable_expm1_log1p_tanh_are_within_2_ulp(name, exact_fn, bound, dense):
    fn = getattr(_core, name)
    for x in (_ALL_FLOATS, dense):
        assert _max_ulp(fn(x), x, exact_fn) <= bound


def test_vectorizable_expm1_log1p_tanh_special_values():
    inf, nan = np.inf, np.nan
    tiny = np.float32(1e-30)
    denormal = np.float32(1e-42)
    x = np.array([inf, -inf, nan, 0.0, -0.0, tiny, -tiny, denormal, -denormal], np.float32)
    for name in ("vexpm1", "vlog1p", "vtanh"):
        y = getattr(_core, name)(x)
        # Near 0 all three are x: same value, same sign, -0 kept.
        np.testing.assert_array_equal(y[3:], x[3:])
        assert np.array_equal(np.signbit(y[3:]), np.signbit(x[3:]))
        assert np.isnan(y[2])
    e = _core.vexpm1(np.array([inf, -inf, 88.8, -20.0, -100.0, 88.7], np.float32))
    assert e[0] == inf and e[1] == -1 and e[2] == inf and e[3] == -1 and e[4] == -1
    assert np.isfinite(e[5])
    l = _core.vlog1p(np.array([inf, -inf, -1.0, -1.5, np.float32(3e38)], np.float32))
    assert l[0] == inf and np.isnan(l[1]) and l[2] == -inf and np.isnan(l[3])
    assert abs(l[4] - np.log(3e38)) < 1e-5
    t = _core.vtanh(np.array([inf, -inf, 45.0, -45.0, 10.0], np.float32))
    assert t[0] == 1 and t[1] == -1 and t[2] == 1 and t[3] == -1 and t[4] == 1
