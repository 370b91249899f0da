"""One training loop for both models: `python -m animegan.train`.

    python -m animegan.train --model gan     --data data/train.tar --out runs/gan --epochs 25
    python -m animegan.train --model wgan-gp --data data/train.tar --out runs/wgan-gp --steps 20000 \\
        --eval-every 500 --eval-real data/select.tar

`main` is the command line: it resolves the config at the edge (preset < the run's saved config <
flags) and finds the checkpoint to resume from. `training_loop` then reads top to bottom: set up;
per generator step, train, then one maintenance gate (`due`: log, sample, evaluate, snapshot,
checkpoint, each at its cadence, and all of them at the run's last step). The step itself is
`trainer.Trainer.train_step`.
Exit codes: 0 done or stopped cleanly (rerun the same command to resume), 2 bad input.
"""
from __future__ import annotations

import signal
import sys
import time

import torch

from . import distributed as ddp
from .checkpoint import CheckpointError, export_generator, list_checkpoints, load_latest_state, save_state
from .files import write_json
from .config import SEED_OFFSET, TrainConfig, UsageError, build_parser, resolve, validate
from .data import DataError, load_images
from .distributed import DistEnv, DistError
from .features import FeatureError
from .monitor import MetricsLog, Progress, plot_losses, read_metrics, save_grid
from .quickfd import QuickFD
from .rundir import RunDir
from .trainer import Trainer, pick_device

