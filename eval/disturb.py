"""Disturbances of real faces: known faults at known strengths, to check that a ruler reads them.

Heusel et al. 2017 (the FID paper, Fig. 1 and appendix A1) validated FID by disturbing real images
— Gaussian noise, Gaussian blur, implanted black rectangles, swirl, salt-and-pepper noise, and
contamination with images of another data set — and showing that the distance rises with the
strength of each. eval.sanity runs every ruler over these curves; here are the disturbances
themselves, plus three faults a GAN has and Heusel did not test: washed-out colour, low contrast
and dropped modes.

Every function maps uint8 N×3×H×W images to uint8 images of the same shape, is pure (no global
random state is read or moved: randomness comes from `seed`) and is the identity at strength 0.
The same seed draws the same random numbers at every strength, so a stronger disturbance is the
weaker one plus more (the same noise field scaled up, a superset of rectangles, of salted pixels,
of replaced faces, of dropped clusters): curves over strength are smooth instead of re-drawn at
every step (common random numbers).

    from eval.disturb import DISTURBANCES, gaussian_blur
    blurred = gaussian_blur(real_uint8, 1.5)                     # σ = 1.5 px
    d = DISTURBANCES["noise"]
    for s in d.strengths:
        print(d.label(s), d.apply(real_uint8, s, seed=0).float().mean())
    d.phrase(0.07)   # 'real faces with Gaussian noise σ = 0.07'

Disturbances that need more than the images (`Disturbance.needs`): "modes" takes per-image
`features` to cluster (default: 8×8 colour thumbnails of the images) or their k-means `clusters`;
"random-init" takes a `pool` of generated images (default: `random_init_samples`, drawn from a
randomly initialised generator).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

# Rec. 601 luma, the weights PIL's convert("L") uses: "grey" here is what a greyscale photo shows.
LUMA = (0.299, 0.587, 0.114)
SWIRL_RADIUS = 100.0  # skimage.transform.swirl's default radius, in px
MODE_CLUSTERS = 20    # k-means clusters for mode dropping: 5 % of the faces each, on average


def _check(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = getattr(images, "dtype", None)
        raise ValueError(f"images must be a uint8 N×3×H×W tensor, got {shape} of {dtype}")


def _strength(value: float, name: str, lo: float = 0.0, hi: float = math.inf) -> float:
    value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {value:g}")
    return value


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 255] units → uint8, rounded (not truncated: a no-op must stay a no-op)."""
    return x.round().clamp(0, 255).to(torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ---- blur, noise, salt and pepper, rectangles, swirl ------------------------------------------------

def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """size×size matrix of a 1-D Gaussian blur (radius ⌈3σ⌉) with replicated edges: row i holds the
    weights of output pixel i over the input pixels (taps beyond the edge land on the edge pixel)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    rows = torch.arange(size).view(-1, 1)
    cols = (rows + t.long().view(1, -1)).clamp(0, size - 1)
    m = torch.zeros(size, size, dtype=torch.float64)
    m.scatter_add_(1, cols, k.expand(size, -1).contiguous())
    return m


def gaussian_blur(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation `sigma` px (kernel radius ⌈3σ⌉).

    Edges are replicated, not zero-padded, so a constant image stays constant and the border does
    not darken. Done as two small matrix products (H×H and W×W blur matrices): on a CPU that is
    several times faster than a convolution with a long 1-D kernel. `seed` is unused (no
    randomness); it is there so every disturbance is called alike."""
    _check(images)
    sigma = _strength(sigma, "blur σ")
    if sigma == 0:
        return images.clone()
    _, _, h, w = images.shape
    mh, mw = _blur_matrix(h, sigma).float(), _blur_matrix(w, sigma).float()
    return _to_uint8(mh @ images.float() @ mw.T)


def gaussian_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Add N(0, σ²) per pixel and channel, σ in units of the full range ([0, 1] images), then clip."""
    _check(images)
    sigma = _strength(sigma, "noise σ")
    if sigma == 0:
        return images.clone()
    noise = torch.randn(images.shape, generator=_gen(seed))
    return _to_uint8(images.float() + 255.0 * sigma * noise)


def salt_and_pepper(images: torch.Tensor, share: float, seed: int = 0) -> torch.Tensor:
    """Set a `share` of the pixels (all three channels) to black or white, half each, at random."""
    _check(images)
    share = _strength(share, "salt-and-pepper share", 0.0, 1.0)
    n, _, h, w = images.shape
    g = _gen(seed)
    u = torch.rand(n, 1, h, w, generator=g)       # pixel is hit when u < share: nested over strengths
    white = torch.rand(n, 1, h, w, generator=g) < 0.5
    hit = u < share
    out = images.clone()
    out.masked_fill_(hit & white, 255)
    out.masked_fill_(hit & ~white, 0)
    return out


def black_rectangles(images: torch.Tensor, count: float, seed: int = 0,
                     min_side: float = 1 / 8, max_side: float = 1 / 4) -> torch.Tensor:
    """Implant `count` black rectangles per image at random positions, each side uniform in
    [min_side, max_side] of the image side (8–16 px at 64×64), as Heusel et al.'s Fig. 1.

    Rectangles are drawn one after another from the seed, so count k's rectangles are the first k
    of count k + 1's. A non-integer count is rounded (translations may name 2.4 rectangles: read it
    as "between 2 and 3")."""
    _check(images)
    count = _strength(count, "rectangle count")
    k = int(round(count))
    out = images.clone()
    if k == 0:
        return out
    n, _, h, w = images.shape
    g = _gen(seed)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    for _ in range(k):
        u = torch.rand(n, 4, generator=g)
        rh = (h * (min_side + (max_side - min_side) * u[:, 0])).round().clamp(min=1).long()
        rw = (w * (min_side + (max_side - min_side) * u[:, 1])).round().clamp(min=1).long()
        y0 = (u[:, 2] * (h - rh + 1)).floor().long()
        x0 = (u[:, 3] * (w - rw + 1)).floor().long()
        mask |= ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + rh).view(-1, 1, 1))
                 & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + rw).view(-1, 1, 1)))
    out.masked_fill_(mask[:, None], 0)
    return out


def swirl(images: torch.Tensor, strength: float, seed: int = 0, radius: float = SWIRL_RADIUS,
          rotation: float = 0.0) -> torch.Tensor:
    """skimage.transform.swirl's warp around the image centre, through grid_sample.

    skimage's definition: the output pixel at distance ρ and angle φ from the centre ((W−1)/2,
    (H−1)/2) is read from the input at the same ρ and angle φ + θ(ρ), with
    θ(ρ) = rotation + strength·exp(−ρ / r), r = radius·ln 2 / 5, so `strength` is the twist at the
    centre in radians and at ρ = radius it has decayed to exp(−5 / ln 2) ≈ 1/1000 of that. With the
    default radius 100, r ≈ 13.9 px: at the edge of a 64×64 face (ρ = 32) the twist is a tenth of
    the centre's. Two departures from skimage's defaults, both so that the curve measures the warp:
    bicubic instead of bilinear sampling (bilinear blurs every pixel that moves by a fraction of a
    pixel, so at small strengths a ruler saw the resampling blur — more at strength 0.25 than at
    0.5 — not the twist), and a mirrored instead of a black outside (black corners would be the
    rectangles' fault). `seed` is unused (no randomness)."""
    _check(images)
    strength = _strength(strength, "swirl strength", -math.inf, math.inf)
    if strength == 0 and rotation == 0:
        return images.clone()
    n, _, h, w = images.shape
    x0, y0 = (w - 1) / 2, (h - 1) / 2
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                          indexing="ij")
    rho = torch.sqrt((x - x0) ** 2 + (y - y0) ** 2)
    theta = rotation + strength * torch.exp(-rho / (radius / 5 * math.log(2))) + torch.atan2(y - y0, x - x0)
    sx, sy = x0 + rho * torch.cos(theta), y0 + rho * torch.sin(theta)
    # align_corners=True: −1 and +1 are the centres of the first and last pixels.
    grid = torch.stack([2 * sx / max(w - 1, 1) - 1, 2 * sy / max(h - 1, 1) - 1], dim=-1).float()
    out = F.grid_sample(images.float(), grid.expand(n, h, w, 2), mode="bicubic",
                        padding_mode="reflection", align_corners=True)
    return _to_uint8(out)


