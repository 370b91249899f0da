"""The run around the training step: CLI, resume, logging, samples, checkpoints, export.

Used through `python -m animegan.train` (see train.py for the step itself).
Exit codes: 0 done or stopped cleanly (rerun the command to resume), 2 bad input.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoint import (CheckpointError, export_generator, list_checkpoints, load_latest_state, save_state,
                         write_json)
from .config import TrainConfig, build_parser, resolve
from .data import DataError, load_images
from . import distributed as ddp
from .distributed import DistEnv, DistError
from .monitor import MetricsLog, plot_losses, read_metrics, save_grid
from .quickfd import QuickFD
from .train import StopFlag, Trainer, pick_device

RUN_FILES = ("config.json", "metrics.jsonl", "loss.png", "checkpoints", "samples", "generator", "generator_best")


class UsageError(Exception):
    pass


def check(cfg: TrainConfig) -> None:
    if not cfg.data:
        raise UsageError("--data is required (a folder, .zip or .tar of images)")
    positive = ("batch_size", "n_critic", "log_every", "sample_every", "ckpt_every", "z_dim", "ngf", "ndf")
    for k in positive:
        if getattr(cfg, k) < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be ≥ 1, got {getattr(cfg, k)}")
    for k in ("epochs", "steps", "eval_every", "threads", "keep_ckpts"):
        if getattr(cfg, k) < 0:
            raise UsageError(f"--{k.replace('_', '-')} must be ≥ 0, got {getattr(cfg, k)}")
    if cfg.epochs == 0 and cfg.steps == 0:
        raise UsageError("give the run's length with --epochs N or --steps N")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UsageError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.eval_every and not cfg.eval_real:
        raise UsageError("--eval-every needs --eval-real PATH (held-out real images)")


def prepare(args) -> tuple[TrainConfig, dict | None]:
    explicit = {k: v for k, v in vars(args).items() if k not in ("no_resume", "overwrite")}
    if "steps" in explicit and "epochs" not in explicit:
        explicit["epochs"] = 0  # an explicit length replaces the saved one
    if "epochs" in explicit and "steps" not in explicit:
        explicit["steps"] = 0
    out = Path(args.out)
    has_run = (out / "config.json").exists() or bool(list_checkpoints(out))
    state = None
    if args.no_resume:
        if has_run and not args.overwrite:
            raise UsageError(f"{out} already holds a run; resume it (drop --no-resume), or add --overwrite")
        if has_run:
            for name in RUN_FILES:
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    else:
        found = load_latest_state(out)
        state = found[0] if found else None
        if list_checkpoints(out) and state is None:
            raise UsageError(f"no readable checkpoint in {out}/checkpoints; use --no-resume --overwrite to restart")
    try:
        cfg = resolve(explicit, state["config"] if state else None)
    except ValueError as e:
        raise UsageError(str(e))
    check(cfg)
    return cfg, state


def prepare_distributed(args, env: DistEnv) -> tuple[TrainConfig, dict | None]:
    """Rank 0 reads (or clears) the run folder; every rank gets its config and checkpoint state.

    Sending the state instead of a path means all ranks load the very same checkpoint, and
    --out only has to exist where rank 0 runs."""
    return ddp.rank0_decides(env, lambda: prepare(args))


def run(cfg: TrainConfig, state: dict | None, env: DistEnv | None = None) -> int:
    env = env or DistEnv()
    main = env.is_main  # only rank 0 writes files and talks; every rank trains
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if env.world > 1:
        device = ddp.place(env, device)
    data = load_images(cfg.data, size=cfg.img_size, progress=main)
    if env.world > 1:
        ddp.check_same_data(env, data.images)
    trainer = Trainer(cfg, data, device, env)
    if state:
        trainer.load_state_dict(state)
    total = cfg.steps or cfg.epochs * trainer.steps_per_epoch
    metrics = quick_fd = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**cfg.to_dict(), "images": trainer.n, "skipped_files": data.skipped,
                                         "total_steps": total, "device": str(device), "world_size": env.world,
                                         "autocast": str(trainer.dtype).replace("torch.", "") if trainer.dtype else "fp32"})
        metrics = MetricsLog(out / "metrics.jsonl", resume_step=trainer.step if state else None)
        quick_fd = QuickFD(cfg.eval_real, cfg.eval_n, cfg.z_dim, cfg.seed + 3, cfg.img_size, device) if cfg.eval_every else None
        what = f"resuming {out} at step {trainer.step}" if state else f"starting {out}"
        procs = (f", {env.world} processes ({env.backend}) × {trainer.local_batch} images per D step"
                 if env.world > 1 else "")
        print(f"{what}: {cfg.model}, {trainer.n} images, {total} generator steps "
              f"({trainer.steps_per_epoch}/epoch), device {device}, precision "
              f"{str(trainer.dtype).replace('torch.', '') if trainer.dtype else 'fp32'}{procs}", file=sys.stderr)

    def export_info() -> dict:  # training_info.json of an export
        return {"step": trainer.step, "epoch": trainer.epoch, "images_seen": trainer.batches * cfg.batch_size,
                "train_seconds": round(trainer.train_seconds, 1), "config": cfg.to_dict()}

    def checkpoint():
        save_state(out, trainer.step, trainer.state_dict(), keep=cfg.keep_ckpts)
        export_generator(trainer.export_model(), out / "generator", extra=export_info())
        plot_losses(read_metrics(out / "metrics.jsonl"), out / "loss.png", title=f"{cfg.model} losses")

    def grid():
        img = trainer.sample(trainer.fixed_z)
        save_grid(img, out / "samples" / f"step_{trainer.step:07d}.png")
        save_grid(img, out / "samples" / "latest.png")

    last_eval = None

    def evaluate():  # quick FD of the EMA generator now; keeps generator_best/ when it is the best so far
        nonlocal last_eval
        s = last_eval = trainer.step
        fd = quick_fd(trainer.ema_generator())
        metrics.append({"step": s, "epoch": trainer.epoch, "fd": round(fd, 4), "fd_n": len(quick_fd.real),
                        "train_seconds": round(trainer.train_seconds, 1)})
        if not trainer.best or fd < trainer.best["fd"]:
            trainer.best = {"fd": fd, "step": s}
            export_generator(trainer.export_model(), out / "generator_best",
                             extra={**export_info(), "fd_effnet_lite0": fd, "fd_n": len(quick_fd.real)})
        tqdm.write(f"step {s}: quick FD {fd:.3f} (best {trainer.best['fd']:.3f} at step "
                   f"{trainer.best['step']})", file=sys.stderr)

    bar = tqdm(total=total, initial=trainer.step, unit="step", dynamic_ncols=True, file=sys.stderr, disable=not main)
    busy, step_last, ep_sums, ep_n, t_ep = 0.0, trainer.step, {}, 0, time.perf_counter()
    budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    t_start, secs_start = time.perf_counter(), trainer.train_seconds
    with StopFlag() as flag:
        # world > 1: the stop decision every rank shares (flag.stop itself may flip at any moment,
        # so it is read only inside agree); a signal or the budget ends all ranks after one step.
        agreed = None
        if env.world > 1:
            agreed, trainer.train_seconds = ddp.agree(env, device, flag.stop, trainer.train_seconds)
        while trainer.step < total and not (flag.stop if agreed is None else agreed) \
                and trainer.train_seconds < budget:
            epoch = trainer.epoch
            t_step = time.perf_counter()
            stats = trainer.train_step()
            busy += time.perf_counter() - t_step  # img/s counts the step only, not grids/evals/saves
            s = trainer.step
            trainer.train_seconds = secs_start + time.perf_counter() - t_start
            if env.world > 1:
                agreed, trainer.train_seconds = ddp.agree(env, device, flag.stop, trainer.train_seconds)
                if s % cfg.log_every == 0 or s == total:
                    stats = ddp.mean_stats(stats)
                if not main:
                    continue
            bar.update(1)
            for k in ("d_loss", "g_loss"):  # detached tensors, summed where they are: float() would wait for a GPU
                ep_sums[k] = ep_sums.get(k, 0.0) + stats[k]
            ep_n += 1
            if s % cfg.log_every == 0 or s == total:
                ips = (s - step_last) * cfg.batch_size * cfg.n_critic / max(busy, 1e-9)
                busy, step_last = 0.0, s
                row = {"step": s, "epoch": trainer.epoch, "images_seen": trainer.batches * cfg.batch_size,
                       **{k: round(float(v), 5) for k, v in stats.items()}, "img_per_s": round(ips, 1),
                       "train_seconds": round(trainer.train_seconds, 1)}
                metrics.append(row)
                bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}", img_s=f"{ips:.0f}")
            if s % cfg.sample_every == 0 or s == 1:
                grid()
            if quick_fd and (s % cfg.eval_every == 0 or s == total):
                evaluate()
            if s % cfg.ckpt_every == 0:
                checkpoint()
            if trainer.epoch != epoch:
                means = ", ".join(f"{k} {float(v) / max(ep_n, 1):.4f}" for k, v in ep_sums.items())
                ips = ep_n * cfg.batch_size * cfg.n_critic / max(time.perf_counter() - t_ep, 1e-9)
                tqdm.write(f"epoch {epoch} done at step {s}: mean {means}, {ips:.0f} img/s", file=sys.stderr)
                ep_sums, ep_n, t_ep = {}, 0, time.perf_counter()
        if main:
            if quick_fd and trainer.train_seconds >= budget and last_eval != trainer.step:
                evaluate()  # the time budget ended the run between evaluations: the last weights may be the best
            grid()
            checkpoint()
    bar.close()
    if env.world > 1:
        same, digests = ddp.ranks_agree(env, trainer.G, trainer.D, trainer.ema)
        if not main:
            return 0
        if same:
            print(f"all {env.world} ranks hold identical G, D and EMA weights (sha256 {digests[0]})", file=sys.stderr)
        else:
            print(f"warning: ranks' weights differ ({', '.join(digests)}); the checkpoint holds rank 0's",
                  file=sys.stderr)
    if trainer.train_seconds >= budget and trainer.step < total:
        print(f"time budget of {cfg.max_minutes} min reached at step {trainer.step}; EMA generator exported "
              f"to {out}/generator", file=sys.stderr)
    elif (flag.stop if agreed is None else agreed):
        print(f"stopped at step {trainer.step}; checkpoint saved in {out}/checkpoints — rerun the same "
              f"command to resume", file=sys.stderr)
    else:
        print(f"done: {trainer.step} steps; EMA generator exported to {out}/generator", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = DistEnv()
    try:
        env = ddp.init_from_env()  # torchrun with several processes; otherwise a plain process
        cfg, state = prepare_distributed(args, env) if env.world > 1 else prepare(args)
        return run(cfg, state, env)
    except (UsageError, DataError, CheckpointError, DistError, ValueError) as e:
        if env.is_main:
            print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        ddp.close(env)


if __name__ == "__main__":
    sys.exit(main())
