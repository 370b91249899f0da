"""A training run's folder: the files it holds, what `--overwrite` clears, and the best export.

    run = RunDir("runs/gan")
    run.metrics, run.samples, run.checkpoints, run.export, run.best_export   # paths
    run.snapshot(1000)                         # snapshots/step_0001000/, an exported generator
    run.promote_if_best(generator, info, fd)   # the one rule for generator_best/

The best-export rule lives here once: a generator becomes `generator_best/` only when its quick FD
beats the one recorded *on disk* there. The trainer calls it, and because the rule reads the
folder, not a copy in memory, a run that crashed and resumed from an older checkpoint can never
replace a better export with a worse one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .checkpoint import export_generator, list_checkpoints
from .models import Generator

BEST_KEY = "fd_effnet_lite0"  # the quick FD in a best export's training_info.json


class RunDir:
    # Everything a run writes; `--no-resume --overwrite` removes exactly these.
    FILES = ("config.json", "metrics.jsonl", "loss.png", "checkpoints", "samples",
             "snapshots", "generator", "generator_best")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.loss_plot = self.path / "loss.png"
        self.samples = self.path / "samples"
        self.snapshots = self.path / "snapshots"  # EMA generator exports every --snapshot-every steps
        self.checkpoints = self.path / "checkpoints"
        self.export = self.path / "generator"  # the newest EMA generator
        self.best_export = self.path / "generator_best"  # the best quick-FD EMA generator

    def snapshot(self, step: int) -> Path:
        return self.snapshots / f"step_{step:07d}"

    def has_run(self) -> bool:
        return self.config.exists() or bool(list_checkpoints(self.path))

    def clear(self) -> None:
        for name in self.FILES:
            p = self.path / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def best(self) -> dict | None:
        """training_info.json of generator_best/, when it records a quick FD."""
        f = self.best_export / "training_info.json"
        info = json.loads(f.read_text()) if f.is_file() else {}
        return info if info.get(BEST_KEY) is not None else None

    def promote_if_best(self, generator: Generator, info: dict, fd: float) -> bool:
        """Export `generator` as generator_best/ if `fd` beats the best on disk; True if it did."""
        best = self.best()
        if best is not None and not fd < best[BEST_KEY]:
            return False
        export_generator(generator, self.best_export, extra={**info, BEST_KEY: fd})
        return True
