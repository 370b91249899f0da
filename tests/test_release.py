"""scripts/release.py fd-curve: the post-hoc quick FD of a run's checkpoints and final export."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from test_train import train

ROOT = Path(__file__).resolve().parents[1]


def fd_curve(run, real):
    p = subprocess.run([sys.executable, "scripts/release.py", "fd-curve", str(run), "--real", str(real),
                        "--n", "12"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-800:]
    return p.stdout


def test_fd_curve_scores_the_final_export_and_keeps_the_better(tiny_images, tmp_path):
    run = tmp_path / "run"
    assert train(tiny_images, run, "--steps", "3", "--eval-every", "2", "--eval-real", str(tiny_images),
                 "--eval-n", "12") == 0
    # A run from before the trainer scored its last step: no quick FD for step 3, best = step 2.
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    in_run = next(r["fd"] for r in rows if "fd" in r and r["step"] == 3)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows
                                               if not ("fd" in r and r["step"] == 3)))
    best_info = run / "generator_best" / "training_info.json"
    info = json.loads(best_info.read_text())
    best_info.write_text(json.dumps({**info, "step": 2, "fd_effnet_lite0": 1e9}))
    shutil.rmtree(run / "checkpoints")  # as a run brought back from a remote GPU: exports only

    out = fd_curve(run, tiny_images)
    posthoc = [json.loads(ln) for ln in (run / "fd_posthoc.jsonl").read_text().splitlines()]
    assert [(r["step"], r["export"]) for r in posthoc] == [(3, "generator")]
    assert posthoc[0]["fd"] == pytest.approx(in_run, abs=1e-2)  # the same measurement as the trainer's
    assert "is the best so far" in out
    promoted = json.loads(best_info.read_text())
    assert promoted["step"] == 3 and promoted["fd_effnet_lite0"] == pytest.approx(posthoc[0]["fd"], abs=1e-3)
    a = load_file(run / "generator_best" / "model.safetensors")
    b = load_file(run / "generator" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

    # Already scored: a second call adds nothing. A better best is kept.
    best_info.write_text(json.dumps({**promoted, "step": 2, "fd_effnet_lite0": -1.0}))
    assert "is the best so far" not in fd_curve(run, tiny_images)
    assert len((run / "fd_posthoc.jsonl").read_text().splitlines()) == 1
    (run / "fd_posthoc.jsonl").unlink()
    assert "is the best so far" not in fd_curve(run, tiny_images)
    assert json.loads(best_info.read_text())["step"] == 2
