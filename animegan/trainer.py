"""Models, optimisers and the training step shared by both objectives; no files, no printing.

GAN (Radford et al. 2016) and WGAN-GP (Gulrajani et al. 2017) differ only by a loss object
(losses.py) and a preset (config.py): the step below runs n_critic discriminator steps, then
one generator step, then updates the generator's exponential moving average (EMA).

    trainer = Trainer(cfg, load_images("faces.tar"), torch.device("cpu"))
    stats = trainer.train_step()                  # detached loss tensors (no host sync)
    images = trainer.sample(trainer.fixed_z)      # the EMA generator, BatchNorm recalibrated

All randomness (init, data order, z, ε of the penalty) comes from seeded generators whose state
is part of `state_dict()`, so a resumed run continues exactly where it stopped. A step is drawn
first (`draw_inputs`: real batches and noise, in the streams' order), then computed (`update`:
D phase, G phase). `--step-impl` chooses who runs `update`: eagerly (the reference), or the
same code replayed as one CUDA graph or compiled (faststep.py).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from .checkpoint import CheckpointError
from .config import SEED_OFFSET, TrainConfig, UsageError
from .data import LoadedImages
from .distributed import DistEnv, wrap
from .faststep import host_staged, make_fast_step, portable_optimizer_state
from .losses import make_loss
from .models import Discriminator, Generator, dcgan_init
from .sampling import generate, recalibrate_batchnorm, sample_z


def normalize_device(device: str | torch.device) -> torch.device:
    """One spelling per device: `cuda` → `cuda:<current index>`, `mps` → `mps:0`. A tensor on a GPU
    always reports its index, so `tensor.device == trainer.device` holds only if the trainer's
    device carries the index too."""
    d = torch.device(device)
    if d.index is None and d.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    if d.index is None and d.type == "mps":
        return torch.device("mps", 0)
    return d


def pick_device(name: str) -> torch.device:
    """--device → a torch.device, normalised (`normalize_device`): `auto` is CUDA, else MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return normalize_device("cuda")
        if torch.backends.mps.is_available():
            return normalize_device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for, but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps asked for, but MPS is not available")
    return normalize_device(name)


def pick_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. auto: bf16 on CPUs with native bf16, AMP on CUDA."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") \
            and _cpu_has_bf16():
        return torch.bfloat16
    return None


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def ema_decay_at(decay: float, n: int) -> float:
    """EMA with warm-up: decay min(d, (1+n)/(10+n)) so early samples are not the random init."""
    return min(decay, (1 + n) / (10 + n))


class EMA(AveragedModel):
    """torch's AveragedModel (same state_dict, same arithmetic) whose update never waits for a GPU.

    AveragedModel.update_parameters copies its CPU counter to the device and the decay is read
    back from there: two host-device synchronisations per step, which on CUDA stop the CPU from
    queueing the next step while the GPU works. The counter stays on the host here."""

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model, use_buffers=False)
        self.decay = decay

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        n = int(self.n_averaged)  # a CPU buffer: no device synchronisation
        dst = [p.detach() for p in self.module.parameters()]
        src = [p.detach() for p in model.parameters()]
        if n == 0:
            torch._foreach_copy_(dst, src)
        else:
            torch._foreach_lerp_(dst, src, 1 - ema_decay_at(self.decay, n))
        buffers = list(self.module.buffers())  # BatchNorm statistics; none when G has no BatchNorm
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))
        self.n_averaged += 1


@dataclass
class StepInputs:
    """One generator step's data and noise in the order the seeded streams give them: per critic
    step a real batch (uint8 B×3×H×W, where the images are), z (B×z_dim) and ε (B×1×1×1); then
    the G step's own z when n_critic > 1. Noise is drawn on the CPU and moved by `update`."""
    real: list[torch.Tensor]
    z: list[torch.Tensor]
    eps: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        return [*self.real, *self.z, *self.eps]


