"""Loss objects: one per variant, each with d_loss(D, real, fake) and g_loss(D, fake).

- `BCEGANLoss`: the report's GAN (Goodfellow et al. 2014, non-saturating G loss),
  computed on logits with BCEWithLogits — the same objective as Sigmoid + BCE,
  without log(0).
- `WGANGPLoss`: WGAN-GP (Gulrajani et al. 2017): critic loss
  E[D(fake)] − E[D(real)] + λ·E[(‖∇D(x̂)‖₂ − 1)²] on random interpolates x̂.

Both return (loss, stats) where stats are floats-to-be for metrics.jsonl.
A third variant (hinge, say) is one more small class and one entry in LOSSES.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lam: float = 10.0,
                     eps: torch.Tensor | None = None, norm: str = "sample") -> torch.Tensor:
    """λ·mean((‖∇ₓD(x̂)‖ − 1)²) with x̂ = ε·real + (1−ε)·fake, one ε per sample.

    norm="sample": one L2 norm per sample over C×H×W (the WGAN-GP definition).
    norm="pixel": the report's bug, a norm over channels per pixel (B×H×W of them).
    ε is drawn for the actual batch (works for a last, smaller batch and for B = 1).
    """
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, 1, 1, 1, device=real.device)
    eps = eps.to(real.dtype).view(b, 1, 1, 1)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # B×C×H×W
    out = critic(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    grad = grad.float()
    norms = grad.flatten(1).norm(2, dim=1) if norm == "sample" else grad.norm(2, dim=1)  # B or B×H×W
    return lam * ((norms - 1) ** 2).mean()


class BCEGANLoss:
    def d_loss(self, D, real, fake, **_):
        lr, lf = D(real).float(), D(fake.detach()).float()
        loss = F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + \
            F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        return loss, {"d_loss": loss.detach(), "d_real": torch.sigmoid(lr).mean().detach(),
                      "d_fake": torch.sigmoid(lf).mean().detach()}

    def g_loss(self, D, fake):
        lf = D(fake).float()
        loss = F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf))  # non-saturating: real = 1
        return loss, {"g_loss": loss.detach()}


class WGANGPLoss:
    def __init__(self, lam: float = 10.0, norm: str = "sample"):
        self.lam, self.norm = lam, norm

    def d_loss(self, D, real, fake, eps=None):
        lr, lf = D(real).float(), D(fake.detach()).float()
        wdist = lr.mean() - lf.mean()  # critic's Wasserstein estimate
        gp = gradient_penalty(D, real, fake, self.lam, eps, self.norm)
        loss = -wdist + gp
        return loss, {"d_loss": loss.detach(), "wasserstein": wdist.detach(), "gp": gp.detach()}

    def g_loss(self, D, fake):
        loss = -D(fake).float().mean()
        return loss, {"g_loss": loss.detach()}


def make_loss(cfg):
    if cfg.loss == "bce":
        return BCEGANLoss()
    if cfg.loss == "wgan-gp":
        return WGANGPLoss(cfg.gp_lambda, cfg.gp_norm)
    raise ValueError(f"unknown loss {cfg.loss!r}")
