"""bias_act benchmark cases: fused bias + activation, forward and forward+backward.

PyTorch (NCHW, dim=1):  ganops | clone (memory-bound limit) | reference eager | reference torch.compile
TensorFlow (NHWC, dim=-1): ganops eager | ganops tf.function | reference eager | reference tf.function |
                           reference tf.function(jit_compile=True) | copy (memory-bound limit)

The memory-bound limit for an out-of-place op: forward is `x.clone()` (read N, write N);
forward+backward is clone() plus `g * x` (the backward of an op that saves x reads g and x and
writes dx: 3N), 5N element transfers in all, the least a fused bias_act can move.
Backward uses a fixed upstream gradient g and asks for the gradients of x and b.
The bias-layout cases (a discriminator's [N, 1] output, a one-channel map, to-RGB in channels_last
/ NHWC, a 4x4 map) also time ganops without a bias: with one the call should cost at most 1.3x
as much ("vs ganops without bias" >= 0.77x), whatever the layout.
Ratios: "ganops / limit" is a time ratio (want <= 1.2); "vs X" is X's time over ganops' time
(how many times faster ganops is). GB/s: those least bytes (fwd 2N, fwd+bwd 5N elements) over the
median time; "% of copy" compares with the forward limit's GB/s (on a GPU, a device-to-device copy).
"""
import functools

from benchmarks.common import compile_fullgraph_if_possible, reason, row, saved_storages
from benchmarks.timing import measure

OP = "bias_act"

# (name, NCHW shape, dtypes, acts, bias-layout case). dim=1 for torch; TF gets the channels-last
# permutation and dim=-1. A "channels_last" name runs torch in channels_last memory format.
ACTS = ("lrelu", "swish")
FULL_CASES = [
    ("conv 32x512x32x32", (32, 512, 32, 32), ("float32", "bfloat16"), ACTS, False),
    ("conv 64x256x64x64", (64, 256, 64, 64), ("float32",), ACTS, False),
    ("dense 256x512", (256, 512), ("float32", "bfloat16"), ACTS, False),
    ("D output 65536x1", (65536, 1), ("float32",), ("lrelu",), True),
    ("1-channel 64x1x128x128", (64, 1, 128, 128), ("float32",), ("lrelu",), True),
    ("to-RGB 16x3x256x256 channels_last", (16, 3, 256, 256), ("float32",), ("lrelu",), True),
    ("4x4 map 64x512x4x4", (64, 512, 4, 4), ("float32",), ("lrelu",), True),
]
QUICK_CASES = [
    ("conv 4x64x16x16", (4, 64, 16, 16), ("float32", "bfloat16"), ACTS, False),
    ("dense 64x128", (64, 128), ("float32",), ACTS, False),
    ("D output 256x1", (256, 1), ("float32",), ("lrelu",), True),
    ("to-RGB 2x3x16x16 channels_last", (2, 3, 16, 16), ("float32",), ("lrelu",), True),
]
PASSES = ("fwd", "fwd+bwd")

# How the report reads the rows: which variant is ours, which is the limit, what the targets are.
# Ratios: for the limit, subject_time / limit_time (want <= target); for baselines,
# baseline_time / subject_time, i.e. "times faster" (want >= target).
SPEC = {
    "torch": dict(
        variants=[("clone", "clone()"), ("ganops", "ganops"), ("ref_eager", "ref eager"),
                  ("ref_compile", "ref torch.compile"), ("ganops_nobias", "ganops without bias")],
        subject="ganops",
        limit=("clone", 1.2),
        baselines=[("ref_eager", 2.5), ("ref_compile", 1.0), ("ganops_nobias", 0.77)],
        saved=["ganops", "ref_eager", "ref_compile"],
    ),
    "tf": dict(
        variants=[("copy", "copy"), ("ganops_fn", "ganops tf.function"), ("ganops_eager", "ganops eager"),
                  ("ref_eager", "ref eager"), ("ref_fn", "ref tf.function"), ("ref_xla", "ref XLA"),
                  ("ganops_nobias_fn", "ganops tf.function without bias")],
        subject="ganops_fn",
        limit=("copy", 1.2),
        baselines=[("ref_eager", 2.5), ("ref_fn", 1.0), ("ref_xla", 1.0), ("ganops_nobias_fn", 0.77)],
        saved=[],
    ),
}


