"""The rulers' sanity suite: does each ruler rise as real faces are disturbed, and by how much?

Heusel et al. 2017 (the FID paper, Fig. 1 and appendix A1) trusted FID because it rises steadily
as real images are blurred, noised, covered with black rectangles, swirled, salted and mixed with
another data set. This module runs that check on every ruler of eval.rulers at once: the
reference is n real faces, the test set n *other* real faces, disturbed at each strength of each
disturbance of eval.disturb; strength 0 is the real-vs-real floor. Each (ruler metric,
disturbance) curve is reported as monotone or not (strictly rising at every step, and Spearman's
ρ with strength), as a Markdown table and a figure.

The curves are also a unit people can read: `translate` maps a model's score back onto them —
"the GAN is as far from real faces as real faces blurred with σ = 1.3 px".

    from eval.sanity import run_suite, translate, split_real
    ref, test = split_real(real_uint8, n=500, seed=0)
    result = run_suite([SwdRuler()], ref, test, disturbances=["blur", "noise"])
    result.failures()                       # [] when every curve rises
    translate(result, "swd_64", 12.3)[0].phrase
    # 'as far from real faces as real faces blurred with σ = 1.3 px'

    python -m eval.sanity --real data/test.tar --n 500 --rulers effnet,swd,c2st,anime --out reports/sanity
    # → sanity.json (SanityResult.to_dict), sanity.md (the tables), rulers_sanity.png (the curves)

"Rising" means moving away from real faces: the value itself for a "lower is better" metric,
its negative for "higher", and its distance from the floor (the strength-0 value) for "floor".
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from animegan.files import atomic_write, write_json
from eval.cache import cached_tensor
from eval.disturb import (
    DISTURBANCES,
    MODE_CLUSTERS,
    Disturbance,
    mode_clusters,
    random_init_samples,
    thumbnails,
)
from eval.rulers import Ruler, get_ruler

RESULT_VERSION = 1
FLOOR_PHRASE = "indistinguishable from real faces at this n"
# Which disturbances a translation names first when several curves can read a value: the faults
# a reader pictures at once (a blurred face, a noisy one, a batch with failed samples), then the
# colour faults, then the rest.
READ_ORDER = ("blur", "noise", "random-init", "desaturate", "contrast", "modes", "rectangles",
              "salt-pepper", "swirl")


class UsageError(ValueError):
    """A bad argument; the message is one line."""


# ---- describing, with a caching hook ------------------------------------------------------------

class Tag(NamedTuple):
    """What a descriptor set is of: everything that fixes the images a ruler describes.

    `images` is a digest of the undisturbed images, `extra` of the extra inputs a disturbance used
    (mode features, contamination pool), so `key` is a complete cache key together with the
    ruler's identity()."""
    role: str          # "ref" | "test"
    images: str        # sha256 of the undisturbed images (12 hex)
    disturbance: str   # "" for undisturbed
    strength: float
    seed: int
    extra: str = ""

    @property
    def key(self) -> str:
        d = f"{self.disturbance}={self.strength:g}" if self.disturbance else "none"
        return f"{self.role}-{self.images}/{d}{'-' + self.extra if self.extra else ''}/seed{self.seed}"


DescribeFn = Callable[[Ruler, torch.Tensor, Tag], torch.Tensor]


def describe_plain(ruler: Ruler, images: torch.Tensor, tag: Tag) -> torch.Tensor:
    """The default `describe_cached`: no cache."""
    return ruler.describe(images, seed=tag.seed)


def digest(*arrays) -> str:
    """12 hex of sha256 over tensors / arrays (tuples of them are taken apart): dtype, shape, bytes."""
    h = hashlib.sha256()
    for t in arrays:
        if isinstance(t, tuple):
            h.update(digest(*t).encode())
            continue
        t = torch.as_tensor(t).detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:12]


