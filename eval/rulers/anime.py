"""The `anime` ruler: FD in the features of an encoder that has learned anime faces.

The feature space is `animegan.encoder`'s small CNN, trained self-supervised (SimCLR, Chen et al.
2020) on the training split, whose weights ship in checkpoints/anime-encoder/ (card: its
training and validation). Morozov et al. (ICLR 2021, "On self-supervised image representations
for GAN evaluation") found such representations rank GANs more consistently with people than
Inception does; this ruler is the project's version of that, beside the ImageNet `effnet` one.

    ruler = AnimeRuler()                              # or AnimeRuler(weights_path="other/folder")
    ref = ruler.describe(real_uint8)                  # N×D float32 encoder features (cacheable)
    ruler.score(ref, ruler.describe(fake_uint8))      # {"fd_anime": …}

FD is Heusel et al.'s (2017) Fréchet distance, computed exactly (`eval.metrics.fd_exact`, as the effnet ruler does). No KID:
torch-fidelity's 100 subsets cost seconds per call, and `paired` calls `score` 20 times per set.
"""
from __future__ import annotations

import torch

from animegan.features import ANIME
from eval.rulers import register
from eval.rulers.effnet import FeatureRuler
from eval.schema import Metric

FD_ANIME = Metric("fd_anime", "FD (anime encoder)", "FD anime ↓", "lower", "{:.3f}",
                  "Fréchet distance in the features of an encoder trained self-supervised on anime faces")


@register
class AnimeRuler(FeatureRuler):
    """Encoder features per image (cached for real images); FD between two sets of them."""

    name = "anime"
    sees = "anime-face features"
    metrics = (FD_ANIME,)
    paired_keys = ("fd_anime",)

    def __init__(self, weights_path=None, device: str | torch.device = "cpu", batch_size: int = 128):
        super().__init__(ANIME, weights_path, device, batch_size)
