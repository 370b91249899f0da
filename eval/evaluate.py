"""The evaluation protocol as one library call: generators and image sets against held-out real images.

    report, pictures = evaluate("data/test.tar", ckpts=["checkpoints/gan"], train="data/train.tar", n=1000)
    write_report("reports/x", report, pictures)      # what `python -m eval.fid` does next

Each generator draws n samples with sample_z(n, z_dim, seed), 64×64 as the model makes them; each
image set gives its first n images (sorted by name) after the training preprocessing. The real set
gives 2n images (the first 2n by name whose image id is not in `exclude`), split at random with
`seed`: A is the reference for every row, B the "real vs real" floor row. All metrics run in one
feature space. With `train`, C_T (eval.memorisation) tests for copying with A as the held-out
sample. A generator whose export records the images it was selected on (training_info.json,
"selection") gets a warning when they overlap the real images used here.
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from animegan.checkpoint import load_generator
from animegan.data import load_images, open_image_source
from animegan.data import image_ids
from animegan.sampling import generate as generate_float
from animegan.sampling import sample_z, to_uint8

from . import memorisation as mem
from . import metrics as mt
from .cache import PREPROCESS, cached_features, load_named
from animegan.features import EFFNET, extract_features, get_extractor, resolve_name
from .report import plot_distances

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


def generate(generator, n: int, seed: int, size: int) -> torch.Tensor:
    """n samples as uint8 n×3×size×size, from one seeded latent batch."""
    imgs = to_uint8(generate_float(generator, sample_z(n, generator.z_dim, seed)))  # n×3×H×W
    if imgs.shape[-1] != size:  # compare at the real images' resolution
        imgs = torch.nn.functional.interpolate(imgs.float(), size=(size, size), mode="bilinear",
                                               antialias=True).round().clamp(0, 255).to(torch.uint8)
    return imgs


def metrics_for(fake, ctx: dict, seed: int) -> tuple[dict, dict]:
    """All metrics of one feature set against the reference split; (flat metrics, extras)."""
    ref = ctx["ref"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the KID-shrink warning was already printed once
        kid = mt.kernel_distance(ref, fake, subsets=ctx["kid_subsets"], seed=seed)
    pr, dc = mt.precision_recall(ref, fake), mt.density_coverage(ref, fake)
    div = mt.sample_diversity(ref, fake, seed=seed)
    ndb = mt.ndb(ref, fake, centers=ctx["centers"])
    m = {"fid": mt.frechet_distance(ref, fake), **mt.fd_spread(ref, fake, ctx["spread_rounds"], seed), **kid,
         **pr, **dc, "collapse": div["collapse"], "near_dup_rate": div["near_duplicates"]["rate"],
         "ndb": ndb["ndb"], "ndb_over_k": ndb["ndb_over_k"], "js": ndb["js"],
         "vendi": mt.vendi_score(fake, center=ctx["ref_mean"]), "ct": None, "memorisation": None}
    extras = {"diversity": div, "ndb": ndb}
    if ctx.get("train") is not None:
        ct = mem.data_copying(ctx["train"], ctx["heldout"], fake, fitted=ctx["cells"])
        nn = mem.memorisation(fake, ctx["train"], ctx["heldout"], heldout_dist=ctx["heldout_nn"])
        m.update(ct=ct["ct"], memorisation=nn["ratio"], memorisation_mw_z=nn["mw_z"])
        extras.update(ct=ct, memorisation=nn)
    return m, extras


def pictures_for(name: str, images, ext: dict, ctx: dict, pics: dict) -> dict:
    """Grids and plots for one row; returns {file: caption} and fills pics {file: images or plot}."""
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
        nn, ct = ext["memorisation"], ext["ct"]
        pics[f"nn_distances_{safe}.png"] = functools.partial(
            plot_distances, samples=nn["nn_dist"], heldout=ctx["heldout_nn"], title=f"{name}: C_T = {ct['ct']:+.1f}")
        captions[f"nn_distances_{safe}.png"] = ("distance to the nearest training image: samples vs held-out real "
                                                "images (C_T tests whether samples sit closer)")
        order = np.argsort(nn["nn_dist"])[:16]
        near = load_named(ctx["train_path"], [ctx["train_names"][nn["nn_index"][i]] for i in order], ctx["size"])
        pics[f"memorisation_{safe}.png"] = [images[torch.as_tensor(order)], near]
        captions[f"memorisation_{safe}.png"] = ("the 16 samples closest to the training set (top) and their nearest "
                                                "training image (bottom)")
    return captions


def _selection(src: str) -> dict | None:
    """The `selection` record of an exported generator folder (which real images chose it), if any."""
    info = Path(src) / "training_info.json"
    try:
        sel = json.loads(info.read_text()).get("selection") if info.is_file() else None
    except (OSError, ValueError):
        return None
    return sel if isinstance(sel, dict) and isinstance(sel.get("image_ids"), list) else None


def load_fake_sets(ckpts, fakes, device, taken: set) -> list[dict]:
    """Validate every generator and image set before any slow work; returns row specs."""
    specs = []
    for src in ckpts:
        specs.append({"name": _unique(Path(src.rstrip("/")).name, taken), "kind": "generator", "source": src,
                      "g": load_generator(src, device=device), "selection": _selection(src)})
    for src in fakes:
        open_image_source(src)  # DataError now, not after the real features
        specs.append({"name": _unique(Path(src.rstrip("/")).stem, taken), "kind": "images", "source": src})
    return specs


def _images_of(spec: dict, n: int, seed: int, size: int, notes: list) -> tuple[torch.Tensor, int]:
    """A row's n images (uint8) and how many of its files were unreadable."""
    if spec["kind"] == "generator":
        return generate(spec["g"], n, seed, size), 0
    loaded = load_images(spec["source"], size=size, limit=n, progress=True)
    if len(loaded.images) < n:
        warn(f"{spec['source']} has {len(loaded.images)} readable images, fewer than n={n}; using all of them", notes)
    if len(loaded.images) < MIN_N:
        raise UsageError(f"{spec['source']} needs at least {MIN_N} readable images, has {len(loaded.images)}")
    return loaded.images, loaded.skipped


