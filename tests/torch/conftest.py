import socket

import pytest
import torch

import ganops
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


def require_cuda_kernels():
    """Called at the top of a CUDA test module: skips the module where torch sees no GPU (CI has
    none), and fails it where there is a GPU but ganops was built without its CUDA kernels."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the CUDA kernels are compiled in CI but run only on a GPU",
                    allow_module_level=True)
    if not ganops.build_info()["torch_cuda_kernels"]:
        pytest.fail("torch sees a GPU but ganops was built without CUDA kernels: rebuild with nvcc on PATH",
                    pytrace=False)


@pytest.fixture
def full_float32():
    """cuDNN convolutions run float32 in TF32 by default on Ampere and newer GPUs (10-bit
    mantissa products). A ganops layer and torch's layer differ by float32 rounding, which moves
    single TF32 roundings and so outputs by ~5e-5: the CUDA tests compare in full float32."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def assert_no_host_wait(fn):
    """Runs fn() behind a 50 ms device sleep on the current stream and checks that fn returned
    while the stream was still busy, i.e. nothing in fn waited for the device (a
    cudaDeviceSynchronize or blocking copy inside a launcher would; set_sync_debug_mode only
    sees synchronizations that go through c10)."""
    torch.cuda.synchronize()
    torch.cuda._sleep(100_000_000)  # cycles: ~50 ms at 2 GHz
    out = fn()
    busy = not torch.cuda.current_stream().query()
    torch.cuda.synchronize()
    assert busy, "the call returned only after the device went idle: something waited on the host"
    return out


def free_port():
    """A free TCP port on 127.0.0.1 for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
