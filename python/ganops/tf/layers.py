"""Keras 3 layers on the ganops TensorFlow ops."""
import keras
import tensorflow as tf

from ganops._activations import resolve
from ganops.tf.functional import bias_act


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
        resolve(act, alpha, gain, clamp)  # fail at construction, not at first call
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
                raise ValueError(f"dim {self.dim} is out of range for inputs with {rank} dims")
            channels = input_shape[self.dim]
            if channels is None:
                raise ValueError(
                    f"FusedBiasAct needs a known size for axis dim={self.dim} to create its bias; "
                    f"got input shape {tuple(input_shape)}"
                )
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
