"""Data-parallel overhead on one CPU box: 1 process vs 2 DDP processes (gloo) × 1 thread.

    python benchmarks/ddp_throughput.py [--model gan|wgan-gp] [--batch-size 64] [--steps 8] [--rounds 3]

Same global batch, same model (the 64×64 report nets unless --img-size/--ngf/--ndf
say otherwise), same `Trainer.train_step` that `python -m animegan.train` and
`torchrun … -m animegan.train` run; synthetic uint8 images so no disk or decoding
is timed. Configurations alternate within each round so a busy machine hurts all
alike; the median of rounds is printed. On a 2-core CPU, 2×1 thread cannot beat
1×2 threads: the point is that it runs and what the gradient all-reduce costs.
On GPUs each process gets its own device, and the same code scales the batch.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from animegan.config import resolve
from animegan.data import LoadedImages
from animegan.distributed import DistEnv
from animegan.trainer import Trainer


def make_trainer(args, env: DistEnv | None = None) -> Trainer:
    cfg = resolve({"model": args.model, "batch_size": args.batch_size, "img_size": args.img_size,
                   "ngf": args.ngf, "ndf": args.ndf, "precision": args.precision})
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size * 4 * cfg.n_critic, 3, args.img_size, args.img_size),
                           dtype=torch.uint8, generator=g)
    return Trainer(cfg, LoadedImages(images, [], 0, "synthetic"), torch.device("cpu"), env)


def timed(trainer: Trainer, steps: int, sync=lambda: None) -> float:
    """Images per second over `steps` generator steps, after one warm-up step."""
    trainer.train_step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    return steps * trainer.cfg.batch_size * trainer.cfg.n_critic / (time.perf_counter() - t)


def one_process(args, threads: int) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return timed(make_trainer(args), args.steps)
    finally:
        torch.set_num_threads(old)


def _ddp_worker(rank: int, args, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=2)
    try:
        trainer = make_trainer(args, DistEnv(rank, 2, rank, "gloo"))
        ips = timed(trainer, args.steps, sync=dist.barrier)
        if rank == 0:
            Path(tmp, "ips.json").write_text(json.dumps(ips))
    finally:
        dist.destroy_process_group()


def two_processes(args) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(args, tmp), nprocs=2, join=True)
        return json.loads(Path(tmp, "ips.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gan", choices=("gan", "wgan-gp"))
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (split over the 2 processes)")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--steps", type=int, default=8, help="timed generator steps per configuration and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the spawned workers: one thread each

    runs = {"1 process × 1 thread": lambda: one_process(args, 1),
            "1 process × 2 threads": lambda: one_process(args, 2),
            "2 processes × 1 thread (DDP, gloo)": lambda: two_processes(args)}
    got: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name, fn in runs.items():
            got[name].append(fn())
            print(f"round {r + 1}: {name}: {got[name][-1]:.1f} img/s", file=sys.stderr)
    n_params = sum(p.numel() for p in make_trainer(args).G.parameters()) + \
        sum(p.numel() for p in make_trainer(args).D.parameters())
    print(f"\n{args.model}, {args.img_size}×{args.img_size}, global batch {args.batch_size}, precision "
          f"{args.precision}, {args.steps} steps × {args.rounds} rounds, {os.cpu_count()} CPUs; "
          f"all-reduced per G step: {n_params * 4 / 2**20:.1f} MiB of fp32 gradients (G + D)")
    base = statistics.median(got["1 process × 1 thread"])
    for name, v in got.items():
        med = statistics.median(v)
        print(f"  {name:36s} {med:8.1f} img/s (median; {med / base:.2f}× 1×1)")


if __name__ == "__main__":
    main()