def _cases(quick):
    for name, shape, dtypes, acts, layout_case in QUICK_CASES if quick else FULL_CASES:
        for dtype in dtypes:
            yield name, shape, dtype, acts, layout_case


def _bytes_moved(numel, itemsize, pass_):
    """Least traffic: fwd reads x, writes y; bwd reads g and x, writes dx (db fused)."""
    return numel * itemsize * (2 if pass_ == "fwd" else 5)


# ----------------------------------------------------------------------------------------- torch

def _saved_bytes_torch(torch, fn, x, b):
    """Bytes autograd keeps for backward after one forward, deduplicated by storage."""
    return sum(saved_storages(torch, lambda: fn(x, b)).values())


def _compile_reference(torch, ref, dim, act, probe):
    """torch.compile of the reference, fullgraph if possible. Returns (fn, note); fn None if it fails."""
    def reference(x, b):
        return ref(x, b, dim=dim, act=act)

    return compile_fullgraph_if_possible(torch, reference, probe)


def run_torch(opts, budget, log):
    import torch

    import ganops.torch as gt
    device = torch.device(opts.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    ref = gt.reference.bias_act
    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)

    for name, shape, dtype_name, acts, layout_case in _cases(opts.quick):
        dtype = getattr(torch, dtype_name)
        x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
        g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
        if "channels_last" in name:
            x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
        b = torch.randn(shape[1], generator=gen).to(device=device, dtype=dtype)
        xg, bg = x.detach().requires_grad_(), b.detach().requires_grad_()
        base = dict(framework="torch", op=OP, case=name, shape=shape, dtype=dtype_name)

        def fwd(f):
            return lambda: f(x, b)

        def fwd_bwd(f):
            def step():
                y = f(xg, bg)
                return torch.autograd.grad(y, (xg, bg), g)
            return step

        def nobias(f):  # the same call without a bias: what the bias alone costs
            return lambda x, b: f(x, None)

        # The memory-bound limit does not depend on the activation: time it once per shape/dtype.
        limit = {
            "fwd": lambda: x.clone(),
            "fwd+bwd": lambda: (x.clone(), torch.mul(g, x)),
        }
        limit_timing = {}
        for pass_ in PASSES:
            log(f"torch {name} {dtype_name} {pass_} clone")
            limit_timing[pass_] = measure(limit[pass_], budget, sync)

        for act in acts:
            ours = functools.partial(gt.bias_act, dim=1, act=act)
            eager = functools.partial(ref, dim=1, act=act)
            # A fresh dynamo state per case: no automatic-dynamic shapes, no cache-limit fallbacks.
            torch._dynamo.reset()
            compiled = {}
            compile_note = {}
            for pass_, wrap in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                log(f"torch {name} {dtype_name} {act} {pass_}: compiling reference")
                compiled[pass_], compile_note[pass_] = _compile_reference(
                    torch, ref, 1, act, lambda fn, wrap=wrap: (wrap(fn)(), sync and sync()))

            for pass_, wrap in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                moved = _bytes_moved(x.numel(), x.element_size(), pass_)
                common = dict(base, act=act, pass_=pass_, bytes_moved=moved)
                rows.append(row(**common, variant="clone", timing=limit_timing[pass_]))
                variants = [("ganops", ours), ("ref_eager", eager), ("ref_compile", compiled[pass_])]
                if layout_case:
                    variants.append(("ganops_nobias", nobias(ours)))
                for variant, f in variants:
                    log(f"torch {name} {dtype_name} {act} {pass_} {variant}")
                    note = compile_note[pass_] if variant == "ref_compile" else None
                    if f is None:
                        rows.append(row(**common, variant=variant, status="failed", note=note))
                        continue
                    saved = None
                    try:
                        if variant == "ganops_nobias" and pass_ == "fwd+bwd":
                            t = measure(lambda: torch.autograd.grad(f(xg, bg), (xg,), g), budget, sync)
                        else:
                            t = measure(wrap(f), budget, sync)
                        if pass_ == "fwd+bwd" and variant != "ganops_nobias":
                            try:
                                saved = _saved_bytes_torch(torch, f, xg, bg)
                            except Exception as exc:  # noqa: BLE001
                                note = "; ".join(filter(None, [note, f"saved bytes not measurable: {reason(exc)}"]))
                        rows.append(row(**common, variant=variant, timing=t, note=note, saved_bytes=saved))
                    except Exception as exc:  # noqa: BLE001
                        rows.append(row(**common, variant=variant, status="failed",
                                        note="; ".join(filter(None, [note, reason(exc)]))))
        del x, b, g, xg, bg
    torch._dynamo.reset()
    return rows