class DiskCache:
    """A `describe_cached` that keeps descriptors in the evaluation's cache (`eval.cache.cached_tensor`),
    keyed by the ruler's identity() and the tag. Rulers with cache_real = False, or without an identity,
    are described afresh every time."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = folder
        self.hits = self.misses = 0

    def __call__(self, ruler: Ruler, images: torch.Tensor, tag: Tag) -> torch.Tensor:
        try:
            ident = ruler.identity() if ruler.cache_real else None
        except NotImplementedError:
            ident = None
        if ident is None:
            return describe_plain(ruler, images, tag)
        out, hit = cached_tensor({"ruler": ident, "tag": tag.key}, lambda: describe_plain(ruler, images, tag),
                                 self.folder)
        self.hits, self.misses = self.hits + hit, self.misses + (not hit)
        return out


# ---- curves and the result ----------------------------------------------------------------------

def badness(values: Sequence[float], better: str, floor: float | None = None) -> np.ndarray:
    """Distance from real faces in a metric's own direction: v ("lower"), −v ("higher"),
    |v − floor| ("floor", floor = the real-vs-real value; default values[0])."""
    v = np.asarray(values, dtype=np.float64)
    if better == "lower":
        return v
    if better == "higher":
        return -v
    if better == "floor":
        return np.abs(v - (v[0] if floor is None else floor))
    raise ValueError(f"unknown metric direction {better!r}; expected lower, higher or floor")


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ; None when it is undefined (a constant or non-finite curve)."""
    from scipy.stats import spearmanr

    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2 or not np.all(np.isfinite(y)) or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


@dataclass
class Curve:
    """One ruler metric against one disturbance's strengths; strengths[0] = 0 is the floor."""
    ruler: str
    metric: str
    disturbance: str
    better: str
    strengths: list[float]
    values: list[float]
    limit: float | None = None  # the metric's farthest possible value (Metric.limit)

    @property
    def badness(self) -> np.ndarray:
        return badness(self.values, self.better)

    @property
    def saturated(self) -> np.ndarray:
        """Per strength: the value sits at the metric's limit (within 1 % of the way there), where it
        cannot rise any more — a classifier that already separates the sets cannot separate them more."""
        if self.limit is None:
            return np.zeros(len(self.values), dtype=bool)
        b, top = self.badness, float(badness([self.limit], self.better, floor=self.values[0])[0])
        return b >= top - 0.01 * (top - b[0]) if top > b[0] else np.zeros(len(b), dtype=bool)

    @property
    def increasing(self) -> bool:
        """Strictly farther from real faces at every step, until the metric reaches its limit and
        stays there."""
        b, sat = self.badness, self.saturated
        if not np.all(np.isfinite(b)) or sat[0]:
            return False
        rising = np.diff(b) > 0
        return bool(np.all(rising | (sat[1:] & sat[:-1])) and np.all(sat[np.argmax(sat):]) if sat.any()
                    else np.all(rising))

    @property
    def rho(self) -> float | None:
        return spearman(self.strengths, self.badness)

    def to_dict(self) -> dict:
        return {"ruler": self.ruler, "metric": self.metric, "disturbance": self.disturbance, "better": self.better,
                "strengths": list(self.strengths), "values": [_finite(v) for v in self.values],
                "limit": self.limit, "increasing": self.increasing, "spearman": self.rho}

    @classmethod
    def from_dict(cls, d: dict) -> Curve:
        return cls(d["ruler"], d["metric"], d["disturbance"], d["better"], [float(s) for s in d["strengths"]],
                   [math.nan if v is None else float(v) for v in d["values"]], d.get("limit"))


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


