"""DistributedDataParallel (gloo, CPU, 2 processes) with gradient penalties through the DDP
module, in the two ways GAN code runs them:

- combined: loss = D(fake).mean() - D(real).mean() + penalty, one backward;
- lazy: the penalty alone on its own steps (StyleGAN2's regularization phase), where the input
  gradient does not reach every parameter (the last bias): gradient_penalty's zero output term
  keeps DDP from failing with "parameters that were not used in producing loss".

R1 draws nothing at random, so each rank's parameters after the steps must equal a
single-process run on the full batch (DDP averages the per-rank half-batch means). WGAN-GP's
interpolation draws per rank, so there the ranks must agree with each other."""
import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import ganops.torch as gt
from conftest import free_port

WORLD = 2
STEPS = 4


def _discriminator():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1, bias=False), gt.FusedLeakyReLU(4),
                      nn.Conv2d(4, 4, 3, 2, 1, bias=False), gt.FusedLeakyReLU(4), nn.Flatten(),
                      nn.Linear(4 * 2 * 2, 1))
    return gt.apply_spectral_norm(d)


def _batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randn(8, 3, 8, 8, generator=g))
            for _ in range(STEPS)]


def _train(d, D, mode, rank=None):
    opt = torch.optim.SGD(d.parameters(), lr=0.1, momentum=0.5)
    lazy = gt.LazyRegularization(interval=2)
    for step, (real, fake) in enumerate(_batches()):
        if rank is not None:
            real, fake = real.chunk(WORLD)[rank], fake.chunk(WORLD)[rank]
        if mode == "combined":
            loss = D(fake).mean() - D(real).mean() + gt.r1_penalty(D, real)
        elif mode == "lazy":
            if lazy.due(step):
                loss = lazy.scale(gt.r1_penalty(D, real))
            else:
                loss = D(fake).mean() - D(real).mean()
        else:  # wgan-gp, lazy
            if lazy.due(step):
                loss = lazy.scale(gt.wgan_gp_penalty(D, real, fake))
            else:
                loss = D(fake).mean() - D(real).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _worker(rank, port, out_dir, mode):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        d = _discriminator()
        _train(d, nn.parallel.DistributedDataParallel(d), mode, rank)
        torch.save(d.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _assert_state_close(got, want, what):
    assert list(got) == list(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, atol=1e-6, rtol=1e-5, msg=lambda m, k=k: f"{what} {k}: {m}")


@pytest.mark.parametrize("mode", ["combined", "lazy", "wgan-gp"])
def test_ddp_penalty_steps(tmp_path, mode):
    mp.spawn(_worker, args=(free_port(), str(tmp_path), mode), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    start = _discriminator().state_dict()
    assert any(not torch.equal(ranks[0][k], start[k]) for k in start if k.endswith("original"))
    if mode == "wgan-gp":
        _assert_state_close(ranks[1], ranks[0], "rank 1 vs rank 0")
        return
    reference = _discriminator()
    _train(reference, reference, mode)
    for rank, got in enumerate(ranks):
        _assert_state_close(got, reference.state_dict(), f"rank {rank}")
