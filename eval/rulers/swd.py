"""`swd`: sliced Wasserstein distance of Laplacian-pyramid patches, per level (Karras et al. 2018).

Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs for Improved Quality, Stability, and
Variation", ICLR 2018, §5 and appendix D. Each 64×64 image becomes a Laplacian pyramid (5-tap binomial
filter, reflected borders, as in the paper's code): band-pass levels at 64 and 32, the Gaussian residual
at 16. At random positions of every level we cut 7×7×3 patches; the distance between the real and the
generated patch distributions is the sliced Wasserstein distance — project on random unit directions,
sort, mean absolute difference of the sorted projections — averaged over directions. The fine level sees
blur, noise and checkerboards; the coarse level sees layout and colour. No learned weights.

    from eval.rulers.swd import SWD
    ruler = SWD()
    ref = ruler.describe(real_uint8, seed=0)       # N × 3 levels × 48 patches × 147, float16
    ruler.score(ref, ruler.describe(fake_uint8))   # {"swd": …, "swd_64": …, "swd_32": …, "swd_16": …}

Two deliberate departures from the paper's code:
- Normalisation. The paper standardises each colour channel of each patch set by that set's *own*
  mean and std, which hides global colour and contrast faults (washed-out colours score as well as
  real ones). Here both sets are standardised by the *reference* set's per-channel statistics, so a
  desaturated or darker generator raises the distance — mostly at the 16 level, which holds the colours.
- Patch positions. Row i must depend on image i alone (the evaluation caches and resamples rows), so
  each image's positions come from a generator seeded by the seed and a hash of the image's bytes:
  independent across images like the paper's, and a subset of images is a subset of rows.

The headline `swd` is the mean of the three levels, as in the paper's tables ("avg"): one number that
moves for texture faults and for colour/layout faults alike; the levels say which it was.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from eval.rulers import Ruler, register
from eval.schema import Metric

LEVELS = (64, 32, 16)        # pyramid resolutions, finest first; the last is the Gaussian residual
PATCH = 7                    # patch side, as in the paper
PATCHES_PER_LEVEL = 48       # per image and level: 2,000 images × 3 × 48 × 147 float16 = 85 MB
DIRECTIONS = 512             # the paper: 4 repeats × 128 directions
DIRECTION_CHUNK = 128        # directions projected at once (bounds memory: chunk × patches floats)

# The 5-tap binomial filter of the paper's code (cv2.pyrDown's): [1 4 6 4 1] / 16 along each axis.
TAPS = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _blur(x: torch.Tensor, gain: float = 1.0, step: int = 1) -> torch.Tensor:
    """Separable 5×5 binomial filter of each channel, mirrored borders (scipy's 'mirror' = torch's
    'reflect'), kept at every `step`-th row and column. Sums of shifted slices: a grouped conv2d is
    slower on CPU, and the slices compute only the outputs that are kept."""
    h, w = x.shape[-2:]
    p = F.pad(x, (2, 2, 2, 2), mode="reflect")
    rows = sum(t * p[..., :, i:i + w:step] for i, t in enumerate(TAPS))
    return sum((t * gain) * rows[..., i:i + h:step, :] for i, t in enumerate(TAPS))


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur, drop every other row and column: N×C×H×W → N×C×H/2×W/2."""
    return _blur(x, step=2)


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Zero-insert, blur with 4× gain (the zeros carry no energy): N×C×H×W → N×C×2H×2W."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(x: torch.Tensor, levels: int = len(LEVELS)) -> list[torch.Tensor]:
    """Band-pass levels, finest first, then the Gaussian residual; float32 N×3×H×W in, same units out."""
    pyramid = [x]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


def _image_rngs(images: torch.Tensor, seed: int) -> list[np.random.Generator]:
    """One generator per image from the seed and the image's bytes: row i depends on image i alone."""
    arr = images.numpy()
    key = int(seed).to_bytes(8, "little", signed=True)
    return [np.random.default_rng(int.from_bytes(hashlib.blake2b(a.tobytes(), digest_size=8, key=key).digest(),
                                                 "little")) for a in arr]


