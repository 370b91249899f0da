"""One typed training config; the presets `gan` and `wgan-gp` are small deltas.

Every field carries its help text, so the CLI (`python -m animegan.train --help`)
is generated from this file and the resolved config is saved as config.json.
Defaults reproduce the course report's models, with the two WGAN-GP fixes switched on
(per-sample gradient norm, no BatchNorm in the critic; docs/training.md).
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields

from . import __version__


class UsageError(ValueError):
    """A command line or config that cannot work (one-line message; the CLI exits with code 2)."""


def _f(default, help: str, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


QUICK_FD_N = 1000  # samples and held-out images per quick FD: its cost, its noise and its bias are set by it


@dataclass
class TrainConfig:
    model: str = _f("gan", "preset: 'gan' (report's DCGAN) or 'wgan-gp'", ("gan", "wgan-gp"))
    data: str = _f("", "training images: a folder (recursive), a .zip or a .tar; several (e.g. a sharded pack) as "
                       "a glob 'data/train-*.zip' or a comma-separated list a.zip,b.zip")
    out: str = _f("", "run folder for config, metrics, samples, checkpoints and the exported generator")
    # --- length
    epochs: int = _f(0, "train for N epochs (an epoch = every real image shown to D once); 0 = use --steps")
    steps: int = _f(0, "train until generator step N, counted over the whole run (resume continues to N)")
    max_minutes: float = _f(0.0, "also stop after this much training wall time, summed over resumes; 0 = no limit")
    max_cpu_minutes: float = _f(0.0, "also stop after this much CPU time of the training process, summed over "
                                "resumes; 0 = no limit (unlike wall time, a busy machine does not shorten it)")
    # --- architecture
    img_size: int = _f(64, "image side in pixels (power of two)")
    z_dim: int = _f(100, "latent size of z ~ N(0, I)")
    ngf: int = _f(64, "generator width (channels of the last block)")
    ndf: int = _f(64, "discriminator width (channels of the first block)")
    critic_norm: str = _f("batch", "norm in D's middle layers: batch (report) | layer (GroupNorm(1,C)) | none",
                          ("batch", "layer", "none"))
    init: str = _f("default", "weight init: PyTorch default or DCGAN N(0, 0.02)", ("default", "dcgan"))
    # --- objective and optimisers
    loss: str = _f("bce", "objective: bce (non-saturating GAN, on logits) or wgan-gp", ("bce", "wgan-gp"))
    gp_lambda: float = _f(10.0, "gradient-penalty weight λ (wgan-gp)")
    gp_norm: str = _f("sample", "gradient norm of the penalty: per sample over C×H×W (correct) or per pixel "
                      "over channels (the report's bug)", ("sample", "pixel"))
    n_critic: int = _f(1, "discriminator/critic steps per generator step")
    optimizer: str = _f("adam", "optimiser for both nets", ("adam", "rmsprop"))
    lr_g: float = _f(2e-4, "generator learning rate")
    lr_d: float = _f(2e-4, "discriminator learning rate")
    beta1: float = _f(0.5, "Adam beta1")
    beta2: float = _f(0.999, "Adam beta2")
    batch_size: int = _f(64, "real images per discriminator step")
    ema_decay: float = _f(0.999, "decay of the generator's exponential moving average (export and samples use it)")
    # --- machine
    seed: int = _f(0, "seed for weights, data order, noise and the fixed sample grid")
    device: str = _f("auto", "auto | cpu | cuda | mps", ("auto", "cpu", "cuda", "mps"))
    precision: str = _f("auto", "auto (bf16 on CPUs that support it, AMP on CUDA) | fp32 | bf16 | fp16",
                        ("auto", "fp32", "bf16", "fp16"))
    threads: int = _f(0, "CPU threads for torch (0 = torch's default)")
    step_impl: str = _f("auto", "who runs the training step: eager (the reference) | graph (CUDA: the whole step as "
                        "one CUDA graph) | compile (torch.compile) | auto (the measured best for the device and "
                        "model, else eager); the math and the random streams are the same",
                        ("auto", "eager", "graph", "compile"))
    sync_bn: str = _f("off", "under torchrun with several processes on CUDA: generator BatchNorm statistics per "
                      "process (off) or over the global batch (on, SyncBatchNorm)", ("off", "on"))
    # --- outputs
    log_every: int = _f(20, "append to metrics.jsonl every N generator steps")
    sample_every: int = _f(500, "write a 4×4 fixed-noise grid every N generator steps")
    ckpt_every: int = _f(1000, "write a checkpoint and export the generator every N generator steps")
    keep_ckpts: int = _f(3, "training-state checkpoints to keep")
    snapshot_every: int = _f(0, "export the EMA generator to snapshots/step_XXXXXXX/ every N generator steps (and at "
                             "the end), to be scored later, on any machine; 0 = off")
    eval_every: int = _f(0, "quick FD (effnet-lite0 features) every N generator steps; 0 = off")
    eval_real: str = _f("", "real images for the quick FD (e.g. a held-out split)")
    eval_n: int = _f(QUICK_FD_N, "generated samples and held-out images for the quick FD")
    version: str = _f(__version__, "animegan version that wrote this config")

    def to_dict(self) -> dict:
        return asdict(self)


# The seeded random streams of a run, each `--seed + offset`: weights, the z and ε of the steps
# (checkpointed), the fixed 4×4 sample grid, the quick FD's latents, the noise that recalibrates
# the EMA generator's BatchNorm statistics. Data order per epoch has its own rule (trainer.py).
SEED_OFFSET = {"weights": 0, "noise": 1, "grid": 2, "quick_fd": 3, "batchnorm": 4}


PRESETS: dict[str, dict] = {
    "gan": {},
    # Report: no Sigmoid, DCGAN init, RMSprop 2e-4, λ = 10; n_critic 5 as in Gulrajani et al.
    # Our fix: layer norm instead of BatchNorm in the critic (`--critic-norm batch` = report).
    "wgan-gp": {"loss": "wgan-gp", "critic_norm": "layer", "init": "dcgan", "optimizer": "rmsprop", "n_critic": 5},
}

# Changing these on resume would load weights into a different model or objective.
LOCKED = ("model", "img_size", "z_dim", "ngf", "ndf", "critic_norm", "loss", "gp_norm", "optimizer")
# These are never taken from a saved config: they describe this invocation.
PER_RUN = ("version",)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m animegan.train",
        description="Train the report's GAN or a WGAN-GP on 64×64 images. Values not given on the command "
                    "line come from the preset (--model), or from the run's saved config when resuming.")
    for f in fields(TrainConfig):
        if f.name == "version":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        gan_default = PRESETS["gan"].get(f.name, default)
        wgan_default = PRESETS["wgan-gp"].get(f.name, default)
        shown = f"{gan_default}" if gan_default == wgan_default else f"gan: {gan_default}, wgan-gp: {wgan_default}"
        ap.add_argument(flag, type=type(default), choices=f.metadata["choices"], default=argparse.SUPPRESS,
                        required=f.name == "out", help=f"{f.metadata['help']} (default: {shown})",
                        metavar=None if f.metadata["choices"] else f.name.upper())
    ap.add_argument("--no-resume", action="store_true",
                    help="start from scratch; refuses a folder that already holds a run unless --overwrite")
    ap.add_argument("--overwrite", action="store_true", help="with --no-resume: delete the old run in --out first")
    return ap


def validate(cfg: TrainConfig) -> TrainConfig:
    """Refuse values no run can use, with a message naming the flag."""
    if not cfg.data:
        raise UsageError("--data is required (a folder, .zip or .tar of images)")
    for k in ("batch_size", "n_critic", "log_every", "sample_every", "ckpt_every", "z_dim", "ngf", "ndf"):
        if getattr(cfg, k) < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be ≥ 1, got {getattr(cfg, k)}")
    if cfg.eval_n < 2:
        raise UsageError(f"--eval-n must be ≥ 2 (an FD needs two samples per side), got {cfg.eval_n}")
    if cfg.img_size < 8 or cfg.img_size & (cfg.img_size - 1):
        raise UsageError(f"--img-size must be a power of two ≥ 8 (64 is the report's), got {cfg.img_size}")
    for k in ("epochs", "steps", "eval_every", "snapshot_every", "threads", "keep_ckpts", "max_minutes",
              "max_cpu_minutes"):
        if getattr(cfg, k) < 0:
            raise UsageError(f"--{k.replace('_', '-')} must be ≥ 0, got {getattr(cfg, k)}")
    if cfg.epochs == 0 and cfg.steps == 0:
        raise UsageError("give the run's length with --epochs N or --steps N")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UsageError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.eval_every and not cfg.eval_real:
        raise UsageError("--eval-every needs --eval-real PATH (held-out real images, e.g. data/select.tar)")
    return cfg


def resolve(explicit: dict, saved: dict | None = None) -> TrainConfig:
    """Preset < saved config (resume) < explicit CLI values; refuses locked changes."""
    model = explicit.get("model") or (saved or {}).get("model") or "gan"
    values = {**PRESETS[model]}
    if saved:
        diffs = [f"{k}: run has {saved.get(k)!r}, command asks {explicit[k]!r}"
                 for k in LOCKED if k in explicit and explicit[k] != saved.get(k)]
        if diffs:
            raise UsageError("cannot resume with an incompatible config (" + "; ".join(diffs) +
                             "); use another --out or --no-resume --overwrite")
        known = {f.name for f in fields(TrainConfig)}
        values.update({k: v for k, v in saved.items() if k in known and k not in PER_RUN})
    values.update(explicit)
    values["model"] = model
    return TrainConfig(**values)
