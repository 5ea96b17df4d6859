"""Argument checks of the ganops.torch Python front end. The ops check their tensors in C++;
what arrives before them (a list for a bias, a string for eps, None for a tensor) would
otherwise fail deep inside torch or the dispatcher with a message that names neither ganops
nor the argument. Messages start with `ganops.<function>:` like the C++ ones."""
import math
import numbers
import operator

import torch

from ganops._activations import describe


def tensor(value, fn, name, optional=False):
    if isinstance(value, torch.Tensor) or (optional and value is None):
        return value
    expected = "a tensor or None" if optional else "a tensor"
    raise TypeError(f"ganops.{fn}: {name} must be {expected}, got {type(value).__name__}")


def integer(value, fn, name):
    """An int (or an object that is one, such as numpy.int64); bool and float are not."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"ganops.{fn}: {name} must be an int, got {describe(value)}")


def real(value, fn, name):
    """A real number as a float; strings, bools and None are not numbers here (float('1') would
    accept a string and hide the mistake)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        return float(value)
    raise TypeError(f"ganops.{fn}: {name} must be a float, got {describe(value)}")


def positive_float(value, fn, name):
    """A finite float > 0: TypeError for what is not a number, ValueError for one out of range."""
    message = f"ganops.{fn}: {name} must be a positive float, got {describe(value)}"
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(message)
    result = float(value)
    if not (math.isfinite(result) and result > 0):
        raise ValueError(message)
    return result


def string(value, fn, name):
    if isinstance(value, str):
        return value
    raise TypeError(f"ganops.{fn}: {name} must be a string, got {describe(value)}")
