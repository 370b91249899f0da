"""The `anime` ruler: FD in the features of an encoder that has learned anime faces.

The feature space is `animegan.encoder`'s small CNN, trained self-supervised (SimCLR, Chen et al.
2020) on the training split, whose weights ship in checkpoints/anime-encoder/ (card: its
training and validation). Morozov et al. (ICLR 2021, "On self-supervised image representations
for GAN evaluation") found such representations rank GANs more consistently with people than
Inception does; this ruler is the project's version of that, beside the ImageNet `effnet` one.

    ruler = AnimeRuler()                              # or AnimeRuler(weights_path="other/folder")
    ref = ruler.describe(real_uint8)                  # N×D float32 encoder features (cacheable)
    ruler.score(ref, ruler.describe(fake_uint8))      # {"fd_anime": …}

FD is Heusel et al.'s (2017) Fréchet distance, computed exactly (`eval.metrics._fd_exact`). No KID:
torch-fidelity's 100 subsets cost seconds per call, and `paired` calls `score` 20 times per set.
"""
from __future__ import annotations

import torch

from animegan.features import ANIME, extract, get_extractor, identity
from eval.metrics import _fd_exact, _t
from eval.rulers import Ruler, register
from eval.schema import Metric


@register
class AnimeRuler(Ruler):
    """Encoder features per image; FD between two sets of them."""

    name = "anime"
    metrics = (
        Metric("fd_anime", "FD (anime encoder)", "FD anime ↓", "lower", "{:.3f}",
               "Fréchet distance in the features of an encoder trained self-supervised on anime faces"),
    )
    cache_real = True

    def __init__(self, weights_path=None, device: str | torch.device = "cpu", batch_size: int = 128):
        self.weights_path, self.device, self.batch_size = weights_path, device, batch_size

    def identity(self) -> dict:
        return {"ruler": self.name, "features": identity(ANIME, self.weights_path, self.device),
                "score": "exact FD, float64"}

    def describe(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """uint8 N×3×H×W → N×D float32; row i depends on image i alone (eval mode: no batch statistics)."""
        ext = get_extractor(ANIME, self.weights_path, self.device)
        return extract(images, ext, batch_size=self.batch_size)

    def score(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict[str, float]:
        return {"fd_anime": _fd_exact(_t(ref), _t(fake))}