# Errors that mean "this input cannot work": one `error:` line and exit code 2. Anything else is a
# bug and keeps its traceback.
INPUT_ERRORS = (UsageError, DataError, CheckpointError, DistError, FeatureError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = DistEnv()
    try:
        env = ddp.init_from_env()  # torchrun with several processes; otherwise a plain process
        # Under torchrun rank 0 reads (or clears) the run folder and sends every rank the same
        # config and checkpoint, so --out only has to exist where rank 0 runs.
        cfg, state = ddp.rank0_decides(env, lambda: open_run(args)) if env.world > 1 else open_run(args)
        return training_loop(cfg, state, env)
    except INPUT_ERRORS as e:
        if env.is_main:
            print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        ddp.close(env)


def open_run(args) -> tuple[TrainConfig, dict | None]:
    """The run's config and the checkpoint state to resume from (None for a new run)."""
    explicit = {k: v for k, v in vars(args).items() if k not in ("no_resume", "overwrite")}
    if "steps" in explicit and "epochs" not in explicit:
        explicit["epochs"] = 0  # an explicit length replaces the saved one
    if "epochs" in explicit and "steps" not in explicit:
        explicit["steps"] = 0
    run, state = RunDir(args.out), None
    if args.no_resume:
        if run.has_run() and not args.overwrite:
            raise UsageError(f"{run.path} already holds a run; resume it (drop --no-resume), or add --overwrite")
        run.clear()
    else:
        found = load_latest_state(run.path)
        if found is None and list_checkpoints(run.path):
            raise UsageError(f"no readable checkpoint in {run.checkpoints}; use --no-resume --overwrite to restart")
        state = found[0] if found else None
    return validate(resolve(explicit, state["config"] if state else None)), state


def training_loop(cfg: TrainConfig, state: dict | None = None, env: DistEnv = DistEnv()) -> int:
    # ---- set up: device, data, models, and on rank 0 the run folder and the quick FD
    main_rank = env.is_main  # only rank 0 writes files and talks; every rank trains
    run = RunDir(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if env.world > 1:
        device = ddp.place(env, device)
    data = load_images(cfg.data, size=cfg.img_size, progress=main_rank)
    if env.world > 1:
        ddp.check_same_data(env, data.images)
    trainer = Trainer(cfg, data, device, env)
    if state:
        trainer.load_state_dict(state)
    total, recorded = trainer.total_steps(), trainer.step_impl
    log = quick_fd = None
    if main_rank:
        run.path.mkdir(parents=True, exist_ok=True)
        write_json(run.config, run_description(cfg, trainer, data, total, device, env))
        log = MetricsLog(run.metrics, resume_step=trainer.step if state else None)
        quick_fd = QuickFD(cfg.eval_real, cfg.eval_n, cfg.z_dim, cfg.seed + SEED_OFFSET["quick_fd"], cfg.img_size, device) \
            if cfg.eval_every else None
        procs = f", {env.world} processes ({env.backend}) × {trainer.local_batch} images per D step" \
            if env.world > 1 else ""
        print(f"{'resuming' if state else 'starting'} {run.path} at step {trainer.step}: {cfg.model}, {trainer.n} "
              f"images, {total} generator steps ({trainer.batches_per_epoch} batches of {cfg.batch_size} per epoch, "
              f"{cfg.n_critic} per step), device {device}, precision {trainer.precision}, step {trainer.step_impl}{procs}",
              file=sys.stderr)

    # ---- the loop: one training step, then one maintenance gate (log, sample, evaluate, snapshot,
    # checkpoint), which at the run's last step also runs every job that has not yet seen that step
    progress = Progress(total, initial=trainer.step, unit="step", enabled=main_rank)
    budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    t_start, seconds_before = time.perf_counter(), trainer.train_seconds
    cpu_start, cpu_before = time.process_time(), trainer.cpu_seconds
    window = Window(trainer.step)  # img/s between log rows, maintenance excluded
    epoch_sums, epoch, epoch_start = {}, trainer.epoch, trainer.step  # the terminal's per-epoch line
    with StopFlag() as signalled:
        stop = why_stop(trainer, total, budget, signalled.stop)
        while stop is None:
            stats = trainer.train_step()
            trainer.train_seconds = seconds_before + time.perf_counter() - t_start
            trainer.cpu_seconds = cpu_before + time.process_time() - cpu_start
            signal_stop = signalled.stop
            s = trainer.step
            if env.world > 1:  # every rank stops after the same step, on rank 0's clock
                signal_stop, trainer.train_seconds = ddp.agree(env, device, signalled.stop, trainer.train_seconds)
                if s % cfg.log_every == 0 or s == total:
                    stats = ddp.mean_stats(stats)
            stop = why_stop(trainer, total, budget, signal_stop)
            if not main_rank:
                continue
            progress.update()
            for k in ("d_loss", "g_loss"):  # detached tensors summed where they are: float() would wait for a GPU
                epoch_sums[k] = epoch_sums.get(k, 0.0) + stats[k]

            # ---- maintenance: the one gate
            t_maintenance = time.perf_counter()
            for job in due(cfg, s, stop, quick_fd is not None):
                if job == "log":  # float() below is the step's one host sync
                    row = {"step": s, "epoch": trainer.epoch, "images_seen": trainer.batches * cfg.batch_size,
                           **{k: round(float(v), 5) for k, v in stats.items()},
                           "img_per_s": round(window.rate(s, cfg.batch_size * cfg.n_critic), 1),
                           "train_seconds": round(trainer.train_seconds, 1),
                           "cpu_seconds": round(trainer.cpu_seconds, 1)}
                    log.append(row)
                    progress.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}",
                                         img_s=f"{row['img_per_s']:.0f}")
                elif job == "sample":
                    save_samples(run, trainer)
                elif job == "eval":
                    evaluate(run, trainer, quick_fd, log, progress)
                elif job == "snapshot":
                    save_snapshot(run, trainer)
                elif job == "ckpt":
                    save_checkpoint(run, trainer)
            if trainer.step_impl != recorded:  # the fast step fell back to eager: say so where the run is described
                recorded = trainer.step_impl
                write_json(run.config, run_description(cfg, trainer, data, total, device, env))
            if trainer.epoch != epoch:
                means = ", ".join(f"{k} {float(v) / max(s - epoch_start, 1):.4f}" for k, v in epoch_sums.items())
                progress.write(f"epoch {epoch} done at step {s}: mean {means}")
                epoch_sums, epoch, epoch_start = {}, trainer.epoch, s
            window.exclude(t_maintenance, time.perf_counter())
    progress.close()
    if env.world > 1:
        same, digests = ddp.ranks_agree(env, trainer.G, trainer.D, trainer.ema)
        if main_rank:
            print(f"all {env.world} ranks hold identical G, D and EMA weights (sha256 {digests[0]})" if same else
                  f"warning: ranks' weights differ ({', '.join(digests)}); the checkpoint holds rank 0's", file=sys.stderr)
    if main_rank:
        print(end_message(run, trainer, total, stop, budget), file=sys.stderr)
    return 0


def why_stop(trainer: Trainer, total: int, budget: float, signalled: bool) -> str | None:
    """None while the run goes on; else "done", "signal" (Ctrl-C, SIGTERM) or "budget" (--max-minutes,
    --max-cpu-minutes)."""
    if trainer.step >= total:
        return "done"
    if signalled:
        return "signal"
    cpu_budget = trainer.cfg.max_cpu_minutes * 60 if trainer.cfg.max_cpu_minutes > 0 else float("inf")
    if trainer.train_seconds >= budget or trainer.cpu_seconds >= cpu_budget:
        return "budget"
    return None


JOBS = ("log", "sample", "eval", "snapshot", "ckpt")  # in this order: the checkpoint records the FD just taken


def due(cfg: TrainConfig, step: int, stop: str | None, has_quick_fd: bool) -> list[str]:
    """The maintenance jobs due after generator step `step`: each at its cadence (and the first grid at
    step 1); at the run's last step (stop is not None) every job, so the run ends with its log row,
    grid, FD, snapshot and checkpoint — except the quick FD after Ctrl-C or SIGTERM, which must not wait."""
    every = {"log": cfg.log_every, "sample": cfg.sample_every, "eval": cfg.eval_every if has_quick_fd else 0,
             "snapshot": cfg.snapshot_every, "ckpt": cfg.ckpt_every}
    jobs = {j for j, n in every.items() if n and (step % n == 0 or stop is not None)}
    if step == 1:
        jobs.add("sample")
    if stop == "signal":
        jobs.discard("eval")
    return sorted(jobs, key=JOBS.index)


