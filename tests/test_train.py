import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from animegan import checkpoint as ckpt
from animegan.checkpoint import load_generator, list_checkpoints, load_latest_state
from animegan.train import main
from animegan.config import build_parser

TINY = ["--img-size", "16", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--threads", "1",
        "--log-every", "1", "--sample-every", "2", "--precision", "fp32"]


def train(data, out, *extra):
    return main(["--data", str(data), "--out", str(out), *TINY, *extra])


@pytest.mark.parametrize("model", ["gan", "wgan-gp"])
def test_smoke_run_writes_every_artifact(tiny_images, tmp_path, model):
    out = tmp_path / model
    assert train(tiny_images, out, "--model", model, "--steps", "4", "--ckpt-every", "2") == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == model and cfg["version"] and cfg["ema_decay"] == 0.999 and cfg["images"] == 24
    assert cfg["critic_norm"] == ("batch" if model == "gan" else "layer")
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    keys = {"d_real", "d_fake"} if model == "gan" else {"wasserstein", "gp"}
    for r in rows:
        assert {"step", "epoch", "images_seen", "d_loss", "g_loss", "img_per_s"} | keys <= set(r)
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))
    n_critic = 1 if model == "gan" else 5
    assert rows[-1]["images_seen"] == 4 * 4 * n_critic
    for name in ("step_0000002.png", "step_0000004.png", "latest.png"):
        with Image.open(out / "samples" / name) as im:
            assert im.size == (4 * 16 + 5 * 2,) * 2  # 4×4 grid of 16 px with 2 px padding
    assert (out / "loss.png").stat().st_size > 1000
    assert [p.name for p in list_checkpoints(out)] == ["step_0000002.pt", "step_0000004.pt"]
    g = load_generator(out / "generator")
    assert g(torch.randn(2, 100)).shape == (2, 3, 16, 16)
    info = json.loads((out / "generator" / "training_info.json").read_text())
    assert info["step"] == 4


def _weights(run):
    state, _ = load_latest_state(run)
    return state


def test_resume_is_equivalent_to_a_straight_run(tiny_images, tmp_path):
    assert train(tiny_images, tmp_path / "a", "--model", "wgan-gp", "--steps", "6", "--n-critic", "2") == 0
    assert train(tiny_images, tmp_path / "b", "--model", "wgan-gp", "--steps", "3", "--n-critic", "2") == 0
    assert train(tiny_images, tmp_path / "b", "--steps", "6") == 0  # resumes at 3, continues to 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a["step"] == b["step"] == 6 and a["batches"] == b["batches"] == 12
    for part in ("G", "D", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    ra = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k not in ("img_per_s", "train_seconds", "cpu_seconds")}  # noqa
                          for r in rows]
    assert strip(ra) == strip(rb)


def test_gan_resume_equivalence(tiny_images, tmp_path):
    assert train(tiny_images, tmp_path / "a", "--steps", "4") == 0
    assert train(tiny_images, tmp_path / "b", "--steps", "2") == 0
    assert train(tiny_images, tmp_path / "b", "--steps", "4") == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    assert torch.equal(a["opt_d"]["state"][0]["exp_avg"], b["opt_d"]["state"][0]["exp_avg"])
    assert all(torch.equal(a["D"][k], b["D"][k]) for k in a["D"])  # BatchNorm running stats included


def test_interrupted_checkpoint_write_keeps_the_last_good_one(tiny_images, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "2") == 0
    good = list_checkpoints(out)[-1]
    before = good.read_bytes()

    def dying_save(obj, f, *a, **k):  # writes half a file, then the process "dies"
        with open(f, "wb") as fh:
            fh.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_state(out, 3, {"x": torch.zeros(1)})
    monkeypatch.undo()
    assert list_checkpoints(out) == [good] and good.read_bytes() == before
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]

    # A newest checkpoint truncated by other means (disk full, copy) is skipped on resume.
    bad = ckpt.checkpoint_path(out, 9)
    bad.write_bytes(before[:1000])
    state, path = load_latest_state(out)
    assert path == good and state["step"] == 2