class Trainer:
    """Models, optimisers and the step; no file I/O (the training loop in train.py does that)."""

    def __init__(self, cfg: TrainConfig, data: LoadedImages, device: torch.device, env: DistEnv | None = None):
        device = normalize_device(device)  # `cuda` → `cuda:0`: compared with tensors' devices below
        self.cfg, self.device = cfg, device
        # Data parallel (distributed.py): this rank's share of every global batch of cfg.batch_size.
        self.rank, self.world = (env.rank, env.world) if env else (0, 1)
        if cfg.batch_size % self.world:
            raise UsageError(f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of the "
                             f"{self.world} processes")
        self.local_batch = cfg.batch_size // self.world
        self.dtype = pick_dtype(cfg.precision, device)
        self.fmt = torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format
        torch.manual_seed(cfg.seed + SEED_OFFSET["weights"])
        self.G = Generator(cfg.z_dim, cfg.ngf, 3, cfg.img_size)
        self.D = Discriminator(cfg.ndf, 3, cfg.img_size, cfg.critic_norm)
        if cfg.init == "dcgan":
            dcgan_init(self.G)
            dcgan_init(self.D)
        self.G.to(device, memory_format=self.fmt)
        self.D.to(device, memory_format=self.fmt)
        self.ema = EMA(self.G, cfg.ema_decay)
        if cfg.optimizer == "adam":
            make = lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(cfg.beta1, cfg.beta2))  # noqa: E731
        else:
            make = lambda p, lr: torch.optim.RMSprop(p, lr=lr)  # noqa: E731
        self.opt_g, self.opt_d = make(self.G.parameters(), cfg.lr_g), make(self.D.parameters(), cfg.lr_d)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        # What the step calls for forward passes whose gradients DDP must average; the bare
        # modules otherwise (world 1: the very same objects, so nothing changes).
        self.g_net, self.d_net = self.G, self.D
        if self.world > 1:
            self.g_net, self.d_net = wrap(self.G, self.D, device, cfg.sync_bn == "on")
        self.loss = make_loss(cfg)
        self.images = data.images  # N×3×H×W uint8, on the CPU; moved to the GPU on CUDA
        if device.type == "cuda":
            self.images = self.images.to(device)
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        self.n = len(self.images)
        self.batches_per_epoch = self.n // cfg.batch_size
        if self.batches_per_epoch < 1:
            raise UsageError(f"{self.n} images are fewer than one batch of {cfg.batch_size}; lower --batch-size")
        self.noise = torch.Generator().manual_seed(cfg.seed + SEED_OFFSET["noise"])  # z and ε, checkpointed
        self.fixed_z = sample_z(16, cfg.z_dim, cfg.seed + SEED_OFFSET["grid"])  # the 4×4 grid, same across resumes
        self.evaluated_step = -1  # the last step the quick FD scored (a rerun must not score it twice)
        self.train_seconds = 0.0  # wall time spent in training steps, summed over resumes
        self.cpu_seconds = 0.0  # CPU time of this process in training steps, summed over resumes
        self.step = 0  # generator steps done
        self.batches = 0  # real batches shown to D
        self._perm_epoch, self._perm = -1, None
        self._calibrated = -1  # the step whose BatchNorm statistics the EMA generator holds
        # The modules the G step calls D through (the bare D; compiled when the step is).
        self.d_frozen = self.D
        self.autocast_cache = True  # a CUDA graph must not capture autocast's weight cache
        # What runs the step, for the run's config.json. A graph step whose capture fails falls back
        # to eager in the same process: it rewrites step_impl and puts its reason in step_impl_fallback.
        self.step_impl_fallback = ""
        self.step_impl, self.fast_step = make_fast_step(self)

    @property
    def precision(self) -> str:
        return str(self.dtype).replace("torch.", "") if self.dtype else "fp32"

    # ---- length ------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Whole epochs done. An epoch is ⌊N / batch⌋ batches: the last, partial batch is dropped
        (DataLoader's drop_last), and the next epoch's reshuffle shows those images again."""
        return self.batches // self.batches_per_epoch

    @property
    def epochs_done(self) -> float:
        return self.batches / self.batches_per_epoch

    def total_steps(self) -> int:
        """Generator steps of the run: --steps, or the fewest that show D at least --epochs epochs
        (n_critic batches per step, so the last step may run into the next epoch by < n_critic batches)."""
        if self.cfg.steps:
            return self.cfg.steps
        return math.ceil(self.cfg.epochs * self.batches_per_epoch / self.cfg.n_critic)

    # ---- data and noise ----------------------------------------------------

    def real_batch(self) -> torch.Tensor:
        e, i = divmod(self.batches, self.batches_per_epoch)
        if e != self._perm_epoch:  # the order of epoch e is a pure function of (seed, e)
            g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + e)
            # Moved once per epoch, so a step slices it where the images are (no per-step copy).
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g).to(self.images.device), e
        lo = i * self.cfg.batch_size + self.rank * self.local_batch  # this rank's rows of global batch i
        idx = self._perm[lo:lo + self.local_batch]
        self.batches += 1
        return self.images[idx]  # uint8 B×3×H×W

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images → float in [-1, 1], on the device, in the step's memory format."""
        x = x.to(self.device, non_blocking=True).float().mul_(1 / 127.5).sub_(1)
        return x.contiguous(memory_format=self.fmt)

    def noise_rows(self, t: torch.Tensor, b: int) -> torch.Tensor:
        # Every rank draws the global batch's noise and keeps its rows: the ranks together use
        # exactly one process's draws, and the generator state is the same on all ranks.
        return t[self.rank * b:(self.rank + 1) * b] if self.world > 1 else t

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        if self.device.type == "cuda":  # the noise stays CPU-seeded; a pinned copy does not block the host
            return host_staged(t, self.device).to(self.device, non_blocking=True)
        return t.to(self.device)

    def draw_inputs(self) -> StepInputs:
        """The next step's real batches and noise; the only place the step's random streams move."""
        b, n = self.local_batch, self.cfg.n_critic
        x = StepInputs([], [], [])
        for _ in range(n):
            x.real.append(self.real_batch())
            x.z.append(self.noise_rows(torch.randn(b * self.world, self.cfg.z_dim, generator=self.noise), b))
            x.eps.append(self.noise_rows(torch.rand(b * self.world, 1, 1, 1, generator=self.noise), b))
        if n != 1:  # classic DCGAN (n_critic 1): the G step reuses the D step's fake batch
            x.z.append(self.noise_rows(torch.randn(b * self.world, self.cfg.z_dim, generator=self.noise), b))
        return x

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=self.autocast_cache)

    # ---- one generator step ------------------------------------------------
    def train_step(self) -> dict:
        """One generator step: draw its inputs, compute it, update the EMA. Returns detached loss
        tensors (reading them as floats is the caller's host sync)."""
        x = self.draw_inputs()
        stats = self.fast_step(x) if self.fast_step else self.update(x)
        self.ema.update_parameters(self.G)
        self.step += 1
        return stats

    def update(self, x: StepInputs) -> dict:
        """n_critic D steps, then one G step, on drawn inputs: the math of a step, no random draws."""
        cfg, G, D = self.cfg, self.G, self.D
        G.train()
        D.train()
        reuse = cfg.n_critic == 1  # classic DCGAN: one G forward serves D and G steps
        stats: dict = {}
        fake = None

        # (1) Update D (the critic): maximise log D(x) + log(1 − D(G(z))), or E[D(x)] − E[D(G(z))] − penalty
        D.requires_grad_(True)
        for i in range(cfg.n_critic):
            real, z, eps = self.to_unit(x.real[i]), self.to_device(x.z[i]), self.to_device(x.eps[i])
            with self.autocast():
                if reuse:
                    fake = self.g_net(z)
                else:
                    with torch.no_grad():
                        fake = self.g_net(z)
                # Under DDP the penalty's autograd.grad(create_graph=True) yields this rank's
                # input gradients only; the one backward() below then all-reduces D's weight
                # gradients once (pytorch/pytorch#63812); tests/test_distributed.py checks them.
                d_loss, stats = self.loss.d_loss(self.d_net, real, fake, eps=eps)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.opt_d)
            self.scaler.update()

        # (2) Update G: maximise log D(G(z)) (non-saturating), or E[D(G(z))]. D's weights get no
        # gradients (saves a third of D's backward); the bare D, not its DDP wrapper, so D's
        # reducer does not wait for gradients that never come.
        D.requires_grad_(False)
        with self.autocast():
            if not reuse:
                fake = self.g_net(self.to_device(x.z[-1]))
            g_loss, g_stats = self.loss.g_loss(self.d_frozen, fake)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        return {**stats, **g_stats}

    # ---- sampling, export, state -------------------------------------------
    def ema_generator(self) -> Generator:
        """The EMA generator, eval mode, with BatchNorm statistics recomputed for its own weights
        (once per step: grids, exports and the quick FD of one step share the work)."""
        g = self.ema.module
        if self._calibrated != self.step:
            recalibrate_batchnorm(g, seed=self.cfg.seed + SEED_OFFSET["batchnorm"])
            self._calibrated = self.step
        return g.eval()

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return generate(self.ema_generator(), z)

    def export_model(self) -> Generator:
        """A plain fp32, contiguous CPU copy of the EMA generator (what ships)."""
        c = self.cfg
        with torch.random.fork_rng(devices=[]):  # building a module draws init weights: keep the global RNG
            g = Generator(c.z_dim, c.ngf, 3, c.img_size)
        g.load_state_dict({k: v.detach().cpu().contiguous() for k, v in self.ema_generator().state_dict().items()})
        return g.eval()

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "ema": self.ema.state_dict(),
                "opt_g": portable_optimizer_state(self.opt_g), "opt_d": portable_optimizer_state(self.opt_d),
                "scaler": self.scaler.state_dict(), "step": self.step, "batches": self.batches,
                "epoch": self.epoch, "noise_rng": self.noise.get_state(), "torch_rng": torch.get_rng_state(),
                "fixed_z": self.fixed_z, "evaluated_step": self.evaluated_step, "train_seconds": self.train_seconds,
                "cpu_seconds": self.cpu_seconds,
                "config": self.cfg.to_dict()}

    def load_state_dict(self, s: dict) -> None:
        try:
            self.G.load_state_dict(s["G"])
            self.D.load_state_dict(s["D"])
            self.ema.load_state_dict(s["ema"])
            self.opt_g.load_state_dict(s["opt_g"])
            self.opt_d.load_state_dict(s["opt_d"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint does not fit this model: {str(e).splitlines()[0][:200]}")
        if s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        self.step, self.batches = int(s["step"]), int(s["batches"])
        self.noise.set_state(s["noise_rng"])
        torch.set_rng_state(s["torch_rng"])
        self.fixed_z = s["fixed_z"]
        self.evaluated_step = int(s.get("evaluated_step", -1))
        self.train_seconds = float(s.get("train_seconds", 0.0))
        self.cpu_seconds = float(s.get("cpu_seconds", 0.0))
