"""The quick FD: how far a generator's samples are from held-out images, cheap enough to run
during training, and the number that picks a run's best export.

    qfd = QuickFD("data/select.tar", n=1000, z_dim=100, seed=3)   # real features once
    fd = qfd(G)                                                   # same latents every call

FD in effnet-lite0 space (animegan.features) between n generated samples, always from the same
latents, and the first n images of `real_path`. The evaluation toolkit reports the full protocol
(FID/KID, diversity, memorisation) on a disjoint test split; this is the training-time signal.
`selection()` records which images the score was chosen on, so an evaluation can warn when its
reference set overlaps them.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import QUICK_FD_N
from .data import DataError, image_ids, load_images
from .features import build_effnet_lite0, extract, frechet_distance
from .sampling import generate, sample_z, to_uint8


class QuickFD:
    """Callable: generator → FD against the first n images of a held-out set (effnet-lite0, exact fp32)."""

    def __init__(self, real_path: str, n: int = QUICK_FD_N, z_dim: int = 100, seed: int = 0, size: int = 64,
                 device: str | torch.device = "cpu", batch_size: int = 64):
        self.batch_size, self.source = batch_size, str(real_path)
        real = load_images(real_path, size=size, limit=n)
        if len(real.images) < 2:
            raise DataError(f"{real_path}: the quick FD needs at least 2 readable images, found {len(real.images)}")
        self.extractor = build_effnet_lite0(torch.device(device))
        self.real = extract(real.images, self.extractor, batch_size=batch_size)  # n×1280
        self.names = real.names
        self.n = len(self.real)
        self.z = sample_z(self.n, z_dim, seed)  # the same latents at every evaluation

    def __call__(self, generator: nn.Module) -> float:
        images = to_uint8(generate(generator, self.z))
        return frechet_distance(self.real, extract(images, self.extractor, batch_size=self.batch_size))

    def selection(self) -> dict:
        """Where the images this score selects on came from (stored with a selected export)."""
        return {"source": self.source, "n": self.n, "image_ids": image_ids(self.names)}
