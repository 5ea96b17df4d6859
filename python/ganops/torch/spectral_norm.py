"""Spectral normalization for PyTorch: a drop-in for torch.nn.utils.parametrizations.spectral_norm.

    import ganops.torch as gt
    conv = gt.spectral_norm(nn.Conv2d(128, 256, 4))      # same arguments as torch's
    model = gt.apply_spectral_norm(model)                  # every Conv/Linear/Embedding

The module is registered with torch.nn.utils.parametrize exactly as torch's is, with the same
buffers (`_u`, `_v`), the same initialisation (random draws in the same order, 15 warm-up
iterations) and the same power method, so state_dicts have torch's keys
(`parametrizations.weight.original`, `parametrizations.weight.0._u`, `..._v`) and move between
the two both ways. What differs is how it runs: one fused op for the power iteration (which also
gives sigma) and one for W / sigma with a fused backward, instead of a dozen small kernels.
Complex weights (complex64, complex128) have no kernels and run torch's own math instead.
"""
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganops.torch import _args
from ganops.torch import _spectral_norm_ops  # noqa: F401  (fake kernels and autograd)

ops = torch.ops.ganops
_weight_op = ops.spectral_norm_weight.default

_COMPLEX = (torch.complex64, torch.complex128)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
DEFAULT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED, nn.Embedding)


def power_iteration(weight, u, v, dim=0, n_power_iterations=1, eps=1e-12):
    """Runs `n_power_iterations` steps of torch's power method on `weight` viewed as a matrix
    (rows = weight.shape[dim]): u = normalize(M v), v = normalize(M^T u), updating `u` and `v` in
    place. Returns (sigma, u_copy, v_copy): sigma = u^T M v for the new vectors (float32, or
    float64 for a float64 weight) and copies of u and v that later updates do not change.
    With n_power_iterations=0 (evaluation) it only computes sigma. Not differentiable."""
    for t, arg in ((weight, "weight"), (u, "u"), (v, "v")):
        _args.tensor(t, "power_iteration", arg)
    return ops.spectral_norm_power_iteration(weight.detach(), u, v, dim, n_power_iterations, eps)


def spectral_normalize(weight, u, v, sigma, dim=0):
    """weight / sigma, differentiable in weight through sigma = u^T M v with u, v held fixed:
    dL/dW = (G - <G, W / sigma> u v^T) / sigma. `sigma` must be the value that
    power_iteration returned for these u and v."""
    for t, arg in ((weight, "weight"), (u, "u"), (v, "v"), (sigma, "sigma")):
        _args.tensor(t, "spectral_normalize", arg)
    return ops.spectral_normalize(weight, u, v, sigma, dim)


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"ganops.spectral_norm: {name} must be a positive int, got {value!r}")


