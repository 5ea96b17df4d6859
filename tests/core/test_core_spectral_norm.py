"""The CPU spectral-norm core through ganops._core on NumPy arrays: the power method against
NumPy's SVD and a NumPy transcription of each step, the backward against its formula."""
import numpy as np
import pytest

from ganops import _core

# (shape, dim): outer == 1 (torch dim 0; also with rows of >= 128 elements, which go three
# to a sweep, and a row count that is not a multiple of three), inner == 1 (Keras: last axis),
# both > 1 (ConvTranspose dim 1; also with rows and rows * inner off the core's blocking of 16
# rows and 64-element periods, and with lines of >= 64 elements), a size-1 row count and a
# single column.
LAYOUTS = [((24, 40), 0), ((16, 8, 3, 3), 0), ((7, 2, 70), 0), ((8, 12, 4, 4), 1), ((6, 19, 3, 3), 1),
           ((4, 20, 70), 1), ((3, 3, 8, 12), 3), ((5, 7, 6), 2), ((1, 30), 0), ((30, 1), 0),
           ((50,), 0)]


def as_matrix(w, dim):
    return np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)


def normalize(a, eps):
    return a / max(np.linalg.norm(a), eps)


def random_problem(shape, dim, dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(dtype)
    m = as_matrix(w, dim)
    u = normalize(rng.standard_normal(m.shape[0]), 1e-12).astype(dtype)
    v = normalize(rng.standard_normal(m.shape[1]), 1e-12).astype(dtype)
    return w, m.astype(np.float64), u, v


@pytest.mark.parametrize("shape,dim", LAYOUTS)
@pytest.mark.parametrize("order", [0, 1])
def test_sigma_converges_to_the_largest_singular_value(shape, dim, order):
    w, m, u, v = random_problem(shape, dim, np.float64)
    sigma, u_out, v_out = _core.spectral_power_iteration(w, u, v, dim, 300, 1e-12, order)
    s, left, right = np.linalg.svd(m)[1][0], np.linalg.svd(m)[0][:, 0], np.linalg.svd(m)[2][0]
    np.testing.assert_allclose(sigma, s, rtol=1e-9)
    # Singular vectors are defined up to sign.
    np.testing.assert_allclose(abs(u_out @ left), 1.0, rtol=1e-6)
    np.testing.assert_allclose(abs(v_out @ right), 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape,dim", LAYOUTS)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_steps_match_numpy_in_both_orders(shape, dim, dtype, rtol, n):
    w, m, u, v = random_problem(shape, dim, dtype, seed=1)
    for order in (0, 1):
        uu, vv = u.astype(np.float64), v.astype(np.float64)
        for _ in range(n):
            if order == 0:
                uu = normalize(m @ vv, 1e-12)
                vv = normalize(m.T @ uu, 1e-12)
            else:
                vv = normalize(m.T @ uu, 1e-12)
                uu = normalize(m @ vv, 1e-12)
        sigma, u_out, v_out = _core.spectral_power_iteration(w, u, v, dim, n, 1e-12, order)
        np.testing.assert_allclose(sigma, uu @ m @ vv, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(u_out, uu, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(v_out, vv, rtol=rtol, atol=rtol)


def test_eps_floors_the_norm_of_a_zero_weight():
    w = np.zeros((4, 6))
    u, v = np.full(4, 0.5), np.full(6, 6 ** -0.5)
    sigma, u_out, v_out = _core.spectral_power_iteration(w, u, v, 0, 2, 1e-12, 0)
    assert sigma == 0 and not u_out.any() and not v_out.any()
    assert np.isfinite(u_out).all() and np.isfinite(v_out).all()


def test_inputs_are_not_modified():
    w, _, u, v = random_problem((6, 9), 0, np.float64)
    u0, v0 = u.copy(), v.copy()
    _core.spectral_power_iteration(w, u, v, 0, 2)
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(v, v0)


@pytest.mark.parametrize("shape,dim", LAYOUTS)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_backward_matches_its_formula(shape, dim, dtype, rtol):
    w, m, u, v = random_problem(shape, dim, dtype, seed=2)
    g = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    sigma = float(u.astype(np.float64) @ m @ v.astype(np.float64))
    w64, g64 = w.astype(np.float64), g.astype(np.float64)
    k = np.sum(g64 * w64) / sigma
    outer = np.outer(u, v).reshape([shape[dim]] + [s for i, s in enumerate(shape) if i != dim])
    expected = (g64 - k * np.moveaxis(outer, 0, dim)) / sigma
    out = _core.spectral_normalize_backward(g, w, u, v, sigma, dim)
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_backward_is_the_gradient_of_w_over_sigma():
    # Finite differences of L(W) = <G, W / (u^T M(W) v)>.
    w, m, u, v = random_problem((5, 4, 3), 1, np.float64, seed=4)
    g = np.random.default_rng(5).standard_normal(w.shape)

    def loss(wt):
        return np.sum(g * wt / (u @ as_matrix(wt, 1) @ v))

    sigma = float(u @ m @ v)
    grad = _core.spectral_normalize_backward(g, w, u, v, sigma, 1)
    numeric = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        d = np.zeros_like(w)
        d[i] = 1e-6
        numeric[i] = (loss(w + d) - loss(w - d)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_bad_arguments_raise():
    w = np.ones((3, 4))
    with pytest.raises(ValueError, match="u: expected a 1-D array of 3"):
        _core.spectral_power_iteration(w, np.ones(4), np.ones(4))
    with pytest.raises(IndexError):
        _core.spectral_power_iteration(w, np.ones(3), np.ones(4), dim=2)
    with pytest.raises(ValueError, match="non-empty"):
        _core.spectral_power_iteration(np.ones((0, 4)), np.ones(0), np.ones(4))
