"""The CUDA kernels of csrc/core/cuda, run on the CPU by tests/cuda_emulated's block emulator.

No GPU is needed: launch_rewrite.py copies the real .cu sources into a temporary build directory
with every <<<...>>> launch rewritten for the emulator, each driver (tests/cuda_emulated/*_test.cpp)
is compiled by g++ against the CUDA runtime headers and the CPU reference templates, and runs the
kernels on many shapes against the CPU results. What the emulator does and does not check is in
tests/cuda_emulated/emu.h.

Needs g++ and the CUDA headers (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h), found through
CUDA_HOME / CUDA_PATH, the nvcc on PATH or /usr/local/cuda. Without them the module is skipped,
except under CI=true, where it fails (CI must check the kernels, as .ci/compile_cuda.sh does).
Does not import ganops. GANOPS_EMU_CXX overrides the compiler.

By hand, what the tests do (CUDA=/usr/local/cuda, from the repository root):
    python3 tests/cuda_emulated/launch_rewrite.py /tmp/emu csrc/core/cuda/*.cu csrc/core/cuda/*.cuh
    g++ -std=c++17 -O2 -fcf-protection=none -Itests/cuda_emulated -isystem $CUDA/include \
        -c tests/cuda_emulated/emu.cpp -o /tmp/emu/emu.o
    g++ -std=c++17 -O1 -ftrivial-auto-var-init=pattern -I/tmp/emu -Itests/cuda_emulated \
        -Icsrc/core/include -isystem $CUDA/include tests/cuda_emulated/spectral_norm_test.cpp \
        /tmp/emu/emu.o -o /tmp/emu/spectral_norm_test && EMU_VERBOSE=1 /tmp/emu/spectral_norm_test
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMU_DIR = ROOT / "tests" / "cuda_emulated"
CUDA_SRC = ROOT / "csrc" / "core" / "cuda"
CORE_INCLUDE = ROOT / "csrc" / "core" / "include"
CUDA_HEADERS = ("cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h")
# -O1: the shortest compile + run (measured: -O0 runs the emulator much slower, -O2 compiles
# longer than it saves). The emulator's scheduler itself is built once with -O2.
CXXFLAGS = ["-std=c++17", "-O1", "-g0"]
DRIVERS = sorted(p.stem[: -len("_test")] for p in EMU_DIR.glob("*_test.cpp"))


def _nvcc_include_dirs(nvcc):
    """The include directories nvcc itself uses (nvcc may be a wrapper script, not a symlink)."""
    real = Path(os.path.realpath(nvcc))
    dirs = [real.parent.parent / "include"]
    try:
        out = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
        for m in re.finditer(r'INCLUDES="([^"]*)"', out.stdout + out.stderr):
            dirs += [Path(f[2:]) for f in shlex.split(m.group(1)) if f.startswith("-I")]
    except (OSError, subprocess.SubprocessError):
        pass
    return dirs


def find_cuda_include():
    candidates = [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates += _nvcc_include_dirs(nvcc)
    candidates.append(Path("/usr/local/cuda/include"))
    for c in candidates:
        if all((c / h).is_file() for h in CUDA_HEADERS):
            return c
    return None


def _missing_toolchain():
    cxx = os.environ.get("GANOPS_EMU_CXX") or shutil.which("g++")
    if not cxx:
        return None, None, "g++ not found (GANOPS_EMU_CXX names another compiler)"
    inc = find_cuda_include()
    if inc is None:
        return cxx, None, ("CUDA headers not found (%s; looked in CUDA_HOME, CUDA_PATH, next to nvcc "
                           "and in /usr/local/cuda)" % ", ".join(CUDA_HEADERS))
    return cxx, inc, None


def _run(cmd, timeout, cwd=None):
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return proc, time.monotonic() - start


def _tail(text, lines=80):
    rows = text.rstrip().splitlines()
    return "\n".join(rows if len(rows) <= lines else ["... (%d lines before)" % (len(rows) - lines)] + rows[-lines:])


@pytest.fixture(scope="module")
def toolchain():
    cxx, inc, why = _missing_toolchain()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail("emulated CUDA tests cannot run in CI: " + why, pytrace=False)
        pytest.skip("emulated CUDA tests need g++ and the CUDA headers: " + why)
    flags = list(CXXFLAGS)
    # Uninitialized locals in a kernel read a poison pattern instead of whatever was there.
    probe = subprocess.run([cxx, "-ftrivial-auto-var-init=pattern", "-x", "c++", "-fsyntax-only", os.devnull],
                           capture_output=True)
    if probe.returncode == 0:
        flags.append("-ftrivial-auto-var-init=pattern")
    return {"cxx": cxx, "cuda_include": inc, "flags": flags}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory, toolchain):
    """Rewritten CUDA sources and the emulator's object file, shared by the drivers."""
    out = tmp_path_factory.mktemp("cuda_emulated")
    gen = out / "cuda"
    sources = sorted(CUDA_SRC.glob("*.cu")) + sorted(CUDA_SRC.glob("*.cuh"))
    assert sources, "no CUDA sources in %s" % CUDA_SRC
    sources.append(EMU_DIR / "emulator_selftest.cu")
    proc, _ = _run([sys.executable, str(EMU_DIR / "launch_rewrite.py"), str(gen)] + [str(s) for s in sources], 120)
    assert proc.returncode == 0, "launch_rewrite.py failed:\n" + proc.stdout + proc.stderr
    emu_o = out / "emu.o"
    # No CET marking: the hand-written fiber switch is not shadow-stack safe.
    cmd = [toolchain["cxx"], "-std=c++17", "-O2", "-g0", "-fcf-protection=none", "-I", str(EMU_DIR), "-isystem",
           str(toolchain["cuda_include"]), "-c", str(EMU_DIR / "emu.cpp"), "-o", str(emu_o)]
    proc, _ = _run(cmd, 300)
    assert proc.returncode == 0, "emu.cpp does not compile:\n%s\n%s" % (shlex.join(cmd), _tail(proc.stderr))
    return {"dir": out, "gen": gen, "emu_o": emu_o}


