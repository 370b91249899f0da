"""A small encoder of 64×64 anime faces, trained self-supervised: the feature space of the `anime` ruler.

    python -m animegan.encoder train --data data/train.tar --out checkpoints/anime-encoder
    python -m animegan.encoder validate --weights checkpoints/anime-encoder --data data/select.tar

    enc = load_encoder("checkpoints/anime-encoder")   # eval mode, fp32, no flags needed (config.json)
    feats = enc.embed(images_uint8)                   # uint8 N×3×H×W → N×256 float32

Why: an ImageNet network sees anime faces through features made for photographs. Morozov et al.
(ICLR 2021, "On self-supervised image representations for GAN evaluation") found that
self-supervised representations rank GANs more consistently with people than Inception does; this
is that idea at the scale of this project: a ResNet-style CNN (He et al. 2016) of ~1.2 M parameters
trained with SimCLR's NT-Xent loss (Chen et al. 2020) on the training split's faces alone. The
evaluation measures FD in its globally pooled features (`animegan.features`, extractor
``anime-encoder``; `eval.rulers.anime`).

The augmentations decide what the encoder learns to ignore, so they are only the nuisances a
quality measure should ignore: by default shifted crops (the image moved by up to ±8 whole
pixels, reflected at the border) and horizontal flips. No colour jitter, blur, grayscale or
noise: an encoder trained to ignore those would be blind to washed-out colour, blur and noise,
the very faults a generator must be caught at (`validate` checks it is not). Resized crops
(``--crop-scale 0.5``: 50–100 % of the area, stretched back to 64×64) are available but not the
default: stretching interpolates, and interpolation smooths fine detail differently in the two
views, which teaches the encoder to ignore fine detail — in a pilot the encoder trained with them
was nearly blind to pixel noise (checkpoints/anime-encoder/README.md has the numbers).

Train on the training split only: the held-out splits are what the encoder's FD is later measured
on. `train` refuses a data path named like a held-out split (select, test, val) unless
``--allow-held-out``.

Training is seeded and resumable: the weights are a function of (data, seed, settings, epochs),
not of wall time. The learning-rate schedule spans ``--epochs``; ``--minutes`` only stops this
session (state saved, weights exported, training_info.json says ``"complete": false``) and
rerunning the same command continues where it stopped. Data order is a pure function of (seed,
epoch) and each step's augmentations of (seed, step), so a resumed run draws what an
uninterrupted one would. The resume state (``train_state.pt``, tensors only, read with
``weights_only=True``) lives in ``--out`` while training and is removed when training completes,
so the folder then holds only what ships: ``model.safetensors``, ``config.json``,
``training_info.json``. This module imports nothing above it (``animegan.features`` imports it).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .files import atomic_write, write_json

WEIGHTS, CONFIG, INFO, STATE = "model.safetensors", "config.json", "training_info.json", "train_state.pt"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "anime-encoder"
HELD_OUT_NAMES = ("select", "test", "val")  # the file names `animegan.data split` gives held-out splits
TRAIN_HINT = "python -m animegan.encoder train --data data/train.tar --out checkpoints/anime-encoder"


class EncoderError(ValueError):
    """Unusable encoder weights or training input (one-line message)."""


# ---- the network -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderConfig:
    """Everything that builds the network and its input handling; saved as config.json."""
    stem: int = 16                        # channels of the full-resolution 3×3 stem
    widths: tuple[int, ...] = (32, 64, 128, 256)   # one stage each, the first block of each strides 2
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    img_size: int = 64
    head_hidden: int = 512                # projection head (training only; not shipped)
    head_dim: int = 128

    @property
    def dim(self) -> int:
        return self.widths[-1]

    def to_dict(self) -> dict:
        return {"arch": "anime-resnet", **dataclasses.asdict(self), "dim": self.dim, "input": INPUT}

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw)


# How uint8 images become network input, the same in training, validation and extraction.
INPUT = {"dtype": "uint8", "scale": "x / 127.5 - 1",
         "resize": {"mode": "bilinear", "align_corners": False, "antialias": True}}


class Block(nn.Module):
    """ResNet basic block: two 3×3 convolutions with BatchNorm; the shortcut is the identity, or
    (stride or width changes) 2×2 average pooling then a 1×1 convolution, ResNet-D's shortcut (He et
    al. 2019): every pixel reaches it, where a strided 1×1 convolution would skip three in four."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            pool = [nn.AvgPool2d(stride)] if stride > 1 else []
            self.shortcut = nn.Sequential(*pool, nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)


