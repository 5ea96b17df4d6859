"""Loads the compiled PyTorch op library (torch.ops.ganops.*) once."""
import os

import torch

from ganops import _loader

_PATH = _loader.library_path(os.path.dirname(__file__), "_ganops_torch")
_loader.check_built_against("torch", "torch", torch.__version__)
_loader.load_checked(torch.ops.load_library, _PATH, "torch")
