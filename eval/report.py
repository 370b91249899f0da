"""Evaluation reports: report.json for machines, report.md + PNG grids for people.

    write_report(out_dir, report, pictures)   # → report.json, report.md, *.png
    print(format_table(report))               # the same table, for the terminal

`report` is the dict built by eval.fid: {"protocol", "real", "models": [row, …],
"baseline": row}; each row holds name, source, n and a flat "metrics" dict.
`pictures` maps a file name to a uint8 K×3×H×W batch (or a list of rows of
images), drawn as a grid; every write is atomic (temporary file + os.replace).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torchvision.utils import make_grid

from animegan.checkpoint import atomic_write


class Metric(NamedTuple):
    """One row of the metric table that the report, the model cards and the demo all read."""
    key: str      # key in an eval row's "metrics"
    name: str     # what a person calls it
    title: str    # short column title
    better: str   # "lower" | "higher" | "floor" (closest to the real-vs-real row is best)
    fmt: str      # format of one value
    meaning: str  # one line for people


METRICS = (
    Metric("fid", "FID", "FID ↓", "lower", "{:.2f}", "Fréchet distance of feature means and covariances"),
    Metric("kid", "KID", "KID×10³ ↓", "lower", "{:.2f}", "kernel (MMD²) distance, ×1000; mean over subsets"),
    Metric("precision", "Precision", "prec ↑", "higher", "{:.3f}", "share of samples inside the real manifold (k=3)"),
    Metric("recall", "Recall", "rec ↑", "higher", "{:.3f}", "share of real images inside the generated manifold (k=3)"),
    Metric("density", "Density", "dens", "floor", "{:.3f}", "≈1 like data; >1 samples crowd dense regions (k=5)"),
    Metric("coverage", "Coverage", "cov ↑", "higher", "{:.3f}", "share of real neighbourhoods hit — mode dropping (k=5)"),
    Metric("collapse", "Collapse score", "collapse", "floor", "{:.3f}", "mean NN distance of samples ÷ of real; ≈1 diverse, →0 collapse"),
    Metric("near_dup_rate", "Near-duplicate rate", "dup ↓", "lower", "{:.3f}", "share of samples with a near-duplicate sample"),
    Metric("ndb_over_k", "NDB / K", "NDB/K ↓", "lower", "{:.2f}", "share of k-means bins with a significantly different share"),
    Metric("js", "Bin JS divergence", "JS ↓", "lower", "{:.4f}", "Jensen–Shannon divergence of bin histograms (nats)"),
    Metric("memorisation", "Memorisation ratio", "mem", "floor", "{:.3f}", "median NN dist to train ÷ held-out real's; ≪1 copying"),
)


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def _cells(row: dict) -> list[str]:
    m = dict(row["metrics"])
    if m.get("kid") is not None:
        m["kid"] = m["kid"] * 1000
    return [row["name"], str(row["n"])] + [_fmt(m.get(key), fmt) for key, _, _, _, fmt, _ in METRICS]


def format_table(report: dict, markdown: bool = False) -> str:
    head = ["model", "n"] + [m.title for m in METRICS]
    rows = [_cells(r) for r in report["models"]]
    if report.get("baseline"):
        rows.append(_cells(report["baseline"]))
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def save_grid(images, path: Path, nrow: int = 8) -> None:
    """uint8 K×3×H×W (or a list of such rows, padded to equal length) → one PNG."""
    if isinstance(images, (list, tuple)):
        nrow = max(len(r) for r in images)
        size = images[0].shape[-2:]
        blank = torch.full((3, *size), 255, dtype=torch.uint8)
        images = torch.stack([img for r in images for img in list(r) + [blank] * (nrow - len(r))])
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=255)  # 3×H'×W' uint8
    arr = grid.permute(1, 2, 0).contiguous().numpy()
    atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


def bin_concentration(ndb: dict, top: int = 3) -> dict:
    """How lopsided a model's NDB histogram is: the `top` bins it fills most, their share of the
    samples and of the real images, and how many bins get no sample at all."""
    fake, real = ndb["fake_share"], ndb["real_share"]
    bins = sorted(range(len(fake)), key=lambda i: (-fake[i], i))[:top]
    return {"bins": bins, "fake_share": sum(fake[i] for i in bins), "real_share": sum(real[i] for i in bins),
            "empty_bins": sum(1 for f in fake if f == 0), "k": len(fake)}


def _markdown(report: dict, pictures: dict) -> str:
    p, real = report["protocol"], report["real"]
    md = ["# Evaluation report", "",
          f"Feature space **{p['features']}**; {p['n']} generated samples per model (seed {p['seed']}) against "
          f"{p['n']} real images from `{real['source']}` ({p['preprocess']}). Baseline row: a second, disjoint "
          f"real split of the same size — the floor each number can reach. FID/KID depend on n and on the "
          f"feature space: compare rows of this table, not numbers across reports.", "",
          format_table(report, markdown=True), ""]
    if report.get("warnings"):
        md += ["**Warnings:**", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    md += ["## What the columns mean", ""] + [f"- **{m.title}** — {m.meaning}" for m in METRICS] + [""]
    for row in report["models"] + ([report["baseline"]] if report.get("baseline") else []):
        md += [f"## {row['name']}", "", f"Source: `{row['source']}` ({row['kind']}, n = {row['n']}"
               + (f", {row['skipped']} unreadable files skipped" if row.get("skipped") else "") + ")", ""]
        ndb = row.get("ndb") or {}
        if ndb:
            md += [f"NDB: {ndb['ndb']} of {ndb['k']} bins differ (α = {ndb['alpha']}); "
                   f"under-filled: {ndb['underfilled'][:8] or 'none'}; over-filled: {ndb['overfilled'][:8] or 'none'}."]
            if ndb.get("fake_share"):
                c = bin_concentration(ndb)
                md += [f"The {len(c['bins'])} fullest bins {c['bins']} hold {100 * c['fake_share']:.1f} % of the "
                       f"samples and {100 * c['real_share']:.1f} % of the real images; {c['empty_bins']} of "
                       f"{c['k']} bins get no sample."]
            md += [""]
        for fname, caption in row.get("pictures", {}).items():
            if fname in pictures:
                md += [f"**{caption}**", "", f"![{caption}]({fname})", ""]
    md += ["## Protocol", "", "```json", json.dumps(p, indent=2), "```", ""]
    return "\n".join(md)


def write_report(out_dir, report: dict, pictures: dict) -> Path:
    """Write images first, then report.json and report.md; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, imgs in pictures.items():
        if imgs is not None and len(imgs):
            save_grid(imgs, out / name)
    text = json.dumps(report, indent=2, allow_nan=True) + "\n"
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(text))
    md = _markdown(report, {k for k, v in pictures.items() if v is not None and len(v)})
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(md))
    return out
