"""spectral_norm benchmark cases: the spectral-normalized weight in training mode, forward and
forward+backward, on the weights of real GAN layers, plus a whole SN-discriminator step.

**SN part alone** (rows `<layer>`; PyTorch): the parametrized weight computed in training mode
(one power-iteration step that updates u and v, then W / sigma) and, for fwd+bwd, backpropagated
with a fixed random G = dL/dW_sn to the raw weight (`torch.autograd.grad`). No layer runs: this is
the cost spectral normalization adds to every forward of the layer.

- ganops: `ganops.torch.spectral_norm(module)`, timed as `module.weight` (torch.nn.utils.parametrize
  calls the parametrization: `spectral_norm_weight`, which runs the fused power-iteration op and the W / sigma op,
  whose backward is fused too)
- ganops functional: the same two ops called directly (`power_iteration` + `spectral_normalize`),
  without parametrize's Python: the part of ganops' time that is not parametrize's
- torch parametrization: `torch.nn.utils.parametrizations.spectral_norm`, timed as `module.weight`
- torch old API: `torch.nn.utils.spectral_norm`; its forward pre-hook is called as the module's
  forward would call it (`hook(module, inputs)` sets `module.weight`)
- ref eager / ref torch.compile: `ganops.torch.reference.spectral_norm_power_iteration` then
  `spectral_normalize`, eagerly and under `torch.compile` (fullgraph if it works)
- floor: the least memory traffic any spectral norm can have, made of torch's own single-pass
  kernels: fwd = one read of W (a fused power step: `W.sum()`) + W / sigma (`W.mul(c)`: read,
  write), 3 N element transfers; fwd+bwd adds <G, W> (`torch.dot`: 2 N) and the rank-1-corrected
  G / sigma (`G.mul(c)`: 2 N), 7 N in all. On small weights it is launch-bound like the rest.

Weight classes by element count N: small N <= 2^17 (128 Ki elements, 512 KiB in float32), medium
N <= 2^20 (4 MiB), large above. Goals (from the issue, for this CPU): ganops at least 3x as fast as
torch's parametrization on small and medium weights (dispatch and launch overhead rule) and 1.5x
on large ones (memory traffic rules); the TensorFlow rows are held to the same goals against the
Keras layer by analogy. GB/s: the floor's bytes (fwd 3 N, fwd+bwd 7 N) over the median time;
"% of copy" compares it with the floor's own fwd GB/s.

**TensorFlow** (`<layer> kernel` and `<layer> layer call`, all in `tf.function`):
- `kernel`: the SN part alone, Keras layout (`reshape(kernel, [-1, out])`, u of shape (1, out)):
  Keras = `keras.layers.SpectralNormalization(layer).normalized_weights()` (Keras' own code for
  the new u and kernel / sigma); ganops = `ganops.tf.spectral_norm(kernel, u)`; ref = the
  reference (`ganops.tf.reference.spectral_norm` when it exists, else the inline one in this
  file, Keras' formulas), eager, in tf.function and with jit_compile=True. fwd+bwd: the gradient
  of the normalized kernel (through sigma) for a fixed G. No variable is assigned.
- `layer call`: the whole wrapper called with training=True on a tiny input (batch 1, one output
  pixel: `(1, k, k, in)` for Conv2D, `(1, 1, 1, in)` for Conv2DTranspose, `(1, in)` for Dense),
  which is what Keras runs in training: the all-zero check, the power step, the assignments of
  u and kernel / sigma, then the layer; fwd+bwd adds the gradient for the layer's trainable
  variables (Keras' layer gives no gradient through sigma: it assigns the kernel). Keras vs
  `ganops.tf.layers.SpectralNormalization`; floor = the bare layer on the same input.
- floor of the `kernel` rows: the torch floor's ops in tf.function (`reduce_sum(W)`, `W * c`,
  `reduce_sum(W * G)`, `G * c`); TF's own kernels and tf.function's call cost (about 0.2 ms here)
  make it a looser floor than torch's.
ganops rows read `n/a` (with the reason) while `ganops.tf` has no such attribute.

**SN-discriminator step** (rows `D step ...`, class `step`): a DCGAN discriminator for 64x64
images (4x4 stride-2 convs 3->64->128->256->512, LeakyReLU 0.2, a linear 8192->1), every conv
and linear spectral-normalized; one optimizer step: zero_grad, softplus(-D(x)).mean(), backward,
Adam step. The floor is the same model without spectral norm, so `ganops / floor` is how much
spectral norm adds to the step. No goal: the whole step is mostly convolution, and spectral
norm's share (a few ms of about 300) is within the step's run-to-run noise on a 2-core CPU. The
TensorFlow step (channels-last, Keras' Adam, in tf.function) varied between about 0.55 s and
1.0 s for the same model, with or without spectral norm, from one tf.function to the next on
the development machine: compare its SN share across several runs, not from one.
"""
import collections
import functools

