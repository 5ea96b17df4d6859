"""Loads the compiled PyTorch op library (torch.ops.ganops.*) once."""
import os

import torch

from ganops import _loader

_loader.load_framework_library("torch", "torch", torch.__version__, os.path.dirname(__file__),
                               "_ganops_torch", torch.ops.load_library)