def test_bad_input_exits_2_with_one_line(tmp_path, tiny_images, capsys):
    assert train(tmp_path / "missing", tmp_path / "r", "--steps", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert train(tmp_path / "empty", tmp_path / "r", "--steps", "1") == 2
    assert "no image files" in capsys.readouterr().err
    assert train(tiny_images, tmp_path / "r", "--steps", "1", "--batch-size", "0") == 2
    assert train(tiny_images, tmp_path / "r", "--steps", "1", "--batch-size", "64") == 2
    assert "fewer than one batch" in capsys.readouterr().err
    for flags, says in ((("--img-size", "48"), "power of two"), (("--eval-n", "1"), "--eval-n must be ≥ 2")):
        assert train(tiny_images, tmp_path / "r", "--steps", "1", *flags) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and says in err and "\n" not in err
    (tmp_path / "one").mkdir()
    shutil.copy(next(p for p in Path(tiny_images).iterdir() if p.is_file()), tmp_path / "one")
    assert train(tiny_images, tmp_path / "r", "--steps", "1", "--eval-every", "1", "--eval-real", str(tmp_path / "one")) == 2
    assert "at least 2 readable images" in capsys.readouterr().err


def test_resume_refuses_a_different_model_and_no_resume_refuses_overwrite(tiny_images, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "1") == 0
    capsys.readouterr()
    assert train(tiny_images, out, "--steps", "2", "--model", "wgan-gp") == 2
    err = capsys.readouterr().err
    assert "model: run has 'gan', command asks 'wgan-gp'" in err
    assert train(tiny_images, out, "--steps", "2", "--ngf", "8") == 2
    assert "ngf" in capsys.readouterr().err
    assert train(tiny_images, out, "--steps", "2", "--no-resume") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert len(list_checkpoints(out)) == 1  # nothing was lost
    assert train(tiny_images, out, "--steps", "2", "--no-resume", "--overwrite", "--model", "wgan-gp") == 0
    assert json.loads((out / "config.json").read_text())["model"] == "wgan-gp"


def test_help_documents_every_flag_with_default():
    text = " ".join(build_parser().format_help().split())
    for flag in ("--epochs", "--steps", "--batch-size", "--seed", "--device", "--precision", "--n-critic",
                 "--sample-every", "--ckpt-every", "--keep-ckpts", "--no-resume", "--overwrite", "--critic-norm",
                 "--ema-decay", "--eval-every", "--max-minutes"):
        assert flag in text
    assert "gan: batch, wgan-gp: layer" in text and "gan: 1, wgan-gp: 5" in text


def test_keep_last_k_and_epochs(tiny_images, tmp_path):
    out = tmp_path / "run"
    # 24 images / batch 4 = 6 steps per epoch for gan
    assert train(tiny_images, out, "--epochs", "1", "--ckpt-every", "1", "--keep-ckpts", "2") == 0
    assert [p.name for p in list_checkpoints(out)] == ["step_0000005.pt", "step_0000006.pt"]


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tiny_images, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "animegan.train", "--data", str(tiny_images), "--out", str(out),
                          *TINY, "--steps", "100000", "--ckpt-every", "100000"], env=env,
                         stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-500:]
    assert "stopped at step" in err and "Traceback" not in err
    state, _ = load_latest_state(out)
    assert state["step"] >= 1
    assert (out / "generator" / "model.safetensors").exists()


def test_quick_fd_during_training_keeps_the_best_export(tiny_images, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "4", "--eval-every", "2", "--eval-real", str(tiny_images),
                 "--eval-n", "12") == 0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    fds = [r for r in rows if "fd" in r]
    assert [r["step"] for r in fds] == [2, 4] and all(r["fd"] > 0 and r["fd_n"] == 12 for r in fds)
    best = json.loads((out / "generator_best" / "training_info.json").read_text())
    assert best["fd_effnet_lite0"] == pytest.approx(min(r["fd"] for r in fds), abs=1e-3)
    assert load_generator(out / "generator_best").z_dim == 100
    assert best["selection"]["n"] == 12 and len(best["selection"]["image_ids"]) == 12