# ---- colour -------------------------------------------------------------------------------------

def _luma(x: torch.Tensor) -> torch.Tensor:
    wts = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * wts).sum(1, keepdim=True)


def desaturate(images: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Blend each pixel toward its own grey (Rec. 601 luma) by `factor`: 0 keeps the colours, 1 is a
    greyscale image. The washed-out fault; brightness (luma) is unchanged, so a colour-blind ruler
    cannot see it. `seed` is unused."""
    _check(images)
    factor = _strength(factor, "desaturation factor", 0.0, 1.0)
    if factor == 0:
        return images.clone()
    x = images.float()
    grey = _luma(x)
    return _to_uint8(grey + (1 - factor) * (x - grey))


def reduce_contrast(images: torch.Tensor, factor: float, seed: int = 0) -> torch.Tensor:
    """Blend each image toward its own mean grey level by `factor`: 0 keeps it, 1 is a flat image.
    The image's mean brightness is unchanged. `seed` is unused."""
    _check(images)
    factor = _strength(factor, "contrast reduction", 0.0, 1.0)
    if factor == 0:
        return images.clone()
    x = images.float()
    mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)
    return _to_uint8(mean + (1 - factor) * (x - mean))


# ---- whole faces: dropped modes, random-init contamination --------------------------------------

