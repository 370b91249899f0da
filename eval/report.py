"""Evaluation reports: report.json for machines, report.md + PNG grids for people.

    write_report(out_dir, report, pictures)   # → report.json, report.md, *.png
    print(format_table(report))               # the panel, for the terminal

`report` is an `eval.schema.Report` (its `to_dict()` is report.json). Two tables: the panel (every
ruler's metrics, ± their paired spread) and the feature-space metrics (FEATURE_METRICS: diversity,
mode dropping, copying). `pictures` maps a file name to a uint8 K×3×H×W batch (or a list of rows of
images), drawn as a grid, or to a function that draws a plot into a given path; every write is atomic.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from animegan.files import atomic_write
from animegan.monitor import save_grid

from .schema import Metric, Report, Row

# The nearest-neighbour metrics, computed in the evaluation's feature space (effnet-lite0 by default).
FEATURE_METRICS = (
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


def fmt(value, metric: Metric) -> str:
    """A stored value as every table shows it (× the metric's scale; – when not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return metric.fmt.format(value * metric.scale)


def cell(metrics: dict, metric: Metric) -> str:
    """A value with its spread: the paired rounds' std (key_std), when the row has one."""
    text = fmt(metrics.get(metric.key), metric)
    spread = metrics.get(metric.spread or f"{metric.key}_std")
    if text != "–" and spread is not None and not (isinstance(spread, float) and math.isnan(spread)):
        text += " ± " + fmt(spread, metric)
    return text


def table(rows: list[Row], metrics: list[Metric], markdown: bool = False) -> str:
    head = ["model", "n"] + [m.title for m in metrics]
    body = [[r.name, str(r.n)] + [cell(r.metrics, m) for m in metrics] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in body])


def format_table(report: Report, markdown: bool = False) -> str:
    """The panel: every ruler's metrics for every row (models, ceiling, floor)."""
    return table(report.rows(), report.metrics(), markdown)


def reading(translation: dict, metrics: list[Metric]) -> str:
    """One translated score for people: "FID: as far from real faces as …" (the metric's name from
    `metrics` when it is there, else its ruler and key)."""
    named = {m.key: m.name for m in metrics}
    key = translation.get("metric", "?")
    name = named.get(key) or ":".join(filter(None, (translation.get("ruler"), key)))
    return f"{name}: {translation['phrase']}"


def verdict_lines(report: Report) -> list[str]:
    """The verdict as Markdown: the sentence, then each metric's paired difference."""
    v = report.verdict
    if v is None:
        return []
    by_key = {m.key: m for m in report.metrics()}
    seeds = max(d.seeds for d in v.differences) if v.differences else 1
    out = [f"**Verdict.** {v.summary}", "",
           f"| ruler | metric | {v.a} | {v.b} | difference ({v.a} − {v.b}), 95 % paired interval | better |"
           + (" seed std of the difference |" if seeds > 1 else ""),
           "|---|---|---:|---:|---|---|" + ("---:|" if seeds > 1 else "")]
    for d in v.differences:
        m = by_key[d.metric]
        dist = " (distance from the real-vs-real floor)" if m.better == "floor" else ""
        out.append(f"| {d.ruler} | {m.title} | {fmt(d.a, m)} | {fmt(d.b, m)} | {d.diff * m.scale:+.3g} "
                   f"[{d.lo * m.scale:+.3g}, {d.hi * m.scale:+.3g}]{dist} | {d.better or 'no clear difference'} |"
                   + (f" {fmt(d.seed_std, m) if d.seed_std is not None else '–'} |" if seeds > 1 else ""))
    if seeds > 1:
        out += ["", f"{v.a} and {v.b} are means over {seeds} training seeds; the interval is over images (paired "
                    f"rounds), the seed std is what another training run changes."]
    return out + [""]


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
        return ("underfitting: the samples sit farther from the training set than unseen real images do; no "
                "evidence of copying, though the test has little power to see copying while samples are this far off")
    return "no evidence of copying: the samples sit as close to the training set as unseen real images do"


