"""Keras 3 layers on the ganops TensorFlow ops: FusedBiasAct, and SpectralNormalization (a
drop-in for keras.layers.SpectralNormalization)."""
import keras
import tensorflow as tf
# Keras' own scope for reading a variable without the mixed-precision autocast (Layer.__call__
# uses it the same way); the public API has no equivalent.
from keras.src.backend import AutocastScope, get_stateless_scope

from ganops.tf import _args
from ganops.tf.functional import bias_act, power_iteration, spectral_norm


FBA = "ganops.tf.layers.FusedBiasAct"


@keras.saving.register_keras_serializable(package="ganops")
class FusedBiasAct(keras.layers.Layer):
    """``clip(act(inputs + bias) * gain, -clamp, clamp)`` in one kernel, with a trainable bias
    along `dim` (the last axis by default: Keras is channels-last).

    Put it after a Conv2D/Dense built with ``use_bias=False`` in place of the layer's own bias and
    a separate activation, e.g. ``FusedBiasAct("lrelu")`` for StyleGAN's
    ``LeakyReLU(0.2)(x + b) * sqrt(2)``. The bias is a float32 variable under a mixed precision
    policy and is cast to the input dtype at call time.
    """

    def __init__(self, act="linear", alpha=None, gain=None, clamp=None, dim=-1, use_bias=True,
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        # Fail at construction, not at the first call (dim=None would only fail in build).
        _args.resolve_bias_act(act, alpha, gain, clamp)
        dim = _args.check_dim(dim, FBA)
        self.act = act
        self.alpha = alpha
        self.gain = gain
        self.clamp = clamp
        self.dim = dim
        self.use_bias = use_bias
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if self.use_bias:
            rank = len(input_shape)
            if not -rank <= self.dim < rank:
                raise ValueError(f"{FBA}: dim {self.dim} is out of range for inputs with {rank} "
                                 "dims")
            channels = input_shape[self.dim]
            if channels is None:
                raise ValueError(f"{FBA}: needs a known size for axis dim={self.dim} to create its "
                                 f"bias; got input shape {tuple(input_shape)}")
            self.bias = self.add_weight(
                name="bias", shape=(channels,), initializer=self.bias_initializer, trainable=True
            )
        else:
            self.bias = None

    def call(self, inputs):
        bias = tf.cast(self.bias, inputs.dtype) if self.use_bias else None
        return bias_act(inputs, bias, dim=self.dim, act=self.act, alpha=self.alpha,
                        gain=self.gain, clamp=self.clamp)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            act=self.act,
            alpha=self.alpha,
            gain=self.gain,
            clamp=self.clamp,
            dim=self.dim,
            use_bias=self.use_bias,
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


def _read_raw(variable):
    """The variable's value in its own dtype (float32 under a mixed-precision policy, where
    reading it inside a layer would give the float16/bfloat16 compute-dtype copy)."""
    with AutocastScope(None):
        return variable.value


@keras.saving.register_keras_serializable(package="ganops")
class SpectralNormalization(keras.layers.SpectralNormalization):
    """Spectral normalization of a layer's ``kernel`` (or ``embeddings``) on the fused ganops ops;
    a drop-in for ``keras.layers.SpectralNormalization`` (it subclasses it).

        layer = ganops.tf.layers.SpectralNormalization(keras.layers.Conv2D(64, 3))

    Keras compatibility (the default, ``gradient_through_sigma=False``):

    - Same constructor (``layer, power_iterations=1, **kwargs``), same variables, created in the
      same order by Keras' own ``build``: the wrapped layer's variables and the non-trainable
      ``vector_u`` of shape (1, out), out = kernel.shape[-1], TruncatedNormal(stddev=0.02), in the
      kernel's dtype. So ``.weights.h5`` files and ``get_weights()`` lists move between the two
      classes in both directions, and a model swaps the class and loads its weights.
    - Same matrix, reshape(kernel, [-1, out]): for Conv2DTranspose, whose kernel is
      (kh, kw, filters, in_channels), that is the input-channel axis, exactly as in Keras.
    - Same training behaviour: with ``training=True`` it runs ``power_iterations`` steps of
      Keras' power method (v = normalize(u W^T), u = normalize(v W), normalize(a) =
      a / max(||a||, epsilon)), assigns the new u to ``vector_u`` and kernel / sigma to the kernel,
      then calls the layer; with ``training=False`` it only calls the layer. Keras' normalize is
      ``a * min(rsqrt(||a||^2), 1 / epsilon)``, which equals ``a / max(||a||, epsilon)``;
      epsilon is ``keras.config.epsilon()`` (1e-7) read at call time, as in Keras.
    - An all-zero kernel is left alone, and so is vector_u, as in Keras. It is detected by
      sigma == 0, which costs no pass over the kernel; this differs from Keras only where u is
      exactly orthogonal to the kernel's row space (then sigma is 0 too): Keras divides by zero
      there and writes NaN, this layer leaves the kernel as it is.
    - The gradient the optimizer sees is the one for the assigned kernel, as in Keras (the
      assignment cuts the path through sigma).

    Deviations, both deliberate:

    - Under a mixed-precision policy (mixed_float16 / mixed_bfloat16) the kernel and vector_u stay
      float32 variables and the power iteration reads them in float32 with float32 sums; Keras'
      layer reads them autocast to the compute dtype, so its new kernel is rounded to float16.
      Outputs are in the compute dtype, like Keras'.
    - The output is cast to the input dtype only for floating inputs: Keras casts an Embedding's
      output to the integer dtype of its token ids (all zeros); this layer returns the floats.

    The paper's formulation, ``gradient_through_sigma=True``: the kernel variable keeps the raw,
    unnormalized weight W, and each call runs the wrapped layer on W / sigma computed in the graph
    (through ``keras.StatelessScope``), so the gradient flows through sigma with u and v held
    fixed (Miyato et al. 2018; torch.nn.utils.parametrizations.spectral_norm):
    dL/dW = (G - <G, W / sigma> u v^T) / sigma, where G = dL/d(W / sigma). In training vector_u is
    updated as above; in inference the same power iteration runs from the stored vector_u but its
    result is not stored, so inference changes no state. Weights saved in this mode hold the raw
    W, which Keras' layer would read as an already-normalized kernel.

    In both modes the power iteration is the fused ganops.tf.power_iteration. With
    ``gradient_through_sigma=True`` W / sigma and its gradient are the fused
    ganops.tf.spectral_normalize; what is saved for backward is the kernel (no copy), u, v and
    sigma. In Keras' mode the assignment cuts that gradient, so a float32/float64 kernel is
    multiplied by 1 / sigma with TF's Mul, the fused op's own arithmetic (same bits, and
    ``normalized_weights()`` still returns them); float16/bfloat16 kernels keep the fused op.

    XLA: inside a graph that XLA compiles (``compile(jit_compile=True)``, or "auto" on a GPU
    machine) the fused ops become their plain-TF formulas, with the same values and gradients,
    which XLA fuses.

    Distribution: vector_u is created by Keras' build with Keras' settings (aggregation "none",
    synchronization "auto"): under tf.distribute.MirroredStrategy every replica computes the
    same update from the same mirrored kernel and vector_u and assigns its own copy, as Keras'
    layer does. The CPU kernels sum in a fixed order whatever the thread count, so the copies stay
    identical.

    Args:
        layer: a keras layer with a ``kernel`` (Dense, Conv*, Conv*Transpose...) or an
            ``embeddings`` (Embedding) variable.
        power_iterations: int >= 1, power-method steps per training call.
        gradient_through_sigma: False for Keras' behaviour (assign kernel / sigma), True for the
            paper's (gradient through sigma, kernel keeps W).
        epsilon: the floor of the norms; None (the default) for ``keras.config.epsilon()``.
        **kwargs: the base layer's keyword arguments (name, dtype, trainable...).
    """

    def __init__(self, layer, power_iterations=1, gradient_through_sigma=False, epsilon=None,
                 **kwargs):
        _args.check_power_iterations(power_iterations)
        if epsilon is not None:
            _args.resolve_eps(epsilon, "epsilon")
        super().__init__(layer, power_iterations=power_iterations, **kwargs)
        self.gradient_through_sigma = bool(gradient_through_sigma)
        self.epsilon = epsilon

    def _eps(self):
        return _args.resolve_eps(self.epsilon, "epsilon")

    def normalized_weights(self):
        """(new vector_u, kernel / sigma) for the current kernel and vector_u, in the variables'
        dtypes, as Keras' method returns them; nothing is assigned."""
        kernel_sn, u_new = spectral_norm(_read_raw(self.kernel), _read_raw(self.vector_u),
                                         self.power_iterations, self._eps(), training=True)
        return u_new, kernel_sn

    def _assign_normalized(self):
        """Keras' training update: vector_u <- the new u, kernel <- kernel / sigma."""
        kernel = _read_raw(self.kernel)
        u = _read_raw(self.vector_u)
        if kernel.dtype != _args.sigma_dtype(kernel.dtype):  # float16 / bfloat16 kernels
            new_kernel, new_u = spectral_norm(kernel, u, self.power_iterations, self._eps())
        else:
            # The assignment cuts the gradient, so W / sigma needs no fused gradient: TF's Mul
            # by 1 / sigma is the fused op's own arithmetic (same bits), and on a busy 2-core
            # machine it took 0.23 ms where the fused op took 0.33 ms (a 4x4x64x128 kernel).
            new_u, v, sigma = power_iteration(kernel, u, self.power_iterations, self._eps())
            zero = tf.equal(sigma, 0)  # an all-zero kernel: both variables keep their values
            new_u = tf.where(zero, u, new_u)
            inv = tf.where(zero, tf.ones_like(sigma), tf.math.reciprocal(sigma))
            new_kernel = kernel * inv
        self.vector_u.assign(new_u)
        self.kernel.assign(new_kernel)

    def call(self, inputs, training=False):
        if self.gradient_through_sigma:
            output = self._call_through_sigma(inputs, training)
        else:
            if training:
                self._assign_normalized()
            output = self.layer(inputs)
        if _is_float(inputs.dtype):
            output = tf.cast(output, inputs.dtype)
        return output

    def _call_through_sigma(self, inputs, training):
        kernel_sn, u_out = spectral_norm(_read_raw(self.kernel), _read_raw(self.vector_u),
                                         self.power_iterations, self._eps(), training=training)
        if training:
            self.vector_u.assign(u_out)
        # Run the wrapped layer with kernel / sigma in place of its kernel; under an enclosing
        # stateless scope (stateless_call) the other variables keep that scope's values.
        outer = get_stateless_scope()
        mapping = [(self.kernel, kernel_sn)]
        if outer is not None:
            for variable in self.layer.variables:
                value = None if variable is self.kernel else outer.get_current_value(variable)
                if value is not None:
                    mapping.append((variable, value))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            output = self.layer(inputs)
        mapped = {id(variable): value for variable, value in mapping}
        for variable in self.layer.variables:  # updates the wrapped layer made (none for Dense,
            new = scope.get_current_value(variable)  # Conv, Embedding) are applied after all
            if variable is not self.kernel and new is not None and new is not mapped.get(
                    id(variable)):
                variable.assign(new)
        for loss in scope.losses:
            self.add_loss(loss)
        return output

    def get_config(self):
        config = super().get_config()
        config.update(gradient_through_sigma=self.gradient_through_sigma, epsilon=self.epsilon)
        return config


def _is_float(dtype):
    return tf.as_dtype(dtype).is_floating