# -------------------------------------------------------------------------------------------- tf

def run_tf(opts, budget, log):
    """TF side; run in its own process (see run.py). Needs `ganops.tf`."""
    import tensorflow as tf

    import ganops.tf as gtf
    dev = "/GPU:0" if opts.device == "cuda" else "/CPU:0"
    ref = gtf.reference.bias_act
    rows = []

    def materialise(out):
        # Eager TF on a GPU returns before the kernel ends: read one element of each result.
        if opts.device == "cuda":
            for t in tf.nest.flatten(out):
                tf.reshape(t, [-1])[0].numpy()

    for name, shape_nchw, dtype_name, acts, layout_case in _cases(opts.quick):
        shape = (shape_nchw[0],) + tuple(shape_nchw[2:]) + (shape_nchw[1],)  # channels last
        dtype = getattr(tf, dtype_name)
        with tf.device(dev):
            rng = tf.random.Generator.from_seed(0)
            x = tf.cast(rng.normal(shape), dtype)
            b = tf.cast(rng.normal([shape[-1]]), dtype)
            g = tf.cast(rng.normal(shape), dtype)
        base = dict(framework="tf", op=OP, case=name, shape=shape, dtype=dtype_name)
        itemsize = dtype.size
        numel = int(tf.size(x))

        def timed(fn, *args):
            def call():
                with tf.device(dev):
                    materialise(fn(*args))
            return call

        limit = {
            "fwd": tf.function(lambda x: tf.raw_ops.DeepCopy(x=x)),
            "fwd+bwd": tf.function(lambda x, g: (tf.raw_ops.DeepCopy(x=x), g * x)),
        }
        limit_timing = {}
        for pass_ in PASSES:
            log(f"tf {name} {dtype_name} {pass_} copy")
            args = (x,) if pass_ == "fwd" else (x, g)
            limit_timing[pass_] = measure(timed(limit[pass_], *args), budget)

        for act in acts:
            def ours(x, b, act=act):
                return gtf.bias_act(x, b, dim=-1, act=act)

            def reference(x, b, act=act):
                return ref(x, b, dim=-1, act=act)

            def grad_of(f):
                def step(x, b, g):
                    with tf.GradientTape() as tape:
                        tape.watch([x, b])
                        y = f(x, b)
                    return tape.gradient(y, [x, b], output_gradients=g)
                return step

            def ours_nobias(x, b, act=act):
                return gtf.bias_act(x, None, dim=-1, act=act)

            variants = {
                "ganops_eager": (ours, False, None),
                "ganops_fn": (ours, True, False),
                "ref_eager": (reference, False, None),
                "ref_fn": (reference, True, False),
                "ref_xla": (reference, True, True),
            }
            if layout_case:
                variants["ganops_nobias_fn"] = (ours_nobias, True, False)
            for pass_ in PASSES:
                moved = _bytes_moved(numel, itemsize, pass_)
                common = dict(base, act=act, pass_=pass_, bytes_moved=moved)
                rows.append(row(**common, variant="copy", timing=limit_timing[pass_]))
                for variant, (f, as_function, jit) in variants.items():
                    log(f"tf {name} {dtype_name} {act} {pass_} {variant}")
                    fn = f if pass_ == "fwd" else grad_of(f)
                    if as_function:
                        fn = tf.function(fn, jit_compile=jit)
                    args = (x, b) if pass_ == "fwd" else (x, b, g)
                    try:
                        timed(fn, *args)()  # trace / compile outside the timing
                        t = measure(timed(fn, *args), budget)
                        rows.append(row(**common, variant=variant, timing=t))
                    except Exception as exc:  # noqa: BLE001
                        rows.append(row(**common, variant=variant, status="failed", note=reason(exc)))
    return rows

