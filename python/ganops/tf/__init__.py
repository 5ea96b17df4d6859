"""ganops for TensorFlow 2 / Keras 3: compiled ops, their gradients, the functional API, Keras
layers and a pure-TF reference.

    import ganops.tf as gtf
    y = gtf.bias_act(x, b, dim=-1, act="lrelu")
    layer = gtf.layers.FusedBiasAct("lrelu")
    dense = gtf.layers.SpectralNormalization(keras.layers.Dense(10))  # keras' drop-in
    w_sn, u_new = gtf.spectral_norm(w, u)                             # you hold the variables
    penalty = gtf.gradient_penalty(D, real, fake, kind="wgan-gp")     # inside your GradientTape
    lazy, pl = gtf.LazyRegularization(16), gtf.PathLengthRegularizer()  # StyleGAN2's helpers
"""
from ganops.tf import _library  # loads the op library first: a build mismatch fails here, clearly
from ganops.tf import layers, reference
from ganops.tf.functional import bias_act, power_iteration, spectral_norm, spectral_normalize
from ganops.tf.gradient_penalty import (LazyRegularization, PathLengthRegularizer,
                                        dragan_penalty, gradient_penalty, path_length_noise,
                                        penalty_from_gradient, per_sample_add, per_sample_lerp,
                                        r1_penalty, r2_penalty, wgan_gp_penalty)

__all__ = ["LazyRegularization", "PathLengthRegularizer", "bias_act", "dragan_penalty",
           "gradient_penalty", "layers", "path_length_noise", "penalty_from_gradient",
           "per_sample_add", "per_sample_lerp", "power_iteration", "r1_penalty", "r2_penalty",
           "reference", "spectral_norm", "spectral_normalize", "wgan_gp_penalty"]