def _compile(toolchain, build_dir, source, exe):
    cmd = ([toolchain["cxx"]] + toolchain["flags"] +
           ["-I", str(build_dir["gen"]), "-I", str(EMU_DIR), "-I", str(CORE_INCLUDE), "-isystem",
            str(toolchain["cuda_include"]), "-x", "c++", str(source), "-x", "none", str(build_dir["emu_o"]),
            "-o", str(exe)])
    proc, seconds = _run(cmd, 600)
    if proc.returncode != 0:
        pytest.fail("%s does not compile:\n%s\n%s" % (source.name, shlex.join(cmd), _tail(proc.stderr, 60)),
                    pytrace=False)
    return seconds


def _check_pass(name, exe, proc):
    output = (proc.stdout + ("\n" + proc.stderr if proc.stderr else "")).strip()
    pass_line = re.search(r"^%s: PASS (\d+) cases.*$" % re.escape(name), proc.stdout, re.M)
    if proc.returncode != 0 or not pass_line:
        pytest.fail("%s exited with %d%s, output:\n%s\n(rerun: %s; EMU_VERBOSE=1 lists every case)"
                    % (exe.name, proc.returncode, " (emulator error)" if proc.returncode == 3 else "",
                       _tail(output), exe), pytrace=False)
    return pass_line.group(0)


@pytest.mark.parametrize("driver", DRIVERS)
def test_cuda_kernels_on_emulator(driver, toolchain, build_dir):
    """<driver>_test.cpp: compiled against the rewritten .cu, runs, must print its PASS line."""
    exe = build_dir["dir"] / (driver + "_test")
    compile_s = _compile(toolchain, build_dir, EMU_DIR / (driver + "_test.cpp"), exe)
    proc, run_s = _run([str(exe)], 600)
    summary = _check_pass(driver + "_test", exe, proc)
    print("%s (compile %.1f s, run %.1f s)" % (summary, compile_s, run_s))


@pytest.fixture(scope="module")
def selftest(toolchain, build_dir):
    exe = build_dir["dir"] / "emulator_selftest"
    _compile(toolchain, build_dir, build_dir["gen"] / "emulator_selftest.cu", exe)
    return exe


def test_emulator_semantics(selftest):
    """Shuffles (every op and width), block reductions in every schedule, dim3 indexing."""
    proc, _ = _run([str(selftest)], 120)
    _check_pass("emulator_selftest", selftest, proc)


