"""scripts/cards.py publish-metrics and model-card: scores travel with the hash of their weights."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from animegan.checkpoint import export_generator, weights_sha256
from animegan.models import Generator
from eval.schema import Metric, Report, Row

ROOT = Path(__file__).resolve().parents[1]


def release(*args):
    p = subprocess.run([sys.executable, "scripts/cards.py", *map(str, args)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-800:]
    return p.stdout


def row(name, source, fid, sha=None, kind="generator"):
    return Row(name, kind, str(source), 20, {"fid": fid, "fid_std": 1.5, "vendi": 12.0, "ct": 8.2},
               weights_sha256=sha)


def test_publish_metrics_stamps_the_weights_and_model_card_reads_them(tmp_path):
    torch.manual_seed(0)
    ship, other = tmp_path / "ship", tmp_path / "other"
    export_generator(Generator(ngf=8), ship / "gan")
    export_generator(Generator(ngf=8), ship / "wgan-gp")
    torch.manual_seed(1)
    export_generator(Generator(ngf=8), other / "wgan-gp")  # evaluated weights ≠ shipped ones
    fid = Metric("fid", "FID", "FID ↓", "lower", "{:.2f}", "Fréchet distance")
    report = Report(protocol={"features": "effnet-lite0", "n": 20, "seed": 0, "real_split": "A/B",
                              "preprocess": "RGB", "rulers": ["effnet"], "spread": "20 paired rounds", "ct_cells": 5},
                    real={"source": "data/val.tar", "exclude": ["data/val1000.zip"]},
                    models=[row("gan", ship / "gan", 50.0, weights_sha256(ship / "gan")),
                            row("wgan-gp", other / "wgan-gp", 40.0, weights_sha256(other / "wgan-gp"))],
                    baseline=Row("real-vs-real", "real split", "x", 20, {"fid": 5.0, "fid_std": 0.5, "vendi": 15.0,
                                                                        "ct": 0.3}),
                    ceiling=row("random-init", "seed 0", 300.0, kind="ceiling"),
                    rulers={"effnet": {"identity": {}, "sees": "ImageNet features", "metrics": [fid._asdict()]}})
    report.models[0].selection = {"source": "data/select.tar", "n": 30, "overlap": 7}
    report.save(tmp_path / "report.json")
    out = release("publish-metrics", tmp_path / "report.json", "--to", ship)
    m = json.loads((ship / "gan" / "metrics.json").read_text())
    assert m["weights_sha256"] == weights_sha256(ship / "gan") and m["metrics"]["fid"] == 50.0
    assert "minus the images of data/val1000.zip" in m["protocol"] and m["random_init"]["fid"] == 300.0
    assert not (ship / "wgan-gp" / "metrics.json").exists() and "skipped" in out
    assert Report.load(ship / "report.json").models[0].name == "gan"  # the demo reads the whole report

    (ship / "gan" / "README.md").write_text("# card\n\nkept\n\n## Evaluation\n\nold numbers\n")
    release("model-card", ship / "gan")
    card = (ship / "gan" / "README.md").read_text()
    assert card.startswith("# card\n\nkept\n") and "old numbers" not in card
    assert "| gan | 20 | 50.00 ± 1.50 |" in card and "| real-vs-real | 20 | 5.00 ± 0.50 |" in card
    assert "| random-init | 20 | 300.00 ± 1.50 |" in card
    assert "About 12 distinct faces per 20 samples" in card and "C_T = +8.2 — underfitting" in card
    assert "**7 of the 40 real images used here are among the 30 this generator was selected on**" in card