class Encoder(nn.Module):
    """64×64 face → D-d representation (globally pooled last stage); `embed` is the uint8 entry point."""

    def __init__(self, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.cfg = cfg
        # The stem runs at full resolution so one-pixel detail (noise, blur, edges) reaches the
        # network before any striding.
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(cfg.stem),
                                  nn.ReLU(inplace=True))
        stages, c = [], cfg.stem
        for w, n in zip(cfg.widths, cfg.blocks):
            stages.append(nn.Sequential(*[Block(c if i == 0 else w, w, 2 if i == 0 else 1) for i in range(n)]))
            c = w
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled float B×3×S×S → B×D."""
        return self.stages(self.stem(x)).mean((2, 3))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 B×3×H×W → float B×3×S×S scaled as in training (resized first when H×W ≠ S×S)."""
        if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4 and images.shape[1] == 3):
            raise ValueError(f"expected a uint8 B×3×H×W tensor, got {getattr(images, 'dtype', type(images))} "
                             f"{tuple(getattr(images, 'shape', ()))}")
        x = images.float()
        s = self.cfg.img_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), **INPUT["resize"])
        return to_unit(x)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """uint8 N×3×H×W → float32 N×D on the CPU, eval mode, fp32 (what FD is measured in)."""
        self.eval()
        dev = next(self.parameters()).device
        out = [self(self.preprocess(images[i:i + batch_size].to(dev)).contiguous(memory_format=torch.channels_last))
               .float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.cfg.dim)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 255] (float) → [-1, 1], the trainer's scaling."""
    return x / 127.5 - 1


