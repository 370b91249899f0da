"""The GPU release run, tested on the CPU: the data transport in parts, the plan, what comes back,
and (slow) scripts/gpu_release.sh end to end with tiny settings."""
import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.data import load_images, pack_archive
from scripts.gpu_release import main as gpu_release

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def faces(tmp_path):
    """48 training, 16 select and 16 test images; a training pack in AVIF; a one-file git checkout."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 48), ("select", 16), ("test", 16)):
        d = tmp_path / name
        d.mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"{name}{i:03d}.png")
    pack_archive(str(tmp_path / "train"), str(tmp_path / "train16.zip"), size=16, fmt="avif", quality=90)
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "f").write_text("x")
    subprocess.run(["git", "add", "f"], cwd=repo, check=True)
    (repo / ".whl").mkdir()
    (repo / ".whl" / "x-0-py3-none-any.whl").write_bytes(b"w" * 1000)  # stands for the wheels call 1 carries
    (repo / ".git" / "info" / "exclude").write_text("/.whl/\n")
    return tmp_path


def prepare(faces, call_mib=0.08):
    return gpu_release(["prepare", "--train", str(faces / "train16.zip"), "--select", str(faces / "select"),
                        "--test", str(faces / "test"), "--out", str(faces / "gpu"), "--repo", str(faces / "repo"),
                        "--margin-mib", "0", "--call-mib", str(call_mib), "--size", "16"])


def test_avif_pack_is_4_4_4_and_loads(faces):
    res = pack_archive(str(faces / "train"), str(faces / "a.zip"), size=16, fmt="avif", quality=90)
    assert res.written == 48 and res.psnr > 30
    packed = load_images(faces / "a.zip", size=16)
    assert packed.names[0].endswith(".avif") and packed.images.shape == (48, 3, 16, 16)
    with Image.open(faces / "train" / "train000.png") as im:
        assert im.size == (24, 20)


def test_data_travels_in_three_parts_and_joins_to_the_same_pixels(faces, capsys):
    assert prepare(faces) == 0
    out = capsys.readouterr().out
    parts = [faces / "gpu" / f"p{i}" for i in (1, 2, 3)]
    sizes = [sum(f.stat().st_size for f in p.iterdir()) for p in parts]
    assert all(s <= 0.08 * 2**20 + 2000 for s in sizes)  # each call within its limit (+ the small manifest)
    manifest = json.loads((parts[0] / "manifest.json").read_text())
    assert manifest["images"] == 48 and manifest["parts"]["p1"]["images"] > 0 and manifest["parts"]["p2"]["images"] > 0
    assert sum(p["images"] for p in manifest["parts"].values()) == 48
    assert "call 1: carry .whl" in out
    assert gpu_release(["join", str(faces / "gpu"), "--out", str(faces / "joined.zip"), "--workers", "2"]) == 0
    assert "pixels identical to the CPU's decode" in capsys.readouterr().out
    joined, packed = load_images(faces / "joined.zip", size=16), load_images(faces / "train16.zip", size=16)
    assert torch.equal(joined.images, packed.images)  # BMP is lossless: training sees the pack's pixels
    assert [Path(n).stem for n in joined.names] == [Path(n).stem for n in packed.names]


def test_a_missing_part_says_which_call_and_what_to_do(faces, capsys):
    assert prepare(faces) == 0
    (faces / "gpu" / "p2" / "train2.zip").unlink()
    assert gpu_release(["verify", str(faces / "gpu"), "--parts", "p1"]) == 0
    capsys.readouterr()
    assert gpu_release(["join", str(faces / "gpu"), "--out", str(faces / "joined.zip")]) == 2
    err = capsys.readouterr().err
    assert "missing p2/train2.zip (call 2)" in err and "start again with call 1" in err
    (faces / "gpu" / "p3" / "train3.zip").write_bytes(b"not the part")
    assert gpu_release(["verify", str(faces / "gpu"), "--parts", "p3"]) == 2
    assert "corrupt p3/train3.zip" in capsys.readouterr().err


def test_a_pack_that_cannot_fit_three_calls_is_refused(faces, capsys):
    assert prepare(faces, call_mib=0.018) == 2
    assert "does not fit" in capsys.readouterr().err


def test_plan_gives_equal_seed_lengths_in_eval_steps_and_caps_at_500(tmp_path):
    t = tmp_path / "throughput.json"

    impl = tmp_path / "impl.json"
    impl.write_text('{"gan": "graph", "wgan-gp": "graph"}')

    def plan(gan, wgan, minutes, *extra):
        t.write_text(json.dumps({"rows": [
            {"model": "gan", "step_impl": "eager", "real_img_per_s": gan / 3},
            {"model": "gan", "step_impl": "graph", "real_img_per_s": gan},
            {"model": "wgan-gp", "step_impl": "graph", "real_img_per_s": wgan}]}))
        assert gpu_release(["plan", str(t), "--images", "27088", "--minutes", str(minutes),
                            "--out", str(tmp_path / "plan.json"), *extra]) == 0
        return json.loads((tmp_path / "plan.json").read_text())

    assert plan(30000, 20000, 6)["rates"]["gan"] == 10000  # no choice file: the eager rows
    p = plan(30000, 20000, 6, "--impl", str(impl))
    assert p["rates"] == {"gan": 30000, "wgan-gp": 20000}  # the steps the runs will use
    # extra seeds: 2 of each model share the GPU with everything: e1·(2·s_gan + 4·s_wgan) ≤ 0.6 · 0.8 · 360 s
    s_gan, s_wgan = 27088 / 30000, 27088 / 20000
    assert p["epochs_extra_seeds"] % 5 == 0 and p["epochs_extra_seeds"] * (2 * s_gan + 4 * s_wgan) <= 0.6 * 0.8 * 360
    assert 0 < p["epochs_seed0_expected"] < 500 and "GPU-minutes" in p["note"]
    assert plan(3e6, 2e6, 60)["epochs_seed0_expected"] == 500


def test_collect_brings_back_at_most_8_files_under_16_mib(tmp_path):
    from animegan.checkpoint import export_generator
    from animegan.models import Generator
    runs = tmp_path / "runs"
    for run in ("gan-s0", "gan-s1", "wgan-gp-s0", "wgan-gp-s1"):
        d = runs / run
        (d / "samples").mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "metrics.jsonl").write_text('{"step": 1}\n')
        Image.new("RGB", (8, 8)).save(d / "samples" / "step_0000001.png")
        for export in ("generator", "generator_best"):
            export_generator(Generator(100, 4, 3, 16), d / export, extra={"step": 1})
    (runs / "test_fd.json").write_text("[]")
    assert gpu_release(["collect", str(runs), "--to", str(tmp_path / "out")]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["gan-best.tar", "gan-final.tar", "runs.tar.gz", "samples.tar", "wgan-gp-best.tar",
                     "wgan-gp-final.tar"]
    with tarfile.open(tmp_path / "out" / "gan-best.tar") as t:
        assert "generator_best/model.safetensors" in t.getnames()
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as t:
        assert {"gan-s1/metrics.jsonl", "test_fd.json", "wgan-gp-s0/generator_best/training_info.json"} <= set(t.getnames())


@pytest.mark.slow
def test_the_three_calls_end_to_end_on_a_cpu(faces):
    """check → measure → train with tiny models: what the GPU session runs, on this CPU."""
    assert prepare(faces) == 0
    env = {**os.environ, "GPU": str(faces / "gpu"), "DEVICE": "cpu", "TINY": "1", "RUNS": str(faces / "runs"),
           "SITE": str(faces / "site"), "TRAIN_MIN": "0.3", "EVAL_EPOCHS": "1", "TIMEOUT_SCALE": "6",
           "THROUGHPUT_STEPS": "4"}
    outs = {}
    for phase in ("check", "measure", "train"):
        out = faces / f"out-{phase}"
        p = subprocess.run([str(ROOT / "scripts" / "gpu_release.sh"), phase], env={**env, "OUT": str(out)},
                           capture_output=True, text=True, timeout=3000)
        assert p.returncode == 0, (phase, p.stdout[-3000:], p.stderr[-2000:])
        outs[phase] = out
    check = (outs["check"] / "progress.log").read_text()
    assert "smoke gan rc 0, smoke wgan-gp rc 0, parity rc 0" in check
    assert json.loads((outs["measure"] / "throughput.json").read_text())["rows"]
    files = sorted(p.name for p in outs["train"].iterdir())
    assert {"gan-best.tar", "gan-final.tar", "wgan-gp-best.tar", "wgan-gp-final.tar", "runs.tar.gz", "samples.tar",
            "progress.log"} <= set(files) and len(files) <= 8
    scores = json.loads((faces / "runs" / "test_fd.json").read_text())
    assert {(r["model"], r["seed"]) for r in scores} == {(m, s) for m in ("gan", "wgan-gp") for s in (0, 1, 2)}
    assert all(r["fd_test"] > 0 for r in scores)


def test_the_graph_step_is_kept_only_where_it_ran_replayed_exactly_and_was_faster(tmp_path):
    choice, parity, speed = tmp_path / "impl.json", tmp_path / "parity.json", tmp_path / "throughput.json"

    def rows(ok_gan, ok_wgan):
        def model(ok):
            return {"variants": {"cuda-bf16-seed1": {"ok": True}, "cuda-bf16-graphnocap": {"ok": True},
                                 "cuda-bf16-graph vs cuda-bf16-graphnocap": {"ok": ok}}}
        return json.dumps({"models": {"gan": model(ok_gan), "wgan-gp": model(ok_wgan)}})

    parity.write_text(rows(True, False))
    assert gpu_release(["impl", "--out", str(choice), "--smoke", "0,0", "--parity", str(parity)]) == 0
    assert json.loads(choice.read_text()) == {"gan": "graph", "wgan-gp": "eager"}
    choice.unlink()
    parity.write_text(rows(True, True))
    assert gpu_release(["impl", "--out", str(choice), "--smoke", "1,0", "--parity", str(parity)]) == 0
    assert json.loads(choice.read_text()) == {"gan": "eager", "wgan-gp": "graph"}
    speed.write_text(json.dumps({"rows": [{"model": "wgan-gp", "step_impl": "eager", "real_img_per_s": 900},
                                          {"model": "wgan-gp", "step_impl": "graph", "real_img_per_s": 800}]}))
    assert gpu_release(["impl", "--out", str(choice), "--throughput", str(speed)]) == 0
    assert json.loads(choice.read_text()) == {"gan": "eager", "wgan-gp": "eager"}  # the file narrows, never widens
