"""eval.verdict and eval.schema: paired differences with known answers, the sentence, and report.json's round trip."""
import numpy as np
import pytest

from eval.rulers import Ruler
from eval.schema import Metric, Report, Row
from eval.verdict import compare, sides


class Fake(Ruler):
    """A ruler with fixed metrics, for feeding `compare` hand-made rounds."""
    def __init__(self, name, metrics, sees):
        self.name, self.metrics, self.sees = name, metrics, sees


LOW = Metric("fd", "FD", "FD ↓", "lower", "{:.1f}", "a distance")
FLOOR = Metric("acc", "Acc", "acc", "floor", "{:.2f}", "0.5 is best")


def row(name, kind="generator", **m):
    return Row(name, kind, name, 100, dict(m))


def test_paired_interval_is_the_spread_of_within_round_differences():
    # Rounds where both models move together (a shared reference): the difference is steady even though
    # each model's own score swings widely.
    shared = np.array([0.0, 10.0, -10.0, 5.0, -5.0])
    rounds = {"fd": np.stack([100 + shared + [0.1, -0.1, 0.1, -0.1, 0.0], 80 + shared], axis=1)[..., None]}
    models = [row("a", fd=100.0), row("b", fd=80.0)]
    v = compare(models, rounds, [Fake("fd", (LOW,), "pixels")], ["a", "b"])
    (d,) = v.differences
    half = 1.959964 * np.std([0.1, -0.1, 0.1, -0.1, 0.0], ddof=1)
    assert d.diff == 20.0 and d.lo == pytest.approx(20 - half) and d.hi == pytest.approx(20 + half)
    assert d.better == "b" and v.by_ruler == {"fd": "b"}  # lower is better: b
    assert "b is ahead on 1 of 1 rulers" in v.summary and "Every ruler that tells them apart prefers b" in v.summary


def test_floor_metrics_compare_distances_from_the_floor_and_seeds_give_a_spread():
    # Two seeds per model. Accuracy 0.5 is the floor: 0.6 (0.1 away) beats 0.9 (0.4 away), though it is lower.
    models = [row("a0", acc=0.90), row("a1", acc=0.88), row("b0", acc=0.60), row("b1", acc=0.64)]
    for r, g in zip(models, "aabb"):
        r.group = g
    base = row("real-vs-real", "real split", acc=0.5)
    rng = np.random.default_rng(0)
    vals = np.array([[0.90, 0.88, 0.60, 0.64]]) + 0.005 * rng.standard_normal((20, 4))
    v = compare(models, {"acc": vals[..., None]}, [Fake("acc", (FLOOR,), "any tell")], ["a0", "a1", "b0", "b1"],
                groups={"a": ["a0", "a1"], "b": ["b0", "b1"]}, floor=base)
    (d,) = v.differences
    assert d.diff == pytest.approx((0.39 - 0.12)) and d.better == "b" and d.seeds == 2
    assert d.seed_std == pytest.approx(np.std([0.40 - 0.10, 0.38 - 0.14], ddof=1))


def test_disagreeing_rulers_are_named_by_what_they_see():
    models = [row("gan", fd=100.0, acc=0.99), row("wgan", fd=150.0, acc=0.75)]
    names = ["gan", "wgan"]
    tight = lambda a, b: np.stack([np.full(10, a) + np.linspace(-.01, .01, 10), np.full(10, b)], 1)[..., None]  # noqa: E731
    rounds = {"inet": tight(100, 150), "c2st": tight(0.99, 0.75)}
    panel = [Fake("inet", (LOW,), "ImageNet features"), Fake("c2st", (FLOOR,), "any tell a classifier finds")]
    v = compare(models, rounds, panel, names, floor=row("real-vs-real", "real split", acc=0.5))
    assert v.by_ruler == {"inet": "gan", "c2st": "wgan"}
    assert v.summary == ("gan is ahead on 1 of 2 rulers (inet); wgan on 1 (c2st). The rulers disagree, so which "
                         "model is better depends on what is measured: gan wins on ImageNet features; wgan on any "
                         "tell a classifier finds.")


def test_no_verdict_without_two_models_and_no_difference_inside_the_interval():
    assert sides([row("a"), row("b", kind="images")], None) is None  # one generator, one image set
    models = [row("a", fd=10.0), row("b", fd=10.5)]
    wide = np.stack([10 + np.linspace(-3, 3, 8), 10.5 + np.linspace(3, -3, 8)], 1)[..., None]
    v = compare(models, {"fd": wide}, [Fake("fd", (LOW,), "pixels")], ["a", "b"])
    assert v.differences[0].better is None and v.by_ruler == {"fd": None}
    assert v.summary.startswith("No ruler tells a and b apart")


def test_report_json_round_trips_and_refuses_another_schema(tmp_path):
    r = Report(protocol={"n": 100}, real={"source": "x"}, models=[row("gan", fd=1.0)],
               baseline=row("real-vs-real", "real split", fd=0.1), ceiling=row("random-init", "ceiling", fd=9.0),
               rulers={"fd": {"identity": {}, "sees": "pixels", "metrics": [LOW._asdict()]}})
    models = [row("a", fd=100.0), row("b", fd=80.0)]
    r.verdict = compare(models, {"fd": np.stack([np.full(4, 100.0) + [0, 1, 0, 1], np.full(4, 80.0)], 1)[..., None]},
                        [Fake("fd", (LOW,), "pixels")], ["a", "b"])
    r.save(tmp_path / "report.json")
    back = Report.load(tmp_path / "report.json")
    assert back == r and back.metrics() == [LOW] and [x.name for x in back.rows()] == ["gan", "random-init",
                                                                                       "real-vs-real"]
    d = r.to_dict()
    d["schema"] = 1
    with pytest.raises(ValueError, match="schema 1"):
        Report.from_dict(d)


def test_a_reading_names_the_metric_for_people():
    from eval.report import reading
    from eval.schema import Metric
    fid = Metric("fid", "FID", "FID ↓", "lower", "{:.2f}", "Fréchet distance")
    t = {"ruler": "effnet", "metric": "fid", "phrase": "as far from real faces as real faces blurred with σ = 1.3 px"}
    assert reading(t, [fid]) == "FID: as far from real faces as real faces blurred with σ = 1.3 px"
    assert reading({**t, "metric": "kid"}, [fid]).startswith("effnet:kid: ")  # unknown to the panel: ruler and key
