"""The CPU loops' runtime ISA dispatch: the baseline path is correct where AVX2 exists too, and
AVX2/FMA instructions appear only in the dispatched loop functions, so a CPU without AVX2 never
meets them (the libraries are built for baseline x86-64)."""
import glob
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

import ganops

PACKAGE = os.path.dirname(ganops.__file__)

BASELINE_CHECK = r"""
import numpy as np, ganops
from ganops import _core
assert ganops.build_info()["cpu_loops"].startswith("baseline"), ganops.build_info()["cpu_loops"]
x = np.linspace(-6, 6, 100_003, dtype=np.float32).reshape(1, -1)
z = x.astype(np.float64)
y = _core.bias_act(x, None, 1, "swish", 0.0, 1.0, -1.0)
np.testing.assert_allclose(y, z / (1 + np.exp(-z)), rtol=2e-6, atol=2e-6)
"""


def test_baseline_loops_are_correct_when_forced():
    env = dict(os.environ, GANOPS_DISABLE_AVX2="1")
    subprocess.run([sys.executable, "-c", BASELINE_CHECK], check=True, env=env)


# The core modules whose loops have AVX2 twins, run again on the baseline loops: the choice is
# made once per process, so they run in a child process.
TWINNED = ("test_core_spectral_norm.py", "test_core_gradient_penalty.py")


def test_core_modules_pass_on_the_baseline_loops():
    env = dict(os.environ, GANOPS_DISABLE_AVX2="1")
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *(os.path.join(here, name) for name in TWINNED)],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="ISA dispatch exists on x86-64 only")
def test_avx2_instructions_only_in_dispatched_loops():
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to inspect the built libraries"
    libraries = [p for pattern in ("_core*.so", "torch/_ganops_torch*.so", "tf/_ganops_tf*.so")
                 for p in glob.glob(os.path.join(PACKAGE, pattern))]
    # pybind11 strips _core in release builds; without a symbol table objdump would attribute
    # its code to the nearest exported symbol, so only libraries with symbols are inspected.
    libraries = [p for p in libraries
                 if "no symbols" not in subprocess.run(["nm", p], capture_output=True, text=True).stderr]
    assert libraries, "no built library with a symbol table found (torch or TF op library expected)"
    # The AVX2 twins are the ganops::cpu functions named *_avx2 (run_elements_avx2, the
    # spectral-norm blocks, ...); everything else must be baseline code.
    dispatched = re.compile(r"ganops::cpu::\w+_avx2<")
    avx = re.compile(r"\b(ymm\d+|vfmadd\w*|vfmsub\w*|vfnmadd\w*|vbroadcast\w*|vperm\w*)\b")
    for library in libraries:
        listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", library],
                                 check=True, capture_output=True, text=True).stdout
        offenders, function = set(), None
        for line in listing.splitlines():
            header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
            if header:
                function = header.group(1)
            elif avx.search(line) and not dispatched.search(function or ""):
                offenders.add(function)
        assert not offenders, f"{os.path.basename(library)}: AVX2 code outside the dispatched loops: {sorted(offenders)[:3]}"
