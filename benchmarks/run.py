"""ganops benchmark runner (`make bench`).

    python benchmarks/run.py [--quick] [--ops bias_act] [--out benchmarks/results] [--device cpu|cuda]
                             [--background-load N]

Times each registered op forward and forward+backward against the framework's reference
(eager and compiled) and the memory-bound limit, writes <out>/<op>.md, .json, .png and prints
the Markdown. The PyTorch side runs in this process; the TensorFlow side runs in a child
process (the two frameworks' thread pools would otherwise fight over the cores) and is skipped,
with the reason, while `ganops.tf` does not import.

`--background-load N` measures on a busy machine: N other processes, each looping a
multi-threaded torch matmul, run for the whole benchmark (results go to
benchmarks/results/busy-N unless --out is given; README is not rewritten). It shows what a
DataLoader or a second job does to ops that fork and join threads.

`--quick` (tiny shapes, few repeats) is the smoke check: `python benchmarks/run.py --quick --out DIR`
exits non-zero if a row of ganops itself failed.
"""
import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import report, timing  # noqa: E402

# op name -> module with OP, SPEC, __doc__, run_torch(opts, budget, log), run_tf(opts, budget, log)
# and optionally markdown_extra(rows, framework) (more tables for its results page).
# A new op adds a module of cases and one line here.
REGISTRY = {
    "bias_act": "benchmarks.bias_act",
    "spectral_norm": "benchmarks.spectral_norm",
    "gradient_penalty": "benchmarks.gradient_penalty",
}
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results")
README = os.path.join(ROOT, "README.md")  # its bench:<op> section is rewritten by a full run
FRAMEWORKS = ("torch", "tf")

_t0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - _t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (smoke check, < 1 min)")
    p.add_argument("--ops", default=",".join(REGISTRY), help=f"comma-separated, from: {', '.join(REGISTRY)}")
    p.add_argument("--out", default=DEFAULT_OUT, help="results folder (default benchmarks/results)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--frameworks", default="torch,tf", help="comma-separated: torch, tf")
    p.add_argument("--tf-timeout", type=float, default=900, help="seconds allowed for the TF child process")
    p.add_argument("--background-load", type=int, default=0, metavar="N",
                   help="run N busy processes (multi-threaded torch matmul loops) during the benchmark")
    # internal: the TF child process
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--rows-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.background_load < 0:
        p.error("--background-load: N must be >= 0")
    if a.background_load and a.out == DEFAULT_OUT and a.worker is None:
        a.out = os.path.join(DEFAULT_OUT, f"busy-{a.background_load}")
    a.ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    a.frameworks = [f.strip() for f in a.frameworks.split(",") if f.strip()]
    for o in a.ops:
        if o not in REGISTRY:
            p.error(f"--ops: unknown op {o!r}; known: {', '.join(REGISTRY)}")
    for f in a.frameworks:
        if f not in FRAMEWORKS:
            p.error(f"--frameworks: unknown {f!r}; known: {', '.join(FRAMEWORKS)}")
    return a


def _budget(opts):
    return timing.QUICK if opts.quick else timing.FULL


# ------------------------------------------------------------------------------------- torch

def run_torch_side(opts, mods, meta):
    """{op: rows} or raises with the reason the torch side cannot run."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"torch not importable: {_reason(exc)}")
    meta["torch"] = torch.__version__
    meta["torch_threads"] = torch.get_num_threads()
    if opts.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
        meta["gpu"] = torch.cuda.get_device_name()
    try:
        import ganops
        import ganops.torch  # noqa: F401
        meta["ganops_path"] = os.path.dirname(ganops.__file__)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"ganops.torch not importable: {_reason(exc)}")
    return {op: mod.run_torch(opts, _budget(opts), log) for op, mod in mods.items()}


def _reason(exc):
    from benchmarks.common import reason
    return reason(exc)


# ---------------------------------------------------------------------------------------- tf

def tf_worker(opts):
    """Child process: time the TF side of every op, write {'meta', 'rows' | 'skipped'} as JSON."""
    result = {"meta": {}, "rows": {}, "skipped": None}
    try:
        try:
            import tensorflow as tf
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"tensorflow not importable: {_reason(exc)}")
        result["meta"]["tensorflow"] = tf.__version__
        if opts.device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise RuntimeError("--device cuda but TensorFlow sees no GPU")
        try:
            import ganops.tf  # noqa: F401
            import ganops.tf.reference  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"ganops.tf not importable: {_reason(exc)}")
        for op in opts.ops:
            result["rows"][op] = importlib.import_module(REGISTRY[op]).run_tf(opts, _budget(opts), log)
    except Exception as exc:  # noqa: BLE001
        result["skipped"] = str(exc) if isinstance(exc, RuntimeError) else _reason(exc)
    with open(opts.rows_out, "w") as f:
        json.dump(result, f)
    return 0


def run_tf_side(opts):
    """Run the TF child; returns (meta, {op: rows}) or raises with the reason it was skipped."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_out = os.path.join(tmp, "tf.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "tf", "--rows-out", rows_out,
               "--ops", ",".join(opts.ops), "--device", opts.device] + (["--quick"] if opts.quick else [])
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
                                  timeout=opts.tf_timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"TF child process ran past --tf-timeout {opts.tf_timeout:g} s")
        if not os.path.exists(rows_out):
            raise RuntimeError(f"TF child process exited {proc.returncode} without results")
        with open(rows_out) as f:
            result = json.load(f)
    if result["skipped"]:
        raise RuntimeError(result["skipped"])
    return result["meta"], result["rows"]


