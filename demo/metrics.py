"""The About tab's scores: each checkpoint's metrics.json, checked against the loaded weights,
shown as one curated table whose rows come from eval.report.METRICS.

metrics.json is {"name", "n", "features", "metrics": {...}, "real_vs_real": {...}, "protocol",
"weights_sha256"}; a file whose weights_sha256 differs from the weights next to it describes
other weights and is ignored (the tab says so).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from animegan.checkpoint import WEIGHTS_FILE, weights_sha256
from eval.report import METRICS

FD_FIGURE = Path("docs") / "figures" / "fd_vs_time.png"  # relative to the app's folder
OTHER_WEIGHTS = "metrics.json describes other weights"
BETTER = {"lower": "lower ↓", "higher": "higher ↑", "floor": "nearest real-vs-real"}


def _local(source: str, name: str) -> Path:
    """A file of a generator folder or of a Hub repo (downloaded once through huggingface_hub)."""
    path = Path(source) / name
    if not path.is_file() and not Path(source).exists() and source.count("/") == 1:
        from huggingface_hub import hf_hub_download
        path = Path(hf_hub_download(source, name))
    return path


def read_metrics(source: str) -> tuple[dict, str | None]:
    """(metrics.json, None), or ({}, why not) when it is absent, malformed or describes other weights."""
    try:
        data = json.loads(_local(source, "metrics.json").read_text())
    except Exception:  # absent, unreachable or malformed: the About tab says there are no scores
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    recorded = data.get("weights_sha256")
    if recorded is not None:
        try:
            actual = weights_sha256(_local(source, WEIGHTS_FILE).parent)
        except Exception:
            actual = None
        if recorded != actual:
            return {}, OTHER_WEIGHTS
    return data, None


def _value(table, key: str):
    v = table.get(key) if isinstance(table, dict) else None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _scaled(value, metric):
    """A stored value as the metric table shows it (KID ×10³)."""
    return None if value is None else value * metric.scale


def _fmt(value, fmt: str) -> str:
    if value is None:
        return "–"
    text = fmt.format(value)
    # a small number that the row's format would round to zero (KID's floor) keeps two digits
    return f"{value:.2g}" if value != 0 and float(text) == 0 else text


def _best(metric, values: list, floor) -> int | None:
    """Index of the better of the models' values, by the metric's own direction."""
    have = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(have) < 2:
        return None
    if metric.better == "floor":
        if floor is None:
            return None
        have = [(i, -abs(v - floor)) for i, v in have]
    elif metric.better == "lower":
        have = [(i, -v) for i, v in have]
    scores = sorted((v for _, v in have), reverse=True)
    return None if scores[0] == scores[1] else max(have, key=lambda p: p[1])[0]


def metrics_markdown(slots) -> str:
    """One row per metric of eval.report.METRICS that any loaded checkpoint reports."""
    tables = [s.metrics.get("metrics") if isinstance(s.metrics.get("metrics"), dict) else {} for s in slots]
    floors = [s.metrics.get("real_vs_real") if isinstance(s.metrics.get("real_vs_real"), dict) else {}
              for s in slots]
    notes = [f"- **{s.title}**: {s.metrics_note}, so its scores are not shown "
             f"(evaluate these weights with `python -m eval.fid`)." for s in slots if s.metrics_note]
    rows = []
    for m in METRICS:
        values = [_scaled(_value(t, m.key), m) for t in tables]
        if all(v is None for v in values):
            continue
        floor_values = [_scaled(_value(f, m.key), m) for f in floors if _value(f, m.key) is not None]
        floor = floor_values[0] if floor_values else None
        cells = [_fmt(v, m.fmt) for v in values]
        best = _best(m, values, floor)
        if best is not None:
            cells[best] = f"**{cells[best]}**"
        spread = m.spread  # the key of the value's standard error, when the row has one
        if spread:
            cells = [c if _value(t, spread) is None or v is None else f"{c} ± {_fmt(_scaled(_value(t, spread), m), m.fmt)}"
                     for c, v, t in zip(cells, values, tables)]
        floor_text = " / ".join(dict.fromkeys(_fmt(f, m.fmt) for f in floor_values)) or "–"
        rows.append(f"| {m.name} | {BETTER.get(m.better, m.better)} | " + " | ".join(cells)
                    + f" | {floor_text} | {m.meaning} |")
    if not rows:
        return "\n".join(notes + ["", "*No evaluation results are shipped with these checkpoints* (no usable "
                                  "`metrics.json` in the checkpoint folders). Evaluate them with `python -m eval.fid`."])
    head = ("| metric | better | " + " | ".join(s.title for s in slots) + " | real vs real | what it measures |\n"
            "|---|---|" + "---:|" * len(slots) + "---:|---|")
    protocols = [f"- **{s.title}**: n = {s.metrics.get('n', '?')}, features `{s.metrics.get('features', '?')}`; "
                 f"{s.metrics.get('protocol', 'protocol not recorded')}" for s in slots if s.metrics]
    if len({(s.metrics.get("n"), s.metrics.get("features"), s.metrics.get("protocol")) for s in slots if s.metrics}) > 1:
        notes.append("- ⚠️ The two checkpoints were measured with different protocols: "
                     "their numbers are not comparable.")
    return "\n".join([head, *rows, "", "Bold: the better model on that row. *Real vs real* compares two disjoint "
                      "sets of real images: the floor each number can reach.", "", *protocols, *notes])
