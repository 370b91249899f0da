"""What recomputing the EMA generator's BatchNorm statistics does to its quick FD.

    python benchmarks/bn_recalibration.py --real data/val1000.zip checkpoints/gan checkpoints/wgan-gp \\
        runs/gan/checkpoints/step_0003000.pt

An EMA of the generator's weights carries the *live* generator's BatchNorm running statistics, which
belong to other weights. For every source (an exported generator folder, or a training checkpoint)
this prints the quick FD (effnet-lite0, the trainer's latents, the first --n images of --real) of:
  as stored    the statistics the source holds (a checkpoint's EMA: the live generator's; exports
               written before recalibration existed: the same)
  recalibrated the statistics recomputed for the EMA weights from 4 × 256 latents (what the
               trainer now does before every grid, export and quick FD)
  live G       a checkpoint's live generator with its own statistics (for scale)
and how far the stored running variances are from the recalibrated ones (ratio range).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from torch import nn

from animegan.checkpoint import load_generator, load_state
from animegan.config import QUICK_FD_N, SEED_OFFSET
from animegan.models import Generator
from animegan.quickfd import QuickFD
from animegan.sampling import recalibrate_batchnorm


def variance_ratios(stored: nn.Module, recalibrated: nn.Module) -> tuple[float, float]:
    """min and max over all channels of stored running_var / recalibrated running_var."""
    ratios = [a.running_var / b.running_var for a, b in zip(stored.modules(), recalibrated.modules())
              if isinstance(a, nn.BatchNorm2d)]
    r = torch.cat(ratios)
    return float(r.min()), float(r.max())


def generators(source: str) -> tuple[dict[str, Generator], int]:
    """{label: generator} of a source, and the seed of its run."""
    p = Path(source)
    if p.is_dir():
        info = json.loads((p / "training_info.json").read_text()) if (p / "training_info.json").is_file() else {}
        return {"as stored": load_generator(p)}, info.get("config", {}).get("seed", 0)
    state = load_state(p)
    c = state["config"]

    def build(sd: dict) -> Generator:
        with torch.random.fork_rng(devices=[]):
            g = Generator(c["z_dim"], c["ngf"], 3, c["img_size"])
        g.load_state_dict(sd)
        return g.eval()

    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    return {"as stored": build(ema), "live G": build(state["G"])}, c["seed"]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", help="exported generator folders and/or training checkpoints (.pt)")
    ap.add_argument("--real", required=True, help="held-out images (the first --n by name)")
    ap.add_argument("--n", type=int, default=QUICK_FD_N)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, qfd = [], {}
    for source in args.sources:
        gens, seed = generators(source)
        stored = gens["as stored"]
        recal = copy.deepcopy(stored)
        recalibrate_batchnorm(recal, seed=seed + SEED_OFFSET["batchnorm"])
        gens = {"as stored": stored, "recalibrated": recal, **{k: v for k, v in gens.items() if k != "as stored"}}
        key = (seed, stored.z_dim)
        if key not in qfd:  # the trainer's quick FD of this run: its latents and the held-out images
            qfd[key] = QuickFD(args.real, args.n, stored.z_dim, seed + SEED_OFFSET["quick_fd"], args.size)
        row = {"source": source, "var_ratio_stored_over_recalibrated": variance_ratios(stored, recal)}
        for label, g in gens.items():
            row[label] = qfd[key](g)
            print(f"{source}: {label:12s} quick FD {row[label]:.2f}", file=sys.stderr)
        rows.append(row)
    print(f"quick FD (effnet-lite0, n = {args.n}, real = {args.real}):")
    print(f"{'source':48s} {'as stored':>10s} {'recalibrated':>12s} {'Δ':>7s} {'live G':>8s}  var ratio stored/recal.")
    for r in rows:
        lo, hi = r["var_ratio_stored_over_recalibrated"]
        live = f"{r['live G']:8.2f}" if "live G" in r else f"{'-':>8s}"
        print(f"{r['source']:48s} {r['as stored']:10.2f} {r['recalibrated']:12.2f} "
              f"{r['recalibrated'] - r['as stored']:+7.2f} {live}  {lo:.2f}–{hi:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
