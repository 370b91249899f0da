"""Training curves: every ruler's score of every snapshot of a run, and the figure of their mean ± spread.

    score_snapshots(sorted(Path("runs/gan-s0/snapshots").glob("step_*")), "data/select.tar",
                    "curves.jsonl", rulers=["effnet", "swd"], n=500, labels={"run": "gan-s0", "model": "gan"})
    plot_curves(read_metrics("curves.jsonl"), "curves.png")

A snapshot is an exported generator folder (`animegan.train --snapshot-every`) whose
training_info.json says where in training it was taken (step, images shown to the discriminator, CPU
and wall seconds). Each is scored like an evaluation row (`eval.evaluate`: n samples from the same
latents against n real images of the first 2n, the other n giving the real-vs-real floor), on the
select split, so the curves can also choose a run's best snapshot without touching the test split.
Rows are appended to a JSONL file one by one; a snapshot already in the file is not scored again, so
an interrupted scoring resumes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from animegan.checkpoint import load_generator
from animegan.files import atomic_write
from animegan.monitor import read_metrics

from .cache import cached_descriptors
from .evaluate import build_rulers, generate


def _save(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def score_snapshots(snapshots, real, rows_file, rulers=("effnet", "swd", "c2st", "anime"), n: int = 500,
                    labels: dict | None = None, seed: int = 0, device="cpu", cache_dir=None,
                    deadline: float = float("inf"), log=print) -> int:
    """Score every snapshot with every ruler that has not scored it yet (a ruler added later scores only
    what it is missing); returns how many snapshots are left unscored (0: all, unless the deadline came
    first). The file is rewritten atomically after
    each snapshot: one row per snapshot, plus the real-vs-real floor."""
    rows_file = Path(rows_file)
    rows = read_metrics(rows_file)
    by_source = {r.get("source"): r for r in rows}
    panel = build_rulers(rulers, "effnet-lite0", None, device, 16, 100)
    todo = [(Path(s), [r for r in panel if r.metrics[0].key not in by_source.get(str(s), {})]) for s in snapshots]
    floor = by_source.get("real-vs-real", {})
    floor_missing = [r for r in panel if r.metrics[0].key not in floor]
    todo = [(s, missing) for s, missing in todo if missing]
    if not todo and not floor_missing:
        return 0
    got = cached_descriptors(real, panel, 2 * n, 64, cache_dir, progress=False)
    n = min(n, len(got.names) // 2)
    perm = np.random.default_rng(seed).permutation(len(got.names))
    ref = {r.name: got.descriptors[r.name][perm[:n]] for r in panel}
    if floor_missing:
        if not floor:
            floor = {"run": "real-vs-real", "source": "real-vs-real", "n": n}
            rows.append(floor)
        for r in floor_missing:
            floor.update(r.score(ref[r.name], got.descriptors[r.name][perm[n:2 * n]], seed=seed))
        _save(rows_file, rows)
    scored = 0
    for snap, missing in todo:
        if time.time() > deadline:
            log(f"curves: deadline reached with {len(todo) - scored} snapshots left to score")
            break
        t = time.perf_counter()
        row = by_source.get(str(snap))
        if row is None:
            info = json.loads((snap / "training_info.json").read_text())
            row = {**(labels or {}), "source": str(snap), "n": n, **{k: info.get(k) for k in (
                "step", "epochs", "images_seen", "cpu_seconds", "train_seconds")}}
            rows.append(row)
        images = generate(load_generator(snap), n, seed, 64)
        for r in missing:
            row.update(r.score(ref[r.name], r.describe(images, seed=seed), seed=seed))
        _save(rows_file, rows)
        scored += 1
        log(f"curves: {row.get('run', '')} step {row.get('step')}: {', '.join(r.name for r in missing)} in "
            f"{time.perf_counter() - t:.0f}s")
    return len(todo) - scored


def curve_metrics(rows: list[dict]) -> list:
    """The headline metric of every ruler present in the rows, in panel order."""
    from .rulers import known_rulers, ruler_class
    have = {k for r in rows for k in r}
    heads = [ruler_class(name).metrics[0] for name in ("effnet", "swd", "c2st", "anime", *known_rulers())
             if name in known_rulers() and ruler_class(name).metrics]
    return list({m.key: m for m in heads if m.key in have}.values())


def mean_spread(rows: list[dict], model: str, key: str, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per snapshot step that every seed of a model has, and at the end of the runs (each seed's last
    snapshot: budgets in time end at slightly different steps): x (mean over seeds), the metric's mean
    and std over seeds, and the seed count."""
    mine = [r for r in rows if r.get("model") == model and r.get(key) is not None and r.get(x) is not None]
    runs = {r["run"] for r in mine}
    last = {run: max(r["step"] for r in mine if r["run"] == run) for run in runs}
    by_step: dict = {}
    for r in mine:
        by_step.setdefault(r["step"], []).append(r)
    groups = [rs for s, rs in sorted(by_step.items()) if len(rs) == len(runs) and s < min(last.values())]
    groups.append([r for r in mine if r["step"] == last[r["run"]]])
    xs = np.array([np.mean([r[x] for r in g]) for g in groups])
    ys = [np.array([r[key] for r in g], dtype=float) for g in groups]
    mean = np.array([y.mean() for y in ys])
    std = np.array([y.std(ddof=1) if len(y) > 1 else 0.0 for y in ys])
    return xs, mean, std, len(runs)


def plot_curves(rows: list[dict], path, title: str = "") -> None:
    """Every metric against images seen (top) and CPU time (bottom): mean ± std over seeds per model, the
    real-vs-real floor dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = curve_metrics(rows)
    models = sorted({r["model"] for r in rows if r.get("model")})
    floor = next((r for r in rows if r.get("run") == "real-vs-real"), {})
    if not metrics or not models:
        return
    fig, axes = plt.subplots(2, len(metrics), figsize=(3.3 * len(metrics), 6.4), squeeze=False)
    for j, m in enumerate(metrics):
        for i, (x, unit, scale) in enumerate((("images_seen", "real images shown to D (thousands)", 1e-3),
                                              ("cpu_seconds", "CPU minutes of training", 1 / 60))):
            ax = axes[i][j]
            for model in models:
                xs, mean, std, seeds = mean_spread(rows, model, m.key, x)
                if not len(xs):
                    continue
                line, = ax.plot(xs * scale, mean * m.scale, "o-", ms=3, lw=1.2,
                                label=f"{model} ({seeds} seed{'s' if seeds > 1 else ''})")
                ax.fill_between(xs * scale, (mean - std) * m.scale, (mean + std) * m.scale, alpha=0.2,
                                color=line.get_color())
            if floor.get(m.key) is not None:
                ax.axhline(floor[m.key] * m.scale, ls="--", c="grey", lw=1, label="real vs real")
            ax.set_xlabel(unit, fontsize=8)
            ax.set_title(m.title + (" ×10³" if m.scale == 1e3 and "×" not in m.title else ""), fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "every ruler through training on the select split: mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
