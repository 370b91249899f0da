"""Tiny synthetic image sets for tests and the benchmark (no real data needed)."""
import numpy as np
from PIL import Image


def write_images(folder, n, seed, size=72, ext="png"):
    """n images of a few coloured rectangles each; different seeds give different images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        for _ in range(3):
            x0, y0 = rng.integers(0, size - 8, 2)
            w, h = rng.integers(8, size // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"{seed}_{i:04d}.{ext}")
    return folder
