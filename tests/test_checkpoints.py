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


def test_export_over_a_card_keeps_it_only_for_the_same_weights(tmp_path):
    """Numbers beside weights must describe those weights: a new export drops them."""
    from animegan.checkpoint import export_generator, weights_sha256
    from animegan.models import Generator
    torch.manual_seed(0)
    g = Generator(ngf=4, img_size=16)
    out = export_generator(g, tmp_path / "gen")
    for name in ("metrics.json", "samples.png", "README.md", "training_info.json", "notes.txt"):
        (out / name).write_text(json.dumps({"weights_sha256": weights_sha256(out)}))
    export_generator(g, out)  # the same weights again: everything stays
    assert all("weights_sha256" in (out / n).read_text()
               for n in ("metrics.json", "samples.png", "README.md", "training_info.json"))
    with torch.no_grad():
        g.net[0].weight.add_(1.0)
    export_generator(g, out)
    assert not (out / "metrics.json").exists() and not (out / "samples.png").exists()
    assert not (out / "training_info.json").exists()  # its selection record described the old weights
    assert "weights_sha256" not in (out / "README.md").read_text()  # huggingface_hub's generic card
    assert (out / "notes.txt").exists()  # not ours to judge
