"""Evaluation reports: report.json for machines, report.md + PNG grids for people.

    write_report(out_dir, report, pictures)   # → report.json, report.md, *.png
    print(format_table(report))               # the same table, for the terminal

`report` is the dict built by eval.evaluate: {"protocol", "real", "models": [row, …],
"baseline": row}; each row holds name, source, n and a flat "metrics" dict.
`pictures` maps a file name to a uint8 K×3×H×W batch (or a list of rows of
images), drawn as a grid, or to a function that draws a plot into a given path;
every write is atomic (temporary file + os.replace).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from animegan.files import atomic_write
from animegan.monitor import save_grid

from .schema import Metric


METRICS = (
    Metric("fid", "FID", "FID ↓", "lower", "{:.2f}", "Fréchet distance of feature means and covariances; "
           "± its sampling std (random halves)", spread="fid_std"),
    Metric("kid", "KID", "KID×10³ ↓", "lower", "{:.2f}", "kernel (MMD²) distance, ×1000; mean over subsets",
           scale=1e3),
    Metric("precision", "Precision", "prec ↑", "higher", "{:.3f}", "share of samples inside the real manifold (k=3)"),
    Metric("recall", "Recall", "rec ↑", "higher", "{:.3f}", "share of real images inside the generated manifold (k=3)"),
    Metric("density", "Density", "dens", "floor", "{:.3f}", "≈1 like data; >1 samples crowd dense regions (k=5)"),
    Metric("coverage", "Coverage", "cov ↑", "higher", "{:.3f}", "share of real neighbourhoods hit — mode dropping (k=5)"),
    Metric("vendi", "Vendi score", "Vendi", "floor", "{:.0f}", "effective number of distinct samples among n "
           "(Friedman & Dieng 2023); real data's value is the target"),
    Metric("collapse", "Collapse score", "collapse", "floor", "{:.3f}", "mean NN distance of samples ÷ of real; ≈1 diverse, →0 collapse"),
    Metric("near_dup_rate", "Near-duplicate rate", "dup ↓", "lower", "{:.3f}", "share of samples with a near-duplicate sample"),
    Metric("ndb_over_k", "NDB / K", "NDB/K ↓", "lower", "{:.2f}", "share of k-means bins with a significantly different share"),
    Metric("js", "Bin JS divergence", "JS ↓", "lower", "{:.4f}", "Jensen–Shannon divergence of bin histograms (nats)"),
    Metric("ct", "Data-copying C_T", "C_T", "floor", "{:+.1f}", "Meehan 2020 z-score: ≪0 copies training images, "
           "≈0 like unseen real data, ≫0 farther from the training set (underfit)"),
)


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def _cells(row: dict) -> list[str]:
    m = row["metrics"]
    cells = [row["name"], str(row["n"])]
    for metric in METRICS:
        value = m.get(metric.key)
        text = _fmt(None if value is None else value * metric.scale, metric.fmt)
        if metric.spread and m.get(metric.spread) is not None and value is not None:
            text += " ± " + _fmt(m[metric.spread] * metric.scale, metric.fmt)
        cells.append(text)
    return cells


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


def bin_concentration(ndb: dict, top: int = 3) -> dict:
    """How lopsided a model's NDB histogram is: the `top` bins it fills most, their share of the
    samples and of the real images, and how many bins get no sample at all."""
    fake, real = ndb["fake_share"], ndb["real_share"]
    bins = sorted(range(len(fake)), key=lambda i: (-fake[i], i))[:top]
    return {"bins": bins, "fake_share": sum(fake[i] for i in bins), "real_share": sum(real[i] for i in bins),
            "empty_bins": sum(1 for f in fake if f == 0), "k": len(fake)}


def ct_reading(ct) -> str:
    """C_T in words (|C_T| > 3 is beyond what a held-out real sample gives by chance, p < 0.003)."""
    if ct is None or (isinstance(ct, float) and math.isnan(ct)):
        return "not measured (needs --train)"
    if ct < -3:
        return "copying: the samples sit closer to their nearest training image than unseen real images do"
    if ct > 3:
        return ("underfitting, not copying: the samples sit farther from the training set than unseen real "
                "images do")
    return "no sign of copying: the samples sit as close to the training set as unseen real images do"


def readings(m: dict, floor: dict, n: int) -> list[str]:
    """A row's numbers that read as words: Vendi as distinct faces beside real data's, C_T's verdict."""
    out = []
    if m.get("vendi") is not None:
        out.append(f"About {m['vendi']:.0f} distinct faces per {n} samples (Vendi score; real data: about "
                   f"{floor.get('vendi', float('nan')):.0f}).")
    if m.get("ct") is not None:
        out.append(f"Data copying: C_T = {m['ct']:+.1f} — {ct_reading(m['ct'])}.")
    return out


