"""Run by test_tf_spectral_norm_distribute.py in a fresh process: two logical CPU devices must be
configured before TensorFlow initialises its devices, which a pytest process has already done.

Trains the same small discriminator with ganops' SpectralNormalization on one device and under
tf.distribute.MirroredStrategy over the two logical CPUs, and prints one JSON line comparing them.
Usage: python sn_mirrored_worker.py keras|through_sigma
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import ganops.tf as gtf  # noqa: E402

THROUGH_SIGMA = sys.argv[1] == "through_sigma"


def model():
    keras.utils.set_random_seed(0)
    sn = gtf.layers.SpectralNormalization
    m = keras.Sequential([
        keras.Input((8, 8, 3)),
        sn(keras.layers.Conv2D(8, 3, strides=2), gradient_through_sigma=THROUGH_SIGMA),
        keras.layers.LeakyReLU(0.2),
        keras.layers.Flatten(),
        sn(keras.layers.Dense(1), power_iterations=2, gradient_through_sigma=THROUGH_SIGMA),
    ])
    m.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return m


rng = np.random.default_rng(0)
x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
y = rng.normal(size=(32, 1)).astype("float32")

single = model()
initial_u = [w.numpy().copy() for w in single.weights if w.name == "vector_u"]
single_loss = single.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False).history["loss"]

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    dist = model()
dist_loss = dist.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False).history["loss"]

replica_mismatch = 0.0
for w in dist.weights:
    copies = [v.numpy() for v in strategy.experimental_local_results(w.value)]
    assert len(copies) == 2, (w.path, len(copies))
    replica_mismatch = max(replica_mismatch, float(np.abs(copies[0] - copies[1]).max()))

print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "devices": [d.name for d in tf.config.list_logical_devices("CPU")],
    "distributed_variables": all(
        "Mirrored" in type(w.value).__name__ for w in dist.weights),
    "vector_u_aggregation": [w.aggregation for w in dist.weights if w.name == "vector_u"],
    "replica_mismatch": replica_mismatch,
    "max_weight_diff": max(float(np.abs(a - b).max())
                           for a, b in zip(single.get_weights(), dist.get_weights())),
    "max_prediction_diff": float(np.abs(single.predict(x, verbose=0)
                                        - dist.predict(x, verbose=0)).max()),
    "vector_u_moved": min(float(np.abs(w.numpy() - u0).max()) for w, u0 in zip(
        [w for w in dist.weights if w.name == "vector_u"], initial_u)),
    "single_loss": single_loss,
    "dist_loss": dist_loss,
}))
