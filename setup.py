"""Build ganops: CMake builds one library per importable framework plus ganops._core.

    pip install --no-build-isolation .          # into an environment with torch and/or TF

Environment: GANOPS_WITH_TORCH / GANOPS_WITH_TF / GANOPS_WITH_CUDA = ON|OFF|AUTO,
GANOPS_BUILD_DIR (persistent CMake build directory), MAX_JOBS, TORCH_CUDA_ARCH_LIST or
CMAKE_CUDA_ARCHITECTURES.
"""
import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"

# Extension name -> path of the built file relative to the CMake output directory.
LIBRARIES = {
    "ganops._core": "ganops/_core",
    "ganops.torch._ganops_torch": "ganops/torch/_ganops_torch",
    "ganops.tf._ganops_tf": "ganops/tf/_ganops_tf",
}


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extensions(self):
        ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
        tag = f"py{sys.version_info.major}{sys.version_info.minor}"
        build_dir = os.environ.get("GANOPS_BUILD_DIR", os.path.join(ROOT, "build", f"cmake-{tag}"))
        out_dir = os.path.join(build_dir, "lib")
        args = [
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DGANOPS_VERSION={VERSION}",
            f"-DGANOPS_EXT_SUFFIX={ext_suffix}",
            f"-DGANOPS_OUTPUT_DIR={out_dir}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        try:
            import pybind11

            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        # Always pass the switches: an unset one means AUTO, not whatever the CMake cache kept.
        for key in ("GANOPS_WITH_TORCH", "GANOPS_WITH_TF", "GANOPS_WITH_CUDA"):
            args.append(f"-D{key}={os.environ.get(key, 'AUTO')}")
        if os.environ.get("CMAKE_CUDA_ARCHITECTURES"):
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['CMAKE_CUDA_ARCHITECTURES']}")
        if shutil.which("ninja"):
            args.append("-GNinja")

        # Configure only when the arguments changed: a rebuild then costs what ninja says.
        os.makedirs(build_dir, exist_ok=True)
        stamp = os.path.join(build_dir, "ganops-configure-args")
        previous = open(stamp).read() if os.path.exists(stamp) else None
        if previous != "\n".join(args) or not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, *args], check=True)
            with open(stamp, "w") as f:
                f.write("\n".join(args))
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", build_dir, "--parallel", jobs], check=True)

        built = []
        for ext in self.extensions:
            src = os.path.join(out_dir, LIBRARIES[ext.name] + ext_suffix)
            if os.path.exists(src):  # a framework skipped by AUTO has no library
                dst = self.get_ext_fullpath(ext.name)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
                built.append(ext)
            else:
                print(f"ganops: {ext.name} was not built (framework not importable or switched OFF)")
        self.extensions[:] = built


setup(
    name="ganops",
    version=VERSION,
    description="Compiled GAN kernels for PyTorch and TensorFlow: fused bias+activation, "
    "spectral norm, gradient penalties",
    package_dir={"": "python"},
    packages=find_packages("python"),
    ext_modules=[CMakeExtension(name) for name in LIBRARIES],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={"torch": ["torch>=2.5"], "tf": ["tensorflow>=2.16"]},
    zip_safe=False,
)
