"""Bad input to the spectral-norm API raises a clear exception naming the argument: from the
Python wrappers and the reference (before anything runs), from the shape functions (graph
construction) and from the kernels (run time), and from the Keras layer's constructor."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf._library import ops

W = tf.zeros([5, 3]) + 1.0
U = tf.ones([1, 3])

# (kwargs, exception type, message pattern) for fn(weight, u, **kwargs)
BAD_CALLS = [
    (dict(weight=tf.ones([3])), ValueError,
     r"weight must have at least 2 dims to be viewed as the matrix reshape\(weight, "
     r"\[-1, weight.shape\[-1\]\]\), got shape \(3,\)"),
    (dict(weight=tf.ones([])), ValueError, "weight must have at least 2 dims"),
    (dict(weight=tf.ones([0, 3])), ValueError, r"weight is empty \(shape \(0, 3\)\)"),
    (dict(weight=tf.ones([5, 3], tf.int32)), TypeError,
     "weight must be float32, float64, float16 or bfloat16, got int32"),
    (dict(u=tf.ones([1, 4])), ValueError,
     r"u must have shape \(3,\) or \(1, 3\) \(weight.shape\[-1\]\), got \(1, 4\)"),
    (dict(u=tf.ones([4])), ValueError, r"u must have shape \(3,\) or \(1, 3\)"),
    (dict(u=tf.ones([2, 3])), ValueError, r"u must have shape \(3,\) or \(1, 3\)"),
    (dict(u=tf.ones([1, 1, 3])), ValueError, r"u must have shape \(3,\) or \(1, 3\)"),
    (dict(u=tf.ones([1, 3], tf.float64)), TypeError,
     r"u has dtype float64 but weight has float32; cast it with tf.cast\(u, weight.dtype\)"),
    (dict(power_iterations=0), ValueError, "power_iterations must be an int >= 1, got 0"),
    (dict(power_iterations=-2), ValueError, "power_iterations must be an int >= 1, got -2"),
    (dict(power_iterations=1.5), ValueError, "power_iterations must be an int >= 1, got 1.5"),
    (dict(power_iterations=True), ValueError, "power_iterations must be an int >= 1, got True"),
    (dict(eps=0.0), ValueError, "eps must be a finite number > 0, got 0.0"),
    (dict(eps=-1e-7), ValueError, "eps must be a finite number > 0, got -1e-07"),
    (dict(eps=float("nan")), ValueError, "eps must be a finite number > 0, got nan"),
    (dict(eps=float("inf")), ValueError, "eps must be a finite number > 0"),
    (dict(eps="1e-7"), ValueError, "eps must be a finite number > 0, got '1e-7'"),
]

FUNCTIONS = [gtf.spectral_norm, gtf.power_iteration, gtf.reference.spectral_norm,
             gtf.reference.spectral_norm_power_iteration]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=["spectral_norm", "power_iteration",
                                                "reference.spectral_norm",
                                                "reference.power_iteration"])
@pytest.mark.parametrize("kwargs,error,message", BAD_CALLS,
                         ids=[f"{c[1].__name__}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_wrappers_reject_bad_arguments(fn, kwargs, error, message):
    kwargs = dict(kwargs)
    w, u = kwargs.pop("weight", W), kwargs.pop("u", U)
    with pytest.raises(error, match=r"ganops\.spectral_norm: " + message):
        fn(w, u, **kwargs)


def test_spectral_normalize_checks_v_and_sigma():
    u, v, sigma = gtf.power_iteration(W, U)
    with pytest.raises(ValueError, match=r"v must have shape \(5,\) or \(1, 5\) "
                                         r"\(weight.size / weight.shape\[-1\]\), got \(4,\)"):
        gtf.spectral_normalize(W, u, tf.ones([4]), sigma)
    with pytest.raises(TypeError, match="sigma must be float32 for a float32 weight, got float64"):
        gtf.spectral_normalize(W, u, v, tf.cast(sigma, tf.float64))
    with pytest.raises(TypeError, match="sigma must be float32 for a float16 weight, got float16"):
        gtf.spectral_normalize(tf.cast(W, tf.float16), tf.cast(u, tf.float16),
                               tf.cast(v, tf.float16), tf.cast(sigma, tf.float16))


# The kernels check again, for callers of the raw ops (eager: no shape function runs).
V = tf.ones([5])
S = tf.constant(2.0)


@pytest.mark.parametrize("call,message", [
    (lambda: ops.ganops_spectral_norm_power_iteration(tf.ones([3]), tf.ones([3]),
                                                      n_power_iterations=1, eps=1e-7),
     r"weight must have at least 2 dims to be viewed as the matrix .*got shape \[3\]"),
    (lambda: ops.ganops_spectral_norm_power_iteration(tf.ones([0, 3]), tf.ones([3]),
                                                      n_power_iterations=1, eps=1e-7),
     r"weight is empty \(shape \[0,3\]\)"),
    (lambda: ops.ganops_spectral_norm_power_iteration(W, tf.ones([4]), n_power_iterations=1,
                                                      eps=1e-7),
     r"u must have shape \[3\] or \[1, 3\] \(weight.shape\[-1\]\), got \[4\]"),
    (lambda: ops.ganops_spectral_norm_power_iteration(W, tf.ones([3, 1]), n_power_iterations=1,
                                                      eps=1e-7),
     r"u must have shape \[3\] or \[1, 3\]"),
    (lambda: ops.ganops_spectral_norm_power_iteration(W, U, n_power_iterations=0, eps=1e-7),
     "n_power_iterations must be >= 1, got 0"),
    (lambda: ops.ganops_spectral_norm_power_iteration(W, U, n_power_iterations=1, eps=0.0),
     "eps must be finite and > 0, got 0"),
    (lambda: ops.ganops_spectral_norm_power_iteration(W, U, n_power_iterations=1, eps=-1.0),
     "eps must be finite and > 0, got -1"),
    (lambda: ops.ganops_spectral_norm_power_iteration(W, U, n_power_iterations=1, eps=1e-7,
                                                      S=tf.float64),
     "sigma must be float for a float weight, got double"),
    (lambda: ops.ganops_spectral_normalize(W, U, tf.ones([4]), S),
     r"v must have shape \[5\] or \[1, 5\] \(weight.size / weight.shape\[-1\]\), got \[4\]"),
    (lambda: ops.ganops_spectral_normalize(W, tf.ones([2]), V, S), r"u must have shape \[3\]"),
    (lambda: ops.ganops_spectral_normalize(W, U, V, tf.ones([2])),
     r"sigma must hold one element, got shape \[2\]"),
    (lambda: ops.ganops_spectral_normalize_grad(tf.ones([5, 4]), W, U, V, S),
     r"grad has shape \[5,4\] but weight has \[5,3\]"),
], ids=["weight-rank", "weight-empty", "u-size", "u-shape", "n", "eps-zero", "eps-negative",
        "sigma-type", "v-size", "normalize-u", "sigma-shape", "grad-shape"])
def test_kernels_reject_bad_inputs(call, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match="ganops.spectral_norm: " + message):
        call()


# In a tf.function, the shape functions reject what is known at graph construction.
@pytest.mark.parametrize("fn,signature,message", [
    (lambda w, u: ops.ganops_spectral_norm_power_iteration(w, u, n_power_iterations=1, eps=1e-7),
     [tf.TensorSpec([None]), tf.TensorSpec([3])],
     "weight must have at least 2 dims to be viewed as the matrix"),
    (lambda w, u: ops.ganops_spectral_norm_power_iteration(w, u, n_power_iterations=1, eps=1e-7),
     [tf.TensorSpec([None, 3]), tf.TensorSpec([1, 4])],
     r"u must have shape \[n\] or \[1, n\] with n = weight.shape\[-1\], got \[1,4\]"),
    (lambda w, u: ops.ganops_spectral_norm_power_iteration(w, u, n_power_iterations=1, eps=1e-7),
     [tf.TensorSpec([None, 3]), tf.TensorSpec([2, 3])], r"u must have shape \[n\] or \[1, n\]"),
    (lambda w, v: ops.ganops_spectral_normalize(w, tf.ones([3]), v, tf.constant(1.0)),
     [tf.TensorSpec([2, 2, 3]), tf.TensorSpec([5])],
     r"v must have shape \[n\] or \[1, n\] with n = weight.size / weight.shape\[-1\], got \[5\]"),
    (lambda g, w: ops.ganops_spectral_normalize_grad(g, w, tf.ones([3]), tf.ones([5]),
                                                     tf.constant(1.0)),
     [tf.TensorSpec([5, 4]), tf.TensorSpec([5, 3])], "grad must have weight's shape"),
], ids=["weight-rank", "u-size", "u-shape", "v-size", "grad-shape"])
def test_shape_functions_reject_bad_shapes(fn, signature, message):
    with pytest.raises(ValueError, match="ganops.spectral_norm: " + message):
        tf.function(fn).get_concrete_function(*signature)


def test_runtime_shapes_are_checked_by_the_kernel():
    fn = tf.function(lambda w, u: gtf.spectral_norm(w, u),
                     input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None])])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"u must have shape \[3\] or \[1, 3\]"):
        fn(W, tf.ones([4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="weight is empty"):
        fn(tf.ones([0, 3]), tf.ones([3]))


@pytest.mark.parametrize("kwargs,message", [
    (dict(power_iterations=0), "power_iterations must be an int >= 1, got 0"),
    (dict(power_iterations=-1), "power_iterations must be an int >= 1, got -1"),
    (dict(power_iterations=2.0), "power_iterations must be an int >= 1, got 2.0"),
    (dict(epsilon=0.0), "epsilon must be a finite number > 0, got 0.0"),
    (dict(epsilon=-1.0), "epsilon must be a finite number > 0, got -1.0"),
], ids=["zero", "negative", "float", "epsilon-zero", "epsilon-negative"])
def test_layer_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="ganops.spectral_norm: " + message):
        gtf.layers.SpectralNormalization(keras.layers.Dense(3), **kwargs)


def test_layer_rejects_layers_without_a_kernel():
    layer = gtf.layers.SpectralNormalization(keras.layers.ReLU())
    with pytest.raises(ValueError, match="ReLU object has no attribute 'kernel' nor 'embeddings'"):
        layer.build((None, 3))
    with pytest.raises(ValueError, match="isn't a supported layer type"):
        gtf.layers.SpectralNormalization(object())


def test_a_bad_call_does_not_crash_or_corrupt_state():
    u = tf.Variable(np.ones([1, 3], "float32"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        ops.ganops_spectral_norm_power_iteration(W, tf.ones([7]), n_power_iterations=1, eps=1e-7)
    w_sn, u_new = gtf.spectral_norm(W, u)  # the process and later calls are fine
    np.testing.assert_array_equal(u.numpy(), np.ones([1, 3]))
    assert np.isfinite(w_sn.numpy()).all() and u_new.shape == (1, 3)
