"""Data-parallel training across processes and machines with PyTorch's own launcher.

    torchrun --nproc_per_node 4 -m animegan.train --model wgan-gp --data faces.tar --out runs/w4
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m animegan.train ...

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; `init_from_env` joins the
process group (NCCL for CUDA tensors, gloo for CPU tensors). With a world size of 1
(plain `python -m animegan.train`, or torchrun with one process) nothing here runs:
no process group, no DDP wrapper, no collective — the single-process run is unchanged.

Semantics (docs/scaling.md): --batch-size is the *global* batch. Every rank builds
the same seeded permutation of epoch e and takes its own contiguous rows of each global
batch, and likewise its rows of the global z and ε draws, so the ranks together see
exactly the batch one process would (DistributedSampler's contract: disjoint shards of
one per-epoch permutation), and the RNG states in a checkpoint do not depend on the
world size. DDP averages gradients, so learning rates mean the same as in one process.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

# Rank 0 alone writes checkpoints, grids and the quick FD while the others wait in the
# next collective; that must not look like a dead peer.
TIMEOUT = timedelta(minutes=30)
# BatchNorm running statistics stay per rank (they are unused in training mode; rank 0's are
# saved): no buffer broadcast before every forward. The flag was renamed in recent torch.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else {"broadcast_buffers": False})


class DistError(ValueError):
    """A distributed setup that cannot work (one-line message)."""


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(environ=os.environ) -> DistEnv:
    """Join the process group torchrun describes; a world of 1 stays a plain process."""
    world = int(environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    if not dist.is_available():
        raise DistError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local = int(environ["RANK"]), int(environ.get("LOCAL_RANK", environ["RANK"]))
    # One group, two transports: NCCL moves CUDA tensors, gloo CPU tensors (and the pickled
    # config/state that rank 0 sends), so `--device cpu` works on a GPU machine too.
    cuda = torch.cuda.is_available()
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if cuda and local < torch.cuda.device_count():
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as e:
        raise DistError(f"rank {rank} cannot join the process group: {str(e).splitlines()[0][:200]}")
    return DistEnv(rank, world, local, backend)


def close(env: DistEnv) -> None:
    if env.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def place(env: DistEnv, device: torch.device) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK on GPUs, the CPU otherwise."""
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if env.local_rank >= n:
            raise DistError(f"LOCAL_RANK {env.local_rank} but only {n} CUDA device(s); "
                            f"use --nproc_per_node ≤ {n}")
        return torch.device("cuda", env.local_rank)
    if device.type != "cpu":
        raise DistError(f"data-parallel training runs on CUDA (NCCL) or CPU (gloo), not {device.type}")
    return device


def rank0_decides(env: DistEnv, fn):
    """fn() on rank 0 only; its result, or its exception, reaches every rank (which raises it too)."""
    result = exc = None
    if env.is_main:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 — re-raised on every rank below
            exc = e
    box = [(result, exc)]
    dist.broadcast_object_list(box, src=0)  # pickled over gloo: our own processes, not user files
    result, exc = box[0]
    if exc is not None:
        raise exc
    return result


def wrap(G: nn.Module, D: nn.Module, device: torch.device, sync_bn: bool) -> tuple[nn.Module, nn.Module]:
    """DDP wrappers for the forward passes whose gradients must be averaged.

    The modules themselves stay unwrapped (state_dict keys have no `module.`), and the
    generator step calls the bare D: its weights are frozen there, so D's DDP reducer
    must not wait for gradients that never come.
    """
    if sync_bn:
        if device.type != "cuda":
            raise DistError("--sync-bn on needs CUDA: torch's SyncBatchNorm has no CPU implementation")
        # Same Parameter objects, so the optimiser and the EMA (a copy made earlier) are unaffected.
        nn.SyncBatchNorm.convert_sync_batchnorm(G)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(G, device_ids=ids, **_NO_BUFFER_SYNC), DDP(D, device_ids=ids, **_NO_BUFFER_SYNC)


def agree(env: DistEnv, device: torch.device, stop: bool, seconds: float) -> tuple[bool, float]:
    """(any rank was signalled, rank 0's training seconds): every rank stops after the same step."""
    t = torch.tensor([float(stop), seconds if env.is_main else 0.0], dtype=torch.float64, device=device)
    dist.all_reduce(t)  # SUM: one tiny collective per step, only when world > 1
    stop_any, secs = t.tolist()
    return stop_any > 0, secs


def mean_stats(stats: dict) -> dict:
    """Loss statistics averaged over ranks (for metrics.jsonl; called on log steps only)."""
    keys = list(stats)
    t = torch.stack([torch.as_tensor(stats[k]).detach().float().reshape(()) for k in keys])
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.unbind()))


def check_same_data(env: DistEnv, images: torch.Tensor) -> None:
    """Every rank must shard the same images: compare count and a strided checksum."""
    n = len(images)
    mine = (n, int(images[:: max(1, n // 256)].sum(dtype=torch.int64)) if n else 0)
    every = [None] * env.world
    dist.all_gather_object(every, mine)
    bad = [r for r, v in enumerate(every) if v != every[0]]
    if bad:
        raise DistError(f"ranks loaded different data (rank 0: {every[0][0]} images, rank {bad[0]}: "
                        f"{every[bad[0]][0]}); every node needs the same --data")


def weights_digest(*modules: nn.Module) -> str:
    h = hashlib.sha256()
    for m in modules:
        for p in m.parameters():
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def ranks_agree(env: DistEnv, *modules: nn.Module) -> tuple[bool, list[str]]:
    """Do all ranks hold bit-identical parameters? (a cheap end-of-run check of the DDP contract)"""
    every = [None] * env.world
    dist.all_gather_object(every, weights_digest(*modules))
    return len(set(every)) == 1, every