def thumbnails(images: torch.Tensor, side: int = 8) -> torch.Tensor:
    """N×(3·side²) float features: each image area-averaged to side×side, in [0, 1]. Cheap, and
    k-means on them groups faces by hair, skin and background colour and by layout."""
    _check(images)
    return F.adaptive_avg_pool2d(images.float() / 255.0, side).flatten(1)


class Clusters(NamedTuple):
    """k-means of per-image features: each face's cluster and each cluster's centre."""
    labels: np.ndarray    # N cluster ids in 0..k−1
    centers: np.ndarray   # k×D


def mode_clusters(features: torch.Tensor | np.ndarray, k: int = MODE_CLUSTERS, seed: int = 0) -> Clusters:
    """k-means (scikit-learn KMeans, seeded, 4 restarts) of N×D per-image features."""
    from sklearn.cluster import KMeans  # deferred: the pixel disturbances do not need scikit-learn

    x = np.asarray(torch.as_tensor(features).detach().cpu().double().flatten(1))
    k = min(int(k), len(x))
    if k < 2:
        raise ValueError(f"mode dropping needs at least 2 clusters and 2 images, got k={k}, N={len(x)}")
    km = KMeans(n_clusters=k, n_init=4, random_state=int(seed)).fit(x)
    return Clusters(km.labels_.astype(np.int64), km.cluster_centers_)


class ModeDrop(NamedTuple):
    """A mode-dropping plan: the cluster of every face, the clusters dropped, and for each output
    row the input row it copies (itself when kept, a kept face when its cluster was dropped)."""
    labels: np.ndarray   # N cluster labels
    dropped: list[int]   # dropped cluster ids, in dropping order
    index: np.ndarray    # N input rows: output[i] = images[index[i]]

    @property
    def share(self) -> float:
        """The share of faces actually removed (clusters are whole, so near the asked share)."""
        return float(np.isin(self.labels, self.dropped).mean())


def mode_drop_plan(clusters: Clusters | np.ndarray, share: float, seed: int = 0) -> ModeDrop:
    """Drop whole clusters until the dropped share is the nearest to `share` that whole clusters
    allow (never every cluster); refill each dropped face's row with a kept face, drawn without
    replacement while there are enough (so at share ≤ ½ no kept face appears more than twice), so
    N stays the same and a ruler's small-sample bias does not move.

    The order: a seeded random cluster first, then the clusters whose centres are nearest to its
    centre — one region of face space goes missing and grows with the share, as when a generator
    never learnt, say, dark hair. (Clusters picked at random from all over could cancel each
    other's shift of the mean, and a ruler's curve would turn back for no fault of the ruler.)
    Given bare labels instead of `Clusters`, the order is random. The same seed gives the same
    order at every share, so a larger share drops a superset of clusters."""
    share = _strength(share, "mode-dropping share", 0.0, 1.0)
    labels = np.asarray(clusters.labels if isinstance(clusters, Clusters) else clusters)
    n = len(labels)
    ids, sizes = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(int(seed))
    if isinstance(clusters, Clusters):
        centers = np.asarray(clusters.centers)[ids]
        anchor = centers[rng.integers(len(ids))]
        order = np.argsort(((centers - anchor) ** 2).sum(1), kind="stable")
    else:
        order = rng.permutation(len(ids))
    dropped: list[int] = []
    removed = 0
    for j in order[:-1]:  # keep at least one cluster
        if abs(removed + sizes[j] - share * n) >= abs(removed - share * n):
            break  # the next cluster would overshoot more than stopping here misses
        dropped.append(int(ids[j]))
        removed += int(sizes[j])
    index = np.arange(n)
    gone = np.flatnonzero(np.isin(labels, dropped))
    if len(gone):
        kept = np.flatnonzero(~np.isin(labels, dropped))
        fill = np.random.default_rng([int(seed), 1])  # its own stream: the order above is unchanged
        index[gone] = fill.choice(kept, size=len(gone), replace=len(gone) > len(kept))
    return ModeDrop(labels, dropped, index)


