"""`c2st`: classifier two-sample test — can a small CNN tell real faces from generated ones?

Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017. Half of each set (real: label 1,
generated: label 0) trains a small CNN; its accuracy on the other, held-out half is the score. 0.5 means
the two sets cannot be told apart; 1.0 means every held-out image was classified right. The 95 %
interval is Clopper–Pearson's exact binomial interval over the held-out images.

    from eval.rulers.c2st import C2ST
    ruler = C2ST()
    ruler.score(real_uint8, fake_uint8, seed=0)   # {"c2st": 0.74, "c2st_lo": 0.71, "c2st_hi": 0.77}
    fit = ruler.fit(real_uint8, fake_uint8, seed=0)
    fit.surest_fakes(16)                          # indices of the held-out fakes it finds most obviously fake

Choices, and why:
- The CNN sees the images as they are, in [-1, 1]: no per-set normalisation and no colour or blur
  augmentation, which would hide exactly the faults it must find. Random horizontal flips only.
- Small and fast on a CPU: four stride-2 3×3 convolutions (16-32-64-128 channels, batch norm, leaky
  ReLU), global average pool, linear; channels-last float32 (bf16 autocast is slower without AMX).
- Adam (lr 2e-3), batches of 64, at most 30 epochs; 20 % of the training half is a validation split,
  and the weights of the epoch with the lowest validation loss are kept (patience 5), so a hard pair
  (real vs real) stops early instead of memorising the training half, and a solved one (validation
  loss under 0.01) stops at once. Before each validation the batch-norm statistics are recomputed on
  the training images ("precise BN"); an epoch is at least 512 images, so small sets train too.
- Deterministic: initialisation, split, batch order and flips come from the seed; with the same seed
  and thread count the accuracy is bit-identical on CPU.
- `paired` trains one classifier per generated set (same split indices and seed for all), then
  bootstraps the held-out images jointly: every round draws the same real rows and the same generated
  rows (the sets share latents row for row) for every model. The spread is that of the held-out
  sample only; the classifier's own training noise is not in it, and between seeds the accuracy
  can move by more than the interval's half-width: repeat seeds before trusting a small difference.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from eval.rulers import Ruler, register
from eval.schema import Metric

CHANNELS = (16, 32, 64, 128)
MAX_EPOCHS = 30
PATIENCE = 5          # epochs without a better validation loss before stopping
SOLVED_LOSS = 0.01    # validation loss at which the sets count as separated: more epochs only sharpen it
MIN_EPOCH = 512       # an epoch is a pass over the training images, or over this many if fewer
PRECISE_BN = 512      # training images whose batch statistics the evaluation uses
BATCH = 64
LR = 2e-3
VAL_SHARE = 0.2       # of the training half, per side
LEVEL = 0.95          # interval coverage


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper–Pearson 1934) two-sided binomial interval for k successes in n trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ k ≤ n and n > 0, got k={k}, n={n}")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def classifier(channels: tuple[int, ...] = CHANNELS) -> nn.Module:
    """Strided 3×3 convolutions (64 → 4 pixels), batch norm, leaky ReLU; global mean; one logit (real).

    Batch norm, not a per-sample norm: that would hide global brightness and contrast faults. Without
    any norm the net learned too slowly for early stopping to see progress on hard pairs."""
    layers, c_in = [], 3
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1))


def _to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×3×H×W → float32 in [-1, 1], channels-last (oneDNN's fast layout on CPU)."""
    return (images.to(torch.float32) / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def precise_batchnorm(net: nn.Module, x: torch.Tensor, order: torch.Tensor) -> None:
    """Set every batch norm's statistics to the average over the training images in `order` (first
    PRECISE_BN of them) under the current weights ("precise BN", Wu & Johnson 2021). The running
    averages lag the weights by dozens of steps, which made early epochs' validation scores noise."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    net.train()
    idx = order[:PRECISE_BN]
    for i in range(0, len(idx), BATCH):
        net(x[idx[i:i + BATCH]])
    for bn in bns:
        bn.momentum = 0.1


@torch.no_grad()
def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[i:i + 256]).squeeze(1) for i in range(0, len(x), 256)])


class Fit(NamedTuple):
    """One trained classifier's verdict on the held-out half."""
    accuracy: float
    lo: float
    hi: float
    real_test: np.ndarray     # indices into the real set of the held-out real images
    fake_test: np.ndarray     # indices into the generated set of the held-out generated images
    real_correct: np.ndarray  # bool, per held-out real image: classified real
    fake_correct: np.ndarray  # bool, per held-out generated image: classified generated
    fake_logit: np.ndarray    # per held-out generated image: the "real" logit (very negative = obviously fake)
    epochs: int               # epochs trained (early stopping), for the record

    def surest_fakes(self, k: int = 16) -> np.ndarray:
        """Indices (into the generated set) of the k held-out fakes the classifier is surest about —
        where a C2ST that latched onto a trivial artefact (a border, a checkerboard) shows it."""
        return self.fake_test[np.argsort(self.fake_logit, kind="stable")[:k]]


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train, validation, test indices of range(n): test is half, validation VAL_SHARE of the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = n // 2
    n_val = max(1, round(VAL_SHARE * n_train))
    return perm[:n_train - n_val], perm[n_train - n_val:n_train], perm[n_train:]


def train_classifier(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                     seed: int, channels: tuple[int, ...] = CHANNELS, max_epochs: int = MAX_EPOCHS,
                     patience: int = PATIENCE) -> tuple[nn.Module, int]:
    """Adam on BCE with random horizontal flips; returns the lowest-validation-loss weights, epochs run."""
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        net = classifier(channels).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    best, best_state, since, epoch = float("inf"), None, 0, 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        # Small sets would give an epoch of two or three steps, too few to learn anything before early
        # stopping looks: an epoch then repeats the set (fresh permutations) up to MIN_EPOCH images.
        reps = -(-MIN_EPOCH // len(x_train))
        order = torch.cat([torch.randperm(len(x_train), generator=g) for _ in range(reps)])
        flips = torch.rand(len(order), generator=g) < 0.5
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            xb = x_train[idx]
            xb = torch.where(flips[i:i + BATCH, None, None, None], xb.flip(3), xb)
            loss = F.binary_cross_entropy_with_logits(net(xb).squeeze(1), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        precise_batchnorm(net, x_train, order)
        val = float(F.binary_cross_entropy_with_logits(_logits(net, x_val), y_val))
        if val < best or best_state is None:
            best, since = val, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if val < SOLVED_LOSS:
                break
        else:
            since += 1
            if since >= patience:
                break
    net.load_state_dict(best_state)
    return net.eval(), epoch


@register
class C2ST(Ruler):
    """Held-out accuracy of a small CNN trained to tell real (1) from generated (0) (Lopez-Paz & Oquab 2017)."""

    name = "c2st"
    sees = "any tell a trained classifier finds"
    metrics = (
        Metric("c2st", "C2ST accuracy", "C2ST", "floor", "{:.3f}",
               "held-out accuracy of a small CNN telling real from generated; 0.5 = indistinguishable",
               limit=1.0),
        Metric("c2st_lo", "C2ST accuracy, 95 % low", "C2ST lo", "floor", "{:.3f}",
               "lower end of the 95 % Clopper–Pearson interval of the accuracy", limit=1.0),
        Metric("c2st_hi", "C2ST accuracy, 95 % high", "C2ST hi", "floor", "{:.3f}",
               "upper end of the 95 % Clopper–Pearson interval of the accuracy", limit=1.0),
    )
    cache_real = False  # the "descriptors" are the images themselves

    def __init__(self, channels: tuple[int, ...] = CHANNELS, max_epochs: int = MAX_EPOCHS,
                 patience: int = PATIENCE) -> None:
        self.channels, self.max_epochs, self.patience = tuple(channels), max_epochs, patience

    def identity(self) -> dict:
        return {"ruler": self.name, "version": 1, "channels": list(self.channels), "max_epochs": self.max_epochs,
                "patience": self.patience, "solved_loss": SOLVED_LOSS, "min_epoch": MIN_EPOCH,
                "precise_bn": PRECISE_BN, "batch": BATCH, "lr": LR, "val_share": VAL_SHARE,
                "augmentation": "horizontal flips", "interval": f"Clopper–Pearson {LEVEL:.0%}",
                "torch": torch.__version__, "threads": torch.get_num_threads()}

    def describe(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The images themselves, uint8 N×3×H×W, unchanged (the classifier is trained per comparison)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 N×3×H×W images, got {images.dtype} {tuple(images.shape)}")
        return images.cpu()

    def fit(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> Fit:
        """Train on half of each set (equal counts: the larger set is cut to the smaller's size), test on
        the other half. The split depends only on the set sizes and the seed, so generated sets of one
        size share their split indices."""
        n = min(len(ref), len(fake))
        if n < 8:
            raise ValueError(f"C2ST needs at least 8 images per side, got {len(ref)} real and {len(fake)} generated")
        r_train, r_val, r_test = split(n, seed)
        f_train, f_val, f_test = split(n, seed + 1)
        xr, xf = _to_input(ref[:n]), _to_input(fake[:n])
        ones, zeros = torch.ones(n), torch.zeros(n)
        net, epochs = train_classifier(
            torch.cat([xr[r_train], xf[f_train]]), torch.cat([ones[r_train], zeros[f_train]]),
            torch.cat([xr[r_val], xf[f_val]]), torch.cat([ones[r_val], zeros[f_val]]), seed,
            self.channels, self.max_epochs, self.patience)
        real_logit, fake_logit = _logits(net, xr[r_test]).numpy(), _logits(net, xf[f_test]).numpy()
        real_ok, fake_ok = real_logit > 0, fake_logit < 0
        k, total = int(real_ok.sum() + fake_ok.sum()), len(real_ok) + len(fake_ok)
        lo, hi = clopper_pearson(k, total)
        return Fit(k / total, lo, hi, r_test, f_test, real_ok, fake_ok, fake_logit, epochs)

    paired_keys = ("c2st",)  # the interval's ends move with the accuracy; resampling them adds nothing

    def score(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0,
              keys: tuple[str, ...] | None = None) -> dict[str, float]:
        return self._scores(self.fit(ref, fake, seed))

    @staticmethod
    def _scores(f: "Fit") -> dict[str, float]:
        return {"c2st": f.accuracy, "c2st_lo": f.lo, "c2st_hi": f.hi}

    def paired(self, ref: torch.Tensor, fakes: list[torch.Tensor], rounds: int = 20, seed: int = 0) -> np.ndarray:
        """rounds × len(fakes) × 1: one classifier per generated set (same split, same seed), then
        `bootstrap` of their held-out verdicts."""
        return self.measure(ref, fakes, rounds, seed)[1]

    def measure(self, ref: torch.Tensor, fakes: list[torch.Tensor], rounds: int = 20,
                seed: int = 0) -> tuple[list[dict[str, float]], np.ndarray]:
        """Each set's scores and the paired bootstrap rounds from one classifier per set (trained once)."""
        n = min(len(f) for f in fakes)
        fits = [self.fit(ref, f[:n], seed) for f in fakes]
        return [self._scores(f) for f in fits], bootstrap(fits, rounds, seed)[:, :, :1]


def bootstrap(fits: list[Fit], rounds: int = 20, seed: int = 0) -> np.ndarray:
    """rounds × len(fits) × (accuracy, lo, hi) over bootstrap resamples of the held-out images, drawn
    once per round and shared by every fit: the same real rows and the same generated rows (row i of
    every generated set comes from latent i), so differences between models are paired. The fits must
    share their held-out indices (same sizes and seed)."""
    n_real, n_fake = len(fits[0].real_test), len(fits[0].fake_test)
    if any(not (np.array_equal(f.real_test, fits[0].real_test) and np.array_equal(f.fake_test, fits[0].fake_test))
           for f in fits):
        raise ValueError("paired bootstrap needs fits with the same held-out indices")
    rng = np.random.default_rng(seed)
    out = np.empty((rounds, len(fits), 3))
    for r in range(rounds):
        ri, fi = rng.integers(0, n_real, n_real), rng.integers(0, n_fake, n_fake)
        for j, f in enumerate(fits):
            k = int(f.real_correct[ri].sum() + f.fake_correct[fi].sum())
            out[r, j] = (k / (n_real + n_fake), *clopper_pearson(k, n_real + n_fake))
    return out
