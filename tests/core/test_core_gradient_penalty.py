"""The CPU gradient-penalty core through ganops._core on NumPy arrays: the per-sample mixes, the
penalties and their backward against NumPy transcriptions of the formulas and central
differences, chunked sums of long samples, and the zero-gradient case."""
import numpy as np
import pytest

from ganops import _core

KINDS = ("norm", "squared", "two-sided", "one-sided")
REDUCTIONS = ("none", "mean", "sum")


def numpy_penalty(g, kind, target, weight, scale, reduction):
    n = scale * np.sqrt((g.reshape(g.shape[0], -1).astype(np.float64) ** 2).sum(1))
    per = {"norm": n, "squared": n**2, "two-sided": (n - target) ** 2,
           "one-sided": np.maximum(n - target, 0) ** 2}[kind] * weight
    return {"none": per, "mean": np.array([per.mean()]), "sum": np.array([per.sum()])}[reduction], n


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_penalty_matches_numpy(kind, reduction, dtype):
    g = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(dtype)
    got, norms = _core.gradient_penalty(g, kind, 3.5, 2.0, 0.8, reduction)
    want, want_norms = numpy_penalty(g, kind, 3.5, 2.0, 0.8, reduction)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(norms, want_norms, rtol=tol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_backward_matches_central_differences(kind, reduction):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((3, 4))
    gout = rng.standard_normal(3 if reduction == "none" else 1)
    _, norms = _core.gradient_penalty(g, kind, 1.2, 1.5, 0.9, reduction)
    got = _core.gradient_penalty_backward(gout, g, norms, kind, 1.2, 1.5, 0.9, reduction)
    want = np.zeros_like(g)
    h = 1e-6
    for idx in np.ndindex(g.shape):
        plus, minus = g.copy(), g.copy()
        plus[idx] += h
        minus[idx] -= h
        f = lambda x: (numpy_penalty(x, kind, 1.2, 1.5, 0.9, reduction)[0] * gout).sum()
        want[idx] = (f(plus) - f(minus)) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_long_samples_are_summed_in_chunks_exactly():
    g = np.random.default_rng(2).standard_normal((2, 70_000))
    _, norms = _core.gradient_penalty(g, "norm", reduction="none")
    np.testing.assert_allclose(norms, np.linalg.norm(g, axis=1), rtol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_gradient_sample_gets_zero_gradient_not_nan(kind):
    g = np.zeros((2, 5))
    g[1] = np.arange(5.0)
    penalty, norms = _core.gradient_penalty(g, kind, 1.0, 1.0, 1.0, "sum")
    d = _core.gradient_penalty_backward(np.ones(1), g, norms, kind, 1.0, 1.0, 1.0, "sum")
    assert np.isfinite(penalty).all() and np.isfinite(d).all()
    assert (d[0] == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mix_samples(dtype):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 5, 3, 4)).astype(dtype)
    c = rng.random(5).astype(dtype)
    a64, b64, cc = a.astype(np.float64), b.astype(np.float64), c.astype(np.float64).reshape(-1, 1, 1)
    # The AVX2 loops fuse the multiply-add (one rounding, not two), so float32 results may
    # differ from NumPy's float32 by an ulp of the inputs: compare with float64 to that bound.
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(_core.mix_samples(a, b, c, 0), a64 + cc * (b64 - a64), **tol)
    np.testing.assert_allclose(_core.mix_samples(a, b, c, 1), a64 + cc * b64, **tol)
    big = rng.standard_normal((3, 40_000)).astype(dtype)  # several parallel tasks
    np.testing.assert_allclose(_core.mix_samples(big, -big, c[:3], 0),
                               big * (1 - 2 * c[:3, None]), rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    g = np.ones((2, 3))
    with pytest.raises(ValueError, match="kind: unknown penalty 'wgan'"):
        _core.gradient_penalty(g, "wgan")
    with pytest.raises(ValueError, match="reduction"):
        _core.gradient_penalty(g, "norm", reduction="avg")
    with pytest.raises(ValueError, match="norms"):
        _core.gradient_penalty_backward(np.ones(1), g, np.ones(3), "norm")
