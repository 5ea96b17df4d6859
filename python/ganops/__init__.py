"""ganops: compiled GAN kernels for PyTorch and TensorFlow.

    import ganops.torch as gt   # PyTorch ops, functional API, nn layers
    import ganops.tf as gtf     # TensorFlow ops, functional API, Keras layers

Importing ``ganops`` itself imports neither framework.
"""

__version__ = "0.1.0"


def build_info():
    """What this build was compiled against: versions, CUDA, architectures."""
    from ganops import _core

    return _core.build_info()