from benchmarks.common import compile_fullgraph_if_possible, reason, row, saved_storages, timed_row
from benchmarks.timing import measure

OP = "spectral_norm"

SMALL_MAX = 1 << 17
MEDIUM_MAX = 1 << 20
GOAL = {"small": 3.0, "medium": 3.0, "large": 1.5}
EPS = 1e-12

# name -> (kind, in, out, kernel size); torch weights: Conv2d [out, in, k, k] (dim 0),
# ConvTranspose2d [in, out, k, k] (dim 1, as torch), Linear [out, in].
LAYERS = {
    "conv 3->64 4x4": ("conv", 3, 64, 4),
    "linear 256x256": ("linear", 256, 256, None),
    "conv 64->128 4x4": ("conv", 64, 128, 4),
    "conv 128->256 4x4": ("conv", 128, 256, 4),
    "linear 1024x1024": ("linear", 1024, 1024, None),
    "convT 512->256 4x4": ("convT", 512, 256, 4),
    "conv 512->512 3x3": ("conv", 512, 512, 3),
}
FULL_CASES = list(LAYERS)
QUICK_CASES = ["conv 3->64 4x4", "convT 512->256 4x4"]
# Discriminator step: (batch, image size).
FULL_STEP = (64, 64)
QUICK_STEP = (2, 64)
PASSES = ("fwd", "fwd+bwd")

SPEC = {
    "torch": dict(
        variants=[("floor", "floor"), ("ganops", "ganops"), ("ganops_fn", "ganops functional"),
                  ("torch_param", "torch parametrization"), ("torch_old", "torch old API"),
                  ("ref_eager", "ref eager"), ("ref_compile", "ref torch.compile")],
        subject="ganops",
        limit=("floor", None),
        baselines=[("torch_param", GOAL), ("torch_old", None), ("ref_eager", None), ("ref_compile", None)],
        saved=[],  # in markdown_extra's table, with the op counts
        act_label="class",
        chart_baseline="torch_param",
    ),
    "tf": dict(
        variants=[("floor", "floor"), ("ganops", "ganops"), ("keras", "Keras"), ("ref_eager", "ref eager"),
                  ("ref_fn", "ref tf.function"), ("ref_xla", "ref XLA")],
        subject="ganops",
        limit=("floor", None),
        baselines=[("keras", GOAL), ("ref_fn", None), ("ref_xla", None)],
        saved=[],
        act_label="class",
        chart_baseline="keras",
    ),
}


def size_class(numel):
    return "small" if numel <= SMALL_MAX else "medium" if numel <= MEDIUM_MAX else "large"


def _floor_bytes(numel, itemsize, pass_):
    return numel * itemsize * (3 if pass_ == "fwd" else 7)


# ----------------------------------------------------------------------------------------- torch

def _torch_layer(nn, name):
    kind, cin, cout, k = LAYERS[name]
    if kind == "conv":
        return nn.Conv2d(cin, cout, k, 2, 1)
    if kind == "convT":
        return nn.ConvTranspose2d(cin, cout, k, 2, 1)
    return nn.Linear(cin, cout)


def _old_sn_hook(module):
    """The forward pre-hook torch.nn.utils.spectral_norm registered on `module`."""
    import sys

    import torch.nn.utils.spectral_norm  # noqa: F401  (the name is shadowed by the function)
    cls = sys.modules["torch.nn.utils.spectral_norm"].SpectralNorm
    return next(h for h in module._forward_pre_hooks.values() if isinstance(h, cls))


