"""Results: machine description, Markdown tables, JSON, PNG chart, README section.

Generic over ops: an op module supplies SPEC[framework] (variants, subject, limit, baselines,
saved) and rows (benchmarks.common.row); everything here reads only those.

Optional SPEC[framework] keys (bias_act uses none of them):
    targets per row class:  a target (of `limit` or of a baseline) may be a dict keyed by the
                            row's `act` field (e.g. {"small": 3, "large": 1.5}); a class missing
                            from it, or a target of None, means "no goal": the ratio is shown
                            without a mark and is left out of the summary.
    act_label:              the heading of the `act` column (e.g. "class"); default "act".
    chart_baseline:         the variant the PNG's speedups are measured against; default "ref_eager".
Rows with a `kind` field are not timings of the main table (profiles, breakdowns): the tables,
summary and chart skip them; an op module renders them itself (run.py's `markdown_extra`).
"""
import datetime
import json
import os
import platform
import subprocess

TICK, CROSS = "✓", "✗"


# ------------------------------------------------------------------------------------ machine

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_rev(path):
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(device):
    info = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        cpu=_cpu_model(),
        cores=os.cpu_count(),
        cores_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        memory_gib=_mem_gib(),
        python=platform.python_version(),
        platform=platform.platform(),
        device=device,
        git=_git_rev(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        loadavg_start=loadavg(),
    )
    return info


# ---------------------------------------------------------------------------------- formatting

def _ms(r):
    if r is None:
        return "-"
    if r["status"] != "ok":
        return r["status"]
    v = r["median_ms"]
    text = f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"
    return text + (NOISY if noisy(r) else "")


NOISY = "†"
NOISY_IQR = 0.25


def noisy(r):
    """Interquartile range over NOISY_IQR of the median: the timing is not to be trusted much."""
    return r["status"] == "ok" and (r["q3_ms"] - r["q1_ms"]) > NOISY_IQR * r["median_ms"]


def _mib(n):
    return "-" if n is None else f"{n / 2**20:.1f}" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _ok(r):
    return r is not None and r["status"] == "ok"


def _groups(rows, framework):
    """Rows of one framework grouped by (case, dtype, act, pass), in first-seen order."""
    groups = {}
    for r in rows:
        if r["framework"] != framework or r.get("kind"):
            continue
        key = (r["case"], r["dtype"], r["act"], r["pass_"])
        groups.setdefault(key, {})[r["variant"]] = r
    return groups


def target_for(target, cls):
    """A SPEC target for a row of class `cls` (its `act` field): a number, or a dict by class."""
    if isinstance(target, dict):
        return target.get(cls)
    return target


def target_text(target, unit=""):
    """'1.2' (with unit 'x': '1.2x'), or for targets by class '3x small/medium, 1.5x large';
    '' for no goal."""
    if target is None:
        return ""
    if not isinstance(target, dict):
        return f"{target:g}{unit}"
    by_value = {}
    for cls, t in target.items():
        if t is not None:
            by_value.setdefault(t, []).append(cls)
    return ", ".join(f"{t:g}{unit} {'/'.join(c)}" for t, c in by_value.items())


def ratios(group, spec):
    """{name: (value, target, met)} for the limit and each baseline, measured in one run.
    target and met are None where the row's class has no goal."""
    out = {}
    s = group.get(spec["subject"])
    cls = s["act"] if s else None
    lim, lim_target = spec["limit"]
    lim_target = target_for(lim_target, cls)
    if _ok(s) and _ok(group.get(lim)):
        v = s["median_ms"] / group[lim]["median_ms"]
        out[lim] = (v, lim_target, None if lim_target is None else v <= lim_target)
    for base, target in spec["baselines"]:
        target = target_for(target, cls)
        if _ok(s) and _ok(group.get(base)):
            v = group[base]["median_ms"] / s["median_ms"]
            out[base] = (v, target, None if target is None else v >= target)
    return out


def _mark(met):
    return "" if met is None else " " + (TICK if met else CROSS)


def _short_dtype(d):
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "float64": "f64"}.get(d, d)