@dataclass
class SanityResult:
    """Every curve of a suite run, and what is needed to read them without the code that made them.

    JSON (`to_dict`): {"version", "seed", "n_ref", "n_test", "seconds", "notes": [str],
    "rulers": {name: identity or null}, "metrics": [{"ruler", "key", "name", "title", "better", "fmt",
    "scale"}], "disturbances": [{"name", "strengths", "unit", "scale", "reads", "description"}],
    "curves": [{"ruler", "metric", "disturbance", "better", "strengths" (0 first), "values",
    "increasing", "spearman"}]}. "increasing" and "spearman" are derived: from_dict recomputes them."""
    seed: int
    n_ref: int
    n_test: int
    metrics: list[dict]
    disturbances: list[dict]
    curves: list[Curve]
    rulers: dict[str, dict | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"version": RESULT_VERSION, "seed": self.seed, "n_ref": self.n_ref, "n_test": self.n_test,
                "seconds": round(self.seconds, 2), "notes": list(self.notes),
                "rulers": json.loads(json.dumps(self.rulers, default=str)),  # identities may hold paths
                "metrics": [dict(m) for m in self.metrics], "disturbances": [dict(d) for d in self.disturbances],
                "curves": [c.to_dict() for c in self.curves]}

    @classmethod
    def from_dict(cls, d: dict) -> SanityResult:
        if d.get("version") != RESULT_VERSION:
            raise ValueError(f"sanity result version {d.get('version')!r}, this code reads {RESULT_VERSION}")
        return cls(seed=d["seed"], n_ref=d["n_ref"], n_test=d["n_test"], metrics=[dict(m) for m in d["metrics"]],
                   disturbances=[dict(x) for x in d["disturbances"]],
                   curves=[Curve.from_dict(c) for c in d["curves"]], rulers=dict(d.get("rulers", {})),
                   notes=list(d.get("notes", [])), seconds=float(d.get("seconds", 0.0)))

    def merge(self, other: "SanityResult") -> "SanityResult":
        """This result with another run's rulers added (same real faces, seed and disturbances): a ruler
        added to the panel later is run alone and joined to the curves already measured."""
        if (other.seed, other.n_ref, other.n_test) != (self.seed, self.n_ref, self.n_test):
            raise UsageError("can only merge sanity results of the same real faces, n and seed")
        clash = set(self.rulers) & set(other.rulers)
        if clash:
            raise UsageError(f"both sanity results hold the ruler(s) {', '.join(sorted(clash))}")
        dists = {d["name"]: d for d in self.disturbances}
        dists.update({d["name"]: d for d in other.disturbances if d["name"] not in dists})
        return SanityResult(self.seed, self.n_ref, self.n_test, self.metrics + other.metrics, list(dists.values()),
                            self.curves + other.curves, {**self.rulers, **other.rulers}, self.notes + other.notes,
                            self.seconds + other.seconds)

    # -- lookups

    def metric(self, key: str) -> dict:
        """The metric row for "key" or "ruler:key" (needed only when two rulers share a key)."""
        ruler, _, k = key.rpartition(":")
        rows = [m for m in self.metrics if m["key"] == k and (not ruler or m["ruler"] == ruler)]
        if not rows:
            known = ", ".join(f"{m['ruler']}:{m['key']}" for m in self.metrics)
            raise KeyError(f"no metric {key!r} in this sanity result; known: {known}")
        if len(rows) > 1:
            raise KeyError(f"metric {key!r} belongs to rulers {[m['ruler'] for m in rows]}; name one as RULER:{k}")
        return rows[0]

    def disturbance(self, name: str) -> dict:
        for d in self.disturbances:
            if d["name"] == name:
                return d
        raise KeyError(f"no disturbance {name!r} in this sanity result; known: "
                       f"{', '.join(d['name'] for d in self.disturbances)}")

    def curves_of(self, key: str) -> list[Curve]:
        m = self.metric(key)
        return [c for c in self.curves if c.ruler == m["ruler"] and c.metric == m["key"]]

    def curve(self, key: str, disturbance: str) -> Curve:
        for c in self.curves_of(key):
            if c.disturbance == disturbance:
                return c
        raise KeyError(f"no curve of {key!r} for disturbance {disturbance!r}")

    def failures(self, disturbances: Iterable[str] | None = None) -> list[str]:
        """"ruler:metric × disturbance (ρ = …)" for every curve that does not rise strictly; []
        when all do. The one-line assertion of a "this ruler reads blur and noise" test."""
        keep = None if disturbances is None else set(disturbances)

        def rho(c: Curve) -> str:
            return "undefined" if c.rho is None else f"{c.rho:.2f}"
        return [f"{c.ruler}:{c.metric} × {c.disturbance} (ρ = {rho(c)}, values {[round(v, 4) for v in c.values]})"
                for c in self.curves if (keep is None or c.disturbance in keep) and not c.increasing]

    def markdown(self) -> str:
        return format_markdown(self)


# ---- the suite ----------------------------------------------------------------------------------

def split_real(images: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves (reference, test) of the first 2n images, by a seeded permutation — the
    evaluation's real-vs-real split (eval.evaluate): A = reference, B = the floor."""
    if n < 2 or len(images) < 2 * n:
        raise UsageError(f"need 2×n = {2 * n} images (n ≥ 2) for the reference and test halves, got {len(images)}")
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(2 * n))
    return images[perm[:n]], images[perm[n:2 * n]]


def _ruler_name(r: Ruler) -> str:
    return r.name or type(r).__name__