def test_time_budget_stop_evaluates_the_last_step(tiny_images, tmp_path):
    """A run ended by --max-minutes between evaluations scores its last weights too (they may be the best)."""
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "50", "--max-minutes", "0.0001", "--eval-every", "40",
                 "--eval-real", str(tiny_images), "--eval-n", "12") == 0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    last = max(r["step"] for r in rows if "step" in r)
    assert 1 <= last < 40
    assert [r["step"] for r in rows if "fd" in r] == [last]
    best = json.loads((out / "generator_best" / "training_info.json").read_text())
    assert best["step"] == last and best["fd_effnet_lite0"] > 0


def test_eval_every_needs_real_images(tiny_images, tmp_path, capsys):
    assert train(tiny_images, tmp_path / "r", "--steps", "2", "--eval-every", "1") == 2
    assert "--eval-real" in capsys.readouterr().err


def test_export_cli(tiny_images, tmp_path):
    from animegan.export import main as export_main
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "2") == 0
    assert export_main([str(out), "--to", str(tmp_path / "exp")]) == 0
    a, b = load_generator(out / "generator"), load_generator(tmp_path / "exp")
    z = torch.randn(3, 100)
    assert torch.allclose(a(z), b(z), atol=1e-4)  # both recalibrate BatchNorm from the same noise; rounding differs
    assert export_main([str(tmp_path / "nothing"), "--to", str(tmp_path / "x")]) == 2


def test_export_best_carries_full_training_info(tiny_images, tmp_path):
    from animegan.export import main as export_main
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "2", "--eval-every", "1", "--eval-real", str(tiny_images),
                 "--eval-n", "12", "--ckpt-every", "1") == 0
    assert export_main([str(out), "--best", "--to", str(tmp_path / "best")]) == 0
    info = json.loads((tmp_path / "best" / "training_info.json").read_text())
    assert {"step", "epoch", "train_seconds", "config", "fd_effnet_lite0"} <= set(info)
    assert info["config"]["model"] == "gan"


def test_ema_matches_torch_averaged_model():
    """Our host-counter EMA does exactly what AveragedModel with the same warm-up decay does."""
    from torch.optim.swa_utils import AveragedModel
    from animegan.models import Generator
    from animegan.trainer import EMA, ema_decay_at

    def multi_avg(ema_params, params, n):
        torch._foreach_lerp_(ema_params, params, 1 - ema_decay_at(0.9, int(n)))

    torch.manual_seed(0)
    g = Generator(8, 8, 3, 16)
    ours, ref = EMA(g, 0.9), AveragedModel(g, multi_avg_fn=multi_avg, use_buffers=False)
    for _ in range(5):
        with torch.no_grad():
            for p in g.parameters():
                p.add_(torch.randn_like(p))
        g.train()(torch.randn(4, 8))  # moves the BatchNorm running statistics
        ours.update_parameters(g)
        ref.update_parameters(g)
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and int(a["n_averaged"]) == 5
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["module.net.0.weight"], g.state_dict()["net.0.weight"])  # an average, not a copy


# ---- regressions: each of these failed before the fix it names -----------------------------------

