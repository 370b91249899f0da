"""The report's 64×64 DCGAN generator and discriminator (Radford et al. 2016).

Generator: z (B×z_dim) → 4 blocks of ConvTranspose2d → BatchNorm → ReLU → a last
ConvTranspose2d to RGB → Tanh. Discriminator / critic: 5 convolutions with
LeakyReLU(0.2) and a norm on the middle three; it returns *logits* (B), the
Sigmoid of the report lives inside BCEWithLogitsLoss.

    G = Generator()                      # 3,576,704 parameters
    D = Discriminator(norm="layer")      # WGAN-GP critic without BatchNorm
    img = G(torch.randn(8, 100))         # 8×3×64×64 in [-1, 1]

`Generator` is a `PyTorchModelHubMixin`, so `save_pretrained` / `from_pretrained`
/ `push_to_hub` work on a local folder or a Hub repo id; its constructor
arguments are stored in config.json and rebuild it with no flags.
"""
from __future__ import annotations

import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

NORMS = ("batch", "layer", "none")


def _n_blocks(img_size: int) -> int:
    # 4×4 → img_size by doubling: 64 needs 4 upsampling steps after the first block.
    n = int(math.log2(img_size)) - 2
    if n < 1 or 2 ** (n + 2) != img_size:
        raise ValueError(f"img_size must be a power of two ≥ 8, got {img_size}")
    return n


class Generator(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="animegan",
    repo_url="https://github.com/animegan/animegan",
    tags=["gan", "dcgan", "anime", "image-generation", "unconditional-image-generation"],
    license="mit",
):
    def __init__(self, z_dim: int = 100, ngf: int = 64, img_channels: int = 3, img_size: int = 64):
        super().__init__()
        self.z_dim, self.ngf, self.img_channels, self.img_size = z_dim, ngf, img_channels, img_size
        n = _n_blocks(img_size)
        ch = [ngf * 2 ** (n - 1 - i) for i in range(n)]  # 64: 512, 256, 128, 64

        def block(cin: int, cout: int, stride: int, pad: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        layers = block(z_dim, ch[0], 1, 0)  # B×512×4×4
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += block(cin, cout, 2, 1)  # doubles H, W: 8, 16, 32
        layers += [nn.ConvTranspose2d(ch[-1], img_channels, 4, 2, 1, bias=False), nn.Tanh()]  # B×3×64×64
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]  # B×z_dim → B×z_dim×1×1
        return self.net(z)


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "layer":
        # GroupNorm with one group = layer norm over C×H×W, per sample: keeps the
        # gradient penalty per-sample (Gulrajani et al. 2017, §4).
        return nn.GroupNorm(1, c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


class Discriminator(nn.Module):
    def __init__(self, ndf: int = 64, img_channels: int = 3, img_size: int = 64, norm: str = "batch"):
        super().__init__()
        n = _n_blocks(img_size)
        ch = [ndf * 2**i for i in range(n)]  # 64: 64, 128, 256, 512
        layers: list[nn.Module] = [nn.Conv2d(img_channels, ch[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(ch[:-1], ch[1:]):  # halves H, W: 16, 8, 4
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), _norm(norm, cout), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ch[-1], 1, 4, 1, 0, bias=False)]  # B×1×1×1
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # B logits


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