class _Traffic:
    """Counts what one call dispatches: aten/ganops ops (each a kernel launch or a view) and the
    bytes of the new storages they allocate. Backward ops are counted too (CPU autograd runs
    them on the calling thread; dispatch modes are thread-local state it carries)."""

    def __init__(self, torch):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                seen = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                        if isinstance(t, torch.Tensor)}
                outer.ops[str(func.overloadpacket.__name__)] += 1
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        s = t.untyped_storage()
                        if s.data_ptr() not in seen and s.nbytes():
                            seen.add(s.data_ptr())
                            outer.alloc += s.nbytes()
                return out

        self.mode = Mode
        self.ops = collections.Counter()
        self.alloc = 0

    def run(self, fn):
        with self.mode():
            fn()
        return self


def _saved_bytes(torch, fn, param):
    """(bytes autograd keeps for backward after one forward, deduplicated by storage; the part of
    them that is not the parameter's own storage)."""
    storages = saved_storages(torch, fn)
    total = sum(storages.values())
    own = param.untyped_storage()
    return total, total - storages.get(own.data_ptr(), 0)


def _sn_variants_torch(torch, gt, name, device):
    """{variant: (fwd, param)} where fwd() returns the normalized weight in training mode and
    param is the leaf it is differentiable in. All start from the same weight and u, v."""
    from torch import nn
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    base = _torch_layer(nn, name).to(device)
    weight = base.weight.detach().clone()
    dim = 1 if isinstance(base, nn.ConvTranspose2d) else 0
    out = {}

    def fresh():
        m = _torch_layer(nn, name).to(device)
        with torch.no_grad():
            m.weight.copy_(weight)
        return m.train()

    m_g = gt.spectral_norm(fresh())
    p_g = m_g.parametrizations.weight.original
    out["ganops"] = (lambda: m_g.weight, p_g)
    sn_g = m_g.parametrizations.weight[0]
    u_f, v_f = sn_g._u.clone(), sn_g._v.clone()
    p_f = weight.clone().requires_grad_()

    def ganops_fn():
        sigma, u, v = gt.power_iteration(p_f, u_f, v_f, dim, 1, EPS)
        return gt.spectral_normalize(p_f, u, v, sigma, dim)
    out["ganops_fn"] = (ganops_fn, p_f)

    m_t = parametrizations.spectral_norm(fresh())
    out["torch_param"] = (lambda: m_t.weight, m_t.parametrizations.weight.original)

    m_o = torch.nn.utils.spectral_norm(fresh())
    hook = _old_sn_hook(m_o)

    def torch_old():
        hook(m_o, None)
        return m_o.weight
    out["torch_old"] = (torch_old, m_o.weight_orig)

    ref = gt.reference
    p_r = weight.clone().requires_grad_()
    u_r, v_r = u_f.clone(), v_f.clone()

    def reference():
        ref.spectral_norm_power_iteration(p_r, u_r, v_r, dim, 1, EPS)
        return ref.spectral_normalize(p_r, u_r, v_r, dim)
    out["ref_eager"] = (reference, p_r)

    p_c = weight.clone().requires_grad_()
    u_c, v_c = u_f.clone(), v_f.clone()

    def reference_c(w, u, v):
        ref.spectral_norm_power_iteration(w, u, v, dim, 1, EPS)
        return ref.spectral_normalize(w, u, v, dim)
    out["ref_compile"] = (reference_c, (p_c, u_c, v_c))
    return out, weight, dim, sn_g


