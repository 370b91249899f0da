"""Compare generators (and any image sets) with real data: FID/KID plus diversity diagnostics.

    python -m eval.fid --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp --real data/val.tar \\
        --train data/train.tar --n 1500 --features effnet-lite0 --out reports/gan-vs-wgan
    python -m eval.fid --fake other_samples.zip --real data/val.tar --features inception

Protocol: each --ckpt draws n samples with sample_z(n, z_dim, --seed), 64×64 as the model
makes them; each --fake uses its first n images (sorted by name) after the training
preprocessing; the real set gives 2n images (first 2n by name, then split at random with
--seed) — split A is the reference for every row, split B is the "real vs real" baseline
row. All metrics (eval.diversity) run in one feature space (eval.features). With --train,
memorisation compares NN distances to the training set with those of split A (which must be
held out: images of A found in --train are dropped from that reference, with a warning).

Prints a table and writes OUT/report.json, OUT/report.md and PNG grids. Bad input (missing
or empty paths, not a generator, offline Inception) → one-line error, exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from animegan.checkpoint import GeneratorLoadError, load_generator
from animegan.data import DataError, load_images, open_image_source
from animegan.sampling import sample_z, to_uint8

from . import diversity as dv
from .cache import PREPROCESS, cached_features, load_named
from .features import EFFNET, FeatureError, extract_features, get_extractor, resolve_name
from .report import format_table, write_report

MIN_N = 20  # below this, k-NN radii (k = 5) and percentiles stop meaning anything


class UsageError(ValueError):
    pass


def warn(msg: str, sink: list) -> None:
    print(f"warning: {msg}", file=sys.stderr)
    sink.append(msg)


def _unique(name: str, taken: set) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}-{i}", i + 1
    taken.add(out)
    return out


@torch.no_grad()
def generate(generator, n: int, seed: int, size: int, batch: int = 250) -> torch.Tensor:
    """n samples as uint8 n×3×size×size, from one seeded latent batch."""
    z = sample_z(n, generator.z_dim, seed)  # n×z_dim
    dev = next(generator.parameters()).device
    out = [to_uint8(generator(z[i:i + batch].to(dev))) for i in range(0, n, batch)]
    imgs = torch.cat(out)  # n×3×H×W
    if imgs.shape[-1] != size:  # compare at the real images' resolution
        imgs = torch.nn.functional.interpolate(imgs.float(), size=(size, size), mode="bilinear",
                                               antialias=True).round().clamp(0, 255).to(torch.uint8)
    return imgs


def metrics_for(fake, ctx: dict, seed: int) -> tuple[dict, dict]:
    """All metrics of one feature set against the reference split; (flat metrics, extras)."""
    ref = ctx["ref"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the KID-shrink warning was already printed once
        kid = dv.kernel_distance(ref, fake, subsets=ctx["kid_subsets"], seed=seed)
    pr, dc = dv.precision_recall(ref, fake), dv.density_coverage(ref, fake)
    div = dv.sample_diversity(ref, fake, seed=seed)
    ndb = dv.ndb(ref, fake, centers=ctx["centers"], alpha=0.05)
    m = {"fid": dv.frechet_distance(ref, fake), **kid, **pr, **dc, "collapse": div["collapse"],
         "near_dup_rate": div["near_duplicates"]["rate"], "ndb": ndb["ndb"], "ndb_over_k": ndb["ndb_over_k"],
         "js": ndb["js"], "memorisation": None}
    extras = {"diversity": div, "ndb": ndb}
    if ctx.get("train") is not None:
        mem = dv.memorisation(fake, ctx["train"], ctx["heldout"])
        m["memorisation"], m["memorisation_mw_z"] = mem["ratio"], mem["mw_z"]
        extras["memorisation"] = mem
    return m, extras


def pictures_for(name: str, images, ext: dict, ctx: dict, pics: dict) -> dict:
    """Grids for one row; returns {file: caption} and fills pics {file: images}."""
    captions, safe = {}, "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    pics[f"samples_{safe}.png"] = images[:64]
    captions[f"samples_{safe}.png"] = "samples (the first 64)"
    pairs = ext["diversity"]["near_duplicates"]["closest_pairs"]
    if pairs:
        pics[f"closest_pairs_{safe}.png"] = [images[[a for a, _, _ in pairs]], images[[b for _, b, _ in pairs]]]
        captions[f"closest_pairs_{safe}.png"] = "closest generated pairs (columns), top row vs bottom row"
    ndb = ext["ndb"]
    rows = []
    for b in ndb["underfilled"][:4] + ndb["overfilled"][:4]:
        members = np.flatnonzero(ctx["ref_bins"] == b)[:8]
        if len(members):
            rows.append(load_named(ctx["real_path"], [ctx["ref_names"][i] for i in members], ctx["size"]))
    if rows:
        pics[f"ndb_bins_{safe}.png"] = rows
        captions[f"ndb_bins_{safe}.png"] = ("real examples of the most under-filled bins (first rows) "
                                            "and most over-filled bins (last rows)")
    if "memorisation" in ext:
        mem = ext["memorisation"]
        order = np.argsort(mem["nn_dist"])[:16]
        nn = load_named(ctx["train_path"], [ctx["train_names"][mem["nn_index"][i]] for i in order], ctx["size"])
        pics[f"memorisation_{safe}.png"] = [images[torch.as_tensor(order)], nn]
        captions[f"memorisation_{safe}.png"] = "samples closest to the training set (top) and their nearest training image (bottom)"
    return captions


def load_fake_sets(args, taken: set) -> list[dict]:
    """Validate every --ckpt / --fake before any slow work; returns row specs."""
    specs = []
    for src in args.ckpt or []:
        g = load_generator(src, device=args.device)
        specs.append({"name": _unique(Path(src.rstrip("/")).name, taken), "kind": "generator", "source": src, "g": g})
    for src in args.fake or []:
        open_image_source(src)  # DataError now, not after the real features
        specs.append({"name": _unique(Path(src.rstrip("/")).stem, taken), "kind": "images", "source": src})
    return specs


def run(args) -> dict:
    t0, notes = time.perf_counter(), []
    if args.n < MIN_N:
        raise UsageError(f"--n must be at least {MIN_N}, got {args.n}")
    feats_name = resolve_name(args.features)
    open_image_source(args.real)  # a missing or empty --real fails before any slow work
    if args.train:
        open_image_source(args.train)
    specs = load_fake_sets(args, {"real-vs-real"})
    ext = get_extractor(args.features, args.inception_weights, args.device)  # fails fast when offline
    fx = dict(extractor=ext, batch_size=args.batch_size)
    cache = dict(extractor=args.features, size=args.size, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                 weights_path=args.inception_weights, batch_size=args.batch_size, device=args.device, progress=True)

    real = cached_features(args.real, n=2 * args.n, **cache)
    n = args.n
    if len(real.features) < 2 * n:
        n = len(real.features) // 2
        warn(f"--real has {len(real.features)} readable images, fewer than 2×--n={2 * args.n} (reference + "
             f"baseline split); using n={n}", notes)
        if n < MIN_N:
            raise UsageError(f"--real needs at least {2 * MIN_N} readable images, {args.real} has {len(real.features)}")
    perm = np.random.default_rng(args.seed).permutation(len(real.features))
    a_idx, b_idx = perm[:n], perm[n:2 * n]
    ref = real.features[a_idx]
    if n < 1000:
        warn(f"n={n} < 1000: KID uses subsets of {n} instead of 1000 and FID is biased upwards — compare only "
             f"numbers computed with the same n", notes)
    k = min(args.ndb_k, max(2, n // 10))
    if k < args.ndb_k:
        warn(f"NDB: {n} reference images are too few for K={args.ndb_k} bins; using K={k}", notes)
    centers = dv.fit_bins(ref, k, seed=args.seed)
    ctx = {"ref": ref, "centers": centers, "kid_subsets": args.kid_subsets, "size": args.size,
           "real_path": args.real, "ref_names": [real.names[i] for i in a_idx],
           "ref_bins": dv.nearest(ref, centers)[1]}
    real_info = {"source": args.real, "n_read": len(real.features), "skipped": real.skipped,
                 "features_from_cache": real.from_cache, "cache_key": real.key}
    if args.train:
        train = cached_features(args.train, n=None, **cache)
        d, _ = dv.nearest(ref, train.features)
        # An image in both sets has identical features: distance ~0 up to float rounding,
        # far below the typical real–real NN distance.
        held = d > 1e-3 * float(np.median(dv.nn_within(ref)[0]))
        if held.sum() < MIN_N:
            warn(f"--real is not held out from --train ({int((~held).sum())} of {n} reference images are in it): "
                 f"memorisation skipped", notes)
        else:
            if (~held).any():
                warn(f"{int((~held).sum())} reference images also appear in --train; memorisation uses the other "
                     f"{int(held.sum())}", notes)
            ctx.update(train=train.features, heldout=ref[torch.as_tensor(held)], train_path=args.train,
                       train_names=train.names)
        real_info.update(train_source=args.train, train_n=len(train.features), train_skipped=train.skipped,
                         heldout_n=int(held.sum()))

    rows, pics = [], {}
    for spec in specs + [{"name": "real-vs-real", "kind": "real split", "source": args.real}]:
        skipped = 0
        if spec["kind"] == "generator":
            images = generate(spec["g"], n, args.seed, args.size)
        elif spec["kind"] == "images":
            loaded = load_images(spec["source"], size=args.size, limit=n, progress=True)
            images, skipped = loaded.images, loaded.skipped
            if len(images) < n:
                warn(f"{spec['source']} has {len(images)} readable images, fewer than n={n}; using all of them", notes)
            if len(images) < MIN_N:
                raise UsageError(f"{spec['source']} needs at least {MIN_N} readable images, has {len(images)}")
        else:
            images = load_named(args.real, [real.names[i] for i in b_idx], args.size)  # decoding is cheap
        t1 = time.perf_counter()
        feats = real.features[b_idx] if spec["kind"] == "real split" else extract_features(images, **fx, progress=True)
        metrics, extras = metrics_for(feats, ctx, args.seed)
        row = {"name": spec["name"], "kind": spec["kind"], "source": spec["source"], "n": len(feats),
               "skipped": skipped, "metrics": metrics, "ndb": {k_: v for k_, v in extras["ndb"].items()},
               "near_duplicates": extras["diversity"]["near_duplicates"], "seconds": time.perf_counter() - t1}
        row["pictures"] = pictures_for(spec["name"], images, extras, ctx, pics)
        rows.append(row)
        print(f"{spec['name']}: done in {row['seconds']:.1f}s", file=sys.stderr)

    protocol = {"features": feats_name, "feature_dim": int(ref.shape[1]), "n": n, "seed": args.seed,
                "size": args.size, "preprocess": f"{PREPROCESS}, size={args.size}",
                "generated": f"sample_z(n, z_dim, seed={args.seed}), model output {args.size}×{args.size}",
                "real_split": f"first {2 * n} images by name, permuted with seed {args.seed}: A = reference, "
                              f"B = baseline", "kid_subsets": args.kid_subsets,
                "kid_subset_size": min(1000, n), "k_precision_recall": 3, "k_density_coverage": 5,
                "ndb_k": k, "ndb_alpha": 0.05, "near_dup_percentile": 1.0,
                "inception_weights": args.inception_weights}
    report = {"protocol": protocol, "real": real_info, "models": rows[:-1], "baseline": rows[-1],
              "warnings": notes, "seconds": None}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    out = write_report(args.out, report, pics)
    print(format_table(report))
    print(f"wrote {out}/report.json, {out}/report.md ({report['seconds']:.1f}s)")
    return report


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m eval.fid", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", help="exported generator folder or Hub repo id (repeatable)")
    ap.add_argument("--fake", action="append", help="folder/.zip/.tar of generated images (repeatable)")
    ap.add_argument("--real", required=True, help="real images: folder/.zip/.tar (held out from training)")
    ap.add_argument("--train", help="the training images, for the memorisation ratio")
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
    ap.add_argument("--batch-size", type=int, default=16, help="feature-extraction batch (default 16: fastest on a 2-core CPU)")
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
        run(args)
    except (DataError, GeneratorLoadError, FeatureError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
