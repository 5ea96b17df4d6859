"""gradient_penalty benchmark cases: the penalty part alone, fused vs pure Python, and whole
discriminator steps with WGAN-GP and R1.

`--device cuda` times the PyTorch side on the GPU (tensors and D moved there, timings synchronized);
it has not run yet, for want of a GPU.

**Penalty part alone** (rows `<kind> <shape>`, class `part`): what a penalty costs besides D's
own forward and double backward, with a fixed tensor standing in for D's input gradient g.
fwd: the penalty's inputs (WGAN-GP: eps drawn, then x = fake + eps (real - fake); R1: x = real,
nothing to do) and the penalty value from g; fwd+bwd adds d penalty / d g (`autograd.grad`),
which is what flows into D's double backward.
- ganops: `torch.ops.ganops.per_sample_lerp` (one read of each input, one write) and
  `ganops.torch.penalty_from_gradient` (per-sample norms and the penalty in one pass over g; the
  backward one read of g and one write)
- ref eager: the same written as GAN code writes it, `eps = torch.rand(N, 1, 1, 1)`,
  `fake + eps * (real - fake)`, `((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean() * 10`
  (R1: `g.pow(2).flatten(1).sum(1).mean() * 5`), eagerly; ref torch.compile: the same compiled
- floor: torch's own single-pass kernels for the least traffic: `torch.lerp(fake, real, 0.5)`
  (WGAN-GP only: 3 N), `g.norm()` (N), and for fwd+bwd `g.mul(0.5)` (2 N).
Goal (from the issue, this CPU): the penalty part at least 3x as fast as the pure Python version.
Each call allocates its outputs afresh, as a
training step does; on this machine a new 3 MiB tensor costs its page faults (x and d/dg at
64x3x64x64), in every column alike.

**Discriminator step** (rows `D step <kind> ...`, class `step`): a DCGAN discriminator for 64x64
images at batch 64 (4x4 stride-2 convs 3->64->128->256->512, leaky ReLU 0.2 with StyleGAN's
sqrt(2) gain, linear 8192->1); one optimizer step: zero_grad, the D loss (WGAN: D(fake).mean() -
D(real).mean(); R1: the non-saturating softplus loss on D(real), D(fake)) plus the penalty,
backward, Adam step.
- ganops: convs without bias + `ganops.torch.FusedLeakyReLU`, `ganops.torch.gradient_penalty`
- ref eager: convs with bias + `leaky_relu(x, 0.2) * sqrt(2)` (torch's layers), the penalty as
  ref eager above with `torch.autograd.grad(D(x).sum(), x, create_graph=True)`
- floor: the ref eager step without the penalty: what the penalty adds is the difference.
No goal: the step is mostly D's convolutions and their double backward; the ratio is reported
as measured.

**TensorFlow**: the same cases, in `tf.function`, channels-last (the functions return the
penalty, the gradient and, for WGAN-GP, one element of x: see `_tf_part_fns`): ganops = `ganops.tf.per_sample_lerp`
and `ganops.tf.penalty_from_gradient` / `ganops.tf.gradient_penalty` with `gtf.layers.FusedBiasAct`;
ref = the pure-TF formulas (`tf.norm` over the non-batch axes) with Keras' own layers (Conv2D with
bias, LeakyReLU(0.2) * sqrt(2)); ref XLA = the ref penalty part under jit_compile=True.
"""
import math

from benchmarks.common import compile_fullgraph_if_possible, row, timed_row

OP = "gradient_penalty"

GOAL = {"part": 3.0}
# (batch, channels, size): CIFAR-sized, the 64x64 DCGAN batch, a high-resolution batch.
FULL_SHAPES = [(64, 3, 32, 32), (64, 3, 64, 64), (16, 3, 256, 256)]
QUICK_SHAPES = [(4, 3, 16, 16)]
KINDS = ("wgan-gp", "r1")
FULL_STEP = (64, 64)
QUICK_STEP = (4, 16)
PASSES = ("fwd", "fwd+bwd")

