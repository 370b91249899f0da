"""How fast is evaluation on this machine? effnet-lite0 images/s, and a full eval.fid run (the whole panel
of rulers) cold vs warm, with where the time goes.

    python benchmarks/eval_speed.py --n 1000              # two random-init generators, real = data/test.tar
    python benchmarks/eval_speed.py --real data/test.tar --train data/train.tar --n 1000 --threads 1 \
        --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp   # the release protocol, C_T included

1. Feature extraction: `--images` real images (64×64 after the training preprocessing)
   through effnet-lite0 at a few batch sizes, after one warm-up batch.
2. `python -m eval.fid` as a user runs it (a subprocess, imports included) with two
   generators (`--ckpt`, default: two randomly initialised exports) against `--real`,
   first with an empty feature cache (cold), then again (warm: real features from disk); the warm
   run's report.json says where its time went (real descriptors, each ruler's describe and score,
   the nearest-neighbour metrics, C_T's training features).
Numbers go to stdout and, as JSON, to --json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


from animegan.checkpoint import export_generator
from animegan.data import load_images
from animegan.models import Generator
from animegan.features import extract_features, get_extractor

ROOT = Path(__file__).resolve().parents[1]


def feature_speed(real: str, n_images: int, batch_sizes: list[int]) -> dict:
    imgs = load_images(real, size=64, limit=n_images).images  # n×3×64×64 uint8
    ext = get_extractor("effnet-lite0")
    extract_features(imgs[:8], ext, batch_size=8)  # warm-up: oneDNN picks its kernels
    out = {}
    for bs in batch_sizes:
        t = time.perf_counter()
        extract_features(imgs, ext, batch_size=bs)
        out[bs] = len(imgs) / (time.perf_counter() - t)
        print(f"effnet-lite0, batch {bs:3d}: {out[bs]:6.1f} images/s ({len(imgs)} images, "
              f"{torch.get_num_threads()} thread(s))", flush=True)
    return out


def full_run(ckpts: list[str], real: str, n: int, cache: str, out: str, threads: int | None,
             train: str | None = None, rulers: str | None = None) -> float:
    cmd = [sys.executable, "-m", "eval.fid", "--real", real, "--n", str(n), "--cache-dir", cache, "--out", out]
    if rulers:
        cmd += ["--rulers", rulers]
    if train:
        cmd += ["--train", train]
    for c in ckpts:
        cmd += ["--ckpt", c]
    if threads:
        cmd += ["--threads", str(threads)]
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"eval.fid failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(ROOT / "data" / "test.tar"),
                    help="real images (default: data/test.tar, written by `python -m animegan.data split`)")
    ap.add_argument("--n", type=int, default=1000, help="samples per model (real set needs 2n)")
    ap.add_argument("--ckpt", action="append", help="generator(s) to evaluate (default: 2 random-init exports)")
    ap.add_argument("--train", default=None, help="training images, for C_T (their features are cached too)")
    ap.add_argument("--images", type=int, default=512, help="images for the extraction speed test")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-full", action="store_true", help="only measure feature extraction")
    ap.add_argument("--rulers", default=None, help="the panel (default: eval.fid's)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "real": args.real, "n": args.n,
              "images_per_s": feature_speed(args.real, args.images, [16, 32, 64])}
    if not args.skip_full:
        with tempfile.TemporaryDirectory() as tmp:
            ckpts = args.ckpt or []
            for i in range(2 - len(ckpts)):
                torch.manual_seed(i)
                ckpts.append(str(export_generator(Generator(), Path(tmp) / f"random-{i}")))
            cache = str(Path(tmp) / "cache")
            result["cold_s"] = full_run(ckpts, args.real, args.n, cache, str(Path(tmp) / "cold"), args.threads,
                                        args.train, args.rulers)
            print(f"eval.fid, {len(ckpts)} models × n={args.n}, cold cache: {result['cold_s']:.1f} s", flush=True)
            result["warm_s"] = full_run(ckpts, args.real, args.n, cache, str(Path(tmp) / "warm"), args.threads,
                                        args.train, args.rulers)
            result["warm_timings"] = json.loads((Path(tmp) / "warm" / "report.json").read_text())["timings"]
            for step, sec in result["warm_timings"].items():
                print(f"  warm: {step:32s} {sec:6.1f} s", flush=True)
            print(f"eval.fid, {len(ckpts)} models × n={args.n}, warm cache: {result['warm_s']:.1f} s "
                  f"(speed-up {result['cold_s'] / result['warm_s']:.2f}×)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
