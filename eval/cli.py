"""Compare generators (and any image sets) with held-out real data: FID/KID, diversity, copying.

    python -m eval.fid --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp --real data/test.tar \\
        --train data/train.tar --n 1000 --features effnet-lite0 --out reports/gan-vs-wgan
    python -m eval.fid --fake other_samples.zip --real data/test.tar --features inception

--real is the test split of `python -m animegan.data split` (never used for training or model
selection); the protocol is eval.evaluate's. Prints a table and writes OUT/report.json,
OUT/report.md and PNG pictures. Bad input (missing or empty paths, not a generator, offline
Inception) → one-line error, exit code 2, nothing written.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from animegan.checkpoint import GeneratorLoadError
from animegan.data import DataError

from .evaluate import UsageError, evaluate
from animegan.features import EFFNET, FeatureError
from .report import format_table, write_report


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m eval.fid", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", default=[], help="exported generator folder or Hub repo id (repeatable)")
    ap.add_argument("--fake", action="append", default=[], help="folder/.zip/.tar of generated images (repeatable)")
    ap.add_argument("--real", required=True, help="held-out real images: folder/.zip/.tar (the test split)")
    ap.add_argument("--train", help="the training images, for the data-copying test C_T")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATH",
                    help="leave out of --real every image also in PATH, matched by file name (repeatable), "
                         "e.g. the images a generator was selected on")
    ap.add_argument("--n", type=int, default=10000, help="samples per model and per real split (default 10000)")
    ap.add_argument("--features", default=EFFNET,
                    help="inception (papers' FID; downloads weights) | effnet-lite0 (offline, default) | "
                         "any torch-fidelity extractor name")
    ap.add_argument("--inception-weights", metavar="PATH", help="local weights-inception-2015-12-05-6726825d.pth")
    ap.add_argument("--out", default=None, help="report folder (default reports/eval-YYYYmmdd-HHMMSS)")
    ap.add_argument("--seed", type=int, default=0, help="latent seed and real-split seed (default 0)")
    ap.add_argument("--size", type=int, default=64, help="resolution both sides are compared at (default 64)")
    ap.add_argument("--ndb-k", type=int, default=50, help="k-means bins for NDB (default 50)")
    ap.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    ap.add_argument("--fid-spread", type=int, default=20,
                    help="random halves of both sets whose FID's std is reported beside it (default 20)")
    ap.add_argument("--ct-cells", type=int, default=5, help="k-means cells of the training set for C_T (default 5)")
    ap.add_argument("--batch-size", type=int, default=16,
                    help="feature-extraction batch (default 16: fastest on a 2-core CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; "
                    "on a CPU shared with training, 1 is often fastest)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cache-dir", default=None, help="real-feature cache (default ~/.cache/animegan/features)")
    ap.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    args = ap.parse_args(argv)
    if not args.ckpt and not args.fake:
        ap.error("give at least one --ckpt or --fake")
    args.out = args.out or time.strftime("reports/eval-%Y%m%d-%H%M%S")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report, pictures = evaluate(
            args.real, ckpts=args.ckpt, fakes=args.fake, train=args.train, exclude=args.exclude, n=args.n,
            features=args.features, inception_weights=args.inception_weights, seed=args.seed, size=args.size,
            ndb_k=args.ndb_k, kid_subsets=args.kid_subsets, spread_rounds=args.fid_spread, ct_cells=args.ct_cells,
            batch_size=args.batch_size, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    except (DataError, GeneratorLoadError, FeatureError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    out = write_report(args.out, report, pictures)
    print(format_table(report))
    print(f"wrote {out}/report.json, {out}/report.md ({report['seconds']:.1f}s)")
    return 0
