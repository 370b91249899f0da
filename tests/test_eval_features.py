"""Feature extractors and the real-feature cache (offline)."""
import os
import time

import pytest
import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from eval import cache as fcache
from eval.cache import cached_features
from eval.features import EFFNET, EffNetLite0, FeatureError, build_extractor, extract_features, imagenet_top1
from eval.testing import write_images


def test_effnet_lite0_carries_imagenet_weights():
    skdata = pytest.importorskip("skimage.data")
    imgs = [torch.from_numpy(f()).permute(2, 0, 1) for f in (skdata.chelsea, skdata.coffee)]  # 3×H×W uint8
    top1 = [int(imagenet_top1(img[None])[0]) for img in imgs]
    assert 281 <= top1[0] <= 285, top1  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top1[1] == 967, top1  # espresso


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
    # Anything that changes the features changes the key: n, size, a file's mtime.
    assert fcache.cached_features(data, n=4, cache_dir=cdir).key != first.key
    assert fcache.cached_features(data, n=5, size=32, cache_dir=cdir).key != first.key
    f0 = sorted((data).iterdir())[0]
    os.utime(f0, (time.time() + 100, time.time() + 100))
    third = fcache.cached_features(data, n=5, cache_dir=cdir)
    assert not third.from_cache and third.key != first.key
    # A corrupt cache entry is ignored (warned) and rewritten.
    (cdir / f"{third.key}.safetensors").write_bytes(b"garbage")
    again = fcache.cached_features(data, n=5, cache_dir=cdir)
    assert not again.from_cache and torch.allclose(again.features, third.features)
    assert fcache.cached_features(data, n=5, cache_dir=cdir).from_cache


def test_cache_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEGAN_FEATURE_CACHE", str(tmp_path / "x"))
    assert fcache.default_cache_dir() == tmp_path / "x"