# ---- what the maintenance block writes ------------------------------------------------------

def export_info(trainer: Trainer) -> dict:
    """training_info.json of an export: where in training the weights come from."""
    return {"step": trainer.step, "epoch": trainer.epoch, "epochs": round(trainer.epochs_done, 3),
            "images_seen": trainer.batches * trainer.cfg.batch_size,
            "train_seconds": round(trainer.train_seconds, 1), "cpu_seconds": round(trainer.cpu_seconds, 1),
            "config": trainer.cfg.to_dict()}


def run_description(cfg: TrainConfig, trainer: Trainer, data, total: int, device, env: DistEnv) -> dict:
    """config.json: the resolved config and what this machine made of it."""
    return {**cfg.to_dict(), "images": trainer.n, "skipped_files": data.skipped, "total_steps": total,
            "epochs_at_end": round(total * cfg.n_critic / trainer.batches_per_epoch, 3), "device": str(device),
            "world_size": env.world, "autocast": trainer.precision, "step_impl_used": trainer.step_impl,
            "step_impl_fallback": getattr(trainer, "step_impl_fallback", None)}


def save_samples(run: RunDir, trainer: Trainer) -> None:
    images = trainer.sample(trainer.fixed_z)  # the same 16 latents across the run and its resumes
    save_grid(images, run.samples / f"step_{trainer.step:07d}.png")
    save_grid(images, run.samples / "latest.png")


def save_snapshot(run: RunDir, trainer: Trainer) -> None:
    """The EMA generator as it is now, kept for scoring later (on another machine if need be)."""
    export_generator(trainer.export_model(), run.snapshot(trainer.step), extra=export_info(trainer))


def save_checkpoint(run: RunDir, trainer: Trainer) -> None:
    save_state(run.path, trainer.step, trainer.state_dict(), keep=trainer.cfg.keep_ckpts)
    export_generator(trainer.export_model(), run.export, extra=export_info(trainer))
    plot_losses(read_metrics(run.metrics), run.loss_plot, title=f"{trainer.cfg.model} losses")


def evaluate(run: RunDir, trainer: Trainer, quick_fd: QuickFD, log: MetricsLog, progress: Progress) -> None:
    """Quick FD of the EMA generator; it becomes generator_best/ when it beats the best on disk."""
    s = trainer.evaluated_step = trainer.step
    fd = quick_fd(trainer.ema_generator())
    log.append({"step": s, "epoch": trainer.epoch, "fd": round(fd, 4), "fd_n": quick_fd.n,
                "train_seconds": round(trainer.train_seconds, 1)})
    info = {**export_info(trainer), "fd_n": quick_fd.n, "selection": quick_fd.selection()}
    run.promote_if_best(trainer.export_model(), info, fd)
    best = run.best()
    progress.write(f"step {s}: quick FD {fd:.3f} (best {best['fd_effnet_lite0']:.3f} at step {best['step']})")


def end_message(run: RunDir, trainer: Trainer, total: int, stop: str | None, budget: float) -> str:
    where = f"{trainer.step} steps, {trainer.epochs_done:.2f} epochs"
    if stop == "signal":
        return f"stopped at step {trainer.step}; checkpoint saved in {run.checkpoints} — rerun the same command to resume"
    if stop == "budget":
        return f"time budget reached after {where} ({trainer.train_seconds / 60:.1f} min, {trainer.cpu_seconds / 60:.1f} " \
               f"CPU-min); EMA generator exported to {run.export}"
    return f"done: {where}; EMA generator exported to {run.export}"


class Window:
    """Images per second over the steps since the last log row, not counting maintenance time.
    Wall time, not the step's own duration: on a GPU the step only queues work, and the log row's
    float() is where the host waits for it."""

    def __init__(self, step: int):
        self.t, self.step, self.excluded = time.perf_counter(), step, 0.0

    def exclude(self, t0: float, t1: float) -> None:
        """Leave out the time from t0 to t1 (only what falls inside this window)."""
        self.excluded += max(0.0, t1 - max(t0, self.t))

    def rate(self, step: int, images_per_step: int) -> float:
        now = time.perf_counter()
        busy = max(now - self.t - self.excluded, 1e-9)
        r = (step - self.step) * images_per_step / busy
        self.t, self.step, self.excluded = now, step, 0.0
        return r


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the end of the current step."""

    def __init__(self):
        self.stop = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stop:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)


if __name__ == "__main__":
    sys.exit(main())