def _resolve(disturbances, strengths: Mapping[str, Sequence[float]] | None) -> list[tuple[Disturbance, list[float]]]:
    out = []
    for d in DISTURBANCES.values() if disturbances is None else disturbances:
        if isinstance(d, str):
            if d not in DISTURBANCES:
                raise UsageError(f"unknown disturbance {d!r}; known: {', '.join(DISTURBANCES)}")
            d = DISTURBANCES[d]
        s = [float(x) for x in (strengths or {}).get(d.name, d.strengths)]
        s = [x for x in s if x != 0]  # 0 is the shared floor, measured once
        if not s or any(b <= a for a, b in zip(s, s[1:])) or s[0] < 0:
            raise UsageError(f"strengths of {d.name} must be positive and increasing, got {s}")
        out.append((d, s))
    return out


def run_suite(rulers: Sequence[Ruler], ref_images: torch.Tensor, test_images: torch.Tensor,
              disturbances: Iterable[str | Disturbance] | None = None,
              strengths: Mapping[str, Sequence[float]] | None = None, seed: int = 0,
              describe_cached: DescribeFn | None = None, features: torch.Tensor | None = None,
              pool: torch.Tensor | None = None, progress: bool = False) -> SanityResult:
    """Score every ruler on `test_images` disturbed at every strength, against `ref_images`.

    rulers         Ruler instances (eval.rulers); their metrics' keys become the curves.
    disturbances   names of eval.disturb.DISTURBANCES (or Disturbance objects); default all.
    strengths      {name: strengths} overriding the defaults; 0 is always added as the floor.
    seed           disturbances, describe and score all get it; the same seed at every strength.
    describe_cached(ruler, images, tag) → descriptors, to cache them (`DiskCache`); default none.
    features       per-test-image features the "modes" disturbance clusters (default thumbnails);
                   clustered once per run.
    pool           random-init images for "random-init" (default: random_init_samples, seeded).

    Each ruler describes the reference once and the undisturbed test set once (the floor, shared
    by every disturbance); each disturbed set is made once and described by every ruler."""
    t0 = time.perf_counter()
    rulers = list(rulers)
    names = [_ruler_name(r) for r in rulers]
    if not rulers or len(set(names)) != len(names):
        raise UsageError(f"give one or more rulers with distinct names, got {names}")
    for t, what in ((ref_images, "reference"), (test_images, "test")):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 4:
            raise UsageError(f"{what} images must be a uint8 N×3×H×W tensor")
    plan = _resolve(disturbances, strengths)
    describe = describe_cached or describe_plain
    say = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    ref_id, test_id = digest(ref_images), digest(test_images)
    extras: dict[str, torch.Tensor] = {}
    if any("clusters" in d.needs for d, _ in plan):  # cluster once, not once per strength
        if features is not None and len(features) != len(test_images):
            raise UsageError(f"features has {len(features)} rows for {len(test_images)} test images")
        extras["clusters"] = mode_clusters(thumbnails(test_images) if features is None else features,
                                           MODE_CLUSTERS, seed)
    if any("pool" in d.needs for d, _ in plan):
        if pool is None:
            most = max(s[-1] for d, s in plan if "pool" in d.needs)
            say("drawing random-init samples for contamination")
            pool = random_init_samples(int(round(min(most, 1.0) * len(test_images))), seed=seed,
                                       size=test_images.shape[-1])
        extras["pool"] = pool

    def scores(r: Ruler, ref_desc, desc) -> list[float]:
        s = r.score(ref_desc, desc, seed=seed)
        missing = [m.key for m in r.metrics if m.key not in s]
        if missing:
            raise ValueError(f"ruler {_ruler_name(r)} returned no {', '.join(missing)}")
        return [float(s[m.key]) for m in r.metrics]

    refs, floors = [], []
    for r in rulers:
        t1 = time.perf_counter()
        refs.append(describe(r, ref_images, Tag("ref", ref_id, "", 0.0, seed)))
        floors.append(scores(r, refs[-1], describe(r, test_images, Tag("test", test_id, "", 0.0, seed))))
        say(f"{_ruler_name(r)}: reference and floor in {time.perf_counter() - t1:.1f}s")

    curves: list[Curve] = []
    for d, ss in plan:
        rows = [[f] for f in floors]  # per ruler: per strength: per metric
        extra_id = digest(*[extras[k] for k in d.needs if k in extras]) if any(k in extras for k in d.needs) else ""
        for s in ss:
            t1 = time.perf_counter()
            imgs = d.apply(test_images, s, seed=seed, **extras)
            for i, r in enumerate(rulers):
                rows[i].append(scores(r, refs[i], describe(r, imgs, Tag("test", test_id, d.name, s, seed, extra_id))))
            say(f"{d.name} {d.label(s)}: {time.perf_counter() - t1:.1f}s")
        for i, r in enumerate(rulers):
            for j, m in enumerate(r.metrics):
                curves.append(Curve(names[i], m.key, d.name, m.better, [0.0] + ss, [row[j] for row in rows[i]],
                                    m.limit))

    idents: dict[str, dict | None] = {}
    for n_, r in zip(names, rulers):
        try:
            idents[n_] = r.identity()
        except NotImplementedError:
            idents[n_] = None
    metrics = [{"ruler": n_, "key": m.key, "name": m.name, "title": m.title, "better": m.better, "fmt": m.fmt,
                "scale": m.scale, "limit": m.limit} for n_, r in zip(names, rulers) for m in r.metrics]
    infos = [{**d.info(), "strengths": ss} for d, ss in plan]
    return SanityResult(seed=seed, n_ref=len(ref_images), n_test=len(test_images), metrics=metrics,
                        disturbances=infos, curves=curves, rulers=idents, seconds=time.perf_counter() - t0)