SPEC = {
    "torch": dict(
        variants=[("floor", "floor"), ("ganops", "ganops"), ("ref_eager", "ref eager"),
                  ("ref_compile", "ref torch.compile")],
        subject="ganops",
        limit=("floor", None),
        baselines=[("ref_eager", GOAL), ("ref_compile", None)],
        saved=[],
        act_label="class",
        chart_baseline="ref_eager",
    ),
    "tf": dict(
        variants=[("floor", "floor"), ("ganops", "ganops"), ("ref_fn", "ref tf.function"),
                  ("ref_xla", "ref XLA")],
        subject="ganops",
        limit=("floor", None),
        baselines=[("ref_fn", GOAL), ("ref_xla", None)],
        saved=[],
        act_label="class",
        chart_baseline="ref_fn",
    ),
}


def _case(kind, shape):
    return f"{kind} {'x'.join(map(str, shape))}"


def _floor_elements(kind, numel, pass_):
    return (3 * numel if kind == "wgan-gp" else 0) + numel + (2 * numel if pass_ == "fwd+bwd" else 0)


# ----------------------------------------------------------------------------------------- torch

def _torch_part_fns(torch, gt, kind, real, fake, g):
    """{variant: fn} for the fwd pass; each returns (penalty, x): the penalty depends on g, and
    x (the penalty's inputs) is returned so that compilers cannot drop it."""
    ops = torch.ops.ganops
    n = real.shape[0]

    def ganops_part():
        x = ops.per_sample_lerp(fake, real, torch.rand(n, device=real.device)) if kind == "wgan-gp" else real
        return gt.penalty_from_gradient(g, kind), x

    def ref_part(real, fake, g):
        if kind == "wgan-gp":
            eps = torch.rand(n, 1, 1, 1, device=real.device)
            return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean() * 10, fake + eps * (real - fake)
        return g.pow(2).flatten(1).sum(1).mean() * 5, real

    def floor_part():
        return g.norm(), torch.lerp(fake, real, 0.5) if kind == "wgan-gp" else real

    return {"floor": floor_part, "ganops": ganops_part,
            "ref_eager": lambda: ref_part(real, fake, g), "ref_compile": ref_part}


def _torch_discriminator(torch, gt, fused, image):
    from torch import nn
    from torch.nn import functional as F

    class ScaledLeakyReLU(nn.Module):  # StyleGAN's lrelu gain from torch's own functions
        def forward(self, x):
            return F.leaky_relu(x, 0.2) * math.sqrt(2)

    torch.manual_seed(0)
    layers, c = [], 3
    for cout in (64, 128, 256, 512):
        if fused:
            layers += [nn.Conv2d(c, cout, 4, 2, 1, bias=False), gt.FusedLeakyReLU(cout)]
        else:
            layers += [nn.Conv2d(c, cout, 4, 2, 1), ScaledLeakyReLU()]
        c = cout
    side = image // 16
    layers += [nn.Flatten(), nn.Linear(512 * side * side, 1)]
    return nn.Sequential(*layers)


def _torch_reference_penalty(torch, D, kind, real, fake):
    if kind == "wgan-gp":
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x = (fake + eps * (real - fake)).requires_grad_(True)
    else:
        x = real.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    if kind == "wgan-gp":
        return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean() * 10
    return g.pow(2).flatten(1).sum(1).mean() * 5


def _run_d_steps_torch(torch, gt, opts, budget, log, sync, device):
    from torch.nn import functional as F
    batch, image = QUICK_STEP if opts.quick else FULL_STEP
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(batch, 3, image, image, generator=gen).to(device)
    fake = torch.randn(batch, 3, image, image, generator=gen).to(device)
    rows = []
    for kind in KINDS:
        case = f"D step {kind} {batch}x3x{image}x{image}"
        common = dict(framework="torch", op=OP, case=case, shape=(batch, 3, image, image),
                      dtype="float32", act="step", pass_="fwd+bwd")
        for variant in ("floor", "ganops", "ref_eager"):
            d = _torch_discriminator(torch, gt, variant == "ganops", image).to(device).train()
            opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))

            def step(d=d, opt=opt, variant=variant):
                opt.zero_grad(set_to_none=True)
                if kind == "wgan-gp":
                    loss = d(fake).mean() - d(real).mean()
                else:
                    loss = F.softplus(d(fake)).mean() + F.softplus(-d(real)).mean()
                if variant == "ganops":
                    loss = loss + gt.gradient_penalty(d, real, fake if kind == "wgan-gp" else None,
                                                      kind=kind)
                elif variant == "ref_eager":
                    loss = loss + _torch_reference_penalty(torch, d, kind, real, fake)
                loss.backward()
                opt.step()
            log(f"torch {case} {variant}")
            rows.append(timed_row(step, budget, sync, **common, variant=variant))
    return rows


