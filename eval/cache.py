"""On-disk cache of real-image features, keyed by everything that determines them.

The key is a sha256 of: the image list (name, size in bytes, mtime — plus the archive's own
size and mtime for a .zip/.tar), which images are used (the first n, after `exclude`), the data
preprocessing (Resize + CenterCrop to `size`), the extractor (name, layer, architecture variant,
weights hash, input size, resize mode, mean/std), the versions of the packages that compute the
numbers, the device type and the extraction arithmetic (fp32, TF32 off). Change any of those and
the key changes, so old entries are never mixed with new features. Files are safetensors
(features + names as metadata), written to a temporary file in the cache folder and moved into
place with `os.replace`, so a killed run never leaves a half-written entry.

    hit = cached_features("data/test.tar", extractor="effnet-lite0", n=2000)
    hit.features  # N×1280 float32; hit.names: the image names, in order; hit.from_cache

Cache folder: $ANIMEGAN_FEATURE_CACHE, else $XDG_CACHE_HOME/animegan/features,
else ~/.cache/animegan/features.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from animegan.files import atomic_write
from animegan.data import decode_image, load_images, open_image_source
from animegan.data import image_ids

from animegan.features import EFFNET

CACHE_VERSION = 2
PREPROCESS = "RGB, Resize(size) short side, CenterCrop(size), uint8"


def default_cache_dir() -> Path:
    if os.environ.get("ANIMEGAN_FEATURE_CACHE"):
        return Path(os.environ["ANIMEGAN_FEATURE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "animegan" / "features"


@dataclass
class CachedFeatures:
    features: torch.Tensor  # N×D float32
    names: list[str]        # the image behind each row
    skipped: int            # unreadable files among those used
    excluded: int           # images left out because their id is in `exclude`
    from_cache: bool
    key: str


def cache_key(path, entries, size, extractor_id: dict) -> str:
    archive = open_image_source(path).stamp()  # the archives' sizes and mtimes (None for a folder)
    blob = json.dumps({"v": CACHE_VERSION, "entries": entries, "archive": archive, "size": size,
                       "preprocess": PREPROCESS, "extractor": extractor_id}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read(file: Path) -> tuple[torch.Tensor, dict] | None:
    try:
        with safe_open(str(file), framework="pt") as f:
            return f.get_tensor("features"), f.metadata()
    except FileNotFoundError:
        return None
    except Exception as e:  # a truncated or foreign file: recompute and overwrite it
        print(f"warning: ignoring unreadable feature cache {file} ({type(e).__name__})", file=sys.stderr)
        return None


def _write(file: Path, feats: torch.Tensor, meta: dict) -> None:
    try:
        atomic_write(file, lambda tmp: save_file({"features": feats.contiguous()}, tmp, metadata=meta))
    except OSError as e:  # a read-only home must not stop an evaluation
        print(f"warning: could not write feature cache {file}: {e.strerror or e}", file=sys.stderr)


@dataclass
class CachedReal:
    """Every ruler's descriptors of one set of real images, row for row."""
    descriptors: dict            # ruler name → N×… tensor
    names: list[str]             # the image behind each row
    skipped: int                 # unreadable files among those used
    excluded: int                # images left out because their id is in `exclude`
    from_cache: dict             # ruler name → whether its rows came from the cache
    keys: dict                   # ruler name → cache key
    images: torch.Tensor | None  # the decoded images, when any ruler needed them


def cached_descriptors(path, rulers, n: int | None = None, size: int = 64, cache_dir=None, use_cache: bool = True,
                       progress: bool = False, exclude: frozenset[str] = frozenset(),
                       need_images: bool = False) -> CachedReal:
    """Descriptors (`Ruler.describe`) of the first `n` (sorted) images of `path` whose image id is not in
    `exclude`, for every ruler; from the cache when possible. The images are decoded once, and only when
    a ruler misses the cache or does not cache (`cache_real`), or `need_images` asks for them."""
    every = open_image_source(path).entries  # raises DataError if unusable
    ids = image_ids([e[0] for e in every])
    entries = [list(e) for e, i in zip(every, ids) if i not in exclude][:n]
    excluded = len(every) - sum(i not in exclude for i in ids)
    folder = Path(cache_dir or default_cache_dir())
    out = CachedReal({}, [], 0, excluded, {}, {}, None)
    missing = []
    for r in rulers:
        key = out.keys[r.name] = cache_key(path, entries, size, r.identity())
        got = _read(folder / f"{key}.safetensors") if use_cache and r.cache_real else None
        if got is None:
            missing.append(r)
            continue
        out.descriptors[r.name], meta = got
        out.from_cache[r.name] = True
        out.names, out.skipped = json.loads(meta["names"]), int(meta["skipped"])
    if missing or need_images:
        loaded = load_images(path, size=size, names=[e[0] for e in entries], progress=progress)
        if out.names and out.names != loaded.names:  # a file became unreadable since it was cached
            return cached_descriptors(path, rulers, n, size, cache_dir, False, progress, exclude, need_images)
        out.images, out.names, out.skipped = loaded.images, loaded.names, loaded.skipped
        for r in missing:
            out.descriptors[r.name] = r.describe(loaded.images)
            out.from_cache[r.name] = False
            if use_cache and r.cache_real:
                _write(folder / f"{out.keys[r.name]}.safetensors", out.descriptors[r.name],
                       {"names": json.dumps(loaded.names), "skipped": str(loaded.skipped), "source": str(path),
                        "ruler": r.name, "size": str(size)})
    return out


def cached_features(path, extractor: str = EFFNET, n: int | None = None, size: int = 64,
                    cache_dir=None, use_cache: bool = True, weights_path=None, batch_size: int = 16,
                    device="cpu", progress: bool = False, exclude: frozenset[str] = frozenset()) -> CachedFeatures:
    """Features of the first `n` (sorted) images of `path` whose image id is not in `exclude`, in one
    extractor's space; from the cache when possible (`cached_descriptors` of that space's ruler)."""
    from .rulers.effnet import FeatureRuler

    ruler = FeatureRuler(extractor, weights_path, device, batch_size)
    got = cached_descriptors(path, [ruler], n, size, cache_dir, use_cache, progress, exclude)
    return CachedFeatures(got.descriptors[ruler.name], got.names, got.skipped, got.excluded,
                          got.from_cache[ruler.name], got.keys[ruler.name])


def cached_tensor(key: dict, compute, cache_dir=None, use_cache: bool = True) -> tuple[torch.Tensor, bool]:
    """compute() → a tensor, kept in the cache folder under a hash of `key` (a JSON-able dict saying
    everything that fixes the tensor); (tensor, whether it came from the cache)."""
    digest = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True, default=str).encode())
    file = Path(cache_dir or default_cache_dir()) / f"{digest.hexdigest()[:32]}.safetensors"
    if use_cache and (got := _read(file)) is not None:
        return got[0], True
    out = compute()
    if use_cache:
        _write(file, out, {"key": json.dumps(key, sort_keys=True, default=str)[:4000]})
    return out, False


@functools.lru_cache(maxsize=4)
def _open_cached(path: str):
    # Opening a 30k-member tar scans all headers (~1 s); report pictures ask many times.
    return open_image_source(path)


def load_named(path, names: list[str], size: int = 64) -> torch.Tensor:
    """Decode just these images (for report pictures after a cache hit) → uint8 K×3×size×size."""
    src = _open_cached(str(path))
    if not names:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack([decode_image(src.read(name), size) for name in names])
