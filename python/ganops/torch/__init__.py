"""ganops for PyTorch: ops under torch.ops.ganops.*, a functional API and nn layers.

    import ganops.torch as gt
    y = gt.bias_act(x, b, act="lrelu")            # fused bias + leaky ReLU * sqrt(2)
    layer = gt.FusedLeakyReLU(512)                 # drop-in for StyleGAN2 code
    conv = gt.spectral_norm(nn.Conv2d(128, 256, 4))  # drop-in for torch's parametrization
    gp = gt.gradient_penalty(D, real, fake, kind="wgan-gp")  # fused WGAN-GP, R1, R2, DRAGAN, ...
"""
from ganops.torch import _library  # noqa: F401  (loads torch.ops.ganops)
from ganops.torch import _bias_act_ops  # noqa: F401  (fake kernels and autograd)
from ganops.torch import _gradient_penalty_ops  # noqa: F401  (fake kernels and autograd)
from ganops.torch import reference
from ganops.torch.functional import bias_act, fused_leaky_relu
from ganops.torch.gradient_penalty import (LazyRegularization, PathLengthRegularizer,
                                           dragan_penalty, gradient_penalty, input_gradient,
                                           penalty_from_gradient, penalty_inputs, r1_penalty,
                                           r2_penalty, wgan_gp_penalty)
from ganops.torch.layers import FusedBiasAct, FusedLeakyReLU
from ganops.torch.spectral_norm import (SpectralNorm, apply_spectral_norm, convert_old_state_dict,
                                        power_iteration, spectral_norm, spectral_normalize)

__all__ = ["bias_act", "fused_leaky_relu", "FusedBiasAct", "FusedLeakyReLU", "reference",
           "spectral_norm", "apply_spectral_norm", "convert_old_state_dict", "SpectralNorm",
           "power_iteration", "spectral_normalize", "gradient_penalty", "penalty_from_gradient",
           "penalty_inputs", "input_gradient", "r1_penalty", "r2_penalty", "wgan_gp_penalty",
           "dragan_penalty", "LazyRegularization", "PathLengthRegularizer"]
