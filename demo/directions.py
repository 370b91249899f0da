"""Unsupervised latent directions per generator, GANSpace-style (Härkönen et al. 2020).

Sample z, take the generator's first-block activations (the 512×4×4 map after its first
BatchNorm/ReLU, `G.net[:3]`, flattened), run PCA on them and regress z on the standardised
principal coordinates: row i of `Directions.steps` is the change of z that moves activation
component i by one standard deviation. Edits then stay in z, so every edited face is one the
generator draws for some input (an edit in activation space could hand the later blocks
negative "post-ReLU" values they never saw).

    dirs = find_directions(G)                 # k = 6, deterministic for given weights
    z2 = z + 1.5 * dirs.steps[0]              # +1.5σ along the first principal direction

    python -m demo.directions --figure docs/figures/directions.png   # first 3 directions, both models
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA

from animegan.sampling import sample_z

K = 6             # sliders on the Explore tab
N_SAMPLES = 4096  # enough for stable leading components (cosine > 0.99 against 5,000), ~1-2 s per model
SEED = 0


@dataclass(frozen=True)
class Directions:
    """The first k principal directions of one generator, in z and in activation space."""

    steps: torch.Tensor       # k×z_dim: z change for +1σ along component i
    components: np.ndarray    # k×D: unit principal axes of the flattened first-block activations
    mean: np.ndarray          # D: mean activation
    sigma: np.ndarray         # k: standard deviation of each principal coordinate
    explained: np.ndarray     # k: share of the total activation variance each component explains

    def coordinates(self, activations: np.ndarray) -> np.ndarray:
        """B×D activations → B×k principal coordinates in units of σ."""
        return (activations - self.mean) @ self.components.T / self.sigma


def first_block(generator: torch.nn.Module, z: torch.Tensor) -> np.ndarray:
    """B×z_dim latents → B×D first-block activations (ConvTranspose → BatchNorm → ReLU), flattened."""
    with torch.inference_mode():
        return generator.net[:3](z[:, :, None, None].to(next(generator.parameters()).device)).flatten(1).cpu().numpy()


def find_directions(generator: torch.nn.Module, k: int = K, n: int = N_SAMPLES, seed: int = SEED) -> Directions:
    """PCA of first-block activations of n seeded latents, regressed back to z (same weights → same result)."""
    z = sample_z(n, generator.z_dim, seed=seed)
    acts = first_block(generator, z)  # float32: half the memory traffic of float64, same components
    # A fixed number of power iterations and random_state make the randomised solver repeatable.
    pca = PCA(n_components=k, svd_solver="randomized", iterated_power=4, random_state=seed).fit(acts)
    sigma = np.sqrt(pca.explained_variance_)
    coords = pca.transform(acts) / sigma  # n×k, unit variance and uncorrelated
    zc = z.numpy() - z.numpy().mean(0)
    steps, *_ = np.linalg.lstsq(coords, zc, rcond=None)  # k×z_dim: least-squares z ≈ coords @ steps
    return Directions(torch.from_numpy(steps).float(), pca.components_, pca.mean_, sigma, pca.explained_variance_ratio_)


THUMB_OFFSETS = (-3.0, -1.5, 0.0, 1.5, 3.0)  # a strip of thumbnails along one direction, in σ


def moved_latents(z: torch.Tensor, steps: torch.Tensor, rows: int,
                  offsets: tuple[float, ...] = THUMB_OFFSETS) -> torch.Tensor:
    """(rows·len(offsets))×z_dim: z (z_dim or 1×z_dim) moved by each offset along each of the first
    `rows` directions (row-major: direction 1's strip first)."""
    return torch.stack([(z + o * steps[i]).reshape(-1) for i in range(rows) for o in offsets])


def draw_figure(path: str, gan: str, wgan_gp: str, seed: int, truncation: float) -> None:
    """The first 3 directions of each model on one seed, −3σ … +3σ, the two models side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    from animegan.checkpoint import load_generator
    from animegan.sampling import z_from_seed

    offsets = THUMB_OFFSETS
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (title, source) in zip(axes, (("GAN", gan), ("WGAN-GP", wgan_gp))):
        g = load_generator(source)
        dirs = find_directions(g)
        with torch.inference_mode():
            imgs = g(moved_latents(z_from_seed(seed, g.z_dim) * truncation, dirs.steps, 3))
        grid = make_grid((imgs + 1) / 2, nrow=len(offsets), padding=2, pad_value=1).permute(1, 2, 0).numpy()
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(f"{title} ({source})")
        ax.set_xticks([33 + 66 * j for j in range(len(offsets))], [f"{o:+g}σ" if o else "0" for o in offsets])
        ax.set_yticks([33 + 66 * i for i in range(3)],
                      [f"PC{i + 1}\n{100 * dirs.explained[i]:.1f} %" for i in range(3)])
        ax.tick_params(length=0)
    fig.suptitle(f"First three principal directions of each generator, seed {seed}, truncation {truncation:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Draw the first principal directions of both generators on one seed.")
    p.add_argument("--figure", required=True, help="output PNG, e.g. docs/figures/directions.png")
    p.add_argument("--gan", default="checkpoints/gan", help="GAN generator folder or Hub repo id")
    p.add_argument("--wgan-gp", default="checkpoints/wgan-gp", help="WGAN-GP generator folder or Hub repo id")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--truncation", type=float, default=1.0)
    args = p.parse_args(argv)
    from animegan.checkpoint import GeneratorLoadError
    try:
        draw_figure(args.figure, args.gan, args.wgan_gp, args.seed, args.truncation)
    except GeneratorLoadError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
