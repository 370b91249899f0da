"""Feature extractors and the real-feature cache (offline)."""
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from animegan import features as F
from animegan.features import EffNetLite0
from animegan.data import image_ids
from eval import cache as fcache
from eval.cache import cached_features
from animegan.features import EFFNET, FeatureError, build_extractor, extract_features
from eval.testing import write_images

# ImageNet-labelled photos that ship inside packages the project requires (gradio, matplotlib).
LABELLED = [("gradio", "media_assets/images/cheetah.jpg", 293), ("gradio", "media_assets/images/cheetah1.jpg", 293),
            ("gradio", "test_data/cheetah2.jpg", 293), ("gradio", "media_assets/images/lion.jpg", 291),
            ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", 652)]  # cheetah, lion, military uniform


@pytest.fixture(scope="module")
def labelled():
    images, labels = [], []
    for pkg, rel, label in LABELLED:
        path = Path(importlib.util.find_spec(pkg).submodule_search_locations[0]) / rel
        if not path.is_file():
            pytest.skip(f"{path} is not installed")
        x = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, size=(224, 224), **EffNetLite0.INTERPOLATION)  # as the extractor does
        x = x.round().clamp(0, 255).to(torch.uint8)
        images += [x, x.flip(-1)]
        labels += [label, label]
    return torch.cat(images), torch.tensor(labels)  # 10×3×224×224 uint8


def log_likelihood(ext, images, labels):
    """Mean log-probability of the true class, top-1 accuracy, and the stem BatchNorm's input variance
    ÷ its stored running variance (median |log| over channels)."""
    seen = []
    hook = ext.model.bn1.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        (logits,) = ext(images)
    hook.remove()
    var = torch.cat(seen).transpose(0, 1).flatten(1).var(1)
    drift = (var / ext.model.bn1.running_var).log().abs().median()
    logp = logits.log_softmax(1)[torch.arange(len(labels)), labels]
    return float(logp.mean()), float((logits.argmax(1) == labels).float().mean()), float(drift)


def variant(arch=F.ARCH, bn_eps=F.BN_EPS, imagenet_scaling=False):
    ext = EffNetLite0(EFFNET, ["logits"])
    ext.model = F.load_effnet_lite0(arch=arch, bn_eps=bn_eps)
    if imagenet_scaling:  # torchvision's mean/std, which the weights were not trained with
        ext.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
        ext.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    return ext


def test_effnet_lite0_is_the_tensorflow_network():
    from timm.layers.conv2d_same import Conv2dSame
    model = F.load_effnet_lite0()
    strided = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5 and all(isinstance(model.get_submodule(n), Conv2dSame) for n in strided)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    assert EffNetLite0.MEAN == (127.0,) * 3 and EffNetLite0.STD == (128.0,) * 3
    assert F.file_sha256(str(F.effnet_weights_path())).startswith("57934424")  # the converter named it by hash


def test_effnet_variant_fits_its_weights_better_than_the_earlier_one(labelled):
    """The earlier variant (symmetric padding, eps 1e-5, torchvision's mean/std) misreads a labelled
    photo and scores the true classes lower; the stem's statistics show the wrong input scale."""
    images, labels = labelled
    ll, top1, drift = log_likelihood(variant(), images, labels)
    assert top1 == 1.0 and drift < 0.5, (ll, top1, drift)
    old = variant(arch="efficientnet_lite0", bn_eps=1e-5, imagenet_scaling=True)
    ll_old, top1_old, drift_old = log_likelihood(old, images, labels)
    assert ll_old < ll - 0.2 and top1_old < 1.0 and drift_old > 1.0, (ll_old, top1_old, drift_old)


@pytest.mark.slow
def test_effnet_variant_fits_its_weights_best(labelled):
    """Each single swap — padding, BatchNorm eps, input scaling — scores the true classes lower."""
    images, labels = labelled
    ll, _, _ = log_likelihood(variant(), images, labels)
    for name, alt in {"symmetric padding": variant(arch="efficientnet_lite0"), "eps 1e-5": variant(bn_eps=1e-5),
                      "ImageNet mean/std": variant(imagenet_scaling=True)}.items():
        ll_alt, _, _ = log_likelihood(alt, images, labels)
        assert ll_alt < ll - 0.03, (name, ll_alt, ll)


def test_effnet_is_a_torch_fidelity_extractor():
    assert FEATURE_EXTRACTORS_REGISTRY[EFFNET] is EffNetLite0
    imgs = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f = extract_features(imgs, EFFNET, batch_size=2)
    assert f.shape == (5, 1280) and f.dtype == torch.float32
    assert torch.allclose(f[:1], extract_features(imgs[:1], EFFNET), atol=1e-4)  # batch-independent (eval BN)
    assert not torch.allclose(f[0], f[1])
    with pytest.raises(ValueError):
        extract_features(imgs.float(), EFFNET)


