"""The Explore tab's principal directions (demo.directions): repeatable, and each one moves the
generator's first-block activations along its own principal component.

    pytest tests/test_directions.py          # the shipped generators, a few seconds each
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from animegan.checkpoint import export_generator, load_generator
from animegan.models import Generator
from animegan.sampling import sample_z
from demo.directions import K, find_directions, first_block

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("checkpoints/gan", "checkpoints/wgan-gp")


@pytest.fixture(scope="module")
def shipped():
    """Each shipped generator with its directions, found once for the module."""
    out = {}
    for source in SHIPPED:
        g = load_generator(ROOT / source)
        out[source] = (g, find_directions(g))
    return out


def test_directions_are_deterministic_for_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    export_generator(Generator(ngf=8), tmp_path / "g")
    a, b = find_directions(load_generator(tmp_path / "g")), find_directions(load_generator(tmp_path / "g"))
    assert a.steps.shape == (K, 100) and a.components.shape == (K, 8 * 8 * 4 * 4)
    for field in ("steps", "components", "mean", "sigma", "explained"):
        assert np.array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(b, field))), field
    torch.manual_seed(1)
    other = find_directions(Generator(ngf=8).eval())
    assert not np.allclose(a.components, other.components), "other weights, other directions"


@pytest.mark.parametrize("source", SHIPPED)
def test_moving_along_direction_i_changes_activations_mainly_along_component_i(shipped, source):
    g, dirs = shipped[source]
    z = sample_z(32, g.z_dim, seed=123)  # other latents than the ones PCA saw
    base = dirs.coordinates(first_block(g, z))
    for i in range(K):
        change = dirs.coordinates(first_block(g, z + 2.0 * dirs.steps[i])) - base  # B×K, in σ
        share = (change[:, i] ** 2).sum() / (change ** 2).sum()
        assert share > 0.8, f"direction {i + 1} moves component {i + 1} by only {share:.0%} of its change"
        assert 1.5 < np.abs(change[:, i]).mean() < 2.5, "a +2σ step moves its own coordinate by about 2σ"


@pytest.mark.slow
def test_the_figure_command_draws_both_models(tmp_path):
    out = tmp_path / "directions.png"
    r = subprocess.run([sys.executable, "-m", "demo.directions", "--figure", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from PIL import Image
    assert Image.open(out).size[0] > 1000
