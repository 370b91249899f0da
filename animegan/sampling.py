"""Latents from seeds, interpolation and image conversion, shared by train, eval and app.

    z = z_from_seed(42, 100)           # the same z for seed 42 everywhere
    zs = sample_z(5000, 100, seed=0)   # a reproducible batch
    frames = [slerp(za, zb, t) for t in torch.linspace(0, 1, 16)]
"""
from __future__ import annotations

import torch


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
