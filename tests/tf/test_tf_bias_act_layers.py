"""The FusedBiasAct Keras layer: a drop-in for a layer's own bias plus LeakyReLU * sqrt(2) in a
small discriminator, config round trip, .keras save/load, and mixed precision."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf.layers import FusedBiasAct
from tf_cases import assert_close

INPUT_SHAPE = (8, 8, 3)


def fused_discriminator():
    return keras.Sequential([
        keras.Input(INPUT_SHAPE),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
        FusedBiasAct("lrelu"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False),
        FusedBiasAct("lrelu", clamp=256.0),
        keras.layers.Flatten(),
        keras.layers.Dense(1, use_bias=False),
        FusedBiasAct("linear"),
    ])


def keras_discriminator():
    return keras.Sequential([
        keras.Input(INPUT_SHAPE),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.LeakyReLU(negative_slope=0.2),
        keras.layers.Rescaling(math.sqrt(2)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same"),
        keras.layers.LeakyReLU(negative_slope=0.2),
        keras.layers.Rescaling(math.sqrt(2)),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])


def copy_weights(keras_model, fused_model):
    """Give both models the same kernels and (non-zero) biases."""
    rng = np.random.default_rng(0)
    for layer in keras_model.layers:
        if layer.weights:
            layer.bias.assign(rng.normal(scale=0.5, size=layer.bias.shape).astype("float32"))
    kernels = [l for l in fused_model.layers if not isinstance(l, FusedBiasAct) and l.weights]
    biases = [l for l in fused_model.layers if isinstance(l, FusedBiasAct)]
    for src, kernel_layer, bias_layer in zip(
            [l for l in keras_model.layers if l.weights], kernels, biases):
        kernel_layer.kernel.assign(src.kernel)
        bias_layer.bias.assign(src.bias)


def inputs(n=4):
    return tf.constant(np.random.default_rng(1).normal(size=(n,) + INPUT_SHAPE), tf.float32)


def test_drop_in_for_bias_and_leaky_relu_same_outputs_and_gradients():
    reference, fused = keras_discriminator(), fused_discriminator()
    copy_weights(reference, fused)
    x = inputs()
    results = []
    for model in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = model(x, training=True)
            loss = tf.reduce_sum(tf.nn.softplus(out))
        # Order the weights as (kernel, bias) per layer in both models.
        kernels = [v for v in model.trainable_variables if "kernel" in v.path]
        biases = [v for v in model.trainable_variables if "bias" in v.path]
        grads = tape.gradient(loss, [x] + kernels + biases)
        results.append((out, grads))
    (out_ref, grads_ref), (out, grads) = results
    assert_close(out, out_ref, 1e-5, 1e-5, "outputs")
    assert len(grads) == len(grads_ref) == 1 + 3 + 3
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref)):
        assert_close(g, g_ref, 1e-4, 1e-5, f"gradient {i}")


def test_config_round_trip():
    layer = FusedBiasAct("lrelu", alpha=0.1, gain=2.0, clamp=8.0, dim=1, use_bias=True,
                         bias_initializer=keras.initializers.Constant(0.5), name="fba")
    config = layer.get_config()
    assert config["act"] == "lrelu" and config["alpha"] == 0.1 and config["clamp"] == 8.0
    clone = FusedBiasAct.from_config(config)
    assert clone.get_config() == config
    x = tf.random.normal([2, 3, 4])
    assert_close(clone(x), layer(x), 0, 0)
    assert_close(layer.bias, tf.fill([3], 0.5), 0, 0)


def test_save_and_load_keras_file(tmp_path):
    model = fused_discriminator()
    copy_weights(keras_discriminator(), model)
    path = tmp_path / "discriminator.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # finds the layer through its registered name
    assert any(isinstance(l, FusedBiasAct) for l in loaded.layers)
    x = inputs()
    assert_close(loaded(x), model(x), 0, 0)


@pytest.fixture
def mixed_float16_policy():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_mixed_float16_policy(mixed_float16_policy):
    model = fused_discriminator()
    bias_layer = model.layers[1]
    assert bias_layer.bias.dtype == "float32"  # variables stay float32
    x = inputs()
    with tf.GradientTape() as tape:
        out = model(x)
        loss = tf.reduce_sum(tf.cast(out, tf.float32))
    assert out.dtype == tf.float16
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
    # The float16 pass matches the same model run in float32 to half precision.
    hidden = keras.Model(model.inputs, model.layers[1].output)
    expected = gtf.reference.bias_act(
        tf.cast(model.layers[0](x), tf.float32), tf.cast(bias_layer.bias, tf.float32), dim=-1,
        act="lrelu")
    assert_close(hidden(x), expected, 1e-2, 1e-2)


def test_without_bias_and_channels_first():
    x = tf.random.normal([2, 3, 4, 4])
    no_bias = FusedBiasAct("relu", use_bias=False)
    assert_close(no_bias(x), tf.nn.relu(x) * math.sqrt(2), 1e-6, 1e-6)
    assert no_bias.trainable_weights == []
    channels_first = FusedBiasAct("tanh", dim=1, bias_initializer="ones")
    y = channels_first(x)
    assert channels_first.bias.shape == (3,)
    assert_close(y, tf.tanh(x + 1.0), 1e-6, 1e-6)
