"""The verdict between two models: every ruler's difference with a paired interval, and one sentence.

    verdict = compare(rows, rounds, panel, names, groups={"gan": ["gan-s0", …], "wgan-gp": […]})
    verdict.summary   # "The wgan-gp is ahead on 3 of 4 rulers (…); the gan on 1 (ImageNet features)."

Both models are measured against the same reference images with the same latents, so their scores
are not independent: each resampling round of a ruler (`Ruler.paired`) draws one half of the
reference and one half of the samples, the same for both models, and the difference is taken within
the round. Its spread over rounds gives the 95 % interval (difference ± 1.96 std; halves without
replacement are the delete-d jackknife with d = n/2, whose variance factor is 1). With several
training seeds per model the sides are seed means, the rounds average over seeds too, and the
standard deviation of the per-seed differences is reported beside it: the spread a new training run
would show, which the interval over images does not contain.

For metrics whose best value is the real-vs-real floor (better = "floor", e.g. the C2ST accuracy,
whose floor is 0.5), the compared quantity is the distance from the floor: |a − floor| − |b − floor|.
"""
from __future__ import annotations

import numpy as np

from .schema import Difference, Row, Verdict

Z95 = 1.959964


def sides(models: list[Row], groups: dict | None) -> dict[str, list[str]] | None:
    """The two sides of the comparison: two groups of rows, or the two generators when there are exactly two."""
    present = {r.name for r in models}
    if groups:
        picked = {g: [x for x in rows if x in present] for g, rows in groups.items()}
        picked = {g: rows for g, rows in picked.items() if rows}
        return picked if len(picked) == 2 else None
    gens = [r.name for r in models if r.kind == "generator"]
    return {gens[0]: [gens[0]], gens[1]: [gens[1]]} if len(gens) == 2 else None


def compare(models: list[Row], rounds: dict, panel, names: list[str], groups: dict | None = None,
            floor: Row | None = None) -> Verdict | None:
    """Differences of every ruler metric between the two sides; None when there are not two models."""
    two = sides(models, groups)
    if two is None:
        return None
    (a, rows_a), (b, rows_b) = two.items()
    value = {r.name: r.metrics for r in models}
    base = (floor.metrics if floor else {}) or {}
    diffs = []
    for ruler in panel:
        keys = list(ruler.paired_keys)
        for metric in ruler.metrics:
            if metric.key not in keys:
                continue
            k = keys.index(metric.key)
            R = rounds[ruler.name][:, :, k]  # rounds × rows
            ia, ib = [names.index(x) for x in rows_a], [names.index(x) for x in rows_b]
            pa = np.array([value[x][metric.key] for x in rows_a], dtype=float)
            pb = np.array([value[x][metric.key] for x in rows_b], dtype=float)
            if metric.better == "floor":
                f = base.get(metric.key, 0.5)
                dist = lambda v: np.abs(v - f)  # noqa: E731
            else:
                dist = lambda v: v  # noqa: E731
            diff = float(dist(pa).mean() - dist(pb).mean())
            per_round = dist(R[:, ia]).mean(1) - dist(R[:, ib]).mean(1)
            half = Z95 * float(per_round.std(ddof=1))
            lo, hi = diff - half, diff + half
            seed_std = float(np.std(dist(pa) - dist(pb), ddof=1)) if len(pa) == len(pb) > 1 else None
            lower_wins = metric.better in ("lower", "floor")
            better = None
            if lo > 0 or hi < 0:
                better = (b if diff > 0 else a) if lower_wins else (a if diff > 0 else b)
            diffs.append(Difference(metric.key, ruler.name, float(pa.mean()), float(pb.mean()), diff, lo, hi,
                                    better, len(pa), seed_std))
    by_ruler = {}
    for ruler in panel:
        votes = [d.better for d in diffs if d.ruler == ruler.name and d.better]
        by_ruler[ruler.name] = votes[0] if votes and len(set(votes)) == 1 and len(votes) * 2 > \
            sum(d.ruler == ruler.name for d in diffs) else None
    return Verdict(a, b, diffs, summarise(a, b, by_ruler, panel), by_ruler)


def summarise(a: str, b: str, by_ruler: dict, panel) -> str:
    """One sentence on which rulers prefer which model, and what those rulers look at."""
    sees = {r.name: getattr(r, "sees", r.name) for r in panel}
    pro = {m: [r for r, v in by_ruler.items() if v == m] for m in (a, b)}
    none = [r for r, v in by_ruler.items() if v is None]
    if not pro[a] and not pro[b]:
        return f"No ruler tells {a} and {b} apart at this n: every difference is inside its interval."
    lead, other = (a, b) if len(pro[a]) >= len(pro[b]) else (b, a)
    parts = [f"{lead} is ahead on {len(pro[lead])} of {len(by_ruler)} rulers ({', '.join(pro[lead])})"]
    if pro[other]:
        parts.append(f"{other} on {len(pro[other])} ({', '.join(pro[other])})")
    if none:
        parts.append(f"no clear difference on {', '.join(none)}")
    text = "; ".join(parts) + "."
    if pro[other]:
        return (text + f" The rulers disagree, so which model is better depends on what is measured: {lead} wins on "
                f"{_and([sees[r] for r in pro[lead]])}; {other} on {_and([sees[r] for r in pro[other]])}.")
    return text + f" Every ruler that tells them apart prefers {lead}."


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
