"""Small helpers shared by the op modules: result rows and error text."""
from benchmarks.timing import measure


def reason(exc):
    """One line saying why something failed: 'TypeName: first line of the message'."""
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def row(*, framework, op, case, shape, dtype, act, pass_, variant, timing=None, status="ok", note=None,
        saved_bytes=None, bytes_moved=None, extra=None, kind=None):
    """One measurement. `timing` is timing.measure()'s dict (None when skipped/failed).
    status: 'ok', 'failed', or 'n/a' (the front end does not have the op: not a failure).
    kind: None for the main table's timings; a name (e.g. 'profile') for rows the op module
    renders itself, which report.py's tables, summary and chart leave out."""
    r = dict(framework=framework, op=op, case=case, shape=list(shape), dtype=dtype, act=act, pass_=pass_,
             variant=variant, status=status, note=note, saved_bytes=saved_bytes, bytes_moved=bytes_moved)
    if kind:
        r["kind"] = kind
    if timing:
        r.update(timing)
        if bytes_moved:
            r["gbps"] = bytes_moved / (timing["median_ms"] * 1e-3) / 1e9
    if extra:
        r.update(extra)
    return r


def timed_row(fn, budget, sync=None, note=None, **fields):
    """row(**fields) with fn timed by timing.measure, or, if fn raises, a 'failed' row whose
    note adds why to `note`."""
    try:
        return row(**fields, note=note, timing=measure(fn, budget, sync))
    except Exception as exc:  # noqa: BLE001  (recorded in the table)
        return row(**fields, status="failed", note="; ".join(filter(None, [note, reason(exc)])))


def saved_storages(torch, fn):
    """{storage address: bytes} of what autograd keeps for backward when fn() runs forward once,
    each storage counted once."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return storages


def compile_fullgraph_if_possible(torch, fn, probe):
    """torch.compile(fn), fullgraph if possible; probe(compiled) runs it once. Returns
    (compiled, note): compiled None if compiling fails, note saying what was given up."""
    try:
        compiled = torch.compile(fn, fullgraph=True)
        probe(compiled)
        return compiled, None
    except Exception as exc:  # noqa: BLE001  (recorded in the table)
        full_err = reason(exc)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(fn)
        probe(compiled)
        return compiled, f"fullgraph=True failed ({full_err}); timed with graph breaks"
    except Exception as exc:  # noqa: BLE001
        return None, f"torch.compile failed: {reason(exc)}"
