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

from animegan.features import EFFNET, extract_features, identity

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
    p = Path(path)
    archive = None if p.is_dir() else [p.stat().st_size, p.stat().st_mtime]
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
    atomic_write(file, lambda tmp: save_file({"features": feats.contiguous()}, tmp, metadata=meta))


def cached_features(path, extractor: str = EFFNET, n: int | None = None, size: int = 64,
                    cache_dir=None, use_cache: bool = True, weights_path=None, batch_size: int = 16,
                    device="cpu", progress: bool = False, exclude: frozenset[str] = frozenset()) -> CachedFeatures:
    """Features of the first `n` (sorted) images of `path` whose image id is not in `exclude`;
    from the cache when possible."""
    every = open_image_source(path).entries  # raises DataError if unusable
    ids = image_ids([e[0] for e in every])
    entries = [list(e) for e, i in zip(every, ids) if i not in exclude][:n]
    excluded = len(every) - sum(i not in exclude for i in ids)
    key = cache_key(path, entries, size, identity(extractor, weights_path, device))
    file = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"
    if use_cache and (got := _read(file)) is not None:
        feats, meta = got
        return CachedFeatures(feats, json.loads(meta["names"]), int(meta["skipped"]), excluded, True, key)
    loaded = load_images(path, size=size, names=[e[0] for e in entries], progress=progress)
    feats = extract_features(loaded.images, extractor, batch_size=batch_size, device=device,
                             weights_path=weights_path, progress=progress)
    if use_cache:
        try:
            _write(file, feats, {"names": json.dumps(loaded.names), "skipped": str(loaded.skipped),
                                 "source": str(path), "extractor": str(extractor), "size": str(size)})
        except OSError as e:  # a read-only home must not stop an evaluation
            print(f"warning: could not write feature cache {file}: {e.strerror or e}", file=sys.stderr)
    return CachedFeatures(feats, loaded.names, loaded.skipped, excluded, False, key)


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