def run_torch(opts, budget, log):
    import torch

    import ganops.torch as gt
    device = torch.device(opts.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows = []
    gen = torch.Generator().manual_seed(0)
    for shape in (QUICK_SHAPES if opts.quick else FULL_SHAPES):
        real = torch.randn(shape, generator=gen).to(device)
        fake = torch.randn(shape, generator=gen).to(device)
        g = torch.randn(shape, generator=gen).mul_(0.01).to(device).requires_grad_(True)
        for kind in KINDS:
            case = _case(kind, shape)
            fns = _torch_part_fns(torch, gt, kind, real, fake, g)
            torch._dynamo.reset()
            log(f"torch {case}: compiling the reference")
            compiled, compile_note = compile_fullgraph_if_possible(
                torch, fns["ref_compile"], lambda c: torch.autograd.grad(c(real, fake, g)[0], g))
            fns["ref_compile"] = None if compiled is None else (lambda c=compiled: c(real, fake, g))
            for pass_ in PASSES:
                moved = _floor_elements(kind, g.numel(), pass_) * g.element_size()
                common = dict(framework="torch", op=OP, case=case, shape=shape, dtype="float32",
                              act="part", pass_=pass_, bytes_moved=moved)
                for variant, fwd in fns.items():
                    note = compile_note if variant == "ref_compile" else None
                    if fwd is None:
                        rows.append(row(**common, variant=variant, status="failed", note=note))
                        continue
                    if pass_ == "fwd":
                        fn = fwd
                    elif variant == "floor":
                        def fn(fwd=fwd):
                            return fwd(), g.detach().mul(0.5)
                    else:
                        def fn(fwd=fwd):
                            penalty, x = fwd()
                            return torch.autograd.grad(penalty, g), x
                    log(f"torch {case} {pass_} {variant}")
                    rows.append(timed_row(fn, budget, sync, note, **common, variant=variant))
    torch._dynamo.reset()
    rows += _run_d_steps_torch(torch, gt, opts, budget, log, sync, device)
    return rows


# -------------------------------------------------------------------------------------------- tf

def _tf_reference_penalty(tf, kind, g):
    axes = list(range(1, len(g.shape)))
    if kind == "wgan-gp":
        norms = tf.sqrt(tf.reduce_sum(tf.square(g), axis=axes))
        return tf.reduce_mean(tf.square(norms - 1.0)) * 10.0
    return tf.reduce_mean(tf.reduce_sum(tf.square(g), axis=axes)) * 5.0


def _tf_part_fns(tf, gtf, kind, real, fake, g):
    n = real.shape[0]

    def interpolate_ref():
        eps = tf.random.uniform([n, 1, 1, 1])
        return fake + eps * (real - fake)

    def make(penalty, interpolate):
        # One element of WGAN-GP's x is returned so that graph optimizers cannot drop the
        # interpolation. Not x itself: a tf.function returning two large tensors (x and the
        # gradient) cost 4.5 ms more at 64x64x64x3 here, whatever computed them; XLA may shrink
        # the reference's interpolation to that element, which only favours the reference.
        def fwd():
            return (penalty(g), interpolate()[0, 0, 0, 0]) if kind == "wgan-gp" else (penalty(g),)

        def fwd_bwd():
            with tf.GradientTape() as tape:
                tape.watch(g)
                out = fwd()
            return out + (tape.gradient(out[0], g),)
        return fwd, fwd_bwd

    have = hasattr(gtf, "penalty_from_gradient") and hasattr(gtf, "per_sample_lerp")
    out = {
        "floor": make(lambda t: tf.norm(t), lambda: (fake + 0.5 * (real - fake))),
        "ref": make(lambda t: _tf_reference_penalty(tf, kind, t), interpolate_ref),
    }
    if have:
        out["ganops"] = make(lambda t: gtf.penalty_from_gradient(t, kind),
                             lambda: gtf.per_sample_lerp(fake, real, tf.random.uniform([n])))
    return out


def _tf_discriminator(keras, gtf, fused, image):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((image, image, 3))]
    for cout in (64, 128, 256, 512):
        if fused:
            layers += [keras.layers.Conv2D(cout, 4, 2, padding="same", use_bias=False),
                       gtf.layers.FusedBiasAct(act="lrelu")]
        else:
            layers += [keras.layers.Conv2D(cout, 4, 2, padding="same"),
                       keras.layers.LeakyReLU(0.2), keras.layers.Rescaling(math.sqrt(2))]
    layers += [keras.layers.Flatten(), keras.layers.Dense(1)]
    return keras.Sequential(layers)