def markdown_table(rows, spec, framework):
    labels = dict(spec["variants"])
    subject = spec["subject"]
    lim, lim_target = spec["limit"]
    head = ["case", "dtype", spec.get("act_label", "act"), "pass"] + [f"{labels[v]} ms" for v, _ in spec["variants"]]
    lim_goal = target_text(lim_target)
    head += [f"{labels[subject]} / {labels[lim]}" + (f" (≤{lim_goal})" if lim_goal else "")]
    head += [f"vs {labels[b]}" + (f" (≥{target_text(t, 'x')})" if target_text(t) else "") for b, t in spec["baselines"]]
    head += [f"{labels[subject]} GB/s (% of copy)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = _groups(rows, framework)
    for (case, dtype, act, pass_), g in groups.items():
        rat = ratios(g, spec)
        cells = [case, _short_dtype(dtype), act, pass_] + [_ms(g.get(v)) for v, _ in spec["variants"]]
        for name in [lim] + [b for b, _ in spec["baselines"]]:
            if name in rat:
                v, _, met = rat[name]
                cells.append(f"{v:.2f}{'' if name == lim else 'x'}{_mark(met)}")
            else:
                cells.append("-")
        s = g.get(subject)
        copy = groups.get((case, dtype, act, "fwd"), {}).get(lim)
        if _ok(s) and s.get("gbps") and _ok(copy) and copy.get("gbps"):
            cells.append(f"{s['gbps']:.1f} ({100 * s['gbps'] / copy['gbps']:.0f}%)")
        else:
            cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def saved_table(rows, spec, framework):
    """Bytes saved for backward by each version (measured with saved_tensors_hooks)."""
    if not spec.get("saved"):
        return None
    labels = dict(spec["variants"])
    head = ["case", "dtype", spec.get("act_label", "act"), "x MiB"] + [f"{labels[v]} MiB (× x)" for v in spec["saved"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    any_row = False
    for (case, dtype, act, pass_), g in _groups(rows, framework).items():
        if pass_ != "fwd+bwd":
            continue
        some = next((r for r in g.values() if r.get("bytes_moved")), None)
        if some is None:
            continue
        x_bytes = some["bytes_moved"] / 5
        cells = [case, _short_dtype(dtype), act, _mib(x_bytes)]
        for v in spec["saved"]:
            n = g.get(v, {}).get("saved_bytes")
            cells.append("-" if n is None else f"{_mib(n)} ({n / x_bytes:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
        any_row = True
    return "\n".join(lines) if any_row else None


def summary(rows, spec, framework):
    labels = dict(spec["variants"])
    counts = {}
    for g in _groups(rows, framework).values():
        for name, (_, target, met) in ratios(g, spec).items():
            if met is None:
                continue
            key = (g[spec["subject"]]["pass_"], name, target)
            m, n = counts.get(key, (0, 0))
            counts[key] = (m + met, n + 1)
    out = []
    for (pass_, name, target), (m, n) in sorted(counts.items()):
        what = (f"{labels[spec['subject']]} within {target:g}x of {labels[name]}" if name == spec["limit"][0]
                else f"{labels[spec['subject']]} at least {target:g}x as fast as {labels[name]}")
        out.append(f"- {pass_}: {what}: met in {m} of {n} cases")
    return "\n".join(out)


def notes(rows, framework):
    seen = []
    for r in rows:
        if r["framework"] == framework and r.get("note"):
            n = f"{r['variant']}: {r['note']}"
            if n not in seen:
                seen.append(n)
    return "\n".join(f"- {n}" for n in seen)


def _warmup_cap(budget):
    cap = budget.get("warmup_time_s")
    return "" if cap is None else f" or {cap} s of them"


def markdown(op, doc, meta, spec, rows, skipped, budget, extra=None):
    """The op's results page. `extra(rows, framework)`, if given, returns Markdown placed after a
    framework's own tables (or None)."""
    m = meta
    out = [f"# {op} benchmark", ""]
    out += [f"- date: {m['date']}", f"- CPU: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
            f"{m['memory_gib']} GiB RAM", f"- device: {m['device']}"
            + (f" ({m['gpu']})" if m.get("gpu") else ""),
            f"- python {m['python']}, torch {m.get('torch', '-')} ({m.get('torch_threads', '-')} threads), "
            f"tensorflow {m.get('tensorflow', '-')}",
            f"- ganops: {m.get('ganops_path', '-')}, benchmarks at git {m.get('git') or '-'}",
            f"- load average (1, 5, 15 min) at start {m['loadavg_start']}, at end {m.get('loadavg_end')}",
            f"- background load: " + (f"{m['background_load']} busy processes (multi-threaded torch matmul "
                                      f"loops) ran through every timing" if m.get("background_load") else "none"),
            f"- mode: {'quick' if m.get('quick') else 'full'}; timing: median of repeated runs after warm-up "
            f"({budget['warmup']} warm-up calls{_warmup_cap(budget)}, then {budget['max_reps']} timed calls or as many "
            f"as fit in {budget['min_time_s']} s, at least {budget['min_reps']}), all ratios from this one run", ""]
    out += [doc.strip(), ""]
    for fw in ("torch", "tf"):
        title = {"torch": "PyTorch", "tf": "TensorFlow"}[fw]
        out += [f"## {title}", ""]
        if fw in skipped:
            out += [f"skipped: {skipped[fw]}", ""]
            continue
        if not any(r["framework"] == fw for r in rows):
            out += ["no rows", ""]
            continue
        out += [markdown_table(rows, spec[fw], fw), ""]
        n_noisy = sum(noisy(r) for r in rows if r["framework"] == fw)
        if n_noisy:
            out += [f"{NOISY} {n_noisy} timing(s) with an interquartile range over {NOISY_IQR:.0%} of the median: "
                    "the machine was busy or the time is scheduler-bound (compare the load average above); "
                    "read those ratios with care.", ""]
        out += ["Targets (goals to report against, not tests):", "",
                summary(rows, spec[fw], fw) or f"- none measured (no {dict(spec[fw]['variants'])[spec[fw]['subject']]} "
                                                "timing with a goal in this run)", ""]
        st = saved_table(rows, spec[fw], fw)
        if st:
            out += ["Saved for backward (bytes autograd keeps after one forward, deduplicated by storage, "
                    "x itself included when a version saves it):", "", st, ""]
        if extra:
            more = extra(rows, fw)
            if more:
                out += [more.rstrip(), ""]
        n = notes(rows, fw)
        if n:
            out += ["Notes:", "", n, ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------ outputs

def _write(path, text_or_bytes):
    tmp = path + ".tmp"
    mode = "wb" if isinstance(text_or_bytes, bytes) else "w"
    with open(tmp, mode) as f:
        f.write(text_or_bytes)
    os.replace(tmp, path)


def write_json(path, payload):
    _write(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")


def write_png(path, op, spec, rows):
    """Horizontal bars: speedup over the eager reference (eager time / variant time) per case."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fws = [fw for fw in ("torch", "tf") if any(r["framework"] == fw and r["status"] == "ok" and not r.get("kind")
                                               for r in rows)]
    if not fws:
        return False
    heights = [max(3.0, 0.32 * len(_groups(rows, fw)) * (len(spec[fw]["variants"]) - 1) ** 0.5 + 1.5) for fw in fws]
    fig, axes = plt.subplots(len(fws), 1, figsize=(11, sum(heights)), squeeze=False,
                             gridspec_kw=dict(height_ratios=heights))
    for ax, fw in zip(axes[:, 0], fws):
        s = spec[fw]
        labels = dict(s["variants"])
        base = s.get("chart_baseline", "ref_eager")
        shown = [v for v, _ in s["variants"] if v != base]
        groups = list(_groups(rows, fw).items())
        n = len(shown)
        width = 0.8 / n
        for i, v in enumerate(shown):
            ys, xs = [], []
            for j, (key, g) in enumerate(groups):
                if _ok(g.get(v)) and _ok(g.get(base)):
                    ys.append(j + (i - (n - 1) / 2) * width)
                    xs.append(g[base]["median_ms"] / g[v]["median_ms"])
            if xs:  # a variant with no timing here (n/a, failed) gets no bar and no legend entry
                ax.barh(ys, xs, height=width, label=labels[v], color=f"C{i % 10}")
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([f"{c} {_short_dtype(d)} {a} {p}" for (c, d, a, p), _ in groups], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", lw=0.8)
        target = dict(s["baselines"]).get(base)
        targets = sorted({t for t in target.values() if t} if isinstance(target, dict) else {target} - {None})
        for t, style in zip(targets, ("--", ":", "-.")):
            ax.axvline(t, color="red", lw=0.8, ls=style, label=f"target {t:g}x")
        ax.set_xscale("log")
        ax.set_xlabel(f"speedup over {labels.get(base, base)} (higher is better, log scale)")
        ax.set_title(f"{op}: {'PyTorch' if fw == 'torch' else 'TensorFlow'}")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    tmp = path + ".tmp"
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return True


def update_readme(path, op, md_name, png_name, table_md):
    """Replace (or append) this op's section between markers in a README."""
    start, end = f"<!-- bench:{op}:start -->", f"<!-- bench:{op}:end -->"
    chart = f"![{op} speedups]({png_name})\n\n" if png_name else ""
    body = f"{start}\n\n{chart}Full results: [{md_name}]({md_name})\n\n{table_md}\n\n{end}"
    text = open(path).read() if os.path.exists(path) else ""
    if start in text and end in text:
        text = text[:text.index(start)] + body + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + f"## {op}\n\n" + body + "\n"
    _write(path, text)
