"""Loads the compiled TensorFlow op library, refusing one built against another TF version."""
import os

import tensorflow as tf

from ganops import _loader

_loader.check_built_against("TensorFlow", "tensorflow", tf.__version__)

# The generated op wrappers: ops.ganops_bias_act, ops.ganops_bias_act_grad, ...
ops = _loader.load_checked(
    tf.load_op_library, _loader.library_path(os.path.dirname(__file__), "_ganops_tf"), "TensorFlow"
)
