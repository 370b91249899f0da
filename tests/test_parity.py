"""The parity check's CPU half (animegan.parity), and the fast step's fallbacks and checkpoint format."""
import json

import pytest
import torch

from animegan.config import resolve
from animegan.data import load_images
from animegan.faststep import GraphStep, make_capturable, portable_optimizer_state, resolve_step_impl
from animegan.trainer import Trainer
from animegan.parity import check_parity
from animegan.parity import main as parity

TINY = {"img_size": 16, "ngf": 4, "ndf": 4}


def _trainer(images, model="gan", **over):
    cfg = resolve({"model": model, "data": "-", "out": "-", "steps": 4, "img_size": 16, "ngf": 4, "ndf": 4,
                   "batch_size": 4, "precision": "fp32", **over})
    return Trainer(cfg, load_images(images, 16), torch.device("cpu"))


def test_parity_cpu_half_passes_for_the_static_buffer_path_and_bf16(tiny_images, tmp_path):
    """The graph step's static-buffer path (no capture on a CPU) must be bit-identical to the eager
    step; bf16 autocast must stay within its arithmetic's tolerance."""
    out = tmp_path / "parity.json"
    rc = parity(["--data", str(tiny_images), "--tiny", "--steps", "4", "--no-seed-twin",
                 "--variants", "cpu-fp32-graph,cpu-bf16,cpu-fp32-plainio,cpu-bf16-graph@cpu-bf16", "--json", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0
    for model in ("gan", "wgan-gp"):
        rows = report["models"][model]["variants"]
        assert rows["cpu-fp32-graph"]["checks"]["bit_identical"] is True
        assert rows["cpu-fp32-graph"]["step_impl"] == "graph path without capture"
        assert rows["cpu-fp32-plainio"]["checks"]["bit_identical"] is True  # the CPU-side I/O is the same arithmetic
        assert 0 < rows["cpu-bf16"]["step1_rel"] <= rows["cpu-bf16"]["step1_tol"]
        assert rows["cpu-bf16-graph vs cpu-bf16"]["checks"]["bit_identical"] is True  # a variant's own reference
    assert set(report["autocast"]["cpu"]) >= {"batch_norm (train)", "bce_with_logits", "group_norm"}


def test_parity_fails_for_a_run_that_learns_from_other_noise(tiny_images, tmp_path, capsys):
    """A different seed is a different training: the check must say so and exit 1."""
    out = tmp_path / "parity.json"
    rc = parity(["--data", str(tiny_images), "--tiny", "--steps", "4", "--no-seed-twin", "--models", "gan",
                 "--variants", "cpu-fp32-seed3", "--json", str(out)])
    assert rc == 1
    row = json.loads(out.read_text())["models"]["gan"]["variants"]["cpu-fp32-seed3"]
    assert row["checks"]["step1"] is False and row["checks"]["bit_identical"] is False
    assert "FAIL: step1" in capsys.readouterr().out


def test_check_parity_returns_verdicts_and_step_times(tiny_images):
    """The library call a release command makes: per variant a verdict and the two step times."""
    res = check_parity(load_images(tiny_images, 16), "gan", ["cpu-fp32-graph"], 2, twins=[], batch_size=4,
                       overrides=TINY)
    graph = res["variants"]["cpu-fp32-graph"]
    assert graph["ok"] is True and graph["error"] is None and graph["checks"]["impl"] is True
    assert graph["step_ms"] > 0 and graph["reference_step_ms"] == res["runs"]["cpu-fp32"]["step_ms"] > 0
    assert res["ok"] is True and list(res["runs"]) == ["cpu-fp32", "cpu-fp32-graph"]


def test_parity_writes_each_run_as_it_goes_and_survives_a_failing_variant(tiny_images, tmp_path, monkeypatch,
                                                                          capsys):
    """A variant that raises is recorded with its error; the others still run and are compared; the
    JSON is on disk after the first run, so a check cut short keeps what it measured."""
    import animegan.parity as mod
    out, real_train, seen = tmp_path / "parity.json", mod.train, []

    def train(v, *args):
        seen.append((v.name, json.loads(out.read_text()) if out.exists() else None))
        if v.name == "cpu-bf16":
            raise RuntimeError("CUDA error: out of memory\nmore detail")
        return real_train(v, *args)

    monkeypatch.setattr(mod, "train", train)
    rc = parity(["--data", str(tiny_images), "--tiny", "--steps", "2", "--no-seed-twin", "--models", "gan",
                 "--variants", "cpu-bf16,cpu-fp32-graph", "--json", str(out)])
    assert rc == 1
    assert [n for n, _ in seen] == ["cpu-fp32", "cpu-bf16", "cpu-fp32-graph"] and seen[0][1] is None
    assert seen[1][1]["models"]["gan"]["runs"]["cpu-fp32"]["step_ms"] > 0  # written after the reference ran
    assert seen[2][1]["models"]["gan"]["variants"]["cpu-bf16"]["error"]  # and after the failing variant
    report = json.loads(out.read_text())["models"]["gan"]
    bad, good = report["variants"]["cpu-bf16"], report["variants"]["cpu-fp32-graph"]
    assert bad["ok"] is False and bad["error"] == "RuntimeError: CUDA error: out of memory"
    assert good["ok"] is True and good["error"] is None and good["checks"]["bit_identical"] is True
    assert report["ok"] is False and report["runs"]["cpu-bf16"]["error"] == bad["error"]
    assert "cpu-bf16                                 ERROR: RuntimeError" in capsys.readouterr().out


def test_unsupported_fast_steps_fall_back_to_eager_with_the_reason(tiny_images):
    cpu = torch.device("cpu")
    assert resolve_step_impl("graph", cpu, "gan", 1, None) == ("eager", "graph asked for: a CUDA graph needs a CUDA device")
    assert resolve_step_impl("compile", cpu, "gan", 2, None)[0] == "eager"
    assert resolve_step_impl("auto", cpu, "gan", 1, None)[0] in ("eager", "compile")
    t = _trainer(tiny_images, step_impl="graph")
    assert t.step_impl.startswith("eager (graph asked for") and t.fast_step is None
    assert _trainer(tiny_images, "wgan-gp", step_impl="compile").step_impl.startswith("compile (G only")


def test_graph_step_without_capture_resumes_exactly(tiny_images):
    """Static buffers are refilled every step: two steps, a checkpoint, two more equal four straight."""
    a, b = _trainer(tiny_images, "wgan-gp", n_critic=2), _trainer(tiny_images, "wgan-gp", n_critic=2)
    a.fast_step = GraphStep(a, capture=False)
    for _ in range(4):
        a.train_step()
    for _ in range(2):
        b.train_step()
    c = _trainer(tiny_images, "wgan-gp", n_critic=2)
    c.fast_step = GraphStep(c, capture=False)
    c.load_state_dict(b.state_dict())
    for _ in range(2):
        c.train_step()
    for part in ("G", "D"):
        sa, sc = getattr(a, part).state_dict(), getattr(c, part).state_dict()
        assert all(torch.equal(sa[k], sc[k]) for k in sa)


def test_checkpoints_hold_portable_optimizer_state(tiny_images):
    """A capturable optimiser (the graph step's) is saved as an eager one writes it, so the
    checkpoint resumes under any --step-impl and device."""
    t = _trainer(tiny_images)
    t.train_step()
    make_capturable(t.opt_g)
    assert t.opt_g.param_groups[0]["capturable"] is True
    sd = portable_optimizer_state(t.opt_g)
    assert sd["param_groups"][0]["capturable"] is False
    assert all(s["step"].device.type == "cpu" for s in sd["state"].values())
    assert t.opt_g.param_groups[0]["capturable"] is True  # the live optimiser is untouched
    assert t.state_dict()["opt_g"]["param_groups"][0]["capturable"] is False


@pytest.mark.slow
def test_compiled_step_matches_eager_within_fp32_rounding(tiny_images, tmp_path):
    out = tmp_path / "parity.json"
    assert parity(["--data", str(tiny_images), "--tiny", "--steps", "3", "--no-seed-twin", "--models", "gan",
                   "--variants", "cpu-fp32-compile", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["models"]["gan"]["variants"]["cpu-fp32-compile"]
    assert row["step_impl"] == "compile" and row["class"] == "fp32"
