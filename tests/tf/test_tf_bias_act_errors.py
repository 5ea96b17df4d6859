"""Bad input raises a clear exception naming the argument, from the Python wrappers (before
anything runs), from the shape functions (graph construction) and from the kernels (run time)."""
import keras
import pytest
import tensorflow as tf

import ganops.tf as gtf
from ganops.tf._library import ops
from ganops.tf.layers import FusedBiasAct

X = tf.zeros([2, 3, 4])
B = tf.zeros([3])

# (kwargs for bias_act, exception type, message pattern)
BAD_CALLS = [
    (dict(act="leaky"), ValueError, r"act: unknown activation 'leaky'; expected one of .*lrelu"),
    (dict(act=None), TypeError, "act must be a string"),
    (dict(act="relu", clamp=-1.0), ValueError, "clamp must be None or >= 0"),
    (dict(act="relu", clamp=float("nan")), ValueError, "clamp must be None or >= 0"),
    (dict(act="relu", alpha=0.1), ValueError, "alpha is only used by act='lrelu'"),
    (dict(act="relu", gain=float("inf")), ValueError, "gain must be finite"),
    (dict(b=tf.zeros([4])), ValueError, r"b must be 1-D with x.shape\[1\] = 3 elements"),
    (dict(b=tf.zeros([3, 1])), ValueError, "b must be 1-D"),
    (dict(b=tf.zeros([3], tf.float64)), TypeError, "b has dtype float64 but x has float32"),
    (dict(dim=3), ValueError, "dim 3 is out of range for x with 3 dims"),
    (dict(dim=-4), ValueError, "dim -4 is out of range"),
    (dict(dim=1.0), TypeError, "dim must be an int"),
    (dict(x=tf.zeros([2, 3], tf.int32)), TypeError, "x must be float32, float64, float16 or bfloat16"),
    (dict(x=tf.zeros([])), ValueError, "x must have at least one dim when b is given"),
]


@pytest.mark.parametrize("fn", [gtf.bias_act, gtf.reference.bias_act], ids=["ops", "reference"])
@pytest.mark.parametrize("kwargs,error,message", BAD_CALLS,
                         ids=[f"{c[1].__name__}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_wrapper_rejects_bad_arguments(fn, kwargs, error, message):
    kwargs = dict(kwargs)
    x, b = kwargs.pop("x", X), kwargs.pop("b", B)
    with pytest.raises(error, match=message) as info:
        fn(x, b, **kwargs)
    assert str(info.value).startswith("ganops.bias_act: ")


@pytest.mark.parametrize("fn", [gtf.bias_act, gtf.reference.bias_act], ids=["ops", "reference"])
def test_long_bad_act_is_cut_in_the_message(fn):
    with pytest.raises(ValueError, match="unknown activation 'xxx.*10000 characters") as info:
        fn(X, B, act="x" * 10000)
    assert len(str(info.value)) < 300


def raw_attrs(**overrides):
    attrs = dict(act="relu", alpha=0.0, gain=1.0, clamp=-1.0, dim=1, has_bias=True)
    attrs.update(overrides)
    return attrs


# The kernels check again, for callers of the raw ops and for shapes only known at run time.
@pytest.mark.parametrize("call,message", [
    (lambda: ops.ganops_bias_act(X, B, **raw_attrs(act="nope")), "act: unknown activation 'nope'"),
    (lambda: ops.ganops_bias_act(X, B, **raw_attrs(dim=5)), "dim 5 is out of range"),
    (lambda: ops.ganops_bias_act(X, tf.zeros([4]), **raw_attrs()), r"b must be 1-D with x.shape\[1\]"),
    (lambda: ops.ganops_bias_act_grad(tf.zeros([2, 3, 5]), X, B, **raw_attrs()),
     r"grad has shape \[2,3,5\] but x has \[2,3,4\]"),
    (lambda: ops.ganops_bias_act_grad_grad(tf.zeros([2, 3]), X, X, B, **raw_attrs()),
     "grad_grad has shape"),
    (lambda: ops.ganops_bias_act_grad_grad(X, tf.zeros([1]), X, B, **raw_attrs()),
     "grad has shape"),
], ids=["act", "dim", "b", "grad", "grad_grad", "grad_grad-grad"])
def test_kernels_reject_bad_inputs(call, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call()


def test_shape_function_rejects_wrong_bias_length_in_graph():
    @tf.function
    def f():
        return ops.ganops_bias_act(X, tf.zeros([4]), **raw_attrs())

    with pytest.raises(ValueError, match=r"b must be 1-D with x.shape\[1\] elements"):
        f()


def test_dtype_attr_rejects_integers():
    with pytest.raises((TypeError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError)):
        ops.ganops_bias_act(tf.zeros([2, 3], tf.int32), tf.zeros([3], tf.int32), **raw_attrs())


def test_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="^ganops.bias_act: act: unknown activation"):
        FusedBiasAct("leaky")
    with pytest.raises(ValueError, match="^ganops.bias_act: alpha is only used by act='lrelu'"):
        FusedBiasAct("relu", alpha=0.3)
    with pytest.raises(ValueError, match="^ganops.tf.layers.FusedBiasAct: dim 4 is out of range"):
        FusedBiasAct("relu", dim=4)(tf.zeros([2, 3]))
    with pytest.raises(ValueError, match="^ganops.tf.layers.FusedBiasAct: needs a known size for "
                                         "axis dim=-1"):
        keras.Sequential([keras.Input((None,)), FusedBiasAct("relu")])


@pytest.mark.parametrize("dim,shown", [(None, "None of type NoneType"), (1.5, "1.5 of type float"),
                                       (True, "True of type bool"), ("1", "'1' of type str")])
def test_layer_rejects_a_dim_that_is_not_an_int_at_construction(dim, shown):
    with pytest.raises(TypeError, match=rf"^ganops.tf.layers.FusedBiasAct: dim must be an int "
                                        rf".*, got {shown}"):
        FusedBiasAct("relu", dim=dim)
