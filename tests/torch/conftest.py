import socket

import pytest
import torch

import ganops.torch  # noqa: F401  (registers torch.ops.ganops)

ACTS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish", "gelu"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (atol, rtol) against the reference; half types round the output once, as the reference does.
TOL = {
    torch.float64: (1e-12, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def free_port():
    """A free TCP port on 127.0.0.1 for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
