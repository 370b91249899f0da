"""The functions behind every endpoint of the page: both models, the same z, checked inputs.

    demo = Demo(slots)
    gan_png, wgan_png = demo.compare(seed=42, truncation=1.0)            # 320×320 uint8 arrays
    gan_png, wgan_png = demo.explore(42, 1.0, [1.5, 0, 0, 0, 0, 0])      # +1.5σ along each model's PC1

A model that did not load answers None; with no model at all every call raises gr.Error.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import torch

from animegan.sampling import lerp, slerp, z_from_seed
from demo.core import (MAX_SEED, SCALE, Slot, check_frames, check_method, check_offsets, check_seed,
                       check_truncation, check_whole, draw, seed_latents, tile, upscale)
from demo.directions import K, THUMB_OFFSETS, find_directions, moved_latents
from demo.files import write_downloads, write_gif

GIF_SCALE, STRIP_SCALE, STRIP_COLS, GRID_SCALE = 4, 2, 8, 2


class Demo:
    """The two slots and the functions behind every endpoint."""

    def __init__(self, slots: list[Slot]):
        self.slots = slots
        self._lock = threading.Lock()

    def _with_directions(self) -> None:
        """Find every loaded model's principal directions once, the models side by side on their own cores."""
        with self._lock:
            todo = [s for s in self.slots if s.generator is not None and s.directions is None]
            if todo:
                with ThreadPoolExecutor(len(todo)) as pool:
                    for s, dirs in zip(todo, pool.map(lambda s: find_directions(s.generator), todo)):
                        s.directions = dirs

    def _need_models(self) -> None:
        if all(s.generator is None for s in self.slots):
            raise gr.Error("No generator is loaded on this server; see the message at the top of the page.")

    def _each(self, latents) -> list[np.ndarray | None]:
        """Per model, its B×64×64×3 images of latents(slot) (B×z_dim), or None for a model not loaded."""
        return [None if s.generator is None else draw(s, latents(s)) for s in self.slots]

    # ---- compare --------------------------------------------------------------------------

    def _faces(self, seed, truncation) -> list[np.ndarray | None]:
        seed, truncation = check_seed(seed), check_truncation(truncation)
        self._need_models()
        return [None if x is None else x[0] for x in self._each(lambda s: seed_latents(s, [seed], truncation))]

    def compare(self, seed, truncation):
        """One seed, both models: returns the GAN's and the WGAN-GP's image (320×320 PNG)."""
        return tuple(None if f is None else upscale(f, SCALE) for f in self._faces(seed, truncation))

    def _grids(self, seed, truncation, count) -> list[np.ndarray | None]:
        seed, truncation = check_seed(seed), check_truncation(truncation)
        count = check_whole(count, "Grid size", 1, 16)
        self._need_models()
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(1, count + 1)]
        return [None if x is None else tile(x, cols=4) for x in self._each(lambda s: seed_latents(s, seeds, truncation))]

    def grid(self, seed, truncation, count):
        """The next `count` seeds after `seed` (wrapping at 2^32), both models, as two tiled images."""
        return tuple(None if g is None else upscale(g, GRID_SCALE) for g in self._grids(seed, truncation, count))

    # ---- interpolate ----------------------------------------------------------------------

    def _paths(self, seed_a, seed_b, frames, method) -> list[np.ndarray | None]:
        seed_a, seed_b = check_seed(seed_a, "Seed A"), check_seed(seed_b, "Seed B")
        frames, method = check_frames(frames), check_method(method)
        self._need_models()
        mix = slerp if method == "slerp" else lerp

        def path(s: Slot) -> torch.Tensor:
            za, zb = z_from_seed(seed_a, s.generator.z_dim), z_from_seed(seed_b, s.generator.z_dim)
            return torch.stack([mix(za, zb, float(t)) for t in torch.linspace(0, 1, frames)])

        return self._each(path)

    def interpolate(self, seed_a, seed_b, frames, method):
        """The path z(seed_a) → z(seed_b) drawn by both models: two GIFs (a→b→a) and two frame strips."""
        paths = self._paths(seed_a, seed_b, frames, method)
        gifs = [None if p is None else write_gif(p, s.key, GIF_SCALE) for s, p in zip(self.slots, paths)]
        strips = [None if p is None else upscale(tile(p, STRIP_COLS, gap=0), STRIP_SCALE) for p in paths]
        return (*gifs, *strips)

    # ---- explore --------------------------------------------------------------------------

    def _explored(self, seed, truncation, offsets) -> list[np.ndarray | None]:
        seed, truncation, offsets = check_seed(seed), check_truncation(truncation), check_offsets(offsets)
        self._need_models()
        self._with_directions()
        moved = self._each(lambda s: seed_latents(s, [seed], truncation) + torch.tensor(offsets) @ s.directions.steps)
        return [None if x is None else x[0] for x in moved]

    def explore(self, seed, truncation, offsets):
        """One seed moved by `offsets` (K numbers, in σ) along each model's own principal directions:
        the GAN's and the WGAN-GP's image (320×320 PNG)."""
        return tuple(None if f is None else upscale(f, SCALE) for f in self._explored(seed, truncation, offsets))

    def _sheets(self, seed, truncation) -> list[np.ndarray | None]:
        """Per model, K rows of thumbnails: the seed's face moved along direction i (others at 0)."""
        seed, truncation = check_seed(seed), check_truncation(truncation)
        self._need_models()
        self._with_directions()
        return self._each(lambda s: moved_latents(seed_latents(s, [seed], truncation), s.directions.steps, K))

    def strips(self, seed, truncation):
        """2·K images: for direction 1 … K, the GAN's then the WGAN-GP's strip of thumbnails."""
        sheets, n = self._sheets(seed, truncation), len(THUMB_OFFSETS)
        return tuple(None if sh is None else upscale(tile(sh[i * n:(i + 1) * n], n), STRIP_SCALE)
                     for i in range(K) for sh in sheets)

    def explained(self) -> list[list[float] | None]:
        """Per model, the share of first-block activation variance each of the K directions explains."""
        self._with_directions()
        return [None if s.directions is None else [float(v) for v in s.directions.explained] for s in self.slots]

    # ---- downloads: generated resolution and shown size -----------------------------------

    def compare_files(self, seed, truncation, show_grid, count) -> list[str]:
        faces = self._faces(seed, truncation)  # checks the inputs before they name files
        tag = f"seed{int(seed)}_trunc{float(truncation):g}"
        images = {f"{s.key}_{tag}": f for s, f in zip(self.slots, faces) if f is not None}
        paths = write_downloads(images, SCALE)
        if show_grid:
            grids = {f"{s.key}_grid_{tag}_next{int(count)}": g
                     for s, g in zip(self.slots, self._grids(seed, truncation, count)) if g is not None}
            paths += write_downloads(grids, GRID_SCALE)
        return paths

    def interpolate_files(self, seed_a, seed_b, frames, method) -> list[str]:
        paths = self._paths(seed_a, seed_b, frames, method)
        tag = f"{int(seed_a)}-{int(seed_b)}_{int(frames)}frames_{method}"
        strips = {f"{s.key}_{tag}_strip": tile(p, STRIP_COLS, gap=0) for s, p in zip(self.slots, paths) if p is not None}
        gifs = {f"{s.key}_{tag}": p for s, p in zip(self.slots, paths) if p is not None}
        return write_downloads(strips, STRIP_SCALE, gifs, GIF_SCALE)

    def explore_files(self, seed, truncation, offsets) -> list[str]:
        faces = self._explored(seed, truncation, offsets)
        tag = f"seed{int(seed)}_trunc{float(truncation):g}_offsets{'_'.join(f'{float(o):g}' for o in offsets)}"
        images = {f"{s.key}_{tag}": f for s, f in zip(self.slots, faces) if f is not None}
        sheets = {f"{s.key}_directions_seed{int(seed)}_trunc{float(truncation):g}": tile(sh, len(THUMB_OFFSETS))
                  for s, sh in zip(self.slots, self._sheets(seed, truncation)) if sh is not None}
        return write_downloads(images, SCALE) + write_downloads(sheets, STRIP_SCALE)
