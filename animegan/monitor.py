"""What a run shows people: progress, metrics.jsonl, fixed-noise sample grids, loss.png.

All writes are atomic except the append-only metrics.jsonl, which is trimmed
back to the resumed step on resume so a restarted run never duplicates rows.
Progress is a tqdm bar on a terminal; when stderr is not one (nohup, CI, a
Space's log) it is a plain line every few seconds instead of bar redraws.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid
from tqdm import tqdm

from .files import atomic_write
from .sampling import to_uint8


class Progress:
    """Progress of a loop of `total` units: a tqdm bar on a terminal, plain lines elsewhere."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "", unit: str = "step",
                 enabled: bool = True, every_s: float = 15.0, stream=None):
        self.stream = stream or sys.stderr
        self.enabled, self.every_s = enabled, every_s
        self.tty = self.stream.isatty()
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.t0 = self.t_line = time.perf_counter()
        self.n0, self.postfix = initial, {}
        self.bar = tqdm(total=total, initial=initial, desc=desc or None, unit=unit, dynamic_ncols=True,
                        file=self.stream, leave=False, disable=not (enabled and self.tty))

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.tty:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.t_line >= self.every_s:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self.tty:
            self.bar.set_postfix(values, refresh=False)

    def write(self, msg: str) -> None:
        if self.enabled:
            tqdm.write(msg, file=self.stream) if self.tty else print(msg, file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and not self.tty and self.n > self.n0:
            self._line()
        self.bar.close()

    def _line(self) -> None:
        now = time.perf_counter()
        rate = (self.n - self.n0) / max(now - self.t0, 1e-9)
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        eta = f", eta {_hms((self.total - self.n) / rate)}" if self.total and rate > 0 else ""
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}s, {rate:.1f} {self.unit}s/s{eta}{extra}",
              file=self.stream, flush=True)
        self.t_line = now


def track(items, desc: str, unit: str = "item", enabled: bool = True):
    """Iterate over a sized iterable with a Progress."""
    p = Progress(len(items), desc=desc, unit=unit, enabled=enabled)
    try:
        for x in items:
            yield x
            p.update()
    finally:
        p.close()


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


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


def save_grid(images, path: str | os.PathLike, nrow: int = 4, pad_value: int = 0) -> None:
    """B×3×H×W images (float in [-1, 1], or uint8), or a list of uint8 rows padded to the longest with
    blank images → one PNG grid, written atomically."""
    if isinstance(images, (list, tuple)):
        nrow = max(len(r) for r in images)
        blank = torch.full((3, *images[0].shape[-2:]), pad_value, dtype=torch.uint8)
        images = torch.stack([img for r in images for img in list(r) + [blank] * (nrow - len(r))])
    elif images.dtype != torch.uint8:
        images = to_uint8(images)
    grid = make_grid(images.cpu(), nrow=nrow, padding=2, pad_value=pad_value)  # 3×H'×W' uint8
    arr = grid.permute(1, 2, 0).contiguous().numpy()
    atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


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