SCENARIOS = [
    ("nonuniform-barrier", 3, r"non-uniform __syncthreads at .*emulator_selftest.cu:\d+: 128 threads wait"),
    ("divergent-barrier", 3, r"threads wait at different __syncthreads"),
    ("grid-y-limit", 3, r"grid exceeds CUDA's limits"),
    ("block-limit", 3, r"block exceeds CUDA's limits"),
    ("empty-grid", 3, r"launch with an empty grid"),
    ("launch-bounds", 3, r"more than the kernel's __launch_bounds__\(128\)"),
    ("shuffle-mask", 3, r"reads lane 16, which is not in the mask"),
    ("shuffle-exited-lane", 3, r"reads lane 16, which has exited"),
    ("missing-barrier", 1, r"a value never written"),
    ("order-race", 1, r"schedule changes the result"),
    ("out-of-bounds-write", 1, r"wrote outside out"),
]


@pytest.mark.parametrize("scenario, status, message", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_emulator_catches(selftest, scenario, status, message):
    """A kernel with the mistake is stopped by the emulator (3) or its damage seen (1)."""
    proc, _ = _run([str(selftest), scenario], 60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == status and re.search(message, output), (
        "scenario %s: exit %d, expected %d and /%s/:\n%s" % (scenario, proc.returncode, status, message, output))
    if status == 3:
        assert re.search(r"in kernel \w+ launched at .*emulator_selftest.cu:\d+", output), output


def test_every_cuda_source_has_a_driver():
    """A new csrc/core/cuda/*.cu needs a driver in tests/cuda_emulated that includes it."""
    included = set()
    for d in DRIVERS:
        included |= set(re.findall(r'^#include "(\w+\.cu)"', (EMU_DIR / (d + "_test.cpp")).read_text(), re.M))
    missing = sorted(p.name for p in CUDA_SRC.glob("*.cu") if p.name not in included)
    assert not missing, "no emulated test for %s: add tests/cuda_emulated/<op>_test.cpp" % ", ".join(missing)


@pytest.mark.parametrize("source, message", [
    ("void f() { kernel<<<grid>>>(x); }", "launch configuration has 1 parts"),
    ("void f() { kernel<<<g, b>>> x; }", "no argument list"),
    ("void f() { kernel<<<g, b>>>(x) + 1; }", "not a statement of its own"),
    ("void f() { <<<g, b>>>(x); }", "no kernel name"),
    ("void f() { kernel<<<g, b(x); }", "no '>>>'"),
    ("__global__ void k() { __shared__ float a[4], b[4]; }", "cannot parse __shared__"),
], ids=["config-parts", "no-arguments", "not-a-statement", "no-kernel-name", "unclosed-config",
        "shared-two-variables"])
def test_launch_rewrite_fails_loudly(tmp_path, source, message):
    """A launch (or __shared__) the rewrite cannot parse stops it, naming the file and line."""
    src = tmp_path / "bad.cu"
    src.write_text("// line 1\n" + source + "\n")
    proc, _ = _run([sys.executable, str(EMU_DIR / "launch_rewrite.py"), str(tmp_path / "out"), str(src)], 60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bad.cu:2:" in proc.stderr and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "bad.cu").exists()


def test_launch_rewrite_keeps_lines(tmp_path):
    """Rewritten launches keep the line count (reports point at the real lines) and the
    launches in comments and strings alone."""
    src = tmp_path / "ok.cu"
    src.write_text(
        "// k<<<1, 2>>>(x);\n"
        "const char* s = \"k<<<1, 2>>>(x);\";\n"
        "template <class T> __global__ void __launch_bounds__(256) kern(T a, int b) {}\n"
        "void f(int n) {\n"
        "  kern<float><<<dim3(n, 1),\n"
        "                256, 0, 0>>>(1.0f,\n"
        "                             n);\n"
        "  ::ns::other<<<1, 32>>>();\n"
        "}\n")
    out = tmp_path / "out"
    proc, _ = _run([sys.executable, str(EMU_DIR / "launch_rewrite.py"), str(out), str(src)], 60)
    assert proc.returncode == 0, proc.stderr
    assert "2 launches" in proc.stdout
    text = (out / "ok.cu").read_text().splitlines()
    assert text[0] == '#include "emu.h"' and text[1].startswith("#line 1 ")
    body = text[2:]
    assert len(body) == 9
    assert body[0] == "// k<<<1, 2>>>(x);" and "<<<" in body[1]
    assert body[4].lstrip().startswith('::emu::launch(::emu::Site{"kern<float>", __FILE__, __LINE__, (long)(256)}')
    assert "::emu::launch(::emu::Site{\"::ns::other\"" in body[7] and "(long)(0)" in body[7]