def test_epochs_are_exact_with_several_critic_steps(tiny_images, tmp_path):
    """24 images / batch 4 = 6 batches per epoch; 5 batches per step. --epochs 2 must show D two full
    epochs (3 steps = 15 batches), not the 2 steps (10 batches, 1.67 epochs) a floored count gives."""
    out = tmp_path / "run"
    assert train(tiny_images, out, "--model", "wgan-gp", "--epochs", "2") == 0
    state, _ = load_latest_state(out)
    assert state["step"] == 3 and 12 <= state["batches"] < 12 + 5 and state["epoch"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["total_steps"] == 3 and cfg["epochs_at_end"] == 2.5


def test_overwrite_clears_every_run_file(tiny_images, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "1") == 0
    (out / "snapshots").mkdir(exist_ok=True)  # what --snapshot-every writes
    assert train(tiny_images, out, "--steps", "1", "--no-resume", "--overwrite") == 0
    assert not (out / "snapshots").exists()


@pytest.mark.parametrize("ckpt_every", ["500", "1"])  # "1": the loop already checkpointed the last step
def test_rerunning_a_finished_budget_run_scores_nothing_twice(tiny_images, tmp_path, ckpt_every):
    out = tmp_path / "run"
    args = ("--steps", "50", "--max-minutes", "0.0001", "--eval-every", "40", "--eval-real", str(tiny_images),
            "--eval-n", "12", "--ckpt-every", ckpt_every)
    assert train(tiny_images, out, *args) == 0
    state, _ = load_latest_state(out)
    assert state["evaluated_step"] == state["step"]  # the checkpoint knows the budget's last FD was taken
    before = (out / "metrics.jsonl").read_text()
    assert train(tiny_images, out, *args) == 0
    assert (out / "metrics.jsonl").read_text() == before


def test_a_resumed_run_never_replaces_a_better_best_export(tiny_images, tmp_path):
    """A crash after generator_best/ was written but before the next checkpoint: the resumed run
    re-scores steps whose export on disk is better; the better one must stay."""
    out = tmp_path / "run"
    args = ("--eval-every", "2", "--eval-real", str(tiny_images), "--eval-n", "12", "--ckpt-every", "2")
    assert train(tiny_images, out, "--steps", "2", *args) == 0
    info_file = out / "generator_best" / "training_info.json"
    info = json.loads(info_file.read_text())
    info.update(fd_effnet_lite0=1e-6, step=999)  # stands for a better export written after the checkpoint
    info_file.write_text(json.dumps(info))
    state, path = load_latest_state(out)  # a checkpoint that remembers a worse best
    ckpt.save_state(out, state["step"], {**state, "best": {"fd": 1e9, "step": 0}})
    assert train(tiny_images, out, "--steps", "4", *args) == 0
    assert json.loads(info_file.read_text())["step"] == 999


def test_a_bug_deep_in_training_keeps_its_traceback(tiny_images, tmp_path, monkeypatch):
    """Only input errors are reported as one line with exit code 2; a ValueError from a bug is not input."""
    from animegan import trainer

    def broken_step(self):
        raise ValueError("a bug, not bad input")
    monkeypatch.setattr(trainer.Trainer, "train_step", broken_step)
    with pytest.raises(ValueError, match="a bug"):
        train(tiny_images, tmp_path / "run", "--steps", "2")


def test_progress_without_a_terminal_is_plain_lines(tiny_images, tmp_path, capsys):
    assert train(tiny_images, tmp_path / "run", "--steps", "3") == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "done: 3 steps" in err


def test_snapshots_at_their_cadence_and_at_the_end(tiny_images, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_images, out, "--steps", "5", "--snapshot-every", "2") == 0
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["step_0000002", "step_0000004", "step_0000005"]  # the last step too, for the curve's end
    info = json.loads((out / "snapshots" / "step_0000004" / "training_info.json").read_text())
    assert info["step"] == 4 and info["images_seen"] == 4 * 4 and info["cpu_seconds"] > 0
    g = load_generator(out / "snapshots" / "step_0000004")
    assert g(torch.randn(1, 100)).shape == (1, 3, 16, 16)


def test_the_maintenance_gate():
    from animegan.config import TrainConfig
    from animegan.train import due
    cfg = TrainConfig(log_every=2, sample_every=3, eval_every=4, snapshot_every=0, ckpt_every=4)
    assert due(cfg, 1, None, True) == ["sample"]  # the first grid
    assert due(cfg, 4, None, True) == ["log", "eval", "ckpt"]  # the checkpoint after the FD it records
    assert due(cfg, 4, None, False) == ["log", "ckpt"]  # no quick FD configured
    assert due(cfg, 5, None, True) == []
    assert due(cfg, 5, "done", True) == ["log", "sample", "eval", "ckpt"]  # the end runs every job once
    assert due(cfg, 5, "budget", True) == ["log", "sample", "eval", "ckpt"]
    assert due(cfg, 5, "signal", True) == ["log", "sample", "ckpt"]  # Ctrl-C does not wait for an FD