# ---- translation --------------------------------------------------------------------------------

def _label(info: dict, strength: float) -> str:
    return info["unit"].format(strength * info.get("scale", 1.0))


def _phrase(info: dict, strength: float) -> str:
    return "real faces " + info["reads"].format(_label(info, strength))


@dataclass
class Equivalent:
    """A score read on one sanity curve. `phrase` completes "the model is …"."""
    ruler: str
    metric: str
    disturbance: str
    status: str              # "within" (interpolated) | "floor" (at or below real vs real) | "beyond"
    strength: float          # interpolated; 0 at the floor; the strongest tested when beyond
    label: str               # "σ = 1.3 px" ("" at the floor)
    phrase: str              # "as far from real faces as real faces blurred with σ = 1.3 px"
    sensitivity: float       # the curve's rise over its strengths ÷ the largest rise of this metric's curves

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_STATUS_ORDER = {"within": 0, "beyond": 1, "floor": 2}


def translate(result: SanityResult, ruler_metric_key: str, value: float, prefer: Sequence[str] = READ_ORDER,
              top: int | None = None) -> list[Equivalent]:
    """Read `value` of a metric ("fid", or "ruler:key") on each of its strictly rising sanity curves.

    Piecewise-linear interpolation of strength against the curve's distance from real faces (see
    `badness`); at or below the floor → "indistinguishable from real faces at this n"; above the
    strongest tested → "farther from real faces than real faces … (the strongest tested)".
    Curves that do not rise at every step are skipped: a curve that turns back cannot be read.

    Order, best reading first: readings inside a curve's range, then beyond, then at the floor;
    within each, the disturbances of `prefer` in its order (the most readable faults first), then
    by sensitivity. `top` keeps the first ones."""
    m = result.metric(ruler_metric_key)
    curves = [c for c in result.curves_of(ruler_metric_key) if c.increasing]
    rises = {c.disturbance: float(c.badness[-1] - c.badness[0]) for c in curves}
    biggest = max(rises.values(), default=0.0) or 1.0
    out = []
    for c in curves:
        info = result.disturbance(c.disturbance)
        b = float(badness([value], m["better"], floor=c.values[0])[0])
        curve_b, strengths, sat = c.badness, c.strengths, c.saturated
        if sat.any():  # read the rising part only: up to the first strength at the metric's limit
            top = int(np.argmax(sat))
            curve_b, strengths = curve_b[:top + 1], strengths[:top + 1]
        if not math.isfinite(b):
            raise ValueError(f"cannot translate a non-finite value {value!r}")
        if b <= curve_b[0]:
            status, s, label, phrase = "floor", 0.0, "", FLOOR_PHRASE
        elif sat.any() and b >= curve_b[-1]:
            s = strengths[-1]
            status, label = "beyond", _label(info, s)
            phrase = f"at least as far from real faces as {_phrase(info, s)} (where {m['title']} reaches its limit)"
        elif b > curve_b[-1]:
            s = c.strengths[-1]
            status, label = "beyond", _label(info, s)
            phrase = f"farther from real faces than {_phrase(info, s)} (the strongest tested)"
        else:
            s = float(np.interp(b, curve_b, strengths))
            status, label = "within", _label(info, s)
            phrase = f"as far from real faces as {_phrase(info, s)}"
        out.append(Equivalent(c.ruler, c.metric, c.disturbance, status, s, label, phrase,
                              rises[c.disturbance] / biggest))
    rank = {name: i for i, name in enumerate(prefer)}
    out.sort(key=lambda e: (_STATUS_ORDER[e.status], rank.get(e.disturbance, len(rank)), -e.sensitivity))
    return out[:top] if top is not None else out


