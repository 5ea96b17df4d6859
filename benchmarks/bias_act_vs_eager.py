"""Forward+backward of ganops.torch.bias_act against eager `leaky_relu(x + b, 0.2) * sqrt(2)`, the
shapes where per-call overhead or the bias-gradient pass decides (issue: small-tensor speed).

    .venv/bin/python benchmarks/bias_act_vs_eager.py [ROUNDS] [SHAPE-FILTER]

One and two intra-op threads, float32 and bfloat16. Each round times both sides (interleaved, so
a change of machine load hits both) and keeps the median of many repeats; the table shows the
median over rounds. Gradients come from autograd.grad, so no .grad accumulation is timed (x
stands for an activation, not a leaf).
"""
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import ganops.torch as gt

SHAPES = [("dense 256x512", (256, 512), 1), ("4x128", (4, 128), 1),
          ("conv 32x256x32x32", (32, 256, 32, 32), 1)]


def eager(x, b, dim):
    shape = [1] * x.ndim
    shape[dim] = -1
    return F.leaky_relu(x + b.view(shape), 0.2) * math.sqrt(2)


def fused(x, b, dim):
    return gt.bias_act(x, b, dim=dim, act="lrelu")


def step(fn, x, b, dim, g):
    torch.autograd.grad(fn(x, b, dim), (x, b), g)


def median_step(fn, x, b, dim, g, budget_s=0.6):
    for _ in range(5):
        step(fn, x, b, dim, g)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.1:
        step(fn, x, b, dim, g)
        n += 1
    per = max(1, n // 10)  # calls per sample: samples of ~10 ms, or one call when slower
    samples = []
    for _ in range(max(15, int(budget_s * n / 0.1 / per))):
        t = time.perf_counter()
        for _ in range(per):
            step(fn, x, b, dim, g)
        samples.append((time.perf_counter() - t) / per)
    return statistics.median(samples)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, shape, dim in (s for s in SHAPES if only in s[0]):
            for dtype in (torch.float32, torch.bfloat16):
                torch.manual_seed(0)
                x = torch.randn(shape, dtype=dtype, requires_grad=True)
                b = torch.randn(shape[dim], dtype=dtype, requires_grad=True)
                g = torch.randn(shape, dtype=dtype)
                te, tf = [], []
                for _ in range(rounds):
                    te.append(median_step(eager, x, b, dim, g))
                    tf.append(median_step(fused, x, b, dim, g))
                me, mf = statistics.median(te), statistics.median(tf)
                print(f"threads={threads} {name:18s} {str(dtype)[6:]:9s} eager {me * 1e6:9.1f} us  "
                      f"ganops {mf * 1e6:9.1f} us  {me / mf:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
