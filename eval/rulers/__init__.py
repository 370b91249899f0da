"""The panel of rulers: independent ways to say how far generated faces are from real ones.

One ImageNet feature space is one opinion. Each ruler here is one small module with one interface
(`Ruler`), so the evaluation runs them all the same way — real descriptors cached, a real-vs-real
floor and a random-init ceiling beside every number, a paired interval for every difference:

    effnet  FD and KID in effnet-lite0 ImageNet features (Heusel et al. 2017)
    swd     sliced Wasserstein distance of Laplacian-pyramid patches, per level (Karras et al. 2018)
    c2st    accuracy of a small CNN trained to tell real from generated (Lopez-Paz & Oquab 2017)
    anime   FD in the features of an encoder trained self-supervised on anime faces

    ruler = get_ruler("swd")
    ref = ruler.describe(real_uint8, seed=0)               # per-image descriptors (cacheable)
    scores = ruler.score(ref, ruler.describe(fake_uint8))  # {"swd_64": …, "swd_32": …, …}
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import torch

from eval.schema import Metric


class Ruler:
    """Descriptors per image, then a pure score of two descriptor sets.

    `describe` maps uint8 N×3×H×W images to an N×… tensor whose row i depends on image i alone (and
    the seed), so a subset of images is a subset of rows: that is what lets `paired` resample, and the
    evaluation cache the real rows. `score` is a pure function of two such tensors."""

    name: str = ""
    metrics: tuple[Metric, ...] = ()   # what `score` returns, in table order; metrics[0] is the headline
    cache_real: bool = True            # whether real descriptors are worth caching on disk

    def identity(self) -> dict:
        """Everything that fixes this ruler's numbers (weights hash, settings, versions): the cache key."""
        raise NotImplementedError

    def describe(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def score(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0,
              keys: tuple[str, ...] | None = None) -> dict[str, float]:
        """Pure: the ruler's metrics of descriptors `fake` against `ref` (only `keys`, when given and the
        ruler can save work by it)."""
        raise NotImplementedError

    @property
    def paired_keys(self) -> tuple[str, ...]:
        """The metrics `paired` resamples (all, unless a ruler's metric is too costly to resample)."""
        return tuple(m.key for m in self.metrics)

    def paired(self, ref: torch.Tensor, fakes: list[torch.Tensor], rounds: int = 20, seed: int = 0) -> np.ndarray:
        """rounds × len(fakes) × len(paired_keys) scores, each round on a random half of the reference rows
        and the *same* random half of every fake set's rows (the fakes share latents, row for row), so the
        spread of a difference between two fake sets is the paired spread: the reference's own noise
        cancels. Halves without replacement are the delete-d jackknife with d = n/2 (variance factor 1)."""
        g = torch.Generator().manual_seed(seed)
        n_ref, n_fake = len(ref), min(len(f) for f in fakes)
        keys = self.paired_keys
        out = np.empty((rounds, len(fakes), len(keys)))
        for r in range(rounds):
            ri = torch.randperm(n_ref, generator=g)[:n_ref // 2]
            fi = torch.randperm(n_fake, generator=g)[:n_fake // 2]
            for j, fake in enumerate(fakes):
                s = self.score(ref[ri], fake[fi], seed=seed + r, keys=keys)
                out[r, j] = [s[k] for k in keys]
        return out


    def measure(self, ref: torch.Tensor, fakes: list[torch.Tensor], rounds: int = 20,
                seed: int = 0) -> tuple[list[dict[str, float]], np.ndarray]:
        """Every fake set's scores against `ref`, and the paired rounds (`paired`) that give their spread and
        the intervals of their differences. A ruler that trains something per set (c2st) does both at once."""
        return [self.score(ref, f, seed=seed) for f in fakes], self.paired(ref, fakes, rounds, seed)


RULERS: dict[str, type[Ruler]] = {}


def register(cls: type[Ruler]) -> type[Ruler]:
    """Class decorator: make a ruler reachable by name (`--rulers NAME`)."""
    RULERS[cls.name] = cls
    return cls


def known_rulers() -> list[str]:
    """Registered rulers and the modules of this package that register one when imported."""
    mods = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return sorted(set(RULERS) | mods)


def ruler_class(name: str) -> type[Ruler]:
    """A ruler's class by name, importing eval.rulers.NAME when it is not registered yet; KeyError names
    the known rulers."""
    if name not in RULERS:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # the ruler's module exists but one of its own imports is missing
    if name not in RULERS:
        raise KeyError(f"unknown ruler {name!r}; known: {', '.join(known_rulers())}")
    return RULERS[name]


def get_ruler(name: str, **settings) -> Ruler:
    """A ruler by name, built with the settings its constructor takes (device, batch_size, …; others are
    ignored). KeyError names the known rulers."""
    cls = ruler_class(name)
    takes = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in settings.items() if k in takes and v is not None})