def drop_modes(images: torch.Tensor, share: float, seed: int = 0, features=None,
               k: int = MODE_CLUSTERS, clusters: Clusters | None = None) -> torch.Tensor:
    """Mode dropping: k-means the faces into k clusters (on `features`, N×D per-image descriptors
    such as a ruler's own; default `thumbnails(images)`), remove whole neighbouring clusters
    holding about `share` of the faces and refill their rows with resampled kept faces
    (`mode_drop_plan`). `clusters` (from `mode_clusters`) skips the k-means, so a run over many
    shares fits it once.

    The refill keeps N, so the disturbed set differs from the real one only in what it lacks:
    a shrunken set would also move every ruler's small-sample bias."""
    _check(images)
    share = _strength(share, "mode-dropping share", 0.0, 1.0)
    if share == 0:
        return images.clone()
    if clusters is None:
        feats = thumbnails(images) if features is None else features
        if len(feats) != len(images):
            raise ValueError(f"features has {len(feats)} rows for {len(images)} images")
        clusters = mode_clusters(feats, k, seed)
    if len(clusters.labels) != len(images):
        raise ValueError(f"clusters label {len(clusters.labels)} faces, not the {len(images)} images")
    plan = mode_drop_plan(clusters, share, seed)
    return images[torch.as_tensor(plan.index)].clone()


def random_init_samples(n: int, seed: int = 0, size: int = 64, model_seed: int = 0) -> torch.Tensor:
    """n uint8 samples of a randomly initialised generator (PyTorch's default init under
    torch.manual_seed(model_seed), eval mode: the random-init ceiling row of the evaluation),
    latents sample_z(n, z_dim, seed). The global RNG is restored afterwards."""
    from animegan.models import Generator
    from animegan.sampling import generate, sample_z, to_uint8

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(model_seed))
        g = Generator().eval()
    imgs = to_uint8(generate(g, sample_z(int(n), g.z_dim, int(seed))))
    if imgs.shape[-1] != size:
        imgs = _to_uint8(F.interpolate(imgs.float(), size=(size, size), mode="bilinear", antialias=True))
    return imgs


def contaminate(images: torch.Tensor, share: float, seed: int = 0, pool: torch.Tensor | None = None) -> torch.Tensor:
    """Replace round(share·N) faces, chosen at random, with the first rows of `pool` (uint8 images
    of the same size; default `random_init_samples` with this seed): Heusel et al.'s mixing in of
    another data set, with the worst generator as that set. The chosen rows are a prefix of one
    seeded permutation, so a larger share replaces a superset."""
    _check(images)
    share = _strength(share, "contamination share", 0.0, 1.0)
    n = len(images)
    m = int(round(share * n))
    out = images.clone()
    if m == 0:
        return out
    if pool is None:
        pool = random_init_samples(m, seed=seed, size=images.shape[-1])
    _check(pool)
    if pool.shape[1:] != images.shape[1:] or len(pool) < m:
        raise ValueError(f"contamination pool must hold ≥ {m} images of {tuple(images.shape[1:])}, "
                         f"got {tuple(pool.shape)}")
    rows = torch.randperm(n, generator=_gen(seed))[:m]
    out[rows] = pool[:m]
    return out