# --------------------------------------------------------------------------- background load

# Each busy process: torch's default intra-op threads (all cores), a matmul loop that keeps
# them running, and a parent-death check so a killed benchmark leaves nothing behind.
_BUSY_LOOP = """
import os, sys, torch
a = torch.randn(384, 384)
parent = os.getppid()
sys.stdout.write("ready\\n"); sys.stdout.flush()
while os.getppid() == parent:
    for _ in range(20):
        a = torch.tanh(a @ a)
"""


class BackgroundLoad:
    """N busy processes, started before the timings and stopped after them."""

    def __init__(self, n):
        self.n, self.procs = n, []

    def __enter__(self):
        for _ in range(self.n):
            proc = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
            self.procs.append(proc)
        for proc in self.procs:  # timings start once every process is busy
            proc.stdout.readline()
        if self.n:
            log(f"background load: {self.n} busy process(es) running")
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        return False


# -------------------------------------------------------------------------------------- main

def main(argv=None):
    opts = parse_args(argv)
    if opts.worker == "tf":
        return tf_worker(opts)

    mods = {op: importlib.import_module(REGISTRY[op]) for op in opts.ops}
    meta = report.machine_info(opts.device)
    meta["quick"] = opts.quick
    meta["background_load"] = opts.background_load
    with BackgroundLoad(opts.background_load):
        return _run(opts, mods, meta)


def _run(opts, mods, meta):
    rows = {op: [] for op in opts.ops}
    skipped = {op: {} for op in opts.ops}

    def skip(fw, why):
        log(f"{fw}: skipped: {why}")
        for op in opts.ops:
            skipped[op][fw] = why

    if "torch" in opts.frameworks:
        try:
            for op, r in run_torch_side(opts, mods, meta).items():
                rows[op] += r
        except RuntimeError as exc:
            skip("torch", str(exc))
    else:
        skip("torch", "not requested (--frameworks)")

    if "tf" in opts.frameworks:
        try:
            tf_meta, tf_rows = run_tf_side(opts)
            meta.update(tf_meta)
            for op, r in tf_rows.items():
                rows[op] += r
        except RuntimeError as exc:
            skip("tf", str(exc))
    else:
        skip("tf", "not requested (--frameworks)")

    meta["loadavg_end"] = report.loadavg()
    meta["wall_s"] = round(time.perf_counter() - _t0, 1)
    os.makedirs(opts.out, exist_ok=True)
    budget = _budget(opts).as_dict()
    failed = []
    for op, mod in mods.items():
        md = report.markdown(op, mod.__doc__, meta, mod.SPEC, rows[op], skipped[op], budget,
                             getattr(mod, "markdown_extra", None))
        md_path = os.path.join(opts.out, f"{op}.md")
        png_path = os.path.join(opts.out, f"{op}.png")
        report._write(md_path, md + "\n")
        report.write_json(os.path.join(opts.out, f"{op}.json"), dict(
            op=op, meta=meta, budget=budget, spec=mod.SPEC, skipped=skipped[op], rows=rows[op]))
        try:
            have_png = report.write_png(png_path, op, mod.SPEC, rows[op])
        except Exception as exc:  # noqa: BLE001
            have_png = False
            log(f"{op}: no chart: {_reason(exc)}")
        if (os.path.abspath(opts.out) == os.path.abspath(DEFAULT_OUT) and not opts.quick
                and not opts.background_load):
            rel = os.path.relpath(opts.out, os.path.dirname(README))
            machine = (f"Measured by `make bench` on {meta['cpu']}, {meta['cores']} cores, {meta['memory_gib']} GiB, "
                       f"torch {meta.get('torch', '-')}, TensorFlow {meta.get('tensorflow', '-')}, "
                       f"commit {meta['git']}, {meta['date'][:10]}.")
            report.update_readme(README, op, f"{rel}/{op}.md", f"{rel}/{op}.png" if have_png else None,
                                 machine + "\n\n" + "\n\n".join(report.markdown_table(rows[op], mod.SPEC[fw], fw)
                                             for fw in FRAMEWORKS if any(r["framework"] == fw for r in rows[op])))
        print(md)
        # 'n/a' rows (a front end that does not have the op yet) are reported, not failures.
        failed += [r for r in rows[op] if r["status"] not in ("ok", "n/a") and r["variant"].startswith("ganops")]
    log(f"done in {meta['wall_s']} s; results in {opts.out}")
    if failed:
        log(f"{len(failed)} ganops measurement(s) failed: " + "; ".join(f"{r['case']} {r['act']} {r['pass_']} "
                                                                      f"{r['variant']}: {r['note']}" for r in failed))
        return 1
    if all("torch" in skipped[op] for op in opts.ops) and "torch" in opts.frameworks:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
