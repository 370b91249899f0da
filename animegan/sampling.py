"""Latents from seeds, interpolation, batched generation and image conversion, shared by
training, evaluation and the demo.

    z = z_from_seed(42, 100)           # the same z for seed 42 everywhere
    zs = sample_z(5000, 100, seed=0)   # a reproducible batch
    images = to_uint8(generate(G, zs)) # 5000×3×64×64 uint8, in batches
    frames = [slerp(za, zb, t) for t in torch.linspace(0, 1, 16)]
    recalibrate_batchnorm(G_ema)       # BatchNorm statistics that fit the (EMA) weights
"""
from __future__ import annotations

import torch
from torch import nn


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """z ~ N(0, I) of length z_dim, a pure function of the seed (CPU RNG, any device later)."""
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(int(seed)))


def sample_z(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """n×z_dim latents from one seeded CPU generator."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(int(seed)))


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (White 2016): keeps |z| typical of a Gaussian along the path."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:  # nearly parallel: lerp is exact enough and avoids 0/0
        return lerp(a, b, t)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float B×C×H×W → uint8 B×C×H×W on the CPU."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


@torch.inference_mode()
def generate(generator: nn.Module, z: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Images of N latents, `batch` at a time on the generator's device: float N×C×H×W in [-1, 1], CPU."""
    dev = next(generator.parameters()).device
    return torch.cat([generator(z[i:i + batch].to(dev)).float().cpu() for i in range(0, len(z), batch)])


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, batches: int = 4, batch_size: int = 256, seed: int = 0) -> None:
    """Recompute every BatchNorm's running statistics from `batches` batches of z ~ N(0, I).

    An EMA of the weights does not come with matching statistics: the running means and variances
    belong to the live generator. BigGAN's "standing statistics": run the averaged weights on fresh
    noise in training mode and keep the cumulative average (momentum=None) of what each layer sees.
    Leaves the generator in eval mode; the noise has its own seed, so no other random stream moves."""
    bns = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    dev = next(generator.parameters()).device
    g = torch.Generator().manual_seed(seed)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    generator.train()
    try:
        for _ in range(batches):
            generator(torch.randn(batch_size, generator.z_dim, generator=g).to(dev))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        generator.eval()