def _run_d_steps_tf(tf, keras, gtf, opts, budget, log):
    batch, image = QUICK_STEP if opts.quick else FULL_STEP
    real = tf.random.stateless_normal([batch, image, image, 3], seed=[1, 0])
    fake = tf.random.stateless_normal([batch, image, image, 3], seed=[1, 1])
    rows = []
    have = hasattr(gtf, "gradient_penalty")
    for kind in KINDS:
        case = f"D step {kind} {batch}x{image}x{image}x3"
        common = dict(framework="tf", op=OP, case=case, shape=(batch, image, image, 3),
                      dtype="float32", act="step", pass_="fwd+bwd")
        for variant in ("floor", "ganops", "ref_fn"):
            if variant == "ganops" and not have:
                rows.append(row(**common, variant=variant, status="n/a",
                                note="ganops.tf has no gradient_penalty"))
                continue
            d = _tf_discriminator(keras, gtf, variant == "ganops", image)
            opt = keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9)

            def penalty(d, variant):
                if variant == "ganops":
                    return gtf.gradient_penalty(d, real, fake if kind == "wgan-gp" else None, kind=kind)
                if kind == "wgan-gp":
                    x = fake + tf.random.uniform([batch, 1, 1, 1]) * (real - fake)
                else:
                    x = real
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    out = d(x, training=True)
                return _tf_reference_penalty(tf, kind, inner.gradient(out, x))

            @tf.function
            def step(d=d, opt=opt, variant=variant):
                with tf.GradientTape() as tape:
                    if kind == "wgan-gp":
                        loss = tf.reduce_mean(d(fake, training=True)) - tf.reduce_mean(d(real, training=True))
                    else:
                        loss = (tf.reduce_mean(tf.nn.softplus(d(fake, training=True)))
                                + tf.reduce_mean(tf.nn.softplus(-d(real, training=True))))
                    if variant != "floor":
                        loss = loss + penalty(d, variant)
                grads = tape.gradient(loss, d.trainable_variables)
                opt.apply_gradients(zip(grads, d.trainable_variables))
                return loss

            log(f"tf {case} {variant}")
            rows.append(timed_row(lambda step=step: step().numpy(), budget, **common, variant=variant))
    return rows


def run_tf(opts, budget, log):
    import keras
    import tensorflow as tf

    import ganops.tf as gtf
    rows = []
    for shape in (QUICK_SHAPES if opts.quick else FULL_SHAPES):
        b, c, h, w = shape
        nhwc = (b, h, w, c)
        real = tf.random.stateless_normal(nhwc, seed=[0, 0])
        fake = tf.random.stateless_normal(nhwc, seed=[0, 1])
        g = tf.random.stateless_normal(nhwc, seed=[0, 2]) * 0.01
        for kind in KINDS:
            case = _case(kind, nhwc)
            fns = _tf_part_fns(tf, gtf, kind, real, fake, g)
            variants = {"floor": fns["floor"], "ganops": fns.get("ganops"), "ref_fn": fns["ref"],
                        "ref_xla": fns["ref"]}
            for i, pass_ in enumerate(PASSES):
                moved = _floor_elements(kind, int(tf.size(g)), pass_) * 4
                common = dict(framework="tf", op=OP, case=case, shape=nhwc, dtype="float32",
                              act="part", pass_=pass_, bytes_moved=moved)
                for variant, pair in variants.items():
                    if pair is None:
                        rows.append(row(**common, variant=variant, status="n/a",
                                        note="ganops.tf has no penalty_from_gradient"))
                        continue
                    fn = tf.function(pair[i], jit_compile=variant == "ref_xla")
                    log(f"tf {case} {pass_} {variant}")
                    rows.append(timed_row(lambda fn=fn: tf.nest.map_structure(lambda t: t.numpy(), fn()),
                                          budget, **common, variant=variant))
    rows += _run_d_steps_tf(tf, keras, gtf, opts, budget, log)
    return rows
