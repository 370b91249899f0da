"""`effnet`: FD and KID in the features of an ImageNet classifier (Heusel et al. 2017; Bińkowski et al. 2018).

The project's first ruler, and still the space the nearest-neighbour metrics (precision, recall,
coverage, Vendi, NDB, C_T) are computed in. Features: effnet-lite0's 1280-d pooled layer
(`animegan.features`: offline weights, the TensorFlow network they were trained in, fp32), or any
other extractor by name (`FeatureRuler("inception")` is the papers' FID). One opinion among several:
an ImageNet object classifier fed 64×64 drawings upsampled to 224 judges them by what separates
ImageNet classes.

    ruler = EffNet()
    ref = ruler.describe(real_uint8)                      # N×1280 float32
    ruler.score(ref, ruler.describe(fake_uint8))          # {"fid": 106.7, "kid": 0.121}
"""
from __future__ import annotations

import warnings

import torch

from animegan.features import EFFNET, extract, get_extractor, identity, resolve_name
from eval import metrics as mt
from eval.schema import Metric

from . import Ruler, register

FID = Metric("fid", "FID", "FID ↓", "lower", "{:.2f}", "Fréchet distance of ImageNet-feature means and covariances")
KID = Metric("kid", "KID", "KID×10³ ↓", "lower", "{:.2f}", "kernel (MMD²) distance of the same features, ×1000; "
             "mean over subsets", scale=1e3)


class FeatureRuler(Ruler):
    """FD (and KID) of the features of a named extractor; `describe` is the extractor, cached per image."""

    sees = "ImageNet object features"
    metrics = (FID, KID)
    paired_keys = ("fid",)  # KID already averages 100 subsets; resampling it again costs more than it tells

    def __init__(self, extractor: str = EFFNET, weights_path=None, device: str | torch.device = "cpu",
                 batch_size: int = 16, kid_subsets: int = 100):
        self.extractor_name = resolve_name(extractor)
        self.weights_path, self.device, self.batch_size, self.kid_subsets = weights_path, device, batch_size, kid_subsets
        self.name = self.name or self.extractor_name  # "effnet" for the panel's ruler, else the space's name

    def identity(self) -> dict:
        return identity(self.extractor_name, self.weights_path, self.device)  # the features, whatever the ruler's name

    def describe(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        ext = get_extractor(self.extractor_name, self.weights_path, self.device)
        return extract(images, ext, batch_size=self.batch_size)  # N×D float32, CPU

    def score(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0,
              keys: tuple[str, ...] | None = None) -> dict[str, float]:
        out = {self.metrics[0].key: mt.fd_exact(ref, fake)}
        if "kid" in (keys or [m.key for m in self.metrics]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # small-n subset warning: the report says n
                out["kid"] = mt.kernel_distance(ref, fake, subsets=self.kid_subsets, seed=seed)["kid"]
        return out


@register
class EffNet(FeatureRuler):
    name = "effnet"
