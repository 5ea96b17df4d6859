"""ganops.tf.bias_act against the pure-TF reference: forward and first-order gradients for every
activation, dtype, layout, with and without bias and clamp."""
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from tf_cases import ACTS, CLAMP, DTYPES, LAYOUTS, assert_close, ids, random_inputs, tolerance


def forward_and_grads(fn, x, b, dim, act, clamp, upstream):
    sources = [x] if b is None else [x, b]
    with tf.GradientTape() as tape:
        tape.watch(sources)
        y = fn(x, b, dim=dim, act=act, clamp=clamp)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return y, tape.gradient(loss, sources)


@pytest.mark.parametrize("clamp", [None, CLAMP], ids=["noclamp", "clamp"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layout,shape,dim", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
@pytest.mark.parametrize("dtype", DTYPES, ids=ids(DTYPES))
@pytest.mark.parametrize("act", ACTS)
def test_matches_reference(act, dtype, layout, shape, dim, with_bias, clamp):
    x, b = random_inputs(shape, dim, dtype, seed=len(act), with_bias=with_bias)
    upstream = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)
    y, grads = forward_and_grads(gtf.bias_act, x, b, dim, act, clamp, upstream)
    y_ref, grads_ref = forward_and_grads(gtf.reference.bias_act, x, b, dim, act, clamp, upstream)

    assert y.dtype == dtype and y.shape == x.shape
    rtol, atol = tolerance(dtype)
    assert_close(y, y_ref, rtol, atol, "y")
    assert_close(grads[0], grads_ref[0], rtol, atol, "dx")
    if with_bias:
        assert grads[1].dtype == dtype and grads[1].shape == b.shape
        rtol, atol = tolerance(dtype, terms=int(np.prod(shape)) // shape[dim])
        assert_close(grads[1], grads_ref[1], rtol, atol, "db")


@pytest.mark.parametrize("act", ["lrelu", "gelu"])
@pytest.mark.parametrize("shape,dim", [((4, 16, 32, 32), 1), ((4, 32, 32, 16), -1)],
                         ids=["nchw", "nhwc"])
def test_large_tensor_uses_thread_pool_and_matches(act, shape, dim):
    # 65536 elements: above the core's grain, so the work is split across TF's worker threads.
    x, b = random_inputs(shape, dim, tf.float32, seed=3)
    y = gtf.bias_act(x, b, dim=dim, act=act, clamp=CLAMP)
    assert_close(y, gtf.reference.bias_act(x, b, dim=dim, act=act, clamp=CLAMP), 1e-5, 1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_defaults_come_from_the_core_table(act):
    from ganops import _core

    default_alpha, default_gain = _core.activations()[act]
    x, b = random_inputs((2, 3), 1, tf.float64)
    explicit = {"gain": default_gain}
    if act == "lrelu":
        explicit["alpha"] = default_alpha
    assert_close(gtf.bias_act(x, b, act=act), gtf.bias_act(x, b, act=act, **explicit), 0, 0)


def test_gain_alpha_and_clamp_are_applied():
    x = tf.constant([[-2.0, 3.0]], tf.float64)
    y = gtf.bias_act(x, act="lrelu", alpha=0.5, gain=3.0)
    assert_close(y, [[-3.0, 9.0]], 1e-6, 0)
    y = gtf.bias_act(x, act="lrelu", alpha=0.5, gain=3.0, clamp=2.5)
    assert_close(y, [[-2.5, 2.5]], 1e-6, 0)


def test_empty_input():
    x = tf.zeros([0, 3, 2], tf.float32)
    y = gtf.bias_act(x, tf.ones([3]), act="relu")
    assert y.shape == (0, 3, 2)
