"""On-disk cache of real-image features, keyed by what determines them.

The key is a sha256 of: the image list (name, size in bytes, mtime — plus the
archive's own size and mtime for a .zip/.tar), how many images are used, the
preprocessing (Resize + CenterCrop to `size`), and the extractor (name, layer,
weights file). Change any of those and the key changes; nothing is ever stale
by name. Files are safetensors (features + names as metadata), written to a
temporary file in the cache folder and moved into place with `os.replace`, so a
killed run never leaves a half-written entry. Like stylegan2-ada's metric cache.

    hit = cached_features("data/val.tar", extractor="effnet-lite0", n=2000)
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
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from animegan.checkpoint import atomic_write
from animegan.data import decode_image, load_images, open_image_source
from animegan.features import EFFNET, effnet_weights_path

from .features import extract_features, resolve_name

CACHE_VERSION = 1
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
    skipped: int            # unreadable files among the first n
    from_cache: bool
    key: str
    seconds: float          # wall time of this call


def extractor_identity(extractor: str, weights_path=None) -> dict:
    """What about an extractor changes its features: name, layer, weights file."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    full = resolve_name(extractor)
    layer = FEATURE_EXTRACTORS_REGISTRY[full].get_default_feature_layer_for_metric("fid")
    w = weights_path or (effnet_weights_path() if full == EFFNET else None)
    weights = {"file": os.path.basename(str(w)), "bytes": os.path.getsize(w)} if w else "torch-fidelity default"
    return {"name": full, "layer": layer, "weights": weights, "torch_fidelity": torch_fidelity.__version__}


def cache_key(path, entries, n, size, extractor_id: dict) -> str:
    p = Path(path)
    archive = None if p.is_dir() else [p.stat().st_size, p.stat().st_mtime]
    blob = json.dumps({"v": CACHE_VERSION, "entries": entries, "archive": archive, "n": n, "size": size,
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


def cached_features(path, extractor: str = "effnet-lite0", n: int | None = None, size: int = 64,
                    cache_dir=None, use_cache: bool = True, weights_path=None, batch_size: int = 16,
                    device="cpu", progress: bool = False) -> CachedFeatures:
    """Features of the first `n` (sorted) images of `path`; from the cache when possible."""
    t0 = time.perf_counter()
    entries = [list(e) for e in open_image_source(path).entries[:n]]  # raises DataError if unusable
    key = cache_key(path, entries, n, size, extractor_identity(extractor, weights_path))
    file = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"
    if use_cache and (got := _read(file)) is not None:
        feats, meta = got
        return CachedFeatures(feats, json.loads(meta["names"]), int(meta["skipped"]), True, key,
                              time.perf_counter() - t0)
    loaded = load_images(path, size=size, limit=n, progress=progress)
    feats = extract_features(loaded.images, extractor, batch_size=batch_size, device=device,
                             weights_path=weights_path, progress=progress)
    if use_cache:
        try:
            _write(file, feats, {"names": json.dumps(loaded.names), "skipped": str(loaded.skipped),
                                 "source": str(path), "extractor": str(extractor), "size": str(size)})
        except OSError as e:  # a read-only home must not stop an evaluation
            print(f"warning: could not write feature cache {file}: {e.strerror or e}", file=sys.stderr)
    return CachedFeatures(feats, loaded.names, loaded.skipped, False, key, time.perf_counter() - t0)


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
