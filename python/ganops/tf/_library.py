"""Loads the compiled TensorFlow op library, refusing one built against another TF version."""
import os

import tensorflow as tf

from ganops import _loader

# The generated op wrappers: ops.ganops_bias_act, ops.ganops_bias_act_grad, ...
ops = _loader.load_framework_library("TensorFlow", "tensorflow", tf.__version__,
                                     os.path.dirname(__file__), "_ganops_tf", tf.load_op_library)
