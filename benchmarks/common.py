"""Small helpers shared by the op modules: result rows and error text."""


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
