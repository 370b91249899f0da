"""The release: from a folder of faces to scored, documented generators, on any machine, in one command.

    scripts/release.sh --data anime-faces-96.tar --out releases/r1 --seeds 0,1,2 --epochs 3 --deadline 150
    scripts/release.sh --split data/ --out releases/r1 --minutes 20 --parallel 2      # an existing split
    scripts/release.sh ... --until runs        # stop after a phase; rerun without it to continue

Phases, each resumable (rerunning the same command continues where it stopped):
  split    `animegan.data split` of --data into OUT/data/{train,select,test}.tar (or --split DIR as is)
  smoke    a few steps of each model on the machine's device, so a broken install fails in seconds;
           on CUDA also the parity check of the fast step (`animegan.parity`), which then runs a model
           only where parity holds and it is faster
  runs     models × seeds at an equal budget (--epochs, or --minutes of training time), --parallel at
           a time, each exporting its EMA generator to snapshots/ every --snapshot-every images shown
           to the discriminator; `--snapshot-only` stops here, so the snapshots can be scored later on
           another machine with the same command
  select   every snapshot scored on the select split with the panel (--curve-rulers, --curve-n): the
           training curves; each run's best snapshot by --select-by
  export   each run's selected generator, and each model's best over seeds, as OUT/export/NAME
  score    the full evaluation of every selected generator, a random-init ceiling and the real-vs-real
           floor on the test split (never seen by training or selection): OUT/report/
  cards    figures (OUT/figures/) and model cards and metrics.json of OUT/export/MODEL

--deadline MIN is a wall-clock budget for this invocation: the runs are stopped (SIGTERM: each writes a
checkpoint) in time to leave --reserve minutes for the phases after them, and a phase that does not fit
is left for the next invocation. Progress goes to OUT/release.log (and the terminal), each run's output
to OUT/runs/NAME.log, and where it got to to OUT/status.json, rewritten atomically after every event.
Exit codes: 0 every phase asked for is done, 3 stopped by the deadline (rerun to continue), 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from animegan.checkpoint import list_checkpoints, load_generator, load_latest_state
from animegan.config import PRESETS, TrainConfig
from animegan.data import DataError, open_image_source
from animegan.files import write_json
from animegan.monitor import read_metrics

PHASES = ("split", "smoke", "runs", "select", "export", "score", "cards")
ROOT = Path(__file__).resolve().parents[1]


class ReleaseError(Exception):
    """Input the release cannot use (one line; exit code 2)."""


@dataclass
class Run:
    model: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-s{self.seed}"


@dataclass
class Release:
    """Where a release lives and what it has done: OUT/status.json is this object's record."""
    out: Path
    deadline: float  # time.time() at which this invocation must have finished
    status: dict = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.out / "data"

    def run_dir(self, run: Run) -> Path:
        return self.out / "runs" / run.name

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=sys.stderr, flush=True)
        with open(self.out / "release.log", "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        self.status["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(self.out / "status.json", self.status)

    def mark(self, phase: str, **info) -> None:
        self.status.setdefault("phases", {}).setdefault(phase, {}).update(info)
        self.save()

    def done(self, phase: str) -> bool:
        return bool(self.status.get("phases", {}).get(phase, {}).get("done"))

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - time.time()


# ---- split and smoke ---------------------------------------------------------------------------

def phase_split(rel: Release, args) -> None:
    if args.split:
        src = Path(args.split)
        missing = [p for p in ("train.tar", "select.tar", "test.tar") if not (src / p).is_file()]
        if missing:
            raise ReleaseError(f"--split {src} lacks {', '.join(missing)} (make it with python -m animegan.data split)")
        rel.data.mkdir(parents=True, exist_ok=True)
        for p in ("train.tar", "select.tar", "test.tar", "split.json"):
            if (src / p).is_file() and not (rel.data / p).exists():
                os.symlink((src / p).resolve(), rel.data / p)
    else:
        cmd = [sys.executable, "-m", "animegan.data", "split", args.data, "--select", str(args.select_images),
               "--test", str(args.test_images), "--out", str(rel.data)]
        run_logged(rel, cmd, rel.out / "split.log")
    counts = {p: len(open_image_source(rel.data / f"{p}.tar").entries) for p in ("train", "select", "test")}
    rel.log("split: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rel.mark("split", done=True, images=counts)


def phase_smoke(rel: Release, args) -> None:
    """A few steps of each model on this device; on CUDA, the fast step's parity and speed per model."""
    impls = {}
    for model in args.models:
        out = rel.out / "smoke" / model
        cmd = train_command(args, Run(model, 0), rel.data / "select.tar", out) + [
            "--steps", "2", "--no-resume", "--overwrite", "--log-every", "1", "--snapshot-every", "0",
            "--batch-size", str(min(args.batch_size, rel.status["phases"]["split"]["images"]["select"]))]
        run_logged(rel, cmd, rel.out / "smoke" / f"{model}.log")
        impls[model] = "auto"  # animegan.train's own choice for the device (eager on a CPU)
    if device_type(args.device) == "cuda":
        impls = choose_fast_step(rel, args)
    rel.log("smoke: both models train on " + device_type(args.device)
            + "; step: " + ", ".join(f"{m} {i}" for m, i in impls.items()))
    rel.mark("smoke", done=True, step_impl=impls)


# The gate of the fast step: what the runs use on CUDA (bf16, TF32 and cudnn.benchmark as animegan.train
# sets them), eager as the reference, the graph step as the candidate, another seed as the yardstick.
PARITY = {"reference": "cuda-bf16-release", "variant": "cuda-bf16-release-graph", "twin": "cuda-bf16-release-seed1"}


def choose_fast_step(rel: Release, args, steps: int = 60) -> dict:
    """Per model: the CUDA-graph step only where it learns what the eager step learns (animegan.parity)
    and is faster; each check's full result goes to OUT/smoke/parity-MODEL.json."""
    from animegan.data import load_images
    from animegan.parity import check_parity

    data = load_images(rel.data / "train.tar", limit=steps * 5 * args.batch_size)  # enough for every step
    impls = {}
    for model in args.models:
        out = rel.out / "smoke" / f"parity-{model}.json"
        res = check_parity(data, model, [PARITY["variant"]], steps, reference=PARITY["reference"],
                           twins=[PARITY["twin"]], batch_size=args.batch_size,
                           on_result=lambda r, out=out: write_json(out, r))
        write_json(out, res)
        impls[model], why = fast_step_verdict(res["variants"].get(PARITY["variant"], {}))
        rel.log(f"parity {model}: {why} → {impls[model]}")
    return impls


def fast_step_verdict(row: dict) -> tuple[str, str]:
    """("graph" | "eager", why) from one parity row: graph only when every check passed and it is faster."""
    if row.get("error") or not row:
        return "eager", f"the graph step failed ({row.get('error', 'not run')})"
    if not row.get("ok"):
        return "eager", "the graph step did not learn what the eager step learns"
    fast, ref = row.get("step_ms", math.inf), row.get("reference_step_ms", 0.0)
    if not fast < ref:
        return "eager", f"the graph step passed parity but is not faster ({fast:.2f} vs {ref:.2f} ms per step)"
    return "graph", f"the graph step passed parity and is faster ({fast:.2f} vs {ref:.2f} ms per step)"


# ---- runs ----------------------------------------------------------------------------------------

def device_type(name: str) -> str:
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"


def train_command(args, run: Run, data: Path, out: Path, step_impl: str = "auto") -> list[str]:
    return [sys.executable, "-m", "animegan.train", "--model", run.model, "--seed", str(run.seed),
            "--data", str(data), "--out", str(out), "--device", args.device, "--threads", str(args.threads),
            "--step-impl", step_impl]


def steps_per_image(model: str, batch_size: int) -> float:
    """Generator steps per real image shown to the discriminator (n_critic batches per step)."""
    n_critic = PRESETS[model].get("n_critic", TrainConfig.n_critic)
    return 1.0 / (batch_size * n_critic)


def budget_steps(rel: Release, model: str, args) -> int:
    """Generator steps of a run: those that show the discriminator --epochs epochs (as --epochs does in
    animegan.train, fractions allowed), or practically unbounded under a time budget."""
    if not args.epochs:
        return 10 ** 9
    batches_per_epoch = rel.status["phases"]["split"]["images"]["train"] // args.batch_size
    return math.ceil(args.epochs * batches_per_epoch * steps_per_image(model, args.batch_size) * args.batch_size)


def run_state(rel: Release, run: Run, args) -> dict:
    """What a run folder holds: its step, images seen, snapshots, and whether the budget this
    invocation asks for (not the one the run started with: a larger budget extends a release) is spent."""
    d = rel.run_dir(run)
    cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
    found = load_latest_state(d) if list_checkpoints(d) else None
    state = found[0] if found else {}
    step, total = int(state.get("step", 0)), budget_steps(rel, run.model, args)
    minutes, cpu_minutes = args.minutes or 0, args.cpu_minutes or 0
    spent = (bool(args.epochs) and step >= total) or bool(minutes and state.get("train_seconds", 0) >= minutes * 60) \
        or bool(cpu_minutes and state.get("cpu_seconds", 0) >= cpu_minutes * 60)
    total = cfg.get("total_steps")
    snaps = sorted(p.name for p in (d / "snapshots").glob("step_*")) if (d / "snapshots").is_dir() else []
    return {"step": step, "total_steps": total, "images_seen": int(state.get("batches", 0)) * cfg.get("batch_size", 64),
            "train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
            "cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 1), "snapshots": len(snaps), "done": spent}


def phase_runs(rel: Release, args) -> bool:
    """Every run to its budget, --parallel at a time; False when the deadline stopped them first."""
    impls = rel.status.get("phases", {}).get("smoke", {}).get("step_impl", {})
    runs = [Run(m, s) for s in args.seeds for m in args.models]
    pending = [r for r in runs if not run_state(rel, r, args)["done"]]
    for r in runs:
        rel.status.setdefault("runs", {})[r.name] = run_state(rel, r, args)
    rel.save()
    running: dict[str, tuple[Run, subprocess.Popen, object]] = {}
    stop_at = rel.deadline - args.reserve * 60
    stopping = False
    while pending or running:
        while pending and len(running) < args.parallel and not stopping:
            if time.time() >= stop_at:
                break
            r = pending.pop(0)
            cmd = train_command(args, r, rel.data / "train.tar", rel.run_dir(r), impls.get(r.model, "auto"))
            every = max(1, round(args.snapshot_every * steps_per_image(r.model, args.batch_size)))
            cmd += ["--snapshot-every", str(every), "--ckpt-every", str(every), "--sample-every", str(every),
                    "--keep-ckpts", "2", "--batch-size", str(args.batch_size)]
            cmd += ["--steps", str(budget_steps(rel, r.model, args))]
            if args.minutes:
                cmd += ["--max-minutes", str(args.minutes)]
            if args.cpu_minutes:
                cmd += ["--max-cpu-minutes", str(args.cpu_minutes)]
            rel.run_dir(r).parent.mkdir(parents=True, exist_ok=True)
            logf = open(rel.out / "runs" / f"{r.name}.log", "a")
            running[r.name] = (r, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT), logf)
            rel.log(f"run {r.name}: started ({' '.join(cmd[3:])})")
        time.sleep(args.poll)
        if time.time() >= stop_at and running and not stopping:
            stopping = True
            rel.log(f"deadline: stopping {', '.join(running)} to leave {args.reserve:g} min for the phases after the runs")
            for _, p, _ in running.values():
                p.send_signal(signal.SIGTERM)  # the trainer checkpoints at the end of its step and exits
        for name, (r, p, logf) in list(running.items()):
            if p.poll() is None:
                continue
            logf.close()
            del running[name]
            st = run_state(rel, r, args)
            rel.status["runs"][name] = st
            if p.returncode != 0 and not (stopping and p.returncode == -signal.SIGTERM):  # killed while loading
                rel.log(f"run {name}: failed with exit code {p.returncode} (see {rel.out / 'runs' / (name + '.log')})")
                raise ReleaseError(f"training run {name} failed; its log is {rel.out / 'runs' / (name + '.log')}")
            rel.log(f"run {name}: {'done' if st['done'] else 'stopped'} at step {st['step']}, "
                    f"{st['images_seen']:,} images, {st['snapshots']} snapshots, {st['cpu_seconds'] / 60:.1f} CPU-min")
        for name in running:
            rel.status["runs"][name] = {**run_state(rel, running[name][0], args), "running": True}
        rel.save()
        if stopping and not running:
            break
    finished = all(run_state(rel, r, args)["done"] for r in runs)
    rel.mark("runs", done=finished)
    return finished


# ---- select, export, score, cards ---------------------------------------------------------------

def snapshots_of(rel: Release, run: Run) -> list[Path]:
    d = rel.run_dir(run) / "snapshots"
    return sorted(d.glob("step_*")) if d.is_dir() else []


def phase_select(rel: Release, args) -> None:
    """Score every snapshot on the select split (the curves); pick each run's best by --select-by."""
    from eval.curves import score_snapshots

    rows_file = rel.out / "curves.jsonl"
    runs = [Run(m, s) for s in args.seeds for m in args.models]
    left = 0
    for r in runs:
        snaps = snapshots_of(rel, r)
        if snaps:
            left += score_snapshots(snaps, rel.data / "select.tar", rows_file, rulers=args.curve_rulers.split(","),
                                    n=args.curve_n, labels={"run": r.name, "model": r.model, "seed": r.seed},
                                    deadline=rel.deadline, log=rel.log)
    rows = read_metrics(rows_file)
    best = {}
    for r in runs:
        mine = [row for row in rows if row.get("run") == r.name and row.get(args.select_by) is not None]
        if mine:
            pick = min(mine, key=lambda row: row[args.select_by])
            best[r.name] = {"snapshot": pick["source"], "step": pick["step"], args.select_by: pick[args.select_by]}
    rel.log("select: " + "; ".join(f"{k} step {v['step']} ({args.select_by} {v[args.select_by]:.2f})"
                                   for k, v in best.items()))
    rel.mark("select", done=left == 0, best=best, select_by=args.select_by)


def phase_export(rel: Release, args) -> None:
    """Each run's selected snapshot → OUT/export/RUN, and each model's best over seeds → OUT/export/MODEL."""
    from animegan.checkpoint import export_generator

    best = rel.status["phases"]["select"]["best"]
    key = rel.status["phases"]["select"]["select_by"]
    exported = {}
    for name, b in best.items():
        src = Path(b["snapshot"])
        info = json.loads((src / "training_info.json").read_text())
        info["selection"] = {"rule": f"lowest {key} on the select split among the run's snapshots",
                             "source": str(rel.data / "select.tar"), key: b[key]}
        export_generator(load_generator(src), rel.out / "export" / name, extra=info)
        exported[name] = str(rel.out / "export" / name)
    for model in args.models:
        mine = {k: v for k, v in best.items() if k.startswith(model + "-s")}
        if mine:
            top = min(mine, key=lambda k: mine[k][key])
            dst = rel.out / "export" / model
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(rel.out / "export" / top, dst)
            exported[model] = top
    rel.log("export: " + ", ".join(exported))
    rel.mark("export", done=True, exported=exported)


def phase_score(rel: Release, args) -> None:
    """The full evaluation on the test split: every run's selected generator (the evaluation adds the
    random-init ceiling and the real-vs-real floor)."""
    from eval.evaluate import evaluate
    from eval.report import write_report

    runs = [Run(m, s) for s in args.seeds for m in args.models]
    ckpts = [str(rel.out / "export" / r.name) for r in runs if (rel.out / "export" / r.name).is_dir()]
    groups = {m: [r.name for r in runs if r.model == m and (rel.out / "export" / r.name).is_dir()] for m in args.models}
    report, pictures = evaluate(str(rel.data / "test.tar"), ckpts=ckpts, train=str(rel.data / "train.tar"),
                                n=args.n, rulers=args.rulers.split(","), groups=groups, device=device_type(args.device))
    out = write_report(rel.out / "report", report, pictures)
    rel.log(f"score: wrote {out}/report.json and report.md")
    rel.mark("score", done=True, report=str(out / "report.json"))


def phase_cards(rel: Release, args) -> None:
    """Figures of the curves and samples; model card and metrics.json of each model's export."""
    import cards
    from eval.curves import plot_curves

    plot_curves(read_metrics(rel.out / "curves.jsonl"), rel.out / "figures" / "curves.png")
    report = rel.out / "report" / "report.json"
    cards.publish_metrics(argparse.Namespace(report=str(report), to=str(rel.out / "export")))
    exported = rel.status["phases"]["export"]["exported"]
    for model in args.models:
        d, best = rel.out / "export" / model, rel.out / "export" / exported.get(model, model)
        if (best / "metrics.json").is_file():
            shutil.copy2(best / "metrics.json", d / "metrics.json")  # the same weights: the same numbers
            best = json.loads((d / "training_info.json").read_text())
            run = rel.out / "runs" / f"{model}-s{best['config']['seed']}"
            cards.model_card(argparse.Namespace(dir=str(d), run=str(run), machine=args.machine))
    rel.log(f"cards: figures in {rel.out / 'figures'}, model cards in {rel.out / 'export'}")
    rel.mark("cards", done=True)


# ---- the command -----------------------------------------------------------------------------------

def run_logged(rel: Release, cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise ReleaseError(f"{' '.join(cmd[1:4])} failed (exit {rc}): {tail[0][:300]} — log: {log}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/release.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="all faces (folder/.zip/.tar): split into OUT/data/ by animegan.data split")
    src.add_argument("--split", help="a folder that already holds train.tar, select.tar and test.tar")
    ap.add_argument("--out", required=True, help="release folder (rerun with the same --out to resume)")
    ap.add_argument("--models", default="gan,wgan-gp", help="comma-separated presets (default gan,wgan-gp)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=float, default=None, help="budget per run in epochs (default 3)")
    budget.add_argument("--minutes", type=float, default=None, help="budget per run in minutes of training time")
    budget.add_argument("--cpu-minutes", type=float, default=None,
                        help="budget per run in CPU minutes of its training process (runs sharing a CPU get equal "
                             "compute however busy the machine is)")
    ap.add_argument("--snapshot-every", type=int, default=10_000,
                    help="export a snapshot every N real images shown to the discriminator (default 10000)")
    ap.add_argument("--snapshot-only", action="store_true", help="stop after the runs (same as --until runs)")
    ap.add_argument("--until", choices=PHASES, default="cards", help="last phase to run (default: all)")
    ap.add_argument("--deadline", type=float, default=0, help="wall-clock minutes for this invocation (0 = none)")
    ap.add_argument("--reserve", type=float, default=None,
                    help="minutes kept for the phases after the runs when --deadline is set (default: a fifth)")
    ap.add_argument("--parallel", type=int, default=0, help="runs at a time (default: CPU cores ÷ --threads on a "
                    "CPU, up to 4 by free memory on a GPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--select-images", type=int, default=1000, help="with --data: size of the select split")
    ap.add_argument("--test-images", type=int, default=2000, help="with --data: size of the test split")
    ap.add_argument("--curve-rulers", default="effnet,swd,anime,c2st",
                    help="rulers that score every snapshot on select (default: the whole panel)")
    ap.add_argument("--curve-n", type=int, default=500, help="samples per snapshot for the curves (default 500)")
    ap.add_argument("--select-by", default="fid", help="curve metric that picks each run's snapshot (default fid)")
    ap.add_argument("--rulers", default="effnet,swd,c2st,anime", help="rulers of the final scoring (default all)")
    ap.add_argument("--n", type=int, default=1000, help="samples and test images of the final scoring (default 1000)")
    ap.add_argument("--machine", default="", help="what the runs trained on, for model cards and figure labels")
    ap.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    for m in args.models:
        if m not in PRESETS:
            ap.error(f"unknown model {m!r}; choose from {', '.join(PRESETS)}")
    if not args.models or not args.seeds:
        ap.error("--models and --seeds must each name at least one")
    if args.epochs is None and args.minutes is None and args.cpu_minutes is None:
        args.epochs = 3.0
    for flag in ("epochs", "minutes", "cpu_minutes"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            ap.error(f"--{flag} must be > 0, got {v}")
    for flag in ("snapshot_every", "threads", "batch_size", "curve_n", "n"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be ≥ 1, got {getattr(args, flag)}")
    if args.deadline < 0:
        ap.error(f"--deadline must be ≥ 0 minutes, got {args.deadline}")
    if args.snapshot_only:
        args.until = "runs"
    if args.reserve is None:
        args.reserve = args.deadline / 5
    if not args.parallel:
        runs = len(args.models) * len(args.seeds)
        if device_type(args.device) == "cuda":
            free, _ = torch.cuda.mem_get_info()
            args.parallel = max(1, min(runs, 4, free // (3 << 30)))  # a 64×64 DCGAN run needs well under 3 GiB
        else:
            args.parallel = max(1, min(runs, (os.cpu_count() or 1) // args.threads))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = json.loads((out / "status.json").read_text()) if (out / "status.json").is_file() else {}
    rel = Release(out, time.time() + args.deadline * 60 if args.deadline else math.inf, status)
    rel.status.get("phases", {}).pop("release", None)  # the last invocation's error or stop
    rel.status.update(command=" ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
                      models=args.models, seeds=args.seeds,
                      budget={"epochs": args.epochs, "minutes": args.minutes, "cpu_minutes": args.cpu_minutes},
                      device=device_type(args.device))
    rel.log(f"release {out}: {len(args.models)} models × {len(args.seeds)} seeds, "
            + (f"{args.epochs:g} epochs" if args.epochs else f"{args.minutes:g} min" if args.minutes else
               f"{args.cpu_minutes:g} CPU-min") + f" each, {args.parallel} at a "
            f"time, {args.threads} thread(s) each" + (f", deadline in {args.deadline:g} min" if args.deadline else ""))
    steps = {"split": phase_split, "smoke": phase_smoke, "runs": phase_runs, "select": phase_select,
             "export": phase_export, "score": phase_score, "cards": phase_cards}
    try:
        for phase in PHASES[:PHASES.index(args.until) + 1]:
            trained = {r: s.get("step") for r, s in sorted(rel.status.get("runs", {}).items())}
            if rel.done(phase) and rel.status["phases"][phase].get("trained", trained) == trained and \
                    phase not in ("runs", "select"):  # both pick up what is new themselves (runs, snapshots, rulers)
                continue  # done, and the runs have not moved since
            if rel.left() <= 0:
                rel.log(f"deadline reached before {phase}: rerun the same command to continue")
                rel.mark("release", stopped_before=phase)
                return 3
            rel.status["phase"] = phase
            if steps[phase](rel, args) is False:  # the runs were stopped by the deadline
                rel.log("deadline: the runs are not finished; scoring what they have so far")
            if phase not in ("split", "smoke"):
                rel.mark(phase, trained={r: s.get("step") for r, s in sorted(rel.status.get("runs", {}).items())})
    except (ReleaseError, DataError) as e:
        rel.log(f"error: {e}")
        rel.mark("release", error=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 2
    finished = all(rel.done(p) for p in PHASES[:PHASES.index(args.until) + 1])
    rel.status["phase"] = "finished" if finished else "partial"
    rel.save()
    rel.log(f"release {out}: " + (f"done up to {args.until}" if finished else
                                   "partial: rerun the same command to continue"))
    return 0 if finished else 3


if __name__ == "__main__":
    sys.exit(main())
