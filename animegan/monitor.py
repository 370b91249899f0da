"""What a run leaves for people: metrics.jsonl, fixed-noise sample grids, loss.png.

All writes are atomic except the append-only metrics.jsonl, which is trimmed
back to the resumed step on resume so a restarted run never duplicates rows.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torchvision.utils import save_image

from .checkpoint import atomic_write


class MetricsLog:
    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines() if _row_step(ln) <= resume_step]
            atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(ln + "\n" for ln in keep)))
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def append(self, row: dict) -> None:
        clean = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")

    def rows(self) -> list[dict]:
        return read_metrics(self.path)


def _row_step(line: str) -> float:
    try:
        return json.loads(line).get("step", math.inf)
    except json.JSONDecodeError:  # a half-written last line from a killed run
        return math.inf


def read_metrics(path: str | os.PathLike) -> list[dict]:
    rows = []
    for ln in Path(path).read_text().splitlines() if Path(path).exists() else []:
        try:
            rows.append(json.loads(ln))
        except json.JSONDecodeError:
            pass
    return rows


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 4) -> None:
    """B×3×H×W in [-1, 1] → one PNG grid, written atomically."""
    atomic_write(path, lambda tmp: save_image(images.float().cpu(), tmp, format="png", nrow=nrow,
                                              normalize=True, value_range=(-1, 1), padding=2))


def plot_losses(rows: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Loss curves against generator step (the report's figures 8 and 16)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if "g_loss" in r]
    if not train:
        return
    keys = [k for k in ("d_loss", "g_loss", "wasserstein", "gp", "d_real", "d_fake") if k in train[-1]]
    evals = [r for r in rows if "fd" in r]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6.5, 3.8), squeeze=False)
    ax = axes[0][0]
    steps = [r["step"] for r in train]
    for k in keys:
        ax.plot(steps, [r.get(k, float("nan")) for r in train], label=k, lw=1)
    ax.set_xlabel("generator step")
    ax.set_title(title or "training losses")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if evals:
        ax2 = axes[0][1]
        ax2.plot([r["step"] for r in evals], [r["fd"] for r in evals], "o-", ms=3)
        ax2.set_xlabel("generator step")
        ax2.set_ylabel("FD (effnet-lite0)")
        ax2.set_title("quick FD vs held-out images")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
