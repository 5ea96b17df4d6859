"""Weights, vectors and tolerances shared by the ganops.tf spectral-norm tests."""
import numpy as np
import tensorflow as tf

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]

# (name, weight shape) in Keras' layouts; the matrix is reshape(w, [-1, w.shape[-1]]).
SHAPES = [
    ("dense", (5, 3)),                    # Dense kernel (in, out)
    ("conv2d", (3, 3, 4, 6)),             # Conv2D kernel (kh, kw, in, out)
    ("conv2d_transpose", (3, 3, 6, 4)),   # Conv2DTranspose kernel (kh, kw, filters, in): Keras' last axis is `in`
    ("embedding", (10, 4)),               # Embedding (vocab, dim)
    ("conv2d_large", (4, 4, 64, 96)),     # 98304 elements: more than one parallel task per pass
    ("tall_rows", (2, 700)),              # rows > cols
]

# (rtol, atol) per dtype for vectors and sigma. Both sides sum in float32 (float64), in different
# orders; half types then differ by an ulp of the final rounding.
TOLERANCES = {
    tf.float32: (2e-5, 2e-6),
    tf.float64: (1e-11, 1e-13),
    tf.float16: (2e-3, 2e-3),
    tf.bfloat16: (1.6e-2, 1.6e-2),
}


def ids(values):
    return [getattr(v, "name", str(v)) for v in values]


def random_weight(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(size=shape), dtype)


def random_u(out, dtype, seed=1, keras_shape=True):
    """Keras' vector_u draw: TruncatedNormal(stddev=0.02), shape (1, out)."""
    rng = np.random.default_rng(seed)
    u = np.clip(rng.normal(scale=0.02, size=(1, out)), -0.04, 0.04)
    return tf.constant(u if keras_shape else u[0], dtype)


def assert_close(actual, expected, rtol, atol, what=""):
    np.testing.assert_allclose(
        np.asarray(tf.cast(actual, tf.float64)), np.asarray(tf.cast(expected, tf.float64)),
        rtol=rtol, atol=atol, err_msg=what,
    )


def keras_power_iteration(kernel, vector_u, power_iterations):
    """keras.layers.SpectralNormalization.normalized_weights, written out with keras.ops exactly
    as Keras 3 writes it, also returning v and sigma (the layer keeps them to itself)."""
    import keras
    from keras import ops
    from keras.utils import normalize

    weights = ops.reshape(kernel, [-1, kernel.shape[-1]])
    u = vector_u
    for _ in range(power_iterations):
        v = normalize(ops.matmul(u, ops.transpose(weights)), axis=None)
        u = normalize(ops.matmul(v, weights), axis=None)
    sigma = ops.matmul(ops.matmul(v, weights), ops.transpose(u))
    del keras
    return u, ops.reshape(v, [-1]), ops.reshape(sigma, [])