def fid_overlaps(rows: list[dict]) -> list[str]:
    """For each pair of rows, whether their FID intervals (point ± 2 std) overlap."""
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            ma, mb = a["metrics"], b["metrics"]
            if ma.get("fid_std") is None or mb.get("fid_std") is None:
                continue
            gap, reach = abs(ma["fid"] - mb["fid"]), 2 * (ma["fid_std"] + mb["fid_std"])
            verdict = ("overlap: the difference is within the sampling noise at this n" if gap <= reach else
                       "do not overlap: the difference is larger than the sampling noise at this n")
            out.append(f"{a['name']} ({ma['fid']:.1f} ± {2 * ma['fid_std']:.1f}) vs {b['name']} ({mb['fid']:.1f} ± "
                       f"{2 * mb['fid_std']:.1f}): the FID intervals {verdict}.")
    return out


def plot_distances(path, samples, heldout, title: str) -> None:
    """Histograms of each sample's and each held-out image's distance to its nearest training image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = 40
    ax.hist(heldout, bins=bins, alpha=0.6, density=True, label=f"held-out real (n={len(heldout)})")
    ax.hist(samples, bins=bins, alpha=0.6, density=True, label=f"samples (n={len(samples)})")
    ax.set_xlabel("distance to the nearest training image (feature space)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _markdown(report: dict, pictures: dict) -> str:
    p, real = report["protocol"], report["real"]
    md = ["# Evaluation report", "",
          f"Feature space **{p['features']}**; {p['n']} generated samples per model (seed {p['seed']}) against "
          f"{p['n']} real images from `{real['source']}`"
          + (f", leaving out the {real['excluded']} also in {', '.join(real['exclude'])}" if real.get("exclude") else "")
          + f" ({p['preprocess']}). Baseline row: a second, disjoint "
          f"real split of the same size — the floor each number can reach. FID/KID depend on n and on the "
          f"feature space: compare rows of this table, not numbers across reports.", "",
          format_table(report, markdown=True), ""]
    overlaps = fid_overlaps(report["models"])
    if overlaps:
        md += [f"**Is the FID difference real?** Interval = FID ± 2 std ({p.get('fid_spread', '?')}):", ""]
        md += [f"- {o}" for o in overlaps] + [""]
    if report.get("warnings"):
        md += ["**Warnings:**", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    md += ["## What the columns mean", ""] + [f"- **{m.title}** — {m.meaning}" for m in METRICS] + [""]
    for row in report["models"] + ([report["baseline"]] if report.get("baseline") else []):
        md += [f"## {row['name']}", "", f"Source: `{row['source']}` ({row['kind']}, n = {row['n']}"
               + (f", {row['skipped']} unreadable files skipped" if row.get("skipped") else "") + ")", ""]
        md += readings(row["metrics"], (report.get("baseline") or {}).get("metrics", {}), row["n"])
        if row.get("selection"):
            sel = row["selection"]
            md += [f"Selected on {sel['n']} images of `{sel['source']}`, {sel['overlap']} of them among the real "
                   f"images of this evaluation."]
        md += [""]
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
    """Write pictures first, then report.json and report.md; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn = set()
    for name, pic in pictures.items():
        if callable(pic):
            pic(out / name)
        elif pic is not None and len(pic):
            save_grid(pic, out / name, nrow=8, pad_value=255)
        else:
            continue
        drawn.add(name)
    text = json.dumps(report, indent=2, allow_nan=True) + "\n"
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(text))
    md = _markdown(report, drawn)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(md))
    return out