# ---- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Disturbance:
    """One disturbance as the sanity suite and its readers use it.

    `unit` is a str.format template of one strength (× `scale`) for people; `reads` completes
    "real faces …" with that label, which is how a translation is phrased."""
    name: str
    fn: Callable[..., torch.Tensor]   # fn(images, strength, seed=…, **{need: …})
    strengths: tuple[float, ...]      # default strengths, increasing, 0 (identity) excluded
    unit: str                         # "σ = {:.1f} px"
    description: str                  # one line for people
    reads: str                        # "blurred with {}": "real faces blurred with σ = 1.3 px"
    axis: str = ""                    # a plot axis: "blur σ (px)"
    scale: float = 1.0                # shown value = strength × scale (shares as %)
    needs: tuple[str, ...] = ()       # extra keyword inputs it takes: "features", "clusters", "pool"

    def apply(self, images: torch.Tensor, strength: float, seed: int = 0, **extra) -> torch.Tensor:
        return self.fn(images, strength, seed=seed, **{k: extra[k] for k in self.needs if k in extra})

    def label(self, strength: float) -> str:
        return self.unit.format(strength * self.scale)

    def phrase(self, strength: float) -> str:
        return "real faces " + self.reads.format(self.label(strength))

    def info(self) -> dict:
        """The JSON-able part: what a reader needs to phrase a strength without this module."""
        return {"name": self.name, "strengths": list(self.strengths), "unit": self.unit, "scale": self.scale,
                "reads": self.reads, "axis": self.axis, "description": self.description}


DISTURBANCES: dict[str, Disturbance] = {d.name: d for d in (
    Disturbance("blur", gaussian_blur, (0.5, 1.0, 1.5, 2.0, 3.0), "σ = {:.1f} px",
                "Gaussian blur, σ in pixels", "blurred with {}", axis="blur σ (px)"),
    Disturbance("noise", gaussian_noise, (0.02, 0.05, 0.1, 0.15, 0.2), "noise σ = {:.2f}",
                "additive Gaussian noise, σ in units of the full range [0, 1], clipped",
                "with Gaussian {}", axis="noise σ (of the range [0, 1])"),
    Disturbance("salt-pepper", salt_and_pepper, (0.01, 0.02, 0.05, 0.1, 0.2), "{:.0f} % of the pixels",
                "salt-and-pepper noise: a share of pixels set to black or white",
                "with salt-and-pepper noise on {}", axis="pixels salted (%)", scale=100),
    Disturbance("rectangles", black_rectangles, (1, 2, 3, 4, 6), "{:.1f} black rectangles",
                "black rectangles (sides 1/8–1/4 of the image) implanted at random, count per image",
                "with {} each", axis="black rectangles per face"),
    Disturbance("swirl", swirl, (0.25, 0.5, 1.0, 2.0, 4.0), "swirl strength {:.2g}",
                f"skimage's swirl about the centre, strength = twist at the centre in rad, radius {SWIRL_RADIUS:g} px",
                "warped with {}", axis="swirl strength (rad at the centre)"),
    Disturbance("desaturate", desaturate, (0.1, 0.25, 0.5, 0.75, 1.0), "{:.0f} % desaturated",
                "colours blended toward their grey (luma kept): washed out", "{}", axis="desaturation (%)",
                scale=100),
    Disturbance("contrast", reduce_contrast, (0.1, 0.2, 0.3, 0.5, 0.7), "contrast reduced by {:.0f} %",
                "each image blended toward its mean grey level", "with {}", axis="contrast reduction (%)",
                scale=100),
    Disturbance("modes", drop_modes, (0.1, 0.2, 0.3, 0.4, 0.5), "{:.0f} % of the faces",
                f"mode dropping: neighbouring k-means clusters (k = {MODE_CLUSTERS}) removed, refilled with kept faces",
                "with whole modes holding {} dropped", axis="faces in dropped modes (%)", scale=100,
                needs=("features", "clusters")),
    Disturbance("random-init", contaminate, (0.05, 0.1, 0.2, 0.3, 0.5), "{:.0f} % of the faces",
                "contamination: a share of faces replaced by random-init generator samples",
                "with {} replaced by random-init samples", axis="faces replaced (%)", scale=100,
                needs=("pool",)),
)}
