"""The shipped generators: present, small, loadable with no flags, deterministic per seed."""
import json
from pathlib import Path

import pytest
import torch

from animegan.checkpoint import load_generator
from animegan.sampling import sample_z, z_from_seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["gan", "wgan-gp"])
def test_shipped_generator(name):
    d = ROOT / "checkpoints" / name
    for f in ("config.json", "model.safetensors", "README.md", "metrics.json"):
        assert (d / f).is_file(), f"checkpoints/{name}/{f} is missing"
    assert (d / "model.safetensors").stat().st_size < 20 * 2**20
    g = load_generator(d)
    assert not g.training
    z = torch.stack([z_from_seed(s, g.z_dim) for s in (0, 1, 2)])
    with torch.inference_mode():
        a, b = g(z), g(z)
        c = g(sample_z(3, g.z_dim, seed=1))
    assert a.shape == (3, 3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)  # same seed, same image
    assert not torch.equal(a[0], a[1])  # different seeds differ
    assert not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1  # not a blank image
    m = json.loads((d / "metrics.json").read_text())
    assert m["name"] == name and m["metrics"]["fid"] > 0 and m["real_vs_real"]["fid"] >= 0
    card = (d / "README.md").read_text()
    assert card.startswith("---\nlicense: mit") and "| real-vs-real |" in card
