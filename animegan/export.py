"""Export a run's EMA generator as a save_pretrained folder, optionally push it to the Hub.

    python -m animegan.export runs/gan --to checkpoints/gan [--best | --step N] [--push-to-hub user/animegan-gan]

Reads the newest training checkpoint (or the run's generator_best/ with --best),
writes config.json + model.safetensors, and with --push-to-hub uploads the
folder through huggingface_hub (needs a token and internet).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .checkpoint import (CheckpointError, GeneratorLoadError, checkpoint_path, export_generator, list_checkpoints,
                         load_generator, load_latest_state, load_state)
from .config import SEED_OFFSET
from .models import Generator
from .sampling import recalibrate_batchnorm


def generator_from_run(run_dir: Path, step: int | None = None) -> tuple[Generator, dict]:
    """The EMA generator of the newest checkpoint of a run (or of the one at `step`)."""
    if step is None:
        found = load_latest_state(run_dir)
        if found is None:
            raise CheckpointError(f"no readable checkpoint in {run_dir}/checkpoints (is it a training run folder?)")
    else:
        path = checkpoint_path(run_dir, step)
        if not path.exists():
            have = ", ".join(p.name for p in list_checkpoints(run_dir)) or "none"
            raise CheckpointError(f"no checkpoint for step {step} in {run_dir} (have: {have})")
        found = load_state(path), path
    return generator_from_state(*found)


def generator_from_state(state: dict, path: Path) -> tuple[Generator, dict]:
    c = state["config"]
    with torch.random.fork_rng(devices=[]):  # building a module draws init weights: keep the global RNG
        g = Generator(c["z_dim"], c["ngf"], 3, c["img_size"])
    ema = {k.removeprefix("module."): v.contiguous() for k, v in state["ema"].items() if k.startswith("module.")}
    g.load_state_dict(ema)
    recalibrate_batchnorm(g, seed=c["seed"] + SEED_OFFSET["batchnorm"])  # statistics for the EMA weights, as the trainer's exports
    return g.eval(), {"step": state["step"], "epoch": state["epoch"], "checkpoint": path.name,
                      "images_seen": state["batches"] * c["batch_size"],
                      "train_seconds": state.get("train_seconds"), "cpu_seconds": state.get("cpu_seconds"), "config": c}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m animegan.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a training run folder (the --out of animegan.train)")
    ap.add_argument("--to", required=True, help="output folder for config.json + model.safetensors")
    ap.add_argument("--best", action="store_true", help="export the run's best quick-FD generator instead")
    ap.add_argument("--step", type=int, help="export the checkpoint of this generator step instead of the newest")
    ap.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this Hub repo id")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    try:
        if args.best:
            g = load_generator(run / "generator_best")
            f = run / "generator_best" / "training_info.json"
            out = export_generator(g, args.to, extra=json.loads(f.read_text()) if f.exists() else None)
        else:
            g, info = generator_from_run(run, args.step)
            out = export_generator(g, args.to, extra=info)
        print(f"exported {out}")
        if args.push_to_hub:
            try:
                g.push_to_hub(args.push_to_hub)
            except Exception as e:  # offline, no token, no rights: one line
                raise GeneratorLoadError(f"push to {args.push_to_hub} failed: {str(e).splitlines()[0][:200]}")
            print(f"pushed to https://huggingface.co/{args.push_to_hub}")
    except (CheckpointError, GeneratorLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
