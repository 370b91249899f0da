"""The evaluation's typed vocabulary: a metric's row in every table (`Metric`).

Every reader of evaluation results — the report, the model cards, the release, the demo's About
tab — reads these types, so the meaning of a number is written down once.
"""
from __future__ import annotations

from typing import NamedTuple


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
