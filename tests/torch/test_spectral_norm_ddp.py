"""DistributedDataParallel (gloo, CPU, 2 processes) over a spectral-norm discriminator run on a
real and a fake batch in one graph, loss = D(real).mean() - D(fake).mean(), as GAN code does.

Each D call runs a power-iteration step that updates _u/_v in place, and DDP broadcasts the
buffers in place before each forward: neither may trip autograd's in-place version check
(the ops save copies of u and v). Parameters, _u and _v after the steps must equal a
single-process run on the full batch: the power method does not depend on the data, and DDP's
gradient average of the per-rank half-batch means is the full-batch mean."""
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import ganops.torch as gt
from conftest import free_port

WORLD = 2
STEPS = 3


def _discriminator():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 3, 2, 1),
                      nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 2 * 2, 1))
    return gt.apply_spectral_norm(d)


def _batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randn(8, 3, 8, 8, generator=g))
            for _ in range(STEPS)]


def _train(d, rank=None):
    opt = torch.optim.SGD(d.parameters(), lr=0.1, momentum=0.5)
    for real, fake in _batches():
        if rank is not None:
            real, fake = real.chunk(WORLD)[rank], fake.chunk(WORLD)[rank]
        loss = d(real).mean() - d(fake).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        d = _discriminator()
        _train(nn.parallel.DistributedDataParallel(d), rank)
        torch.save(d.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_matches_a_single_process_run(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    reference = _discriminator()
    _train(reference)
    expected = reference.state_dict()
    assert any(k.endswith("_u") for k in expected)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert list(got) == list(expected)
        for k, v in expected.items():
            torch.testing.assert_close(got[k], v, atol=1e-6, rtol=1e-5,
                                       msg=lambda m, k=k, rank=rank: f"rank {rank} {k}: {m}")
