"""scripts/release.py fd-curve: the quick FD of checkpoints scored after training, by the trainer's rules."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_train import train

ROOT = Path(__file__).resolve().parents[1]


def fd_curve(run, real):
    p = subprocess.run([sys.executable, "scripts/release.py", "fd-curve", str(run), "--real", str(real),
                        "--n", "12"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-800:]
    return p.stdout


def test_fd_curve_scores_checkpoints_and_promotes_the_best(tiny_images, tmp_path):
    run = tmp_path / "run"
    assert train(tiny_images, run, "--steps", "4", "--ckpt-every", "2", "--keep-ckpts", "2") == 0
    assert not (run / "generator_best").exists()  # trained without --eval-every

    out = fd_curve(run, tiny_images)
    rows = [json.loads(ln) for ln in (run / "fd_posthoc.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(r["fd"] > 0 and r["fd_n"] == 12 for r in rows)
    best = json.loads((run / "generator_best" / "training_info.json").read_text())
    assert best["fd_effnet_lite0"] == pytest.approx(min(r["fd"] for r in rows), abs=1e-3)
    assert best["step"] == min(rows, key=lambda r: r["fd"])["step"] and "is the best so far" in out
    assert len(best["selection"]["image_ids"]) == 12

    # Scored once: a second call adds nothing and keeps the best.
    assert "is the best so far" not in fd_curve(run, tiny_images)
    assert len((run / "fd_posthoc.jsonl").read_text().splitlines()) == 2


def test_fd_curve_matches_the_trainers_quick_fd(tiny_images, tmp_path):
    run = tmp_path / "run"
    assert train(tiny_images, run, "--steps", "2", "--ckpt-every", "2", "--eval-every", "2",
                 "--eval-real", str(tiny_images), "--eval-n", "12") == 0
    in_run = next(json.loads(ln)["fd"] for ln in (run / "metrics.jsonl").read_text().splitlines() if '"fd"' in ln)
    metrics = run / "metrics.jsonl"
    metrics.write_text("".join(ln + "\n" for ln in metrics.read_text().splitlines() if '"fd"' not in ln))
    fd_curve(run, tiny_images)
    (row,) = [json.loads(ln) for ln in (run / "fd_posthoc.jsonl").read_text().splitlines()]
    assert row["fd"] == pytest.approx(in_run, rel=1e-3)  # the same measurement, checkpoint or live