def readings(m: dict, floor: dict, n: int) -> list[str]:
    """A row's numbers that read as words: Vendi as distinct faces beside real data's, C_T's verdict."""
    out = []
    if m.get("vendi") is not None:
        out.append(f"About {m['vendi']:.0f} distinct faces per {n} samples (Vendi score; real data: about "
                   f"{floor.get('vendi', float('nan')):.0f}).")
    if m.get("ct") is not None:
        out.append(f"Data copying: C_T = {m['ct']:+.1f} — {ct_reading(m['ct'])}.")
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


def _markdown(report: Report, pictures: set) -> str:
    p, real = report.protocol, report.real
    md = ["# Evaluation report", "",
          f"{p['n']} generated samples per model (seed {p['seed']}) against {p['n']} real images from "
          f"`{real['source']}`"
          + (f", leaving out the {real['excluded']} also in {', '.join(real['exclude'])}" if real.get("exclude") else "")
          + f" ({p['preprocess']}), measured by the rulers {', '.join(p['rulers'])}. The `random-init` row is a "
          f"randomly initialised generator (the ceiling); `real-vs-real` is a second, disjoint real split of the "
          f"same size (the floor each number can reach). ± is the value's "
          f"{p['spread']}. Scores depend on n: "
          f"compare rows of one report, not numbers across reports.", ""]
    md += verdict_lines(report)
    md += ["## The panel", "", format_table(report, markdown=True), ""]
    said = [(r.name, t) for r in report.rows() for t in r.translations]
    if said:
        md += ["**Numbers a person can picture** (each score read back onto the sanity suite's curves of disturbed "
               "real faces at the same n):", ""]
        md += [f"- {name}, {reading(t, report.metrics())}" for name, t in said] + [""]
    md += [f"## Diversity, mode dropping and copying ({p['features']} features)", "",
           table(report.rows(), list(FEATURE_METRICS), markdown=True), ""]
    if report.warnings:
        md += ["**Warnings:**", ""] + [f"- {w}" for w in report.warnings] + [""]
    md += ["## What the columns mean", ""]
    md += [f"- **{m.title}** ({name}, sees {r.get('sees', '?')}) — {m.meaning}"
           for name, r in report.rulers.items() for m in (Metric(**x) for x in r["metrics"])]
    md += [f"- **{m.title}** — {m.meaning}" for m in FEATURE_METRICS] + [""]
    for row in report.rows():
        md += [f"## {row.name}", "", f"Source: `{row.source}` ({row.kind}, n = {row.n}"
               + (f", {row.skipped} unreadable files skipped" if row.skipped else "") + ")", ""]
        md += readings(row.metrics, report.baseline.metrics, row.n)
        if row.selection:
            sel = row.selection
            md += [f"Selected on {sel['n']} images of `{sel['source']}`, {sel['overlap']} of them among the real "
                   f"images of this evaluation."]
        md += [""]
        if row.ndb:
            ndb = row.ndb
            md += [f"NDB: {ndb['ndb']} of {ndb['k']} bins differ (α = {ndb['alpha']}); "
                   f"under-filled: {ndb['underfilled'][:8] or 'none'}; over-filled: {ndb['overfilled'][:8] or 'none'}."]
            if ndb.get("fake_share"):
                c = bin_concentration(ndb)
                md += [f"The {len(c['bins'])} fullest bins {c['bins']} hold {100 * c['fake_share']:.1f} % of the "
                       f"samples and {100 * c['real_share']:.1f} % of the real images; {c['empty_bins']} of "
                       f"{c['k']} bins get no sample."]
            md += [""]
        for fname, caption in row.pictures.items():
            if fname in pictures:
                md += [f"**{caption}**", "", f"![{caption}]({fname})", ""]
    md += ["## Where the time went", "", "| step | seconds |", "|---|---:|"]
    md += [f"| {k} | {v:.1f} |" for k, v in report.timings.items()] + [f"| total | {report.seconds:.1f} |", ""]
    md += ["## Protocol", "", "```json", json.dumps(p, indent=2), "```", ""]
    return "\n".join(md)


def write_report(out_dir, report: Report, pictures: dict) -> Path:
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
    report.save(out / "report.json")
    md = _markdown(report, drawn)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(md))
    return out
