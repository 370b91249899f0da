"""The evaluation's typed vocabulary, and the written schema of report.json.

Every reader of evaluation results — the report's Markdown, the model cards, the release command,
the demo's About tab — reads these types, so the meaning of a number is written down once:

    report = Report.load("reports/x/report.json")
    report.models[0].metrics["fid"], report.baseline.metrics["fid"], report.ceiling.metrics["fid"]
    report.verdict.summary                 # one sentence: where the rulers agree and where they do not
    [d for d in report.verdict.differences if d.metric == "swd_16"]

`Report.to_dict()` is exactly report.json; `Report.from_dict` reads it back (and refuses another
schema version with one line). Metric values are stored raw; `Metric.scale` says how they are shown.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

from animegan.files import atomic_write

SCHEMA_VERSION = 2


class Metric(NamedTuple):
    """One row of the metric table that the report, the model cards and the demo all read."""
    key: str      # key in an eval row's "metrics"
    name: str     # what a person calls it
    title: str    # short column title
    better: str   # "lower" | "higher" | "floor" (closest to the real-vs-real row is best)
    fmt: str      # format of one value
    meaning: str  # one line for people
    spread: str | None = None  # key of the value's standard error, shown as "± s" beside it
    scale: float = 1.0         # shown value = stored value × scale (KID is shown ×10³)
    limit: float | None = None  # the value farthest from real faces it can take (C2ST: accuracy 1.0)


@dataclass
class Row:
    """One image set measured against the reference: a generator, an image folder, the real-vs-real
    floor (kind "real split") or the random-init ceiling (kind "ceiling")."""
    name: str
    kind: str            # "generator" | "images" | "real split" | "ceiling"
    source: str
    n: int
    metrics: dict        # metric key → value (None: not measured); every ruler's and the feature-space metrics
    group: str | None = None   # the model a seed's row belongs to (release: "gan" for gan-s0, gan-s1, …)
    skipped: int = 0           # unreadable files of an image set
    seconds: float = 0.0
    ndb: dict = field(default_factory=dict)
    near_duplicates: dict = field(default_factory=dict)
    ct: dict | None = None
    selection: dict | None = None   # which real images chose this generator, and how many are used here
    weights_sha256: str | None = None   # a generator folder's model.safetensors: which weights these numbers describe
    pictures: dict = field(default_factory=dict)   # file → caption
    translations: list = field(default_factory=list)   # [{metric, disturbance, strength, phrase}]


@dataclass
class Difference:
    """One metric's difference between two models (a − b), with a paired 95 % interval: both models
    share the reference set and the latents, so each resampling round draws the reference and both
    sample sets together. With several seeds per model, a and b are seed means and `seed_std` is the
    standard deviation of the per-seed differences."""
    metric: str
    ruler: str
    a: float
    b: float
    diff: float
    lo: float
    hi: float
    better: str | None          # name of the better model, None when the interval holds "no difference"
    seeds: int = 1
    seed_std: float | None = None


@dataclass
class Verdict:
    a: str
    b: str
    differences: list[Difference]
    summary: str                # where the rulers agree, where they disagree, and what that means
    by_ruler: dict = field(default_factory=dict)   # ruler → the model its metrics prefer (or None)


@dataclass
class Report:
    protocol: dict
    real: dict
    models: list[Row]
    baseline: Row
    ceiling: Row | None = None
    verdict: Verdict | None = None
    rulers: dict = field(default_factory=dict)   # ruler name → {identity, metrics: [Metric as dict], sees}
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)   # where the time went: phase → seconds
    seconds: float = 0.0
    schema: int = SCHEMA_VERSION

    def rows(self) -> list[Row]:
        """Every row in table order: the models, the ceiling, the floor."""
        return self.models + ([self.ceiling] if self.ceiling else []) + [self.baseline]

    def metrics(self) -> list[Metric]:
        """The metrics of every ruler in this report, in panel order."""
        return [Metric(**m) for r in self.rulers.values() for m in r["metrics"]]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"report.json has schema {d.get('schema', 1)}, this animegan reads {SCHEMA_VERSION}: "
                             f"re-run python -m eval.fid")
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        row = lambda r: None if r is None else Row(**r)  # noqa: E731
        d["models"] = [row(r) for r in d["models"]]
        d["baseline"], d["ceiling"] = row(d["baseline"]), row(d.get("ceiling"))
        if d.get("verdict"):
            v = d["verdict"]
            d["verdict"] = Verdict(**{**v, "differences": [Difference(**x) for x in v["differences"]]})
        return cls(**d)

    def save(self, path) -> None:
        text = json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path) -> "Report":
        return cls.from_dict(json.loads(Path(path).read_text()))
