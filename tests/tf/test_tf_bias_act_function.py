"""bias_act inside tf.function: static, partly unknown and unknown shapes, gradients in graph mode,
and errors that can only be found at run time."""
import numpy as np
import pytest
import tensorflow as tf

import ganops.tf as gtf
from tf_cases import assert_close, random_inputs


@pytest.mark.parametrize("act", ["lrelu", "swish"])
def test_input_signature_with_none_dims_does_not_retrace(act):
    @tf.function(input_signature=[tf.TensorSpec([None, 3, None, None], tf.float32),
                                  tf.TensorSpec([3], tf.float32)])
    def f(x, b):
        y = gtf.bias_act(x, b, dim=1, act=act, clamp=0.6)
        assert y.shape.as_list() == [None, 3, None, None]  # the shape function keeps what is known
        return y

    for shape in [(2, 3, 4, 5), (1, 3, 2, 7)]:
        x, b = random_inputs(shape, 1, tf.float32)
        assert_close(f(x, b), gtf.reference.bias_act(x, b, dim=1, act=act, clamp=0.6), 1e-5, 1e-6)
    assert f.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("dim", [1, -1])
def test_unknown_rank_with_gradients(dim):
    # Unknown rank: dim is normalised by the kernel at run time and the bias gradient's
    # reduction axes are built at run time too.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float64), tf.TensorSpec([None], tf.float64)])
    def f(x, b):
        with tf.GradientTape() as tape:
            tape.watch([x, b])
            y = gtf.bias_act(x, b, dim=dim, act="elu")
            loss = tf.reduce_sum(y * y)
        return (y,) + tuple(tape.gradient(loss, [x, b]))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float64), tf.TensorSpec([None], tf.float64)])
    def f_ref(x, b):
        with tf.GradientTape() as tape:
            tape.watch([x, b])
            y = gtf.reference.bias_act(x, b, dim=dim, act="elu")
            loss = tf.reduce_sum(y * y)
        return (y,) + tuple(tape.gradient(loss, [x, b]))

    for shape in [(2, 3, 4), (3, 4, 3, 2, 3)]:
        x, b = random_inputs(shape, dim, tf.float64)
        for got, want in zip(f(x, b), f_ref(x, b)):
            assert_close(got, want, 1e-6, 1e-7)


def test_second_order_inside_tf_function():
    @tf.function
    def penalty_grad(x, b):
        with tf.GradientTape() as outer:
            outer.watch([x, b])
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = tf.reduce_sum(gtf.bias_act(x, b, dim=-1, act="softplus"))
            g = inner.gradient(loss, x)
            penalty = tf.reduce_sum(g ** 2)
        return outer.gradient(penalty, [x, b])

    @tf.function
    def penalty_grad_ref(x, b):
        with tf.GradientTape() as outer:
            outer.watch([x, b])
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = tf.reduce_sum(gtf.reference.bias_act(x, b, dim=-1, act="softplus"))
            g = inner.gradient(loss, x)
            penalty = tf.reduce_sum(g ** 2)
        return outer.gradient(penalty, [x, b])

    x, b = random_inputs((2, 4, 4, 3), -1, tf.float32)
    for got, want in zip(penalty_grad(x, b), penalty_grad_ref(x, b)):
        assert_close(got, want, 1e-4, 1e-5)


def test_no_bias_in_tf_function_any_rank():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def f(x):
        return gtf.bias_act(x, act="tanh")

    for shape in [(), (5,), (2, 3, 4)]:
        x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
        assert_close(f(x), tf.tanh(x), 1e-6, 1e-6)


def test_wrong_bias_length_found_at_run_time():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([None], tf.float32)])
    def f(x, b):
        return gtf.bias_act(x, b, dim=1, act="relu")

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"b must be 1-D with x.shape\[1\] = 3"):
        f(tf.zeros([2, 3]), tf.zeros([4]))


def test_dim_out_of_range_found_at_run_time():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec([None], tf.float32)])
    def f(x, b):
        return gtf.bias_act(x, b, dim=3, act="relu")

    with pytest.raises(tf.errors.InvalidArgumentError, match="dim 3 is out of range"):
        f(tf.zeros([2, 3]), tf.zeros([3]))
