"""Wrapped layers, inputs and a training step shared by the Keras SpectralNormalization tests."""
import keras
import numpy as np
import tensorflow as tf

import ganops.tf as gtf

# name -> (factory of the wrapped layer, input shape without the batch axis)
KINDS = {
    "dense": (lambda: keras.layers.Dense(6), (5,)),
    "conv2d": (lambda: keras.layers.Conv2D(6, 3), (7, 7, 4)),
    # kernel (3, 3, 6, 4): Keras normalizes over its last axis, the 4 input channels
    "conv2d_transpose": (lambda: keras.layers.Conv2DTranspose(6, 3, strides=2), (5, 5, 4)),
    "embedding": (lambda: keras.layers.Embedding(12, 6), (5,)),
}
VOCAB = 12


def inputs(kind, seed, batch=4):
    """Inputs for one step. Embedding gets float-typed token ids: Keras' wrapper casts its
    output to the input dtype, which for integer ids would truncate the embeddings to 0."""
    rng = np.random.default_rng(seed)
    shape = (batch,) + KINDS[kind][1]
    if kind == "embedding":
        return tf.constant(rng.integers(0, VOCAB, size=shape), tf.float32)
    return tf.constant(rng.normal(size=shape), tf.float32)


def build(cls, kind, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    layer = cls(KINDS[kind][0](), **kwargs)
    layer.build((None,) + KINDS[kind][1])
    return layer


def build_pair(kind, power_iterations=1, **ganops_kwargs):
    """A keras.layers.SpectralNormalization and a ganops one with the same weights (vector_u
    included) and a non-zero bias."""
    k = build(keras.layers.SpectralNormalization, kind, power_iterations=power_iterations)
    g = build(gtf.layers.SpectralNormalization, kind, seed=1, power_iterations=power_iterations,
              **ganops_kwargs)
    rng = np.random.default_rng(5)
    if getattr(k.layer, "bias", None) is not None:
        k.layer.bias.assign(rng.normal(scale=0.3, size=k.layer.bias.shape).astype("float32"))
    g.set_weights(k.get_weights())
    return k, g


def target_like(y, seed):
    return tf.constant(np.random.default_rng(seed).normal(size=y.shape), tf.float32)


def dense_grads(grads):
    return [tf.convert_to_tensor(g) for g in grads]  # Embedding's IndexedSlices


def train_step(layer, optimizer, x, seed):
    """One step of a custom loop: returns (outputs, gradients of the trainable variables)."""
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - target_like(y, seed)))
    grads = tape.gradient(loss, layer.trainable_variables)
    optimizer.apply(grads, layer.trainable_variables)
    return y, dense_grads(grads)
