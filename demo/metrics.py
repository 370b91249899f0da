"""The About tab's scores: each checkpoint's metrics.json, checked against the loaded weights,
shown as one table — the evaluation panel's rulers (named in metrics.json) and the feature-space
metrics of eval.report.FEATURE_METRICS — with the verdict and the readable translations.

metrics.json is {"name", "n", "features", "metrics": {...}, "real_vs_real": {...}, "random_init":
{...}, "rulers": {name: {"metrics": [...], "sees"}}, "translations": [...], "verdict", "protocol",
"weights_sha256"} (scripts/cards.py publish-metrics writes it from an eval report); a file whose
weights_sha256 differs from the weights next to it describes other weights and is ignored (the tab
says so).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from animegan.checkpoint import WEIGHTS_FILE, weights_sha256
from eval.report import FEATURE_METRICS, reading
from eval.schema import Metric

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


def panel(slots) -> list[Metric]:
    """The rulers' metrics named by the checkpoints' metrics.json (in panel order), then the feature-space ones."""
    named = {}
    for s in slots:
        rulers = s.metrics.get("rulers") if isinstance(s.metrics.get("rulers"), dict) else {}
        for r in rulers.values():
            for m in r.get("metrics", []) if isinstance(r, dict) else []:
                try:
                    named.setdefault(m["key"], Metric(**m))
                except (TypeError, KeyError):
                    continue  # a hand-edited file: show what can be shown
    return list(named.values()) + [m for m in FEATURE_METRICS if m.key not in named]


def metrics_markdown(slots) -> str:
    """One row per metric of the panel that any loaded checkpoint reports, with the floor and the ceiling."""
    tables = [s.metrics.get("metrics") if isinstance(s.metrics.get("metrics"), dict) else {} for s in slots]
    floors = [s.metrics.get("real_vs_real") if isinstance(s.metrics.get("real_vs_real"), dict) else {}
              for s in slots]
    ceilings = [s.metrics.get("random_init") if isinstance(s.metrics.get("random_init"), dict) else {}
                for s in slots]
    notes = [f"- **{s.title}**: {s.metrics_note}, so its scores are not shown "
             f"(evaluate these weights with `python -m eval.fid`)." for s in slots if s.metrics_note]
    rows = []
    for m in panel(slots):
        values = [_scaled(_value(t, m.key), m) for t in tables]
        if all(v is None for v in values):
            continue
        floor_values = [_scaled(_value(f, m.key), m) for f in floors if _value(f, m.key) is not None]
        floor = floor_values[0] if floor_values else None
        cells = [_fmt(v, m.fmt) for v in values]
        best = _best(m, values, floor)
        if best is not None:
            cells[best] = f"**{cells[best]}**"
        spread = m.spread or f"{m.key}_std"  # the paired rounds' std, when the evaluation gave one
        cells = [c if _value(t, spread) is None or v is None else f"{c} ± {_fmt(_scaled(_value(t, spread), m), m.fmt)}"
                 for c, v, t in zip(cells, values, tables)]
        floor_text = " / ".join(dict.fromkeys(_fmt(f, m.fmt) for f in floor_values)) or "–"
        ceiling_text = " / ".join(dict.fromkeys(_fmt(_scaled(_value(c, m.key), m), m.fmt) for c in ceilings
                                                if _value(c, m.key) is not None)) or "–"
        rows.append(f"| {m.name} | {BETTER.get(m.better, m.better)} | " + " | ".join(cells)
                    + f" | {floor_text} | {ceiling_text} | {m.meaning} |")
    if not rows:
        return "\n".join(notes + ["", "*No evaluation results are shipped with these checkpoints* (no usable "
                                  "`metrics.json` in the checkpoint folders). Evaluate them with `python -m eval.fid`."])
    head = ("| metric | better | " + " | ".join(s.title for s in slots) + " | real vs real | random init | "
            "what it measures |\n|---|---|" + "---:|" * len(slots) + "---:|---:|---|")
    protocols = [f"- **{s.title}**: n = {s.metrics.get('n', '?')}, features `{s.metrics.get('features', '?')}`; "
                 f"{s.metrics.get('protocol', 'protocol not recorded')}" for s in slots if s.metrics]
    if len({(s.metrics.get("n"), s.metrics.get("features"), s.metrics.get("protocol")) for s in slots if s.metrics}) > 1:
        notes.append("- ⚠️ The two checkpoints were measured with different protocols: "
                     "their numbers are not comparable.")
    return "\n".join([*verdict_lines(slots), head, *rows, "", "Bold: the better model on that row. *Real vs real* "
                      "compares two disjoint sets of real images: the floor each number can reach; *random init* is "
                      "an untrained generator: the far end of each scale.", "", *protocols, *notes])


def verdict_lines(slots) -> list[str]:
    """The evaluation's verdict (when both checkpoints carry the same one) and each model's readable scores."""
    verdicts = {s.metrics.get("verdict") for s in slots}  # a slot without usable metrics.json adds None
    out = []
    if len(verdicts) == 1 and None not in verdicts:  # both checkpoints were judged together
        out += [f"**Verdict of the evaluation panel.** {verdicts.pop()}", ""]
    for s in slots:
        said = [t for t in s.metrics.get("translations") or [] if isinstance(t, dict) and t.get("phrase")]
        if said:
            out += [f"- **{s.title}**: " + "; ".join(reading(t, panel(slots)) for t in said)]
    return out + ([""] if out else [])