# ---- the table and the figure -------------------------------------------------------------------

def _metric_label(m: dict) -> str:
    return f"{m['name']} ({m['ruler']}, `{m['key']}`)"


def _fmt(value: float, m: dict) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return m["fmt"].format(value * m.get("scale", 1.0))


def format_markdown(result: SanityResult) -> str:
    """The monotonicity table (one row per ruler metric, one column per disturbance), then each
    disturbance's curves as values."""
    ds = [d["name"] for d in result.disturbances]
    lines = ["# Ruler sanity: real faces, disturbed", "",
             (f"Reference: {result.n_ref} real faces; test: {result.n_test} other real faces, disturbed at each "
             f"strength (seed {result.seed}). Strength 0 is the real-vs-real floor. ✓: the metric moves away from "
             "real faces at every step; ρ: Spearman's rank correlation of that distance with strength (the value "
             "itself when lower is better, its negative when higher is, its distance from the floor when the "
             "floor is best). Heusel et al. 2017, Fig. 1 and appendix A1."), "",
             "## Does each ruler rise with each disturbance?", "",
             "| metric | " + " | ".join(ds) + " |", "|---|" + "---|" * len(ds)]
    for m in result.metrics:
        cells = []
        for name in ds:
            c = result.curve(f"{m['ruler']}:{m['key']}", name)
            rho = "ρ –" if c.rho is None else f"ρ {c.rho:.2f}"
            cells.append(f"{'✓' if c.increasing else '✗'} {rho}")
        lines.append(f"| {_metric_label(m)} | " + " | ".join(cells) + " |")
    bad = result.failures()
    lines += ["", f"{len(result.curves) - len(bad)} of {len(result.curves)} curves rise at every step."
              + ("" if not bad else " Not rising: " + "; ".join(b.split(" (")[0] for b in bad) + "."), ""]
    lines += ["## The curves", ""]
    for d in result.disturbances:
        lines += [f"### {d['name']}: {d['description']}", "",
                  "| strength | " + " | ".join(f"{m['title']} ({m['ruler']})" for m in result.metrics) + " |",
                  "|---|" + "---:|" * len(result.metrics)]
        curves = [result.curve(f"{m['ruler']}:{m['key']}", d["name"]) for m in result.metrics]
        for i, s in enumerate(curves[0].strengths if curves else []):
            head = "0 (real vs real)" if i == 0 else _label(d, s)
            lines.append(f"| {head} | " + " | ".join(_fmt(c.values[i], m) for c, m in zip(curves, result.metrics))
                         + " |")
        lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def plot_sanity(result: SanityResult, path: str | Path) -> None:
    """One panel per disturbance, one line per ruler metric: its distance from real faces,
    normalised to [floor, largest] so every ruler shares the axis (a curve whose rise is under 5 %
    of its metric's median rise over the disturbances is drawn flat, not stretched); dashed = not
    rising at every step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = result.disturbances
    # A curve that hardly moves would be stretched to [0, 1] like the others and show its noise as
    # a rise: each metric's curves are scaled by at least 5 % of its median rise, so those stay flat.
    rises: dict[tuple[str, str], list[float]] = {}
    for c in result.curves:
        b = c.badness
        rises.setdefault((c.ruler, c.metric), []).append(float(np.nanmax(b - b[0])) if np.any(np.isfinite(b)) else 0.0)
    least = {k: 0.05 * float(np.median(v)) for k, v in rises.items()}
    cols = min(3, len(ds))
    rows = math.ceil(len(ds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, d in zip(axes.flat, ds):
        for k, m in enumerate(result.metrics):
            c = result.curve(f"{m['ruler']}:{m['key']}", d["name"])
            b = c.badness - c.badness[0]
            top = max(np.nanmax(b) if np.any(np.isfinite(b)) else 0.0, least[(c.ruler, c.metric)])
            y = b / top if top > 0 else np.zeros_like(b)
            x = np.asarray(c.strengths) * d.get("scale", 1.0)
            ax.plot(x, y, marker="o", ms=3, color=colours[k % len(colours)],
                    linestyle="-" if c.increasing else "--", label=f"{m['title']} ({m['ruler']})")
        ax.set_title(f"{d['name']}", fontsize=10)
        ax.set_xlabel(d.get("axis") or re.sub(r"\{[^}]*\}", "·", d["unit"]), fontsize=8)
        ax.set_ylim(-0.1, 1.1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(ds):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("distance from real\n(floor = 0, largest = 1)", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8, frameon=False)
    fig.suptitle(f"Rulers on disturbed real faces (n = {result.n_test}): distance from real, each curve scaled "
                 "to [floor, its largest]; dashed: not rising at every step", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * math.ceil(len(labels) / 4), 1, 0.97))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_result(result: SanityResult, out: str | Path) -> dict[str, Path]:
    """OUT/sanity.json, OUT/sanity.md, OUT/rulers_sanity.png, each written atomically."""
    out = Path(out)
    paths = {"json": out / "sanity.json", "md": out / "sanity.md", "png": out / "rulers_sanity.png"}
    write_json(paths["json"], result.to_dict())
    md = format_markdown(result)
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text(md + "\n", encoding="utf-8"))
    plot_sanity(result, paths["png"])
    return paths


# ---- rulers by name, and the CLI ----------------------------------------------------------------

def get_rulers(names: Sequence[str], device: str | None = None) -> list[Ruler]:
    """Rulers by name (eval.rulers.get_ruler); an unknown name raises UsageError listing the known ones."""
    try:
        return [get_ruler(name, device=device) for name in names]
    except KeyError as e:
        raise UsageError(e.args[0]) from None


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m eval.sanity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="real faces: folder/.zip/.tar (the test split)")
    ap.add_argument("--n", type=int, default=500, help="faces per half: reference and test (default 500)")
    ap.add_argument("--rulers", default="effnet,swd,c2st,anime", help="comma-separated ruler names")
    ap.add_argument("--disturbances", default=",".join(DISTURBANCES),
                    help=f"comma-separated, from: {', '.join(DISTURBANCES)} (default all)")
    ap.add_argument("--out", default="reports/sanity", help="output folder (default reports/sanity)")
    ap.add_argument("--seed", type=int, default=0, help="split, disturbance and ruler seed (default 0)")
    ap.add_argument("--size", type=int, default=64, help="image side (default 64)")
    ap.add_argument("--cache-dir", default=None, help="descriptor cache (default: the evaluation's feature cache)")
    ap.add_argument("--no-cache", action="store_true", help="neither read nor write descriptors")
    ap.add_argument("--add-to", metavar="SANITY_JSON",
                    help="an earlier result of the same real faces: run only --rulers and write both together")
    ap.add_argument("--device", default=None, help="passed to rulers that take a device")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from animegan.data import DataError, load_images

    try:
        if args.n < 2:
            raise UsageError(f"--n must be at least 2, got {args.n}")
        names = [s.strip() for s in args.rulers.split(",") if s.strip()]
        dists = [s.strip() for s in args.disturbances.split(",") if s.strip()]
        _resolve(dists, None)  # bad names fail before anything slow
        if args.threads:
            torch.set_num_threads(args.threads)
        rulers = get_rulers(names, args.device)
        real = load_images(args.real, size=args.size, limit=2 * args.n, progress=True).images
        ref, test = split_real(real, args.n, args.seed)
        if args.no_cache:
            cache = None
        else:
            cache = DiskCache(args.cache_dir)
        result = run_suite(rulers, ref, test, disturbances=dists, seed=args.seed, describe_cached=cache,
                           progress=True)
    except (UsageError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.notes.append(f"real faces: the first {2 * args.n} of {args.real}, split with seed {args.seed}")
    if args.add_to:
        try:
            earlier = SanityResult.from_dict(json.loads(Path(args.add_to).read_text()))
            result = earlier.merge(result)
        except (OSError, ValueError, KeyError, UsageError) as e:
            print(f"error: --add-to {args.add_to}: {e}", file=sys.stderr)
            return 2
        result.notes = list(dict.fromkeys(result.notes))
    paths = write_result(result, args.out)
    print(format_markdown(result).split("## The curves")[0].rstrip())
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
