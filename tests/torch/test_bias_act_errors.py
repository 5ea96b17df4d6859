"""Bad input raises a clear Python exception naming the argument; the process survives."""
import pytest
import torch

import ganops.torch as gt

ops = torch.ops.ganops


def test_bias_of_wrong_length():
    with pytest.raises(ValueError, match=r"b must be 1-D with x.shape\[1\] = 3"):
        gt.bias_act(torch.randn(2, 3, 4), torch.randn(4))


def test_bias_not_1d():
    with pytest.raises(ValueError, match="b must be 1-D"):
        gt.bias_act(torch.randn(2, 3), torch.randn(3, 1))


def test_unknown_activation():
    with pytest.raises(ValueError, match="act: unknown activation 'leaky'"):
        gt.bias_act(torch.randn(2, 3), act="leaky")


def test_unknown_activation_at_op_level():
    with pytest.raises(ValueError, match="act: unknown activation"):
        ops.bias_act(torch.randn(2, 3), None, 1, "nope", 0.0, 1.0, None)


def test_negative_clamp():
    with pytest.raises(ValueError, match="clamp must be None or >= 0"):
        gt.bias_act(torch.randn(2, 3), act="relu", clamp=-1)
    with pytest.raises(ValueError, match="clamp must be None or >= 0"):
        ops.bias_act(torch.randn(2, 3), None, 1, "relu", 0.0, 1.0, -1.0)


@pytest.mark.parametrize("name", ["gain", "clamp"])
@pytest.mark.parametrize("bad", ["2", True, [1.0]])
def test_scalar_that_is_not_a_number(name, bad):
    # float("2") would have taken the string: the mistake must be named, not absorbed.
    with pytest.raises(TypeError, match=f"ganops.bias_act: {name} must be a float"):
        gt.bias_act(torch.randn(2, 3), act="relu", **{name: bad})


def test_long_activation_name_is_cut_in_the_message():
    with pytest.raises(ValueError, match=r"^ganops.bias_act: act: unknown activation 'xxx") as info:
        gt.bias_act(torch.randn(2, 3), act="x" * 10000)
    assert len(str(info.value)) < 300


def test_alpha_for_an_activation_that_has_none():
    with pytest.raises(ValueError, match="alpha is only used by act='lrelu'"):
        gt.bias_act(torch.randn(2, 3), act="relu", alpha=0.1)


def test_mismatched_dtype():
    with pytest.raises(TypeError, match="b has dtype"):
        gt.bias_act(torch.randn(2, 3), torch.randn(3, dtype=torch.float64))


def test_integer_input():
    with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
        gt.bias_act(torch.ones(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("dim", [2, -3])
def test_dim_out_of_range(dim):
    with pytest.raises(IndexError, match="dim .* is out of range"):
        gt.bias_act(torch.randn(2, 3), torch.randn(3), dim=dim)


def test_non_dense_input():
    x = torch.randn(2, 6, 4)[:, ::2]
    with pytest.raises(ValueError, match="x must be dense"):
        gt.bias_act(x, torch.randn(3))


def test_gradient_of_wrong_shape():
    with pytest.raises(ValueError, match="grad has shape"):
        ops.bias_act_backward(torch.randn(3, 2), torch.randn(2, 3), None, 1, "relu", 0.0, 1.0, None)


def test_errors_from_fake_kernels_under_compile():
    torch._dynamo.reset()
    f = torch.compile(lambda x, b: gt.bias_act(x, b), fullgraph=True, backend="eager")
    with pytest.raises(Exception, match="b must be 1-D"):
        f(torch.randn(2, 3), torch.randn(4))