def test_unknown_extractor_and_bad_inception_weights(tmp_path):
    with pytest.raises(FeatureError, match="unknown feature extractor"):
        build_extractor("no-such-net")
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FeatureError, match="tensor-only"):
        build_extractor("inception", weights_path=bad)
    with pytest.raises(FeatureError, match="not found"):
        build_extractor("inception", weights_path=tmp_path / "missing.pth")


def test_inception_offline_names_both_ways_out(monkeypatch):
    import urllib.error

    import torch_fidelity.feature_extractor_inceptionv3 as inc

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(inc, "load_state_dict_from_url", offline)
    with pytest.raises(FeatureError) as e:
        build_extractor("inception")
    msg = str(e.value)
    assert "\n" not in msg and "--inception-weights" in msg and "effnet-lite0" in msg


def test_real_feature_cache_hits_misses_and_is_atomic(tmp_path):
    data = write_images(tmp_path / "real", 6, seed=0)
    cdir = tmp_path / "cache"
    first = fcache.cached_features(data, n=5, cache_dir=cdir)
    assert not first.from_cache and first.features.shape == (5, 1280)
    files = list(cdir.iterdir())
    assert [f.suffix for f in files] == [".safetensors"]  # no temporary file left behind
    second = fcache.cached_features(data, n=5, cache_dir=cdir)
    assert second.from_cache and second.names == first.names
    assert torch.equal(second.features, first.features)
    assert torch.equal(cached_features(data, n=5, cache_dir=cdir).features, first.features)
    # Anything that changes the features changes the key: n, size, excluded images, a file's mtime.
    assert fcache.cached_features(data, n=4, cache_dir=cdir).key != first.key
    assert fcache.cached_features(data, n=5, size=32, cache_dir=cdir).key != first.key
    ex = fcache.cached_features(data, n=5, cache_dir=cdir, exclude=frozenset(image_ids(first.names[:1])))
    assert ex.key != first.key and ex.excluded == 1 and ex.names == sorted(os.listdir(data))[1:6]
    f0 = sorted((data).iterdir())[0]
    os.utime(f0, (time.time() + 100, time.time() + 100))
    third = fcache.cached_features(data, n=5, cache_dir=cdir)
    assert not third.from_cache and third.key != first.key
    # A corrupt cache entry is ignored (warned) and rewritten.
    (cdir / f"{third.key}.safetensors").write_bytes(b"garbage")
    again = fcache.cached_features(data, n=5, cache_dir=cdir)
    assert not again.from_cache and torch.allclose(again.features, third.features)
    assert fcache.cached_features(data, n=5, cache_dir=cdir).from_cache


@pytest.mark.parametrize("change", ["arch", "eps", "mean", "resize", "torch", "timm", "device", "tf32"])
def test_cache_key_changes_with_everything_that_moves_features(change, tmp_path, monkeypatch):
    data = write_images(tmp_path / "real", 3, seed=0)
    entries = [list(e) for e in fcache.open_image_source(data).entries]
    key = lambda device="cpu": fcache.cache_key(data, entries, 64, F.identity(EFFNET, device=device))  # noqa: E731
    before = key()
    if change == "arch":
        monkeypatch.setattr(F, "ARCH", "efficientnet_lite0")
    elif change == "eps":
        monkeypatch.setattr(F, "BN_EPS", 1e-5)
    elif change == "mean":
        monkeypatch.setattr(EffNetLite0, "MEAN", (123.7, 116.3, 103.5))
    elif change == "resize":
        monkeypatch.setattr(EffNetLite0, "INTERPOLATION", {**EffNetLite0.INTERPOLATION, "antialias": False})
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", "0.0.1")
    elif change == "timm":
        real = F.metadata.version  # only timm's version moves: the key must notice that one
        monkeypatch.setattr(F.metadata, "version", lambda pkg: "0.0.1" if pkg == "timm" else real(pkg))
    elif change == "tf32":
        monkeypatch.setitem(F.PRECISION, "tf32", True)
    assert key("cuda" if change == "device" else "cpu") != before


def test_cache_misses_when_extraction_arithmetic_changes(tmp_path, monkeypatch):
    data = write_images(tmp_path / "real", 3, seed=0)
    first = fcache.cached_features(data, cache_dir=tmp_path / "cache")
    assert fcache.cached_features(data, cache_dir=tmp_path / "cache").from_cache
    monkeypatch.setitem(F.PRECISION, "tf32", True)
    again = fcache.cached_features(data, cache_dir=tmp_path / "cache")
    assert not again.from_cache and again.key != first.key


def test_cache_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEGAN_FEATURE_CACHE", str(tmp_path / "x"))
    assert fcache.default_cache_dir() == tmp_path / "x"