def _d_model(nn, sn, image):
    """DCGAN discriminator for `image`x`image` inputs, `sn` applied to each conv and linear."""
    layers, c = [], 3
    for cout in (64, 128, 256, 512):
        layers += [sn(nn.Conv2d(c, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c = cout
    side = image // 16
    layers += [nn.Flatten(), sn(nn.Linear(512 * side * side, 1))]
    return nn.Sequential(*layers)


def _run_d_step_torch(torch, gt, opts, budget, log, sync, device):
    from torch import nn
    from torch.nn import functional as F
    from torch.nn.utils import parametrizations

    batch, image = QUICK_STEP if opts.quick else FULL_STEP
    case = f"D step {batch}x3x{image}x{image}"
    sns = {
        "floor": lambda m: m,
        "ganops": gt.spectral_norm,
        "torch_param": parametrizations.spectral_norm,
        "torch_old": torch.nn.utils.spectral_norm,
    }
    x = torch.randn(batch, 3, image, image, generator=torch.Generator().manual_seed(1)).to(device)
    rows = []
    common = dict(framework="torch", op=OP, case=case, shape=(batch, 3, image, image), dtype="float32",
                  act="step", pass_="fwd+bwd")
    for variant, sn in sns.items():
        torch.manual_seed(0)
        d = _d_model(nn, sn, image).to(device).train()
        opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))

        def step(d=d, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = F.softplus(-d(x)).mean()
            loss.backward()
            opt.step()
        log(f"torch {case} {variant}")
        rows.append(timed_row(step, budget, sync, **common, variant=variant))
    return rows


def _profile_torch(torch, gt, name, weight, dim, sn, budget, sync, G):
    """Each ganops op on its own (kind='profile' rows), and two one-pass floors for scale."""
    ops = torch.ops.ganops
    w = weight
    u, v = sn._u.clone(), sn._v.clone()
    sigma, uc, vc = ops.spectral_norm_power_iteration(w, u, v, dim, 1, EPS)
    n = w.numel() * w.element_size()
    parts = [
        ("power_iteration op", lambda: ops.spectral_norm_power_iteration(w, u, v, dim, 1, EPS), n),
        ("spectral_normalize op", lambda: ops.spectral_normalize(w, uc, vc, sigma, dim), 2 * n),
        ("spectral_normalize_backward op", lambda: ops.spectral_normalize_backward(G, w, uc, vc, sigma, dim), 4 * n),
        ("W.sum() (one read)", lambda: w.sum(), n),
        ("W.clone() (read + write)", lambda: w.clone(), 2 * n),
    ]
    rows = []
    with torch.no_grad():
        for label, fn, moved in parts:
            common = dict(framework="torch", op=OP, case=name, shape=tuple(w.shape), dtype="float32",
                          act=size_class(w.numel()), pass_="-", variant=label, kind="profile", bytes_moved=moved)
            rows.append(timed_row(fn, budget, sync, **common))
    return rows


def run_torch(opts, budget, log):
    import torch

    import ganops.torch as gt
    device = torch.device(opts.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)

    for name in (QUICK_CASES if opts.quick else FULL_CASES):
        variants, weight, dim, sn_g = _sn_variants_torch(torch, gt, name, device)
        numel = weight.numel()
        cls = size_class(numel)
        G = torch.randn(weight.shape, generator=gen).to(device)
        base = dict(framework="torch", op=OP, case=name, shape=tuple(weight.shape), dtype="float32", act=cls)

        # The compiled reference, compiled once for both passes (the forward records the graph).
        torch._dynamo.reset()
        ref_c, (p_c, u_c, v_c) = variants["ref_compile"]
        log(f"torch {name}: compiling the reference")
        compiled, compile_note = compile_fullgraph_if_possible(
            torch, ref_c, lambda c: (torch.autograd.grad(c(p_c, u_c, v_c), p_c, G), sync and sync()))
        variants["ref_compile"] = (None if compiled is None else functools.partial(compiled, p_c, u_c, v_c), p_c)

        wf = weight.clone()
        floor = {
            "fwd": lambda: (wf.sum(), wf.mul(0.5)),
            "fwd+bwd": lambda: (wf.sum(), wf.mul(0.5), torch.dot(G.view(-1), wf.view(-1)), G.mul(0.5)),
        }
        for pass_ in PASSES:
            moved = _floor_bytes(numel, weight.element_size(), pass_)
            common = dict(base, pass_=pass_, bytes_moved=moved)
            log(f"torch {name} {pass_} floor")
            rows.append(row(**common, variant="floor", timing=measure(floor[pass_], budget, sync),
                            extra=_traffic_extra(torch, floor[pass_]) if pass_ == "fwd+bwd" else None))
            for variant, (fwd, param) in variants.items():
                note = compile_note if variant == "ref_compile" else None
                if fwd is None:
                    rows.append(row(**common, variant=variant, status="failed", note=note))
                    continue
                if pass_ == "fwd":
                    fn = fwd
                else:
                    def fn(fwd=fwd, param=param):
                        return torch.autograd.grad(fwd(), param, G)
                log(f"torch {name} {pass_} {variant}")
                try:
                    t = measure(fn, budget, sync)
                except Exception as exc:  # noqa: BLE001
                    rows.append(row(**common, variant=variant, status="failed",
                                    note="; ".join(filter(None, [note, reason(exc)]))))
                    continue
                extra = None
                if pass_ == "fwd+bwd":
                    extra = {}
                    try:
                        extra["saved_total"], extra["saved_extra"] = _saved_bytes(torch, fwd, param)
                    except Exception as exc:  # noqa: BLE001
                        note = "; ".join(filter(None, [note, f"saved bytes not measurable: {reason(exc)}"]))
                    if variant != "ref_compile":  # compiled code does not go through the dispatcher op by op
                        extra.update(_traffic_extra(torch, fn, note_on_error=True))
                rows.append(row(**common, variant=variant, timing=t, note=note, extra=extra,
                                saved_bytes=extra.get("saved_total") if extra else None))
        log(f"torch {name}: ganops per-op profile")
        rows += _profile_torch(torch, gt, name, weight.to(device), dim, sn_g, budget, sync, G)
        del variants, compiled
    torch._dynamo.reset()
    rows += _run_d_step_torch(torch, gt, opts, budget, log, sync, device)
    return rows


def _traffic_extra(torch, fn, note_on_error=False):
    try:
        tr = _Traffic(torch).run(fn)
    except Exception as exc:  # noqa: BLE001
        return {"traffic_note": reason(exc)} if note_on_error else {}
    return {"aten_ops": sum(tr.ops.values()), "alloc_bytes": tr.alloc, "op_counts": dict(tr.ops)}


# -------------------------------------------------------------------------------------------- tf

def _keras_layer(keras, name):
    kind, cin, cout, k = LAYERS[name]
    if kind == "conv":
        return keras.layers.Conv2D(cout, k), (1, k, k, cin)
    if kind == "convT":
        return keras.layers.Conv2DTranspose(cout, k), (1, 1, 1, cin)
    return keras.layers.Dense(cout), (1, cin)


def _tf_reference(tf):
    """Keras' SpectralNormalization.normalized_weights as a function of (kernel, u): the power
    step on reshape(kernel, [-1, out]) (v = normalize(u W^T), u = normalize(v W)), sigma = v W u^T
    with u, v held constant, returns (kernel / sigma, new u). Keras' normalize: x * min(rsqrt(
    sum(x^2)), 1 / 1e-7)."""
    def normalize(x):
        return x * tf.minimum(tf.math.rsqrt(tf.reduce_sum(tf.square(x))), 1e7)

    def spectral_norm(w, u, power_iterations=1):
        m = tf.reshape(w, [-1, w.shape[-1]])
        for _ in range(power_iterations):
            v = normalize(tf.matmul(u, m, transpose_b=True))
            u = normalize(tf.matmul(v, m))
        u, v = tf.stop_gradient(u), tf.stop_gradient(v)
        sigma = tf.matmul(tf.matmul(v, m), u, transpose_b=True)
        return w / sigma, u
    return spectral_norm


def _tf_ganops(gtf, path):
    """The ganops.tf attribute at `path` ('spectral_norm', 'layers.SpectralNormalization') or
    (None, reason)."""
    obj = gtf
    for part in path.split("."):
        if not hasattr(obj, part):
            return None, f"ganops.tf has no {path} yet (the TensorFlow front end is not merged)"
        obj = getattr(obj, part)
    return obj, None


def run_tf(opts, budget, log):
    """TF side; run in its own process (see run.py)."""
    import keras
    import tensorflow as tf

    import ganops.tf as gtf
    dev = "/GPU:0" if opts.device == "cuda" else "/CPU:0"
    rows = []

    gt_sn, gt_sn_why = _tf_ganops(gtf, "spectral_norm")
    gt_layer, gt_layer_why = _tf_ganops(gtf, "layers.SpectralNormalization")
    ref_sn = getattr(getattr(gtf, "reference", None), "spectral_norm", None)
    ref_note = None
    if ref_sn is None:
        ref_sn = _tf_reference(tf)
        ref_note = "ganops.tf.reference.spectral_norm does not exist yet: the inline reference of this file"

    def materialise(out):
        if opts.device == "cuda":
            for t in tf.nest.flatten(out):
                tf.reshape(t, [-1])[0].numpy()

    def timed(fn, *args):
        def call():
            with tf.device(dev):
                materialise(fn(*args))
        return call

    def record(common, variant, fn, args=(), note=None):
        log(f"tf {common['case']} {common['pass_']} {variant}")
        try:
            timed(fn, *args)()  # trace / compile outside the timing
            rows.append(row(**common, variant=variant, timing=measure(timed(fn, *args), budget), note=note))
        except Exception as exc:  # noqa: BLE001
            rows.append(row(**common, variant=variant, status="failed",
                            note="; ".join(filter(None, [note, reason(exc)]))))

    def na(common, variant, why):
        rows.append(row(**common, variant=variant, status="n/a", note=why))

    for name in (QUICK_CASES if opts.quick else FULL_CASES):
        with tf.device(dev):
            keras.utils.set_random_seed(0)
            inner, in_shape = _keras_layer(keras, name)
            k_sn = keras.layers.SpectralNormalization(inner)
            x = tf.random.stateless_normal(in_shape, seed=(1, 2))
            y = k_sn(x, training=False)  # builds
            kernel = k_sn.kernel
            shape = tuple(kernel.shape)
            numel = int(tf.size(kernel))
            G = tf.random.stateless_normal(shape, seed=(3, 4))
            gy = tf.random.stateless_normal(y.shape, seed=(5, 6))
            # Separate kernels and u per variant (the layer-call rows assign theirs).
            w = tf.Variable(tf.identity(kernel), name="w")
            u = tf.Variable(tf.identity(k_sn.vector_u), trainable=False, name="u")
        cls = size_class(numel)

        # ------------------------------------------------------------- SN part: the kernel
        case = f"{name} kernel"
        base = dict(framework="tf", op=OP, case=case, shape=shape, dtype="float32", act=cls)

        def keras_fn():
            new_u, new_kernel = k_sn.normalized_weights()
            return new_kernel, new_u

        def ganops_fn():
            return gt_sn(w, u, power_iterations=1)

        def ref_fn():
            return ref_sn(w, u, power_iterations=1)

        def grad_of(f, var):
            def step():
                with tf.GradientTape() as tape:
                    w_sn, _ = f()
                return tape.gradient(w_sn, var, output_gradients=G)
            return step

        wf = tf.Variable(tf.identity(kernel), name="wf")

        def floor_fwd():
            return tf.reduce_sum(wf), wf * 0.5

        def floor_fwd_bwd():
            # <G, W>: reduce_sum(W * G) is TF's fastest dot here (a 1xN by Nx1 matmul was 2.4x
            # slower on the development machine, XLA slower still).
            return tf.reduce_sum(wf), wf * 0.5, tf.reduce_sum(wf * G), G * 0.5

        for pass_ in PASSES:
            common = dict(base, pass_=pass_, bytes_moved=_floor_bytes(numel, 4, pass_))
            record(common, "floor", tf.function(floor_fwd if pass_ == "fwd" else floor_fwd_bwd))
            if gt_sn is None:
                na(common, "ganops", gt_sn_why)
            else:
                record(common, "ganops", tf.function(ganops_fn if pass_ == "fwd" else grad_of(ganops_fn, w)))
            record(common, "keras", tf.function(keras_fn if pass_ == "fwd" else grad_of(keras_fn, kernel)))
            f = ref_fn if pass_ == "fwd" else grad_of(ref_fn, w)
            record(common, "ref_eager", f, note=ref_note)
            record(common, "ref_fn", tf.function(f), note=ref_note)
            record(common, "ref_xla", tf.function(f, jit_compile=True), note=ref_note)

        # ------------------------------------------------------------- the whole layer call
        case = f"{name} layer call"
        base = dict(framework="tf", op=OP, case=case, shape=shape, dtype="float32", act=cls)
        with tf.device(dev):
            keras.utils.set_random_seed(0)
            bare, _ = _keras_layer(keras, name)
            bare(x)
            g_layer, gt_layer_err = None, None
            if gt_layer is not None:
                keras.utils.set_random_seed(0)
                try:
                    g_layer = gt_layer(_keras_layer(keras, name)[0])
                    g_layer(x, training=False)
                except Exception as exc:  # noqa: BLE001
                    g_layer, gt_layer_err = None, f"building it failed: {reason(exc)}"

        def call_of(layer, training):
            def fwd():
                return layer(x, training=training) if training is not None else layer(x)

            def fwd_bwd():
                with tf.GradientTape() as tape:
                    out = fwd()
                return tape.gradient(out, layer.trainable_variables, output_gradients=gy)
            return fwd, fwd_bwd

        calls = {"floor": call_of(bare, None), "keras": call_of(k_sn, True)}
        if g_layer is not None:
            calls["ganops"] = call_of(g_layer, True)
        for i, pass_ in enumerate(PASSES):
            common = dict(base, pass_=pass_, bytes_moved=None)
            for variant in ("floor", "ganops", "keras"):
                if variant not in calls:
                    if gt_layer is None:
                        na(common, variant, gt_layer_why)
                    else:
                        rows.append(row(**common, variant=variant, status="failed", note=gt_layer_err))
                    continue
                record(common, variant, tf.function(calls[variant][i]))

    _run_d_step_tf(tf, keras, gt_layer, gt_layer_why, opts, log, record, na)
    return rows


def _run_d_step_tf(tf, keras, gt_layer, gt_layer_why, opts, log, record, na):
    """Appends the step's rows through `record` / `na`."""
    batch, image = QUICK_STEP if opts.quick else FULL_STEP
    case = f"D step {batch}x{image}x{image}x3"
    common = dict(framework="tf", op=OP, case=case, shape=(batch, image, image, 3), dtype="float32",
                  act="step", pass_="fwd+bwd")
    x = tf.random.stateless_normal((batch, image, image, 3), seed=(7, 8))
    wrappers = {"floor": lambda layer: layer, "keras": keras.layers.SpectralNormalization}
    if gt_layer is not None:
        wrappers["ganops"] = gt_layer
    for variant in ("floor", "ganops", "keras"):
        if variant not in wrappers:
            na(common, variant, gt_layer_why)
            continue
        sn = wrappers[variant]
        keras.utils.set_random_seed(0)
        try:
            layers = [keras.Input((image, image, 3))]
            for c in (64, 128, 256, 512):
                layers += [sn(keras.layers.Conv2D(c, 4, 2, padding="same")), keras.layers.LeakyReLU(0.2)]
            layers += [keras.layers.Flatten(), sn(keras.layers.Dense(1))]
            d = keras.Sequential(layers)
            opt = keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9)
            opt.build(d.trainable_variables)
        except Exception as exc:  # noqa: BLE001
            record(common, variant, None, note=f"building the model failed: {reason(exc)}")
            continue

        @tf.function
        def step(d=d, opt=opt):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.softplus(-d(x, training=True)))
            grads = tape.gradient(loss, d.trainable_variables)
            opt.apply_gradients(zip(grads, d.trainable_variables))
            return loss
        record(common, variant, step)


