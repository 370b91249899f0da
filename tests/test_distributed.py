"""Data-parallel training on CPU with gloo: 2 processes, tiny models, a few steps.

One `torch.multiprocessing` spawn (module fixture) does the expensive part once:
- the DDP step against a single-process step on the same global batch (gradient
  penalty's double backward, D frozen in the G step, sharding, z/ε slicing, EMA);
- `python -m animegan.train` as torchrun would start it (RANK/WORLD_SIZE env) for
  both models, one of them resuming a 1-process run (1 → 2);
and the tests read what it left. A real `torchrun` checks the SIGTERM agreement.
"""
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from torch import nn

from animegan import trainer as train_mod
from animegan.checkpoint import list_checkpoints, load_latest_state
from animegan.train import main
from animegan.config import PRESETS, TrainConfig
from animegan.data import LoadedImages
from animegan.distributed import DistEnv, DistError
from animegan.models import Generator

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--img-size", "16", "--ngf", "4", "--ndf", "4", "--batch-size", "8", "--threads", "1",
        "--log-every", "1", "--sample-every", "2", "--precision", "fp32"]


class BatchFreeGenerator(Generator):
    """The generator without BatchNorm: its output per sample no longer depends on the batch, so a
    2-rank step must equal a 1-process step on the union of the ranks' batches."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.net = nn.Sequential(*[nn.Identity() if isinstance(m, nn.BatchNorm2d) else m for m in self.net])


def _cfg(model: str, **kw) -> TrainConfig:
    base = dict(model=model, img_size=16, ngf=4, ndf=4, batch_size=8, precision="fp32", critic_norm="layer")
    return TrainConfig(**{**PRESETS[model], **base, **kw})


def _compare_step(rank: int, model: str, steps: int, **kw) -> dict:
    """Max differences between a 2-rank DDP trainer and a 1-process trainer after `steps` steps."""
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    data = LoadedImages(images, [], 0, "random")
    cfg = _cfg(model, **kw)
    ddp_t = train_mod.Trainer(cfg, data, torch.device("cpu"), DistEnv(rank, 2, rank, "gloo"))
    one_t = train_mod.Trainer(cfg, data, torch.device("cpu"))
    for _ in range(steps):
        ddp_t.train_step()
        one_t.train_step()
    out = {"batches": [ddp_t.batches, one_t.batches],
           "noise_equal": torch.equal(ddp_t.noise.get_state(), one_t.noise.get_state())}
    for name in ("G", "D", "ema"):
        a, b = list(getattr(ddp_t, name).parameters()), list(getattr(one_t, name).parameters())
        out[f"{name}_param"] = max((x - y).abs().max().item() for x, y in zip(a, b))
        if name != "ema":  # the last step's gradients (zero_grad runs before backward, so they remain)
            out[f"{name}_grad"] = max((x.grad - y.grad).abs().max().item() / (y.grad.abs().max().item() + 1e-12)
                                      for x, y in zip(a, b))
    return out


def _worker(rank: int, tmp: str, data: str, ports: list[int]) -> None:
    torch.set_num_threads(1)
    res: dict = {}
    # 1) the DDP step against one process on the same global batch
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=2)
    train_mod.Generator = BatchFreeGenerator
    try:
        res["gan"] = _compare_step(rank, "gan", steps=3)  # BCE; G forward reused by the D and G steps
        res["wgan-gp"] = _compare_step(rank, "wgan-gp", steps=2, n_critic=2)  # penalty; no-grad G forward
    finally:
        train_mod.Generator = Generator
    try:
        train_mod.Trainer(_cfg("gan", sync_bn="on"), LoadedImages(torch.zeros(8, 3, 16, 16, dtype=torch.uint8),
                                                                    [], 0, ""), torch.device("cpu"),
                          DistEnv(rank, 2, rank, "gloo"))
        res["sync_bn_cpu"] = "accepted"
    except DistError as e:
        res["sync_bn_cpu"] = str(e)
    dist.destroy_process_group()

    # 2) the CLI as torchrun starts it: env vars, one process group per run
    def cli(port: int, *argv: str) -> dict:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["--data", data, *TINY, *argv])
        return {"rc": rc, "stderr": err.getvalue()}

    res["gan_1to2"] = cli(ports[0], "--out", f"{tmp}/gan", "--steps", "4", "--ckpt-every", "2")
    res["wgan"] = cli(ports[1], "--out", f"{tmp}/wgan", "--model", "wgan-gp", "--n-critic", "2", "--steps", "3",
                      "--no-resume")
    res["odd_batch"] = cli(ports[2], "--out", f"{tmp}/odd", "--batch-size", "7", "--steps", "1")
    Path(tmp, f"rank{rank}.json").write_text(json.dumps(res))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _images(d: Path, n: int = 24) -> Path:
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return d


def _train(data, out, *extra) -> int:
    return main(["--data", str(data), "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = _images(tmp / "imgs")
    assert _train(data, tmp / "gan", "--steps", "2") == 0  # 1 process to step 2; the spawn resumes it on 2
    mp.spawn(_worker, args=(str(tmp), str(data), _free_ports(3)), nprocs=2, join=True)
    res = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp, data, res


@pytest.mark.parametrize("model", ["gan", "wgan-gp"])
def test_ddp_step_matches_one_process_on_the_same_global_batch(runs, model):
    for r in runs[2]:
        d = r[model]
        assert d["noise_equal"] and d["batches"][0] == d["batches"][1]  # same data order and noise stream
        assert d["D_grad"] < 1e-4 and d["G_grad"] < 1e-4, d  # incl. the penalty's double backward
        assert d["D_param"] < 1e-6 and d["G_param"] < 1e-6 and d["ema_param"] < 1e-6, d


def test_sync_bn_on_cpu_is_a_clear_error(runs):
    assert "needs CUDA" in runs[2][0]["sync_bn_cpu"]


@pytest.mark.parametrize("run", ["wgan", "gan_1to2"])
def test_two_process_run_writes_one_set_of_artifacts(runs, run):
    tmp, _, (r0, r1) = runs
    assert r0[run]["rc"] == 0 and r1[run]["rc"] == 0, r0[run]["stderr"][-2000:] + r1[run]["stderr"][-2000:]
    assert "all 2 ranks hold identical G, D and EMA weights" in r0[run]["stderr"]
    assert "processes (gloo) × 4 images per D step" in r0[run]["stderr"]
    assert r1[run]["stderr"].strip() == ""  # only rank 0 talks (and writes)
    out = tmp / run.replace("_1to2", "")
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    n = 3 if run == "wgan" else 4
    assert steps == list(range(1, n + 1))  # one row per step, not one per rank
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["batch_size"] == 8
    assert (out / "generator" / "model.safetensors").is_file() and (out / "samples" / "latest.png").is_file()
    assert not list(out.rglob("*.tmp"))
    state, path = load_latest_state(out)
    assert path.name == f"step_{n:07d}.pt"
    assert not [k for part in ("G", "D") for k in state[part] if k.startswith("module.")]


def test_resume_across_world_sizes(runs):
    tmp, data, (r0, _) = runs
    # 1 → 2: the 2-process run resumed the 1-process checkpoint, and its data order and noise
    # stream are where a 1-process run would be.
    assert "resuming" in r0["gan_1to2"]["stderr"] and "at step 2" in r0["gan_1to2"]["stderr"]
    assert _train(data, tmp / "gan_one", "--steps", "4") == 0
    two, _ = load_latest_state(tmp / "gan")
    one, _ = load_latest_state(tmp / "gan_one")
    assert two["step"] == one["step"] == 4 and two["batches"] == one["batches"]
    assert torch.equal(two["noise_rng"], one["noise_rng"])
    # 2 → 1: the 1-process run continues the 2-process checkpoint.
    assert _train(data, tmp / "wgan", "--steps", "5") == 0
    state, path = load_latest_state(tmp / "wgan")
    assert path.name == "step_0000005.pt" and state["step"] == 5
    assert [json.loads(ln)["step"] for ln in (tmp / "wgan" / "metrics.jsonl").read_text().splitlines()] == \
        [1, 2, 3, 4, 5]


def test_global_batch_must_split_evenly(runs):
    r0, r1 = runs[2]
    assert r0["odd_batch"]["rc"] == r1["odd_batch"]["rc"] == 2
    assert "must be a multiple of the 2 processes" in r0["odd_batch"]["stderr"]
    assert r1["odd_batch"]["stderr"] == ""


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers through /proc")
def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    data, out = _images(tmp_path / "imgs"), tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "animegan.train", "--data", str(data), "--out", str(out), *TINY, "--steps", "100000",
           "--sample-every", "100000", "--ckpt-every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        metrics = out / "metrics.jsonl"
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        workers = _children(proc.pid)
        rank1 = [p for p in workers if _rank_of(p) == 1]
        assert len(rank1) == 1, "torchrun's rank-1 worker not found"
        os.kill(rank1[0], signal.SIGTERM)  # one rank only: the others must learn it from the agreement
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # a hang: end the workers we started, then torchrun
            for pid in _children(proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    state, path = load_latest_state(out)
    last = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert state["step"] == last and f"stopped at step {last};" in err
    assert [p.name for p in list_checkpoints(out)] == [path.name]