class SpectralNorm(nn.Module):
    """The parametrization: torch's _SpectralNorm with fused kernels. Buffers `_u` (rows) and
    `_v` (columns) hold the power-method state; in training mode each forward runs
    `n_power_iterations` steps and updates them in place, in eval mode they stay fixed."""

    def __init__(self, weight, n_power_iterations=1, dim=0, eps=1e-12):
        super().__init__()
        _args.tensor(weight, "spectral_norm", "weight")
        dim = _args.integer(dim, "spectral_norm", "dim")
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(f"ganops.spectral_norm: dim {dim} is out of range for a weight with "
                             f"{ndim} dims (expected [-{ndim}, {ndim - 1}])")
        _check_positive_int(n_power_iterations, "n_power_iterations")
        eps = _args.positive_float(eps, "spectral_norm", "eps")
        if not (weight.is_floating_point() or weight.dtype in _COMPLEX):
            raise TypeError(f"ganops.spectral_norm: the weight must be floating point, complex64 "
                            f"or complex128, got {weight.dtype}")
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            h = weight.shape[self.dim]
            w = weight.numel() // h if h else 0
            # The same draws, in the same order, as torch's, so a seeded model matches.
            u = weight.new_empty(h).normal_(0, 1)
            v = weight.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=self.eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=self.eps))
            if weight.is_complex():
                self._complex_power_method(_spectral_norm_ops.weight_to_matrix(weight, self.dim), 15)
            else:
                with torch.no_grad():
                    power_iteration(weight, self._u, self._v, self.dim, 15, self.eps)

    def forward(self, weight):
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)  # exact, as torch does
        if weight.is_complex():
            return self._complex_forward(weight)
        # This runs on every access to module.weight, so it avoids the per-call Python costs it
        # can: the ops' default overloads directly, and the buffers without Module.__getattr__.
        # spectral_norm_weight is the power iteration and W / sigma in one call (about 5 us less
        # than calling the two from here: conv 3->64 4x4 fwd+bwd 54.9 -> 50.1 us on this CPU).
        buffers = self._buffers
        n = self.n_power_iterations if self.training else 0
        return _weight_op(weight, buffers["_u"], buffers["_v"], self.dim, n, self.eps)

    # Complex weights (which torch's parametrization accepts) have no kernels: they run torch's
    # own math, op for op, so buffers, draws and outputs match torch's exactly. The power method
    # uses the conjugate transpose, and sigma = u^H M v is real up to rounding but complex-typed.
    @torch.no_grad()
    def _complex_power_method(self, weight_mat, n_power_iterations):
        for _ in range(n_power_iterations):
            # In place (out=), as torch does, so DataParallel replicas update the shared buffers.
            self._u = F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps, out=self._u)
            self._v = F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps, out=self._v)

    def _complex_forward(self, weight):
        weight_mat = _spectral_norm_ops.weight_to_matrix(weight, self.dim)
        if self.training:
            self._complex_power_method(weight_mat, self.n_power_iterations)
        # Copies: a second forward's in-place update must not change what the first saved.
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        sigma = torch.vdot(u, torch.mv(weight_mat, v))
        return weight / sigma

    def right_inverse(self, value):
        return value

    def extra_repr(self):
        return f"dim={self.dim}, eps={self.eps}"


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
    """Applies spectral normalization to `module.<name>`; the arguments and behaviour of
    torch.nn.utils.parametrizations.spectral_norm (dim defaults to 1 for ConvTranspose, else 0;
    1-D weights are normalized directly). Undo with
    torch.nn.utils.parametrize.remove_parametrizations(module, name)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"ganops.spectral_norm: module must be an nn.Module, got {type(module).__name__}")
    _args.string(name, "spectral_norm", "name")
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"ganops.spectral_norm: module '{module}' has no parameter or buffer "
                         f"with name '{name}'")
    if dim is None:
        dim = 1 if isinstance(module, _TRANSPOSED) else 0
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations, dim, eps))
    return module


def apply_spectral_norm(model, n_power_iterations=1, eps=1e-12, types=DEFAULT_TYPES, name="weight"):
    """Applies spectral_norm to every submodule of `model` that is an instance of `types`
    (by default every Linear, Conv, ConvTranspose and Embedding) and is not parametrized yet.
    Returns `model`."""
    for module in model.modules():
        if not isinstance(module, types):
            continue
        if parametrize.is_parametrized(module, name):
            continue
        if isinstance(getattr(module, name, None), torch.Tensor):
            spectral_norm(module, name, n_power_iterations, eps)
    return model


def convert_old_state_dict(state_dict):
    """Converts a state_dict written with the old torch.nn.utils.spectral_norm (keys
    `<prefix>weight_orig`, `<prefix>weight_u`, `<prefix>weight_v`) to the parametrization layout
    (`<prefix>parametrizations.weight.original`, `...weight.0._u`, `...weight.0._v`) that both
    torch's and ganops' spectral_norm load. Other keys pass through. Returns a new dict.

    In eval mode the old API computes weight_orig / (u^T M v) from the stored u, v, as the
    parametrization does, so a converted model gives the same outputs. A 1-D weight is the
    exception: the old API kept u and v for it, the parametrization keeps none and normalizes it
    exactly (w / ||w||, which is what the old API's weight is once it has trained a step), so
    its u and v are dropped."""
    out = type(state_dict)() if isinstance(state_dict, dict) else {}
    for key, value in state_dict.items():
        match = re.match(r"^(.*?)([^.]+)_orig$", key)
        if match and f"{match[1]}{match[2]}_u" in state_dict:
            prefix, name = match[1], match[2]
            if f"{prefix}{name}_v" not in state_dict:
                raise ValueError(f"ganops.convert_old_state_dict: '{key}' has '{prefix}{name}_u' "
                                 f"but no '{prefix}{name}_v' (a checkpoint from torch < 1.1); "
                                 "load it into a model using the old API once and save it again")
            out[f"{prefix}parametrizations.{name}.original"] = value
            if value.ndim > 1:  # a 1-D weight is normalized exactly: the parametrization has no u, v
                out[f"{prefix}parametrizations.{name}.0._u"] = state_dict[f"{prefix}{name}_u"]
                out[f"{prefix}parametrizations.{name}.0._v"] = state_dict[f"{prefix}{name}_v"]
            continue
        match = re.match(r"^(.*?)([^.]+)_[uv]$", key)
        if match and f"{match[1]}{match[2]}_orig" in state_dict:
            continue  # moved with its _orig above
        out[key] = value
    return out