class Head(nn.Module):
    """SimCLR's projection head: the loss acts on its output, the representation before it is kept
    (Chen et al. 2020 found the pre-head layer carries more of the image)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.dim, cfg.head_hidden, bias=False), nn.BatchNorm1d(cfg.head_hidden),
                                 nn.ReLU(inplace=True), nn.Linear(cfg.head_hidden, cfg.head_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


# ---- the objective and the augmentations ------------------------------------------------------

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent loss of B positive pairs (row i of z1 and of z2), and the share of the 2B
    views whose most similar other view is their partner (the contrastive top-1, a progress signal).

    Every view is a query against the 2B − 1 others: cross-entropy of cosine similarity / τ with its
    partner as the target, averaged over all 2B views."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # 2B×d
    b = len(z1)
    sim = (z @ z.T) / tau
    sim.fill_diagonal_(float("-inf"))  # a view is not its own candidate
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    loss = F.cross_entropy(sim, target)
    acc = (sim.argmax(1) == target).float().mean()
    return loss, acc.detach()


@dataclass(frozen=True)
class AugmentConfig:
    """Crop, flip, shift: geometric nuisances only (module docstring: why no colour, blur or noise,
    and why no resizing by default)."""
    scale: tuple[float, float] = (1.0, 1.0)  # crop area as a share of the image; < 1: random resized crops
    ratio: tuple[float, float] = (1.0, 1.0)  # crop aspect ratio (log-uniform); (1, 1) with full-size crops
    shift: float = 8.0                       # translation in whole pixels, ± (reflection beyond the border)
    flip: float = 0.5                        # probability of a horizontal flip


def augment(x: torch.Tensor, g: torch.Generator, aug: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """float B×3×H×W → one random view of each image, same shape, drawn from `g`.

    One affine resampling per image (`grid_sample`, bilinear): a box of `scale` × the area and
    `ratio` aspect, placed uniformly inside the image, moved by up to ± `shift` whole pixels, maybe
    mirrored, stretched to the full H×W. Bilinear weights sum to one, so no colour is made or
    changed: a uniform image stays exactly uniform, and a full-size box (the default) copies,
    shifts or mirrors pixels without interpolating."""
    b, _, h, w = x.shape
    u = torch.rand(b, 6, generator=g)  # area, ratio, x, y, flip, (spare: shift direction below)
    area = aug.scale[0] + (aug.scale[1] - aug.scale[0]) * u[:, 0]
    lo, hi = math.log(aug.ratio[0]), math.log(aug.ratio[1])
    r = torch.exp(lo + (hi - lo) * u[:, 1])
    bw = (torch.sqrt(area * r) * w).clamp(max=w)  # box width and height in pixels
    bh = (torch.sqrt(area / r) * h).clamp(max=h)
    # whole pixels: a full-size box moved by an integer shift copies pixels exactly (no interpolation
    # to smooth away the fine detail, noise included, that the encoder should keep seeing)
    shift = ((torch.rand(b, 2, generator=g) * 2 - 1) * aug.shift).round()
    x0 = u[:, 2] * (w - bw) + shift[:, 0]  # left edge, pixels
    y0 = u[:, 3] * (h - bh) + shift[:, 1]
    flip = torch.where(u[:, 4] < aug.flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    # align_corners=False: output ±1 ↔ the outer edges of the box, in the input's normalised coordinates
    theta[:, 0, 0] = bw / w * flip
    theta[:, 0, 2] = (2 * x0 + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * y0 + bh) / h - 1
    grid = F.affine_grid(theta.to(x.device, x.dtype), [b, 3, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ---- weights on disk ---------------------------------------------------------------------------

def weights_file(path: str | os.PathLike | None = None) -> Path:
    """A weights folder (or its model.safetensors) → the .safetensors file; default: the shipped one."""
    p = Path(path) if path else DEFAULT_DIR
    return p / WEIGHTS if p.is_dir() or p.suffix != ".safetensors" else p


def save_encoder(model: Encoder, out: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """model.safetensors (+ config.json) into `out`, each written atomically."""
    from safetensors.torch import save_file

    out = Path(out)
    tensors = {k: v.detach().cpu().to(dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes several in a random order, and the same weights should be
    # the same bytes (their sha256 is the feature cache's key). The architecture is in config.json.
    atomic_write(out / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_json(out / CONFIG, {**model.cfg.to_dict(), "storage_dtype": str(dtype).removeprefix("torch.")})
    return out / WEIGHTS


def load_encoder(path: str | os.PathLike | None = None) -> Encoder:
    """The encoder in a weights folder (config.json beside model.safetensors), fp32, eval mode."""
    from safetensors.torch import load

    wf = weights_file(path)
    if not wf.is_file():
        raise EncoderError(f"no anime-encoder weights at {wf}; train them with `{TRAIN_HINT}` "
                           f"(or pass the folder that holds them)")
    cf = wf.parent / CONFIG
    try:
        cfg = EncoderConfig.from_dict(json.loads(cf.read_text()))
        state = load(wf.read_bytes())  # safetensors: tensors only, nothing executed
        model = Encoder(cfg)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except FileNotFoundError:
        raise EncoderError(f"{cf} is missing: the encoder's architecture is read from it") from None
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise EncoderError(f"cannot load anime-encoder weights {wf}: {type(e).__name__}: {msg}") from None
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identity(path: str | os.PathLike | None = None) -> dict:
    """What fixes the encoder's features: weights hash, architecture, input handling. The hash is
    keyed on the file's size and mtime too, so weights retrained in place change it in one process."""
    wf = weights_file(path)
    try:
        st = wf.stat()
        cfg = json.loads((wf.parent / CONFIG).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        load_encoder(path)  # raises the one-line EncoderError that says what is missing
        raise
    return {"weights_sha256": _sha256(str(wf.resolve()), st.st_size, st.st_mtime_ns),
            "config": {k: v for k, v in cfg.items() if k != "input"}, "input": INPUT, "eval_mode": True}


# ---- training -----------------------------------------------------------------------------------

@dataclass
class TrainSettings:
    """What fixes the trained weights (checked on resume), and how this session runs."""
    data: str
    out: str
    epochs: int = 8
    seed: int = 0
    batch_size: int = 256   # images per step (2 views each)
    lr: float = 2e-3        # AdamW at batch 256, cosine to zero after a 5 % linear warm-up
    weight_decay: float = 1e-4
    tau: float = 0.2        # NT-Xent temperature
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16; fp32 otherwise
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # this session only
    minutes: float = 0.0    # stop after this much training time (0: no limit); rerun to continue
    stop_at: int = 0        # stop at this step (0: no limit); rerun to continue
    threads: int = 0
    ckpt_minutes: float = 5.0
    progress: bool = True

    RESULT_KEYS = ("epochs", "seed", "batch_size", "lr", "weight_decay", "tau", "precision", "encoder", "augment")

    def result_dict(self) -> dict:
        """The settings that fix the weights, as JSON would give them back (lists, not tuples)."""
        d = dataclasses.asdict(self)
        return json.loads(json.dumps({k: d[k] for k in self.RESULT_KEYS}))


def _precision(name: str) -> torch.dtype | None:
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    from .trainer import pick_dtype  # the trainer's rule: bf16 where the CPU has it natively
    return pick_dtype("auto", torch.device("cpu"))


def _lr_at(step: int, total: int, base: float) -> float:
    warm = max(1, round(0.05 * total))
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _check_data_path(path: str, allow_held_out: bool) -> None:
    name = Path(path).name.split(".")[0].lower()
    if name in HELD_OUT_NAMES and not allow_held_out:
        raise EncoderError(f"{path} looks like a held-out split ({name}); the encoder is measured on those, so it "
                           f"must not train on them. Train on data/train.tar, or pass --allow-held-out")


def _host() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves its state after the current step (a second Ctrl-C
    stops at once)."""

    def __enter__(self):
        self.stop, self._old = False, {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(s: TrainSettings, overwrite: bool = False) -> dict:
    """Train (or continue training) the encoder into s.out; returns training_info."""
    from .data import load_images
    from .monitor import Progress

    out = Path(s.out)
    state_path = out / STATE
    state = None
    if state_path.exists() and not overwrite:
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise EncoderError(f"cannot read {state_path} ({type(e).__name__}); remove it or pass --overwrite") from None
        if state["settings"] != s.result_dict():
            diff = sorted(k for k in s.RESULT_KEYS if state["settings"].get(k) != s.result_dict()[k])
            raise EncoderError(f"{out} holds an unfinished run with other settings ({', '.join(diff)}); rerun it "
                               f"with those, or pass --overwrite to start again")
    elif not overwrite and (out / WEIGHTS).exists():
        info = _read_json(out / INFO)
        if info.get("complete") and info.get("settings") == s.result_dict():
            print(f"{out} already holds this training, complete ({info.get('epochs')} epochs); nothing to do",
                  file=sys.stderr)
            return info
        raise EncoderError(f"{out} already holds encoder weights; pass --overwrite to replace them")

    if s.threads:
        torch.set_num_threads(s.threads)
    data = load_images(s.data, size=s.encoder.img_size, progress=s.progress)
    images, n = data.images, len(data.images)
    if s.batch_size < 2 or n < s.batch_size:
        raise EncoderError(f"--batch-size must be ≥ 2 and ≤ the number of images ({n}), got {s.batch_size}")
    names_sha = hashlib.sha256("\n".join(data.names).encode()).hexdigest()
    if state and state["data"]["names_sha256"] != names_sha:
        raise EncoderError(f"{out} was training on other images than {s.data}; pass --overwrite to start again")
    per_epoch = n // s.batch_size  # full batches only: every step has the same number of negatives
    total = s.epochs * per_epoch
    dtype = _precision(s.precision)

    torch.manual_seed(s.seed)
    model, head = Encoder(s.encoder), Head(s.encoder)
    params = list(model.parameters()) + list(head.parameters())
    # no weight decay on BatchNorm scales and biases (1-d tensors)
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1]},
                             {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
                            lr=s.lr, weight_decay=s.weight_decay)
    step, seconds, history = 0, 0.0, []
    sums = {"loss": 0.0, "acc": 0.0, "n": 0}
    if state:
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        step, seconds, history = int(state["step"]), float(state["train_seconds"]), list(state["history"])
        sums = dict(state["epoch_sums"])  # the current epoch's running means continue across the resume
    model.to(memory_format=torch.channels_last).train()
    head.train()
    record = {"source": str(s.data), "images": n, "skipped": data.skipped, "names_sha256": names_sha}

    def info(complete: bool) -> dict:
        return {"complete": complete, "data": record, "steps": step, "steps_total": total,
                "epochs": round(step / per_epoch, 3), "epochs_planned": s.epochs,
                "images_seen": step * s.batch_size, "train_seconds": round(seconds, 1),
                "minutes": round(seconds / 60, 1), "seed": s.seed,
                # the last full epoch's mean loss; before the first one, the mean so far
                "final_loss": history[-1]["loss"] if history else
                (round(sums["loss"] / sums["n"], 4) if sums["n"] else None), "history": history,
                "precision": "bf16 autocast" if dtype else "fp32", "threads": torch.get_num_threads(),
                "host": _host(), "torch": torch.__version__, "settings": s.result_dict(),
                "objective": f"SimCLR NT-Xent, tau {s.tau}, 2 views per image, {2 * s.batch_size - 2} negatives"}

    def save_state() -> None:
        st = {"model": model.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(), "step": step,
              "train_seconds": seconds, "history": history, "epoch_sums": sums, "settings": s.result_dict(),
              "data": record}
        atomic_write(state_path, lambda tmp: torch.save(st, tmp))

    def export(complete: bool) -> None:
        save_encoder(model, out)
        write_json(out / INFO, info(complete))

    out.mkdir(parents=True, exist_ok=True)
    if s.progress:
        print(f"{'resuming' if state else 'starting'} {out} at step {step}/{total}: {n} images, {per_epoch} steps of "
              f"{s.batch_size} per epoch, {s.epochs} epochs, precision {'bf16 autocast' if dtype else 'fp32'}, "
              f"{torch.get_num_threads()} threads", file=sys.stderr)
    progress = Progress(total, initial=step, desc="anime-encoder", unit="step", enabled=s.progress)
    budget = s.minutes * 60 if s.minutes > 0 else math.inf
    t0, before, last_ckpt, first = time.perf_counter(), seconds, seconds, step
    mark = (step, seconds)  # where this epoch's img/s is counted from (this session's part of it)
    perm, perm_epoch = None, -1
    stopped = False
    with _StopFlag() as flag:
        while step < total:
            if flag.stop or seconds - before >= budget or (s.stop_at and step >= s.stop_at):
                stopped = True
                break
            epoch, i = divmod(step, per_epoch)
            if epoch != perm_epoch:  # the order of epoch e is a pure function of (seed, e)
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(s.seed * 100_003 + epoch))
                perm_epoch = epoch
            g = torch.Generator().manual_seed(s.seed * 1_000_003 + step)  # this step's augmentations
            x = to_unit(images[perm[i * s.batch_size:(i + 1) * s.batch_size]].float())
            views = torch.cat([augment(x, g, s.augment), augment(x, g, s.augment)])
            views = views.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, s.lr)
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                z = head(model(views))
            loss, acc = nt_xent(z[:s.batch_size], z[s.batch_size:], s.tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seconds = before + time.perf_counter() - t0
            sums["loss"] += loss.item()
            sums["acc"] += acc.item()
            sums["n"] += 1
            progress.update()
            # images per second (two views each) in this session
            progress.set_postfix(loss=f"{loss.item():.3f}", top1=f"{acc.item():.2f}",
                                 img_s=f"{(step - first) * s.batch_size / max(seconds - before, 1e-9):.0f}")
            if step % per_epoch == 0:
                row = {"epoch": step // per_epoch, "step": step, "loss": round(sums["loss"] / sums["n"], 4),
                       "top1": round(sums["acc"] / sums["n"], 4), "train_seconds": round(seconds, 1),
                       "img_per_s": round((step - mark[0]) * s.batch_size / max(seconds - mark[1], 1e-9), 1)}
                mark = (step, seconds)
                history.append(row)
                progress.write(f"epoch {row['epoch']}/{s.epochs}: loss {row['loss']:.4f}, contrastive top-1 "
                               f"{row['top1']:.3f}, {row['img_per_s']:.0f} img/s, {seconds / 60:.1f} min")
                sums = {"loss": 0.0, "acc": 0.0, "n": 0}
                if step < total:
                    save_state()
                    export(False)
                    last_ckpt = seconds
            elif seconds - last_ckpt >= s.ckpt_minutes * 60:
                save_state()
                last_ckpt = seconds
    progress.close()
    model.eval()
    if step >= total:
        export(True)
        state_path.unlink(missing_ok=True)  # done: the folder holds only what ships
        msg = f"done: {s.epochs} epochs, {seconds / 60:.1f} min; encoder in {out}"
    else:
        save_state()
        export(False)
        why = "stopped" if flag.stop or (s.stop_at and step >= s.stop_at) else f"time budget of {s.minutes:g} min reached"
        msg = f"{why} at step {step}/{total}; rerun the same command to continue"
    if s.progress:
        print(msg, file=sys.stderr)
    result = info(step >= total)
    result["stopped"] = stopped
    return result


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# ---- validation ---------------------------------------------------------------------------------

def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD of two feature sets through torch-fidelity's own statistics (float64), as
    `animegan.features.frechet_distance` computes it; that module sits above this one."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    sa, sb = (fid_features_to_statistics(f.double()) for f in (a, b))
    return float(fid_statistics_to_metric(sa, sb, verbose=False)["frechet_inception_distance"])


def degradations(images: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The faults the encoder must see, on uint8 images: Gaussian blur σ = 1 px, Gaussian noise
    σ = 0.05 of the pixel range, saturation halved (a blend half-way to grayscale)."""
    from torchvision.transforms import functional as TF

    g = torch.Generator().manual_seed(seed)
    noise = images.float() + torch.randn(images.shape, generator=g) * (0.05 * 255)
    return {"blur σ=1px": TF.gaussian_blur(images, kernel_size=7, sigma=1.0),
            "noise σ=0.05": noise.round().clamp(0, 255).to(torch.uint8),
            "saturation ×0.5": TF.adjust_saturation(images, 0.5)}


# The views `validate` retrieves, the same whatever the encoder was trained with (numbers comparable
# across encoders): resized crops of 50–100 % of the area, aspect 3:4–4:3, shifts ≤ 4 px, flips.
VALIDATION_AUGMENT = AugmentConfig(scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), shift=4.0, flip=0.5)