# --------------------------------------------------------------------------------- extra tables

def _fmt_ms(r):
    if r is None:
        return "-"
    if r["status"] != "ok":
        return r["status"]
    v = r["median_ms"]
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _kib(n):
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 1024 else f"{n} B"


def markdown_extra(rows, framework):
    """torch: what each version dispatches, allocates and saves (fwd+bwd), the ganops per-op
    profile and the share of the discriminator step that spectral norm takes."""
    if framework != "torch":
        return None
    labels = dict(SPEC["torch"]["variants"])
    mine = [r for r in rows if r["framework"] == "torch"]
    out = []

    # 1. Dispatch, allocation, saved tensors.
    by_case = collections.OrderedDict()
    for r in mine:
        if not r.get("kind") and r["pass_"] == "fwd+bwd" and r["act"] != "step":
            by_case.setdefault(r["case"], {})[r["variant"]] = r
    if by_case:
        shown = [v for v, _ in SPEC["torch"]["variants"] if v != "ref_compile"]
        out += ["Work per fwd+bwd (one call, counted with a TorchDispatchMode and "
                "`saved_tensors_hooks`): ops dispatched (kernel launches and views; a ganops op "
                "counts once) / bytes of new tensors allocated / bytes saved for backward beyond "
                "W's own storage (autograd keeps the parameter itself, no copy, in every version)."
                " W's size is in the first column.", ""]
        head = ["case", "W"] + [labels[v] for v in shown]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case, g in by_case.items():
            some = next(iter(g.values()))
            n = 1
            for s in some["shape"]:
                n *= s
            cells = [case, _kib(4 * n)]
            for v in shown:
                r = g.get(v)
                if r is None or r["status"] != "ok" or "aten_ops" not in r:
                    cells.append("-")
                    continue
                saved = "" if r.get("saved_extra") is None else f" / {_kib(r['saved_extra'])}"
                cells.append(f"{r['aten_ops']} / {_kib(r['alloc_bytes'])}{saved}")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        # Which ops, for the first and the last case (the launch-bound and the traffic-bound one).
        cases = list(by_case)
        for case in dict.fromkeys([cases[0], cases[-1]]):
            parts = []
            for v in ("ganops", "torch_param"):
                r = by_case[case].get(v)
                if r and r.get("op_counts"):
                    ops = ", ".join(f"{k}×{c}" if c > 1 else k for k, c in
                                    sorted(r["op_counts"].items(), key=lambda kv: -kv[1]))
                    parts.append(f"{labels[v]}: {ops}")
            if parts:
                out.append(f"- ops dispatched, {case}: " + "; ".join(parts))
        out.append("")

    # 2. ganops per-op profile.
    prof = collections.OrderedDict()
    for r in mine:
        if r.get("kind") == "profile":
            prof.setdefault(r["case"], {})[r["variant"]] = r
    if prof:
        main = {}
        for r in mine:
            if not r.get("kind"):
                main[(r["case"], r["pass_"], r["variant"])] = r
        cols = ["power_iteration op", "spectral_normalize op", "spectral_normalize_backward op",
                "W.sum() (one read)", "W.clone() (read + write)"]
        out += ["Where ganops' time goes (ms; each op called on its own, no autograd; GB/s from "
                "the bytes the op must move: power_iteration reads W once (both matrix-vector "
                "products of a step in one pass), spectral_normalize reads W and writes W_sn, the backward reads G twice "
                "and W once and writes dW). `ops fwd` is power_iteration + spectral_normalize, "
                "`ops fwd+bwd` adds the backward op; the rest of `ganops` is Python: "
                "parametrize, the module's forward, the autograd engine and node.", ""]
        head = ["case", "class"] + cols + ["ops fwd", "ganops functional fwd", "ganops fwd",
                                           "ops fwd+bwd", "ganops fwd+bwd", "overhead fwd+bwd"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case, g in prof.items():
            cells = [case, next(iter(g.values()))["act"]]
            for c in cols:
                r = g.get(c)
                if r and r["status"] == "ok" and r.get("gbps"):
                    cells.append(f"{_fmt_ms(r)} ({r['gbps']:.0f} GB/s)")
                else:
                    cells.append(_fmt_ms(r))
            ok = all(g.get(c) and g[c]["status"] == "ok" for c in cols[:3])
            f_ops = g[cols[0]]["median_ms"] + g[cols[1]]["median_ms"] if ok else None
            fb_ops = f_ops + g[cols[2]]["median_ms"] if ok else None
            fn_f = main.get((case, "fwd", "ganops_fn"))
            gf = main.get((case, "fwd", "ganops"))
            gfb = main.get((case, "fwd+bwd", "ganops"))
            cells += ["-" if f_ops is None else f"{f_ops:.3f}", _fmt_ms(fn_f), _fmt_ms(gf),
                      "-" if fb_ops is None else f"{fb_ops:.3f}", _fmt_ms(gfb)]
            if fb_ops is not None and gfb and gfb["status"] == "ok":
                over = gfb["median_ms"] - fb_ops
                cells.append(f"{over:.3f} ({100 * over / gfb['median_ms']:.0f}%)")
            else:
                cells.append("-")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")

    # 3. The discriminator step.
    step = {r["variant"]: r for r in mine if r["act"] == "step" and not r.get("kind")}
    fl = step.get("floor")
    if fl and fl["status"] == "ok":
        parts = []
        for v in ("ganops", "torch_param", "torch_old"):
            r = step.get(v)
            if r and r["status"] == "ok":
                add = r["median_ms"] - fl["median_ms"]
                parts.append(f"{labels[v]} {add:+.2f} ms ({100 * add / fl['median_ms']:+.1f}%)")
        if parts:
            out += [f"Spectral norm's share of the discriminator step ({fl['case']}; step time minus "
                    f"the same step without SN, {fl['median_ms']:.1f} ms; noisy, as a difference of "
                    "two medians): " + "; ".join(parts) + ".", ""]
    return "\n".join(out)