def patches(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """PATCH×PATCH×C patches with top-left corners (ys, xs) (N×P each): N×P×C·PATCH² (channel-major)."""
    n, c, h, w = level.shape
    d = torch.arange(PATCH)
    rows = (ys[:, :, None] + d)[:, :, None, :, None]          # N×P×1×7×1
    cols = (xs[:, :, None] + d)[:, :, None, None, :]          # N×P×1×1×7
    plane = (torch.arange(n)[:, None, None, None, None] * c + torch.arange(c)[None, None, :, None, None]) * (h * w)
    flat = (plane + rows * w + cols).reshape(n, ys.shape[1], -1)  # one gather: faster than 4-way indexing
    return level.reshape(-1)[flat]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """Mean over unit directions of the 1-D Wasserstein-1 distance of the projections of two equal-size
    point sets (a, b: M×D; directions: K×D, rows of unit length): mean |sort(a·u) − sort(b·u)|."""
    if a.shape != b.shape:
        raise ValueError(f"equal-size sets needed, got {tuple(a.shape)} and {tuple(b.shape)}")
    total = 0.0
    for i in range(0, len(directions), DIRECTION_CHUNK):
        u = directions[i:i + DIRECTION_CHUNK].to(a.dtype)
        # K×M, each row contiguous: numpy's (SIMD) in-place sort along the last axis is much faster than
        # torch.sort, which also builds an index tensor.
        pa, pb = (u @ a.T).numpy(), (u @ b.T).numpy()
        pa.sort(axis=1)
        pb.sort(axis=1)
        np.subtract(pa, pb, out=pa)
        total += float(np.abs(pa, out=pa).sum(dtype=np.float64)) / a.shape[0]
    return total / len(directions)


def random_directions(dim: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """count unit vectors, uniform on the sphere in R^dim: count×dim float32."""
    d = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return (d / d.norm(dim=1, keepdim=True)).to(torch.float32)


@register
class SWD(Ruler):
    """Sliced Wasserstein distance of 7×7 Laplacian-pyramid patches at 64, 32 and 16 (Karras et al. 2018)."""

    name = "swd"
    sees = "pixel statistics (fine detail, colour)"
    metrics = (
        Metric("swd", "SWD (mean of levels)", "SWD", "lower", "{:.1f}",
               "sliced Wasserstein distance of 7×7 patches, mean over pyramid levels 64/32/16 (×10³)", scale=1e3),
        Metric("swd_64", "SWD at 64×64", "SWD64", "lower", "{:.1f}",
               "finest band: blur, noise, checkerboards (×10³)", scale=1e3),
        Metric("swd_32", "SWD at 32×32", "SWD32", "lower", "{:.1f}",
               "middle band: strokes, eyes, hair texture (×10³)", scale=1e3),
        Metric("swd_16", "SWD at 16×16", "SWD16", "lower", "{:.1f}",
               "coarse residual: layout and colour, contrast (×10³)", scale=1e3),
    )
    cache_real = True

    def __init__(self, patches_per_level: int = PATCHES_PER_LEVEL, directions: int = DIRECTIONS) -> None:
        self.patches_per_level = patches_per_level
        self.directions = directions

    def identity(self) -> dict:
        return {"ruler": self.name, "version": 1, "levels": list(LEVELS), "patch": PATCH,
                "patches_per_level": self.patches_per_level, "directions": self.directions,
                "filter": "binomial 5-tap, reflect", "normalisation": "reference set's per-channel mean/std",
                "positions": "per image, seeded by seed + blake2b(image bytes)", "dtype": "float16"}

    def describe(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """uint8 N×3×64×64 → float16 N×3 levels×P×147 patch descriptors in pixel units (0…255 scale)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, LEVELS[0], LEVELS[0]):
            raise ValueError(f"expected uint8 N×3×{LEVELS[0]}×{LEVELS[0]} images, got {images.dtype} {tuple(images.shape)}")
        images = images.cpu().contiguous()
        n, p = len(images), self.patches_per_level
        out = torch.empty(n, len(LEVELS), p, 3 * PATCH * PATCH, dtype=torch.float16)
        if n == 0:
            return out
        # Positions first, for every level, from each image's own generator (row i ← image i).
        pos = np.empty((n, len(LEVELS), 2, p), dtype=np.int64)
        for i, rng in enumerate(_image_rngs(images, seed)):
            for li, size in enumerate(LEVELS):
                pos[i, li] = rng.integers(0, size - PATCH + 1, size=(2, p))
        pos_t = torch.from_numpy(pos)
        for start in range(0, n, 256):  # chunks keep the float32 pyramid small
            sl = slice(start, start + 256)
            pyr = laplacian_pyramid(images[sl].to(torch.float32))
            for li, level in enumerate(pyr):
                out[sl, li] = patches(level, pos_t[sl, li, 0], pos_t[sl, li, 1]).to(torch.float16)
        return out

    def score(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0,
              keys: tuple[str, ...] | None = None) -> dict[str, float]:
        """SWD per level between two describe() outputs, both standardised by ref's channel statistics."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for li, size in enumerate(LEVELS):
            a = ref[:, li].reshape(-1, 3, PATCH * PATCH).to(torch.float32)
            b = fake[:, li].reshape(-1, 3, PATCH * PATCH).to(torch.float32)
            var, mean = torch.var_mean(a, dim=(0, 2), keepdim=True)  # Welford: exact enough in float32
            std = var.sqrt().clamp_min(1e-6)
            a = ((a - mean) / std).reshape(len(a), -1)
            b = ((b - mean) / std).reshape(len(b), -1)
            m = min(len(a), len(b))  # equal counts: a random subset of the larger set
            if len(a) > m:
                a = a[torch.randperm(len(a), generator=g)[:m]]
            if len(b) > m:
                b = b[torch.randperm(len(b), generator=g)[:m]]
            dirs = random_directions(a.shape[1], self.directions, g)
            out[f"swd_{size}"] = sliced_wasserstein(a, b, dirs)
        out["swd"] = float(np.mean([out[f"swd_{s}"] for s in LEVELS]))
        return {m.key: out[m.key] for m in self.metrics}
