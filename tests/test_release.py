"""scripts/release.sh end to end on a tiny CPU setting: every phase, its files, resume and the deadline."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.schema import Report
from eval.testing import write_images

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seeds", "0", "--batch-size", "8", "--snapshot-every", "16", "--select-images", "40",
        "--test-images", "60", "--curve-rulers", "effnet", "--curve-n", "20", "--rulers", "effnet", "--n", "20",
        "--poll", "0.5"]


def release(*args, timeout=900):
    return subprocess.run(["bash", "scripts/release.sh", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("faces") / "all", 164, seed=5, size=72)


def test_release_runs_every_phase_and_resumes(faces, tmp_path):
    out = tmp_path / "r"
    p = release("--data", faces, "--out", out, "--epochs", "0.5", *TINY)
    assert p.returncode == 0, p.stderr[-2000:]
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] == "finished" and all(status["phases"][ph]["done"] for ph in
                                                  ("split", "smoke", "runs", "select", "export", "score", "cards"))
    assert status["phases"]["split"]["images"] == {"train": 64, "select": 40, "test": 60}
    # 0.5 epochs of 64 images in batches of 8: 4 GAN steps (1 batch each), 1 WGAN-GP step (5 batches)
    assert {k: v["step"] for k, v in status["runs"].items()} == {"gan-s0": 4, "wgan-gp-s0": 1}
    snaps = sorted(p.name for p in (out / "runs" / "gan-s0" / "snapshots").iterdir())
    assert snaps == ["step_0000002", "step_0000004"]  # every 16 images = 2 GAN steps, and the end
    curves = [json.loads(x) for x in (out / "curves.jsonl").read_text().splitlines()]
    assert {r["run"] for r in curves} == {"gan-s0", "wgan-gp-s0", "real-vs-real"}
    assert all(r["fid"] > 0 for r in curves) and len(curves) == 2 + 1 + 1
    best = status["phases"]["select"]["best"]["gan-s0"]
    assert best["fid"] == min(r["fid"] for r in curves if r["run"] == "gan-s0")
    for name in ("gan", "wgan-gp", "gan-s0", "wgan-gp-s0"):
        assert (out / "export" / name / "model.safetensors").is_file()
    report = Report.load(out / "report" / "report.json")
    assert [r.name for r in report.models] == ["gan-s0", "wgan-gp-s0"] and report.ceiling.name == "random-init"
    assert report.verdict is not None and {report.verdict.a, report.verdict.b} == {"gan", "wgan-gp"}
    assert (out / "figures" / "curves.png").stat().st_size > 5000
    card = (out / "export" / "gan" / "README.md").read_text()
    assert "## Evaluation" in card and "random-init" in card
    assert json.loads((out / "export" / "gan" / "metrics.json").read_text())["verdict"] == report.verdict.summary
    log = (out / "release.log").read_text()
    assert "run gan-s0: done" in log and "score: wrote" in log

    # Rerunning the same command finds everything done: no run starts, nothing is scored again.
    p = release("--data", faces, "--out", out, "--epochs", "0.5", *TINY)
    assert p.returncode == 0, p.stderr[-2000:]
    tail = (out / "release.log").read_text()[len(log):]
    assert "started" not in tail and "score: wrote" not in tail and "done up to cards" in tail
    assert len((out / "curves.jsonl").read_text().splitlines()) == len(curves)

    # A larger budget on a rerun extends the same runs from where they stopped.
    p = release("--data", faces, "--out", out, "--epochs", "1", "--until", "runs", *TINY)
    assert p.returncode == 0, p.stderr[-2000:]
    status = json.loads((out / "status.json").read_text())
    assert {k: v["step"] for k, v in status["runs"].items()} == {"gan-s0": 8, "wgan-gp-s0": 2}
    assert "resuming" in (out / "runs" / "gan-s0.log").read_text()


@pytest.mark.slow
def test_release_deadline_stops_the_runs_and_says_where_it_got_to(faces, tmp_path):
    out = tmp_path / "r"
    p = release("--data", faces, "--out", out, "--epochs", "500", "--deadline", "3", "--reserve", "1",
                "--until", "runs", *TINY)
    assert p.returncode == 3, p.stderr[-2000:]  # partial: rerun to continue
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] == "partial" and not status["phases"]["runs"]["done"]
    runs = status["runs"]
    assert all(0 < r["step"] < r["total_steps"] for r in runs.values())  # stopped cleanly, with a checkpoint
    assert "deadline: stopping" in (out / "release.log").read_text()


def test_bad_input_is_one_line(tmp_path):
    for args, words in ((["--data", tmp_path / "missing", "--out", tmp_path / "o"], "does not exist"),
                        (["--split", tmp_path, "--out", tmp_path / "o"], "lacks train.tar"),
                        (["--data", tmp_path, "--out", tmp_path / "o", "--models", "vae"], "unknown model")):
        p = release(*args)
        last = p.stderr.strip().splitlines()[-1]
        assert p.returncode == 2 and "error: " in last and words in last, p.stderr


def test_the_fast_step_is_used_only_where_parity_holds_and_it_is_faster():
    sys.path.insert(0, str(ROOT / "scripts"))
    from release import fast_step_verdict
    assert fast_step_verdict({"ok": True, "step_ms": 3.0, "reference_step_ms": 5.0})[0] == "graph"
    assert fast_step_verdict({"ok": True, "step_ms": 6.0, "reference_step_ms": 5.0})[0] == "eager"  # slower
    assert fast_step_verdict({"ok": False, "step_ms": 1.0, "reference_step_ms": 5.0})[0] == "eager"  # learns otherwise
    assert fast_step_verdict({"ok": False, "error": "RuntimeError: capture"})[0] == "eager"
    assert fast_step_verdict({})[0] == "eager"
