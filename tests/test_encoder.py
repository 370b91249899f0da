"""The anime encoder (animegan.encoder), its registered extractor and the `anime` ruler.

Nothing here needs the shipped weights: a tiny encoder is trained for a few steps into a temporary
folder and loaded through the same code path the shipped one is.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from animegan import encoder as enc
from animegan import features
from animegan.data import load_images

TINY = enc.EncoderConfig(stem=8, widths=(8, 16, 16, 32), head_hidden=32, head_dim=16)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces-96.tar"


def _faces(d: Path, n: int = 48, seed: int = 0) -> Path:
    """n random 64×64 mosaics of 4×4-pixel colour blocks (sharp edges for blur to remove), a stand-in for faces."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        small.resize((64, 64), Image.NEAREST).save(d / f"{i:03d}.png")
    return d


def _settings(data, out, **kw) -> enc.TrainSettings:
    kw = {"epochs": 6, "batch_size": 16, "precision": "fp32", "encoder": TINY, "progress": False, **kw}
    return enc.TrainSettings(str(data), str(out), **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, weights folder, training_info) of a tiny encoder trained for 6 short epochs (batch 16: at
    batch 8 the loss of 48 mosaics hovers at chance, ln 15, and a falling loss is luck)."""
    root = tmp_path_factory.mktemp("anime_encoder")
    data = _faces(root / "train")
    info = enc.train(_settings(data, root / "enc"))
    return data, root / "enc", info


# ---- objective and augmentations -------------------------------------------------------------

def test_nt_xent_matches_hand_computed_value():
    # views v0=(1,0), v1=(0,1) and their partners v2=(1,1)/√2, v3=(1,−1)/√2; τ = 0.5
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # normalised inside the loss
    tau, c = 0.5, 1 / math.sqrt(2)
    e = lambda s: math.exp(s / tau)  # noqa: E731
    rows = [  # -log(e^{sim(partner)} / Σ_{others} e^{sim})
        -math.log(e(c) / (e(0) + e(c) + e(c))),     # v0: v1 0, v2 c (partner), v3 c
        -math.log(e(-c) / (e(0) + e(c) + e(-c))),   # v1: v0 0, v2 c, v3 −c (partner)
        -math.log(e(c) / (e(c) + e(c) + e(0))),     # v2: v0 c (partner), v1 c, v3 0
        -math.log(e(-c) / (e(c) + e(-c) + e(0))),   # v3: v0 c, v1 −c (partner), v2 0
    ]
    loss, _ = enc.nt_xent(z1, z2, tau)
    assert loss.item() == pytest.approx(sum(rows) / 4, rel=1e-6)
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    loss_same, acc = enc.nt_xent(z, z, 0.1)
    assert acc.item() == 1.0 and loss_same.item() < loss.item()


def test_augment_never_changes_colour():
    g = torch.Generator().manual_seed(0)
    colour = torch.tensor([200.0, 30.0, 90.0]).view(1, 3, 1, 1)
    flat = enc.to_unit(colour.expand(16, 3, 64, 64).clone())
    for aug in (enc.AugmentConfig(), enc.VALIDATION_AUGMENT):
        for _ in range(3):  # resized crops, shifts past the border, flips: a uniform image stays that colour
            out = enc.augment(flat, g, aug)
            assert out.shape == flat.shape
            assert (out - flat).abs().max().item() < 1e-5
    pixels = torch.randint(0, 256, (6, 3, 64, 64), generator=g).float()
    x = enc.to_unit(pixels)
    out = enc.augment(x, g, enc.VALIDATION_AUGMENT)  # bilinear weights sum to 1: convex mixes of a channel's pixels
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    assert (out >= lo - 1e-5).all() and (out <= hi + 1e-5).all()
    # the default (whole-pixel shifts, flips) moves pixels without interpolating: every value is an input value
    moved = enc.augment(pixels, g)
    assert (moved - moved.round()).abs().max().item() < 1e-3 and not torch.equal(moved, pixels)
    full = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), shift=0.0)
    assert torch.allclose(enc.augment(x, g, enc.AugmentConfig(**full, flip=0.0)), x, atol=1e-5)
    assert torch.allclose(enc.augment(x, g, enc.AugmentConfig(**full, flip=1.0)), x.flip(-1), atol=1e-5)


# ---- training ----------------------------------------------------------------------------------

def test_training_lowers_loss_and_writes_loadable_files(trained):
    _, out, info = trained
    losses = [row["loss"] for row in info["history"]]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.25, losses
    assert np.mean(losses[3:]) < np.mean(losses[:3])
    assert info["complete"] and info["steps"] == info["steps_total"] == 6 * (48 // 16)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "training_info.json"]
    on_disk = json.loads((out / "training_info.json").read_text())
    assert on_disk["data"]["images"] == 48 and on_disk["seed"] == 0 and on_disk["final_loss"] == losses[-1]
    model = enc.load_encoder(out)  # config.json alone rebuilds the architecture
    assert model.cfg == TINY and not model.training
    assert enc.main(["train", "--data", info["data"]["source"], "--out", str(out)]) == 2  # never clobbers weights
    again = enc.train(_settings(info["data"]["source"], out))  # the same training, already complete: nothing to do
    assert again["complete"] and again["history"] == info["history"]


def test_resume_continues_where_it_stopped(trained, tmp_path):
    data, full, _ = trained
    out = tmp_path / "enc"
    part = enc.train(_settings(data, out, stop_at=7))  # mid-epoch
    assert not part["complete"] and part["steps"] == 7
    assert (out / enc.STATE).exists() and enc.load_encoder(out) is not None  # usable weights while unfinished
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))  # atomic writes leave no temporary files
    done = enc.train(_settings(data, out))
    assert done["complete"] and not (out / enc.STATE).exists()
    a, b = enc.load_encoder(full).state_dict(), enc.load_encoder(out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the interrupted run ends where the uninterrupted one does
    assert [r["loss"] for r in done["history"]] == [r["loss"] for r in trained[2]["history"]]
    other = tmp_path / "other"
    enc.train(_settings(data, other, stop_at=2))
    with pytest.raises(enc.EncoderError, match="other settings"):
        enc.train(_settings(data, other, seed=1))


def test_refuses_held_out_split(tmp_path, capsys):
    for name in ("select.tar", "test.tar", "val.zip"):
        assert enc.main(["train", "--data", str(tmp_path / name), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "held-out" in err and "\n" not in err


# ---- the registered extractor ------------------------------------------------------------------

def test_extractor_returns_deterministic_fp32_features(trained):
    data, out, _ = trained
    ext = features.get_extractor("anime", out)
    assert features.resolve_name("anime") == features.ANIME == ext.get_name()
    images = load_images(data).images
    f1 = features.extract(images, ext, batch_size=16)
    f2 = features.extract(images, ext, batch_size=5)  # eval mode: a row does not depend on its batch
    assert f1.shape == (48, TINY.dim) and f1.dtype == torch.float32
    assert torch.allclose(f1, f2, atol=1e-5, rtol=1e-5)
    assert torch.equal(f1, features.extract(images, ext, batch_size=16))
    big = TF.resize(images, [96, 96], antialias=True)  # other sizes are resized to 64×64 first
    assert features.extract(big, ext).shape == f1.shape
    with pytest.raises(ValueError, match="uint8"):
        ext(images.float())


def test_identity_changes_with_the_weights(trained, tmp_path):
    _, out, _ = trained
    first = features.identity("anime", out)
    assert first == features.identity("anime-encoder", out)
    assert first["network"]["config"]["widths"] == list(TINY.widths) and first["network"]["input"] == enc.INPUT
    model = enc.load_encoder(out)
    with torch.no_grad():
        model.stem[0].weight.mul_(1.01)
    enc.save_encoder(model, tmp_path / "other")
    assert features.identity("anime", tmp_path / "other")["network"]["weights_sha256"] != \
        first["network"]["weights_sha256"]
    enc.save_encoder(model, tmp_path / "same")  # the same weights elsewhere: the same identity
    enc.save_encoder(enc.load_encoder(out), tmp_path / "same")  # rewritten in place: the hash follows the file
    assert features.identity("anime", tmp_path / "same")["network"] == first["network"]


def test_missing_weights_is_one_line_feature_error(tmp_path):
    for path in (tmp_path / "nothing", tmp_path / "nothing" / "model.safetensors"):
        for call in (lambda: features.build_extractor("anime", path), lambda: features.identity("anime", path)):
            with pytest.raises(features.FeatureError) as e:
                call()
            msg = str(e.value)
            assert "\n" not in msg and "python -m animegan.encoder train" in msg
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "noconfig" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(features.FeatureError, match="config.json"):
        features.build_extractor("anime", tmp_path / "noconfig")


# ---- the ruler -----------------------------------------------------------------------------------

def test_anime_ruler_scores(trained):
    from eval.rulers import RULERS
    from eval.rulers.anime import AnimeRuler

    data, out, _ = trained
    assert RULERS["anime"] is AnimeRuler and AnimeRuler.cache_real
    ruler = AnimeRuler(weights_path=out)
    images = load_images(data).images
    ref = ruler.describe(images)
    assert ref.shape == (48, TINY.dim) and ref.dtype == torch.float32
    assert abs(ruler.score(ref, ref)["fd_anime"]) < 1e-6
    floor = ruler.score(ref[:24], ref[24:])["fd_anime"]
    blurred = ruler.describe(TF.gaussian_blur(images[24:], kernel_size=7, sigma=1.5))
    fd_blur = ruler.score(ref[:24], blurred)["fd_anime"]
    assert fd_blur > 2 * floor, (fd_blur, floor)
    assert [m.key for m in ruler.metrics] == ["fd_anime"]
    assert ruler.identity()["network"]["weights_sha256"] == \
        features.identity("anime", out)["network"]["weights_sha256"]
    rounds = ruler.paired(ref, [ref, blurred.repeat(2, 1)], rounds=3)
    assert rounds.shape == (3, 2, 1)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason="needs the shared anime-faces archive")
def test_validate_on_real_faces(trained, tmp_path):
    """`validate` end to end on real faces (a tiny encoder: only the machinery and the direction of the
    numbers are checked here; the shipped encoder's numbers are in its card)."""
    _, out, _ = trained
    res = enc.validate(out, str(SHARED_DATA), n=200)
    for net in ("trained", "random init"):
        r = res[net]
        assert 0 <= r["retrieval"]["top1"] <= r["retrieval"]["top5"] <= 1
        assert r["retrieval"]["top1"] > 10 * r["retrieval"]["chance_top1"]
        fd = r["fd"]
        assert list(fd) == ["floor (A vs B)", "blur σ=1px", "noise σ=0.05", "saturation ×0.5"]
        assert all(math.isfinite(v) and v > -1e-6 for v in fd.values())
        assert fd["saturation ×0.5"] > fd["floor (A vs B)"]  # the one fault even a tiny untrained net must see