def evaluate(real, ckpts=(), fakes=(), train=None, exclude=(), n: int = 10000, features: str = EFFNET,
             inception_weights=None, seed: int = 0, size: int = 64, ndb_k: int = 50, kid_subsets: int = 100,
             spread_rounds: int = 20, ct_cells: int = 5, batch_size: int = 16, device="cpu", cache_dir=None,
             use_cache: bool = True) -> tuple[dict, dict]:
    """Every metric of every generator (`ckpts`) and image set (`fakes`) against `real`; returns
    (report, pictures) for eval.report.write_report. Bad paths and values raise before any feature
    extraction; a --fake set with too few readable images, once its images are read."""
    t0, notes = time.perf_counter(), []
    if n < MIN_N:
        raise UsageError(f"--n must be at least {MIN_N}, got {n}")
    if spread_rounds < 2 or ct_cells < 1:
        raise UsageError(f"--fid-spread must be ≥ 2 and --ct-cells ≥ 1, got {spread_rounds} and {ct_cells}")
    for flag, value in (("--ndb-k", ndb_k), ("--kid-subsets", kid_subsets), ("--batch-size", batch_size),
                        ("--size", size)):
        if value < 1:
            raise UsageError(f"{flag} must be ≥ 1, got {value}")
    feats_name = resolve_name(features)
    sources = {str(path): open_image_source(path)  # a missing or empty path fails before any slow work
               for path in [real, *([train] if train else []), *exclude]}
    if train and len(sources[str(train)].entries) < ct_cells:
        raise UsageError(f"--train {train}: C_T needs at least --ct-cells = {ct_cells} images")
    specs = load_fake_sets(ckpts, fakes, device, {"real-vs-real"})
    ext = get_extractor(features, inception_weights, device)  # fails fast when offline
    cache = dict(extractor=features, size=size, cache_dir=cache_dir, use_cache=use_cache,
                 weights_path=inception_weights, batch_size=batch_size, device=device, progress=True)
    skip = frozenset(i for path in exclude for i in image_ids([e[0] for e in sources[str(path)].entries]))

    real_f = cached_features(real, n=2 * n, exclude=skip, **cache)
    n_asked = n
    if len(real_f.features) < 2 * n:
        n = len(real_f.features) // 2
        warn(f"--real has {len(real_f.features)} readable images{' not excluded' if exclude else ''}, fewer than "
             f"2×--n={2 * n_asked} (reference + baseline split); using n={n}", notes)
        if n < MIN_N:
            raise UsageError(f"--real needs at least {2 * MIN_N} readable images, {real} has {len(real_f.features)}")
    perm = np.random.default_rng(seed).permutation(len(real_f.features))
    a_idx, b_idx = perm[:n], perm[n:2 * n]
    ref = real_f.features[a_idx]
    if n < 1000:
        warn(f"n={n} < 1000: KID uses subsets of {n} instead of 1000 and FID is biased upwards — compare only "
             f"numbers computed with the same n", notes)
    k = min(ndb_k, max(2, n // 10))
    if k < ndb_k:
        warn(f"NDB: {n} reference images are too few for K={ndb_k} bins; using K={k}", notes)
    centers = mt.fit_bins(ref, k, seed=seed)
    ctx = {"ref": ref, "ref_mean": ref.double().mean(0), "centers": centers, "kid_subsets": kid_subsets,
           "spread_rounds": spread_rounds, "ct_cells": ct_cells, "seed": seed, "size": size, "real_path": real,
           "ref_names": [real_f.names[i] for i in a_idx], "ref_bins": mt.nearest(ref, centers)[1]}
    used = [real_f.names[i] for i in np.concatenate([a_idx, b_idx])]
    real_info = {"source": real, "n_read": len(real_f.features), "skipped": real_f.skipped,
                 "excluded": real_f.excluded, "exclude": list(exclude), "features_from_cache": real_f.from_cache,
                 "cache_key": real_f.key, "image_ids_sha256": _ids_digest(used)}
    if train:
        _add_train(ctx, real_info, train, ref, cache, notes)

    used_ids = set(image_ids(used))
    rows, pics = [], {}
    for spec in specs + [{"name": "real-vs-real", "kind": "real split", "source": real}]:
        if spec["kind"] == "real split":
            images, skipped = load_named(real, [real_f.names[i] for i in b_idx], size), 0  # decoding is cheap
        else:
            images, skipped = _images_of(spec, n, seed, size, notes)
        t1 = time.perf_counter()
        feats = real_f.features[b_idx] if spec["kind"] == "real split" else \
            extract_features(images, extractor=ext, batch_size=batch_size, progress=True)
        metrics, extras = metrics_for(feats, ctx, seed)
        row = {"name": spec["name"], "kind": spec["kind"], "source": spec["source"], "n": len(feats),
               "skipped": skipped, "metrics": metrics, "ndb": dict(extras["ndb"]),
               "near_duplicates": extras["diversity"]["near_duplicates"], "ct": extras.get("ct"),
               "selection": _overlap(spec, used_ids, len(used), notes), "seconds": time.perf_counter() - t1}
        row["pictures"] = pictures_for(spec["name"], images, extras, ctx, pics)
        rows.append(row)
        print(f"{spec['name']}: done in {row['seconds']:.1f}s", file=sys.stderr)

    protocol = {"features": feats_name, "feature_dim": int(ref.shape[1]), "n": n, "seed": seed, "size": size,
                "preprocess": f"{PREPROCESS}, size={size}",
                "generated": f"sample_z(n, z_dim, seed={seed}), at {size}×{size}",
                "real_split": f"first {2 * n} images by name{' not excluded' if exclude else ''}, permuted with "
                              f"seed {seed}: A = reference, B = baseline", "kid_subsets": kid_subsets,
                "kid_subset_size": min(mt.KID_SUBSET_SIZE, n),
                "fid_spread": f"std of FID over {spread_rounds} random halves of both sets",
                "k_precision_recall": mt.K_PRECISION_RECALL, "k_density_coverage": mt.K_DENSITY_COVERAGE,
                "ndb_k": k, "ndb_alpha": mt.NDB_ALPHA, "near_dup_percentile": mt.NEAR_DUP_PERCENTILE,
                "vendi_kernel": "cosine similarity of features minus the reference mean",
                "ct_cells": ct_cells, "ct_min_samples": mem.CT_MIN_SAMPLES, "inception_weights": inception_weights}
    report = {"protocol": protocol, "real": real_info, "models": rows[:-1], "baseline": rows[-1],
              "warnings": notes, "seconds": round(time.perf_counter() - t0, 2)}
    return report, pics


def _ids_digest(names: list[str]) -> str:
    """One hash of the set of real images used, so two reports can show they share a reference."""
    return hashlib.sha256("\n".join(sorted(image_ids(names))).encode()).hexdigest()[:16]


def _add_train(ctx: dict, real_info: dict, train, ref, cache: dict, notes: list) -> None:
    """Training features for C_T, with the reference images found in the training set left out of the
    held-out sample (an image in both sets has identical features: distance ~0)."""
    tr = cached_features(train, n=None, **cache)
    d, _ = mt.nearest(ref, tr.features)
    held = d > 1e-3 * float(np.median(mt.nn_within(ref)[0]))
    if held.sum() < MIN_N:
        warn(f"--real is not held out from --train ({int((~held).sum())} of {len(ref)} reference images are in it):"
             f" C_T and memorisation skipped", notes)
    else:
        if (~held).any():
            warn(f"{int((~held).sum())} reference images also appear in --train; C_T uses the other "
                 f"{int(held.sum())} as its held-out sample", notes)
        heldout = ref[torch.as_tensor(held)]
        ctx.update(train=tr.features, heldout=heldout, heldout_nn=d[held].tolist(), train_path=train,
                   train_names=tr.names, cells=mem.copying_cells(tr.features, heldout, ctx["ct_cells"], ctx["seed"]))
    real_info.update(train_source=train, train_n=len(tr.features), train_skipped=tr.skipped,
                     heldout_n=int(held.sum()))


def _overlap(spec: dict, used_ids: set, n_used: int, notes: list) -> dict | None:
    """How many of the real images used here a generator was selected on (from its export's record)."""
    sel = spec.get("selection")
    if not sel:
        return None
    k = len(used_ids & set(sel["image_ids"]))
    if k:
        warn(f"{spec['name']} was selected on {k} of the {n_used} real images this evaluation uses "
             f"(selection: {sel.get('n', len(sel['image_ids']))} images of {sel.get('source', '?')}): its numbers "
             f"are optimistic; evaluate on a split it was not selected on (animegan.data split: test.tar) or "
             f"--exclude the selection images", notes)
    return {"source": sel.get("source"), "n": sel.get("n", len(sel["image_ids"])), "overlap": k}
