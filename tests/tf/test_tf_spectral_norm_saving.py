"""Checkpoints move between keras.layers.SpectralNormalization and the ganops layer in both
directions (.weights.h5, same outputs before and after further training), and a model using the
ganops layer survives model.save / keras.models.load_model and get_config / from_config."""
import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from sn_keras_cases import VOCAB

IMAGE = (8, 8, 3)


def image_model(sn_cls, **kwargs):
    """A small discriminator with every wrapped kind: Conv2D, Conv2DTranspose and Dense."""
    return keras.Sequential([
        keras.Input(IMAGE),
        sn_cls(keras.layers.Conv2D(8, 3, strides=2, padding="same"), **kwargs),
        keras.layers.LeakyReLU(0.2),
        sn_cls(keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
               power_iterations=2, **kwargs),
        keras.layers.Flatten(),
        sn_cls(keras.layers.Dense(1), **kwargs),
    ], name="disc")


def embedding_model(sn_cls, **kwargs):
    return keras.Sequential([
        keras.Input((5,)),
        sn_cls(keras.layers.Embedding(VOCAB, 4), **kwargs),  # float ids: see sn_keras_cases
        keras.layers.Flatten(),
        sn_cls(keras.layers.Dense(2), **kwargs),
    ], name="embed")


MODELS = {"image": image_model, "embedding": embedding_model}


def data(name, seed=0, n=8):
    rng = np.random.default_rng(seed)
    if name == "image":
        x = rng.normal(size=(n,) + IMAGE).astype("float32")
        return x, rng.normal(size=(n, 1)).astype("float32")
    x = rng.integers(0, VOCAB, size=(n, 5)).astype("float32")
    return x, rng.normal(size=(n, 2)).astype("float32")


def trained(model, name, steps=3):
    """Compile and fit a few steps, so kernels are normalized and vector_u has moved."""
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = data(name)
    model.fit(x, y, batch_size=4, epochs=steps, verbose=0, shuffle=False)
    return model


def assert_same_model_state(a, b, name, rtol=1e-5, atol=1e-6):
    for wa, wb in zip(a.weights, b.weights):
        assert wa.name == wb.name
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)
    x, y = data(name, seed=1)
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), rtol=rtol,
                               atol=atol)


def continue_training(a, b, name):
    """Both models take the same further steps and stay together."""
    x, y = data(name, seed=2)
    for model in (a, b):
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("direction", ["keras_to_ganops", "ganops_to_keras"])
def test_weights_h5_round_trip(tmp_path, name, direction):
    classes = [keras.layers.SpectralNormalization, gtf.layers.SpectralNormalization]
    if direction == "ganops_to_keras":
        classes.reverse()
    keras.utils.set_random_seed(0)
    source = trained(MODELS[name](classes[0]), name)
    path = str(tmp_path / "sn.weights.h5")
    source.save_weights(path)
    keras.utils.set_random_seed(1)  # different initial weights, all overwritten by the load
    target = MODELS[name](classes[1])
    target.load_weights(path)
    assert_same_model_state(source, target, name)
    # ...and back: the file the second class writes loads into the first.
    back_path = str(tmp_path / "back.weights.h5")
    target.save_weights(back_path)
    keras.utils.set_random_seed(2)
    back = MODELS[name](classes[0])
    back.load_weights(back_path)
    assert_same_model_state(source, back, name)
    continue_training(source, target, name)


@pytest.mark.parametrize("through_sigma", [False, True], ids=["keras", "through_sigma"])
@pytest.mark.parametrize("name", list(MODELS))
def test_model_save_and_load_model(tmp_path, name, through_sigma):
    keras.utils.set_random_seed(0)
    model = trained(MODELS[name](gtf.layers.SpectralNormalization,
                                 gradient_through_sigma=through_sigma, epsilon=1e-6), name)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # the class is registered as "ganops>..."
    wrapped = [l for l in loaded.layers if isinstance(l, keras.layers.SpectralNormalization)]
    assert wrapped and all(type(l) is gtf.layers.SpectralNormalization for l in wrapped)
    assert all(l.gradient_through_sigma is through_sigma and l.epsilon == 1e-6 for l in wrapped)
    assert [l.power_iterations for l in wrapped] == [
        l.power_iterations for l in model.layers if hasattr(l, "power_iterations")]
    assert_same_model_state(model, loaded, name)
    continue_training(model, loaded, name)


def test_registered_name_and_config_round_trip():
    assert keras.saving.get_registered_name(
        gtf.layers.SpectralNormalization) == "ganops>SpectralNormalization"
    layer = gtf.layers.SpectralNormalization(keras.layers.Dense(3), power_iterations=3,
                                             gradient_through_sigma=True, name="sn")
    config = layer.get_config()
    assert config["power_iterations"] == 3 and config["gradient_through_sigma"] is True
    assert config["epsilon"] is None
    clone = gtf.layers.SpectralNormalization.from_config(copy.deepcopy(config))  # pops "layer"
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "ganops>SpectralNormalization"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is gtf.layers.SpectralNormalization
    assert restored.get_config() == config
    # A config written by keras' layer (no ganops keys) builds the ganops layer in Keras mode.
    keras_config = keras.layers.SpectralNormalization(keras.layers.Dense(3)).get_config()
    from_keras = gtf.layers.SpectralNormalization.from_config(keras_config)
    assert from_keras.gradient_through_sigma is False and from_keras.power_iterations == 1