def retrieval(model: Encoder, images: torch.Tensor, seed: int = 0, aug: AugmentConfig = VALIDATION_AUGMENT,
              batch_size: int = 128) -> dict:
    """Embed one augmented view of each image; top-1/top-5 share of views whose nearest original
    (cosine similarity of the representations) is their own image, among all originals."""
    g = torch.Generator().manual_seed(seed)
    views = torch.cat([augment(images[i:i + batch_size].float(), g, aug)
                       for i in range(0, len(images), batch_size)]).round().clamp(0, 255).to(torch.uint8)
    a = F.normalize(model.embed(views, batch_size), dim=1)
    b = F.normalize(model.embed(images, batch_size), dim=1)
    rank = (a @ b.T).topk(min(5, len(b)), dim=1).indices  # N×5
    own = torch.arange(len(a)).unsqueeze(1)
    return {"top1": float((rank[:, :1] == own).any(1).float().mean()),
            "top5": float((rank == own).any(1).float().mean()), "n": len(a), "chance_top1": 1 / len(a)}


def sensitivity(model: Encoder, images: torch.Tensor, seed: int = 0, batch_size: int = 128) -> dict:
    """FD between two disjoint random halves A, B of `images` (the floor), and between A and each
    degraded copy of B: how far the held-out faces move, at the same n as the floor."""
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    a, b = images[perm[:len(images) // 2]], images[perm[len(images) // 2:]]
    fa = model.embed(a, batch_size)
    out = {"floor (A vs B)": frechet(fa, model.embed(b, batch_size))}
    for name, deg in degradations(b, seed).items():
        out[name] = frechet(fa, model.embed(deg, batch_size))
    return out


def validate(path: str | os.PathLike | None, data: str, n: int = 1000, seed: int = 0, baseline: bool = True) -> dict:
    """Retrieval of augmented held-out faces and sensitivity to blur/noise/desaturation, for the
    trained encoder and (baseline) the same architecture at random initialisation."""
    from .data import load_images

    model = load_encoder(path)
    images = load_images(data, size=model.cfg.img_size, limit=n).images
    aug = VALIDATION_AUGMENT
    nets = {"trained": model}
    if baseline:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets["random init"] = Encoder(model.cfg).eval()
    res = {"data": str(data), "n": len(images), "seed": seed, "augment": dataclasses.asdict(aug),
           "weights_sha256": identity(path)["weights_sha256"]}
    for name, net in nets.items():
        net = net.to(memory_format=torch.channels_last)
        res[name] = {"retrieval": retrieval(net, images, seed, aug), "fd": sensitivity(net, images, seed)}
    return res


def _print_validation(res: dict) -> None:
    print(f"{res['n']} images of {res['data']} (seed {res['seed']}); retrieval chance top-1 {1 / res['n']:.4f}")
    nets = [k for k in ("trained", "random init") if k in res]
    print(f"{'':24}" + "".join(f"{k:>18}" for k in nets))
    for key in ("top1", "top5"):
        print(f"{'retrieval ' + key:24}" + "".join(f"{res[k]['retrieval'][key]:>18.3f}" for k in nets))
    for key in res[nets[0]]["fd"]:
        cells = []
        for k in nets:
            fd, floor = res[k]["fd"][key], res[k]["fd"]["floor (A vs B)"]
            cells.append(f"{fd:>9.4g}" + (f" ({fd / floor:4.1f}×)" if key != "floor (A vs B)" else " " * 8))
        print(f"{'FD ' + key:24}" + "".join(f"{c:>18}" for c in cells))


# ---- command line -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m animegan.encoder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = TrainSettings("", "")
    tp = sub.add_parser("train", help="train the encoder self-supervised (SimCLR) on the training split")
    tp.add_argument("--data", required=True, help="training images (folder, .zip or .tar): the training split only")
    tp.add_argument("--out", required=True, help="folder for model.safetensors, config.json, training_info.json")
    tp.add_argument("--epochs", type=int, default=d.epochs, help=f"length of the schedule (default: {d.epochs})")
    tp.add_argument("--minutes", type=float, default=0.0,
                    help="stop this session after M minutes of training; rerun to continue (default: no limit)")
    tp.add_argument("--stop-at", type=int, default=0, help="stop this session at step N; rerun to continue")
    tp.add_argument("--seed", type=int, default=d.seed)
    tp.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default: {d.batch_size})")
    tp.add_argument("--lr", type=float, default=d.lr)
    tp.add_argument("--tau", type=float, default=d.tau, help=f"NT-Xent temperature (default: {d.tau})")
    tp.add_argument("--crop-scale", type=float, default=d.augment.scale[0],
                    help=f"smallest crop area as a share of the image, for random resized crops (aspect 3:4–4:3); "
                         f"1: shifts and flips only (default: {d.augment.scale[0]:g})")
    tp.add_argument("--shift", type=float, default=d.augment.shift,
                    help=f"largest shift in whole pixels (default: {d.augment.shift:g})")
    tp.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=d.precision,
                    help="auto: bf16 autocast on CPUs with native bf16, else fp32 (default: auto)")
    tp.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    tp.add_argument("--overwrite", action="store_true", help="start again, replacing what --out holds")
    tp.add_argument("--allow-held-out", action="store_true",
                    help="train on a path named like a held-out split (select/test/val) anyway")
    vp = sub.add_parser("validate", help="retrieval of augmented held-out faces; FD under blur, noise, desaturation")
    vp.add_argument("--weights", default=None, help="weights folder (default: the shipped checkpoints/anime-encoder)")
    vp.add_argument("--data", required=True, help="held-out images (e.g. data/select.tar), never the training split")
    vp.add_argument("--n", type=int, default=1000, help="first N images by name (default: 1000)")
    vp.add_argument("--seed", type=int, default=0)
    vp.add_argument("--threads", type=int, default=0)
    vp.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    from .data import DataError

    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.cmd == "train":
            _check_data_path(args.data, args.allow_held_out)
            if args.epochs < 1 or args.minutes < 0 or args.tau <= 0 or args.lr <= 0 or args.shift < 0 \
                    or not 0 < args.crop_scale <= 1:
                raise EncoderError("--epochs must be ≥ 1, --minutes and --shift ≥ 0, --tau and --lr > 0, "
                                   "--crop-scale in (0, 1]")
            train(TrainSettings(args.data, args.out, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                                lr=args.lr, tau=args.tau, precision=args.precision, minutes=args.minutes,
                                stop_at=args.stop_at, threads=args.threads,
                                augment=AugmentConfig(scale=(args.crop_scale, 1.0), shift=args.shift,
                                                      ratio=(1.0, 1.0) if args.crop_scale == 1 else (3 / 4, 4 / 3))),
                  overwrite=args.overwrite)
        else:
            if args.n < 4:
                raise EncoderError("--n must be ≥ 4")
            if Path(args.data).name.split(".")[0].lower() == "train":
                print(f"warning: {args.data} looks like the training split; the encoder has seen those faces, "
                      f"so retrieval there flatters it (use data/select.tar)", file=sys.stderr)
            res = validate(args.weights, args.data, n=args.n, seed=args.seed)
            _print_validation(res)
            if args.json:
                write_json(args.json, res)
    except (EncoderError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
