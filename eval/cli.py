"""Compare generators (and any image sets) with held-out real data: a panel of rulers, a verdict,
diversity, mode dropping and copying.

    python -m eval.fid --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp --real data/test.tar \\
        --train data/train.tar --n 1000 --out reports/gan-vs-wgan
    python -m eval.fid --ckpt runs/a --ckpt runs/b --rulers effnet,swd --real data/test.tar --n 1000
    python -m eval.fid --fake other_samples.zip --real data/test.tar --features inception

--real is the test split of `python -m animegan.data split` (never used for training or model
selection); the protocol is eval.evaluate's. Prints a table and writes OUT/report.json,
OUT/report.md and PNG pictures. Bad input (missing or empty paths, not a generator, offline
Inception) → one-line error, exit code 2, nothing written.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from animegan.checkpoint import GeneratorLoadError
from animegan.data import DataError

from .evaluate import PANEL, UsageError, evaluate
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
    ap.add_argument("--rulers", default=",".join(PANEL),
                    help=f"comma-separated rulers of the panel (default {','.join(PANEL)}); the --features ruler "
                         f"always runs: its features serve the nearest-neighbour metrics")
    ap.add_argument("--group", action="append", default=[], metavar="MODEL=ROW,ROW",
                    help="rows that are seeds of one model, e.g. gan=gan-s0,gan-s1 (twice: the verdict compares the "
                         "two models' seed means); without it two generators are compared directly")
    ap.add_argument("--sanity", metavar="SANITY_JSON", help="sanity.json of python -m eval.sanity at the same --n: "
                    "read every score back as the disturbance of real faces that scores the same")
    ap.add_argument("--no-ceiling", action="store_true", help="leave out the random-init ceiling row")
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
                    help="paired rounds (random halves of the reference and of every sample set) behind every "
                         "± and every interval of the verdict (default 20)")
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
    args.groups = {}
    for g in args.group:
        model, _, rows = g.partition("=")
        if not model or not rows:
            ap.error(f"--group needs MODEL=ROW,ROW, got {g!r}")
        args.groups[model] = [r for r in rows.split(",") if r]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        sanity = None
        if args.sanity:
            from .sanity import SanityResult
            try:
                sanity = SanityResult.from_dict(json.loads(Path(args.sanity).read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UsageError(f"--sanity {args.sanity}: not a readable sanity.json ({type(e).__name__})") from None
        report, pictures = evaluate(
            args.real, ckpts=args.ckpt, fakes=args.fake, train=args.train, exclude=args.exclude, n=args.n,
            features=args.features, inception_weights=args.inception_weights, seed=args.seed, size=args.size,
            ndb_k=args.ndb_k, kid_subsets=args.kid_subsets, spread_rounds=args.fid_spread, ct_cells=args.ct_cells,
            batch_size=args.batch_size, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache,
            rulers=args.rulers.split(","), groups=args.groups or None, ceiling=not args.no_ceiling, sanity=sanity)
    except (DataError, GeneratorLoadError, FeatureError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    out = write_report(args.out, report, pictures)
    print(format_table(report))
    if report.verdict:
        print(f"\nverdict: {report.verdict.summary}")
    print(f"wrote {out}/report.json, {out}/report.md ({report.seconds:.1f}s)")
    return 0
