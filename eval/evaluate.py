"""The evaluation protocol as one library call: generators and image sets against held-out real images,
measured by a panel of rulers, with a floor, a ceiling and a verdict.

    report, pictures = evaluate("data/test.tar", ckpts=["checkpoints/gan", "checkpoints/wgan-gp"],
                                train="data/train.tar", n=1000)
    write_report("reports/x", report, pictures)      # what `python -m eval.fid` does next

Each generator draws n samples with sample_z(n, z_dim, seed), 64×64 as the model makes them; each
image set gives its first n images (sorted by name) after the training preprocessing. The real set
gives 2n images (the first 2n by name whose image id is not in `exclude`), split at random with
`seed`: A is the reference for every row, B the "real vs real" floor row. A randomly initialised
generator is the ceiling row. Every ruler of the panel (`eval.rulers`) scores every row against A;
the nearest-neighbour metrics (precision, recall, coverage, Vendi, NDB, C_T with `train`) run in the
`features` space. Two models (two generators, or two `groups` of seeds) get a verdict: each metric's
difference with a paired interval, and one sentence on where the rulers agree. A generator whose
export records the images it was selected on (training_info.json, "selection") gets a warning when
they overlap the real images used here.
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from animegan.checkpoint import WEIGHTS_FILE, load_generator, weights_sha256
from animegan.data import image_ids, load_images, open_image_source
from animegan.features import EFFNET, resolve_name
from animegan.models import Generator
from animegan.sampling import generate as generate_float
from animegan.sampling import sample_z, to_uint8

from . import memorisation as mem
from . import metrics as mt
from .cache import PREPROCESS, cached_descriptors, cached_features, load_named
from .report import plot_distances
from .rulers import Ruler, get_ruler
from .rulers.effnet import FeatureRuler
from .schema import Row, Report
from .verdict import compare

MIN_N = 20  # below this, k-NN radii (k = 5) and percentiles stop meaning anything
PANEL = ("effnet", "swd", "c2st", "anime")


class UsageError(ValueError):
    pass


def warn(msg: str, sink: list) -> None:
    print(f"warning: {msg}", file=sys.stderr)
    sink.append(msg)


def generate(generator, n: int, seed: int, size: int) -> torch.Tensor:
    """n samples as uint8 n×3×size×size, from one seeded latent batch."""
    imgs = to_uint8(generate_float(generator, sample_z(n, generator.z_dim, seed)))  # n×3×H×W
    if imgs.shape[-1] != size:  # compare at the real images' resolution
        imgs = torch.nn.functional.interpolate(imgs.float(), size=(size, size), mode="bilinear",
                                               antialias=True).round().clamp(0, 255).to(torch.uint8)
    return imgs


# ---- what is measured ---------------------------------------------------------------------------

@dataclass
class Candidate:
    """One row to measure: a generator (`generator` set), an image set, or the random-init ceiling."""
    name: str
    kind: str
    source: str
    generator: torch.nn.Module | None = None
    selection: dict | None = None
    group: str | None = None
    weights_sha256: str | None = None

    def images(self, n: int, seed: int, size: int, notes: list) -> tuple[torch.Tensor, int]:
        """The row's n images (uint8) and how many of its files were unreadable."""
        if self.generator is not None:
            return generate(self.generator, n, seed, size), 0
        loaded = load_images(self.source, size=size, limit=n, progress=True)
        if len(loaded.images) < n:
            warn(f"{self.source} has {len(loaded.images)} readable images, fewer than n={n}; using all of them", notes)
        if len(loaded.images) < MIN_N:
            raise UsageError(f"{self.source} needs at least {MIN_N} readable images, has {len(loaded.images)}")
        return loaded.images, loaded.skipped


def _selection(src: str) -> dict | None:
    """The `selection` record of an exported generator folder (which real images chose it), if any."""
    info = Path(src) / "training_info.json"
    try:
        sel = json.loads(info.read_text()).get("selection") if info.is_file() else None
    except (OSError, ValueError):
        return None
    return sel if isinstance(sel, dict) and isinstance(sel.get("image_ids"), list) else None


def candidates(ckpts, fakes, groups: dict | None, device) -> list[Candidate]:
    """Validate every generator and image set before any slow work; names unique, groups looked up."""
    taken, out = {"real-vs-real", "random-init"}, []
    group_of = {row: g for g, rows in (groups or {}).items() for row in rows}

    def unique(name: str) -> str:
        out_name, i = name, 2
        while out_name in taken:
            out_name, i = f"{name}-{i}", i + 1
        taken.add(out_name)
        return out_name

    for src in ckpts:
        name = unique(Path(src.rstrip("/")).name)
        sha = weights_sha256(src) if Path(src, WEIGHTS_FILE).is_file() else None  # a Hub id: none here
        out.append(Candidate(name, "generator", src, load_generator(src, device=device), _selection(src),
                             group_of.get(name), sha))
    for src in fakes:
        open_image_source(src)  # DataError now, not after the real features
        name = unique(Path(src.rstrip("/")).stem)
        out.append(Candidate(name, "images", src, group=group_of.get(name)))
    return out


def ceiling_candidate(z_dim: int = 100) -> Candidate:
    """A randomly initialised generator (seed 0): the far end every ruler's scale is read against."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = Generator(z_dim).eval()
    return Candidate("random-init", "ceiling", "randomly initialised generator, seed 0", g)


def build_rulers(names, features: str, inception_weights, device, batch_size: int, kid_subsets: int) -> list[Ruler]:
    """The panel: the feature-space ruler first (its features also serve the nearest-neighbour metrics)."""
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    space = resolve_name(features)
    try:
        first = get_ruler("effnet", device=device, batch_size=batch_size, kid_subsets=kid_subsets) \
            if space == EFFNET else FeatureRuler(space, inception_weights, device, batch_size, kid_subsets)
        return [first] + [get_ruler(n, device=device, batch_size=batch_size) for n in names if n != "effnet"]
    except KeyError as e:
        raise UsageError(e.args[0]) from None


# ---- the reference ------------------------------------------------------------------------------

@dataclass
class Reference:
    """The real side of every comparison: split A's descriptors per ruler, and what the
    nearest-neighbour metrics need in the feature space."""
    path: str
    size: int
    names: list[str]                 # A's images
    desc: dict                       # ruler name → A's descriptors
    baseline: dict                   # ruler name → B's descriptors
    baseline_names: list[str]
    feats: torch.Tensor              # A in the feature space
    centers: np.ndarray              # NDB bins
    bins: np.ndarray                 # A's bin of each image
    vendi_h: float
    kid_subsets: int
    train: dict | None = field(default=None)   # C_T: features, names, path, held-out sample, cells


def _ids_digest(names: list[str]) -> str:
    """One hash of the set of real images used, so two reports can show they share a reference."""
    return hashlib.sha256("\n".join(sorted(image_ids(names))).encode()).hexdigest()[:16]


def _add_train(ref: Reference, real_info: dict, train, cache: dict, ct_cells: int, seed: int, notes: list) -> None:
    """Training features for C_T, with the reference images found in the training set left out of the
    held-out sample (an image in both sets has identical features: distance ~0)."""
    tr = cached_features(train, n=None, **cache)
    d, _ = mt.nearest(ref.feats, tr.features)
    held = d > 1e-3 * float(np.median(mt.nn_within(ref.feats)[0]))
    if held.sum() < MIN_N:
        warn(f"--real is not held out from --train ({int((~held).sum())} of {len(ref.feats)} reference images are "
             f"in it): C_T and memorisation skipped", notes)
    else:
        if (~held).any():
            warn(f"{int((~held).sum())} reference images also appear in --train; C_T uses the other "
                 f"{int(held.sum())} as its held-out sample", notes)
        heldout = ref.feats[torch.as_tensor(held)]
        ref.train = dict(features=tr.features, heldout=heldout, heldout_nn=d[held].tolist(), path=train,
                         names=tr.names, cells=mem.copying_cells(tr.features, heldout, ct_cells, seed))
    real_info.update(train_source=train, train_n=len(tr.features), train_skipped=tr.skipped,
                     heldout_n=int(held.sum()))


# ---- one row ---------------------------------------------------------------------------------------

def feature_metrics(fake: torch.Tensor, ref: Reference, seed: int) -> tuple[dict, dict]:
    """The nearest-neighbour metrics of one feature set against the reference: (flat metrics, extras)."""
    pr, dc = mt.precision_recall(ref.feats, fake), mt.density_coverage(ref.feats, fake)
    div = mt.sample_diversity(ref.feats, fake, seed=seed)
    ndb = mt.ndb(ref.feats, fake, centers=ref.centers)
    m = {**pr, **dc, "collapse": div["collapse"], "near_dup_rate": div["near_duplicates"]["rate"],
         "ndb": ndb["ndb"], "ndb_over_k": ndb["ndb_over_k"], "js": ndb["js"],
         "vendi": mt.vendi_score(fake, ref.vendi_h), "ct": None, "memorisation": None}
    extras = {"diversity": div, "ndb": ndb}
    if ref.train is not None:
        t = ref.train
        ct = mem.data_copying(t["features"], t["heldout"], fake, fitted=t["cells"])
        nn = mem.memorisation(fake, t["features"], t["heldout"], heldout_dist=t["heldout_nn"])
        m.update(ct=ct["ct"], memorisation=nn["ratio"], memorisation_mw_z=nn["mw_z"])
        extras.update(ct=ct, memorisation=nn)
    return m, extras


def pictures_for(name: str, images, ext: dict, ref: Reference, pics: dict) -> dict:
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
        members = np.flatnonzero(ref.bins == b)[:8]
        if len(members):
            rows.append(load_named(ref.path, [ref.names[i] for i in members], ref.size))
    if rows:
        pics[f"ndb_bins_{safe}.png"] = rows
        captions[f"ndb_bins_{safe}.png"] = ("real examples of the most under-filled bins (first rows) "
                                            "and most over-filled bins (last rows)")
    if "memorisation" in ext:
        nn, ct, t = ext["memorisation"], ext["ct"], ref.train
        pics[f"nn_distances_{safe}.png"] = functools.partial(
            plot_distances, samples=nn["nn_dist"], heldout=t["heldout_nn"], title=f"{name}: C_T = {ct['ct']:+.1f}")
        captions[f"nn_distances_{safe}.png"] = ("distance to the nearest training image: samples vs held-out real "
                                                "images (C_T tests whether samples sit closer)")
        order = np.argsort(nn["nn_dist"])[:16]
        near = load_named(t["path"], [t["names"][nn["nn_index"][i]] for i in order], ref.size)
        pics[f"memorisation_{safe}.png"] = [images[torch.as_tensor(order)], near]
        captions[f"memorisation_{safe}.png"] = ("the 16 samples closest to the training set (top) and their nearest "
                                                "training image (bottom)")
    return captions


def _overlap(c: Candidate, used_ids: set, n_used: int, notes: list) -> dict | None:
    """How many of the real images used here a generator was selected on (from its export's record)."""
    sel = c.selection
    if not sel:
        return None
    k = len(used_ids & set(sel["image_ids"]))
    if k:
        warn(f"{c.name} was selected on {k} of the {n_used} real images this evaluation uses "
             f"(selection: {sel.get('n', len(sel['image_ids']))} images of {sel.get('source', '?')}): its numbers "
             f"are optimistic; evaluate on a split it was not selected on (animegan.data split: test.tar) or "
             f"--exclude the selection images", notes)
    return {"source": sel.get("source"), "n": sel.get("n", len(sel["image_ids"])), "overlap": k}


# ---- the protocol ------------------------------------------------------------------------------

def evaluate(real, ckpts=(), fakes=(), train=None, exclude=(), n: int = 10000, rulers=PANEL,
             features: str = EFFNET, inception_weights=None, seed: int = 0, size: int = 64, ndb_k: int = 50,
             kid_subsets: int = 100, spread_rounds: int = 20, ct_cells: int = 5, batch_size: int = 16,
             device="cpu", cache_dir=None, use_cache: bool = True, groups: dict | None = None,
             ceiling: bool = True, sanity=None) -> tuple[Report, dict]:
    """Every ruler's metrics of every generator (`ckpts`) and image set (`fakes`) against `real`, with a
    verdict between two models; returns (report, pictures) for eval.report.write_report. `groups` maps a
    model to its rows (seeds), e.g. {"gan": ["gan-s0", "gan-s1"], …}; without it, two generators are
    compared directly. `sanity` (an eval.sanity.SanityResult at the same n) turns scores into the
    disturbance of real faces that scores the same. Bad paths and values raise before any slow work."""
    t0, notes, timings = time.perf_counter(), [], {}
    if n < MIN_N:
        raise UsageError(f"--n must be at least {MIN_N}, got {n}")
    if spread_rounds < 2 or ct_cells < 1:
        raise UsageError(f"--fid-spread must be ≥ 2 and --ct-cells ≥ 1, got {spread_rounds} and {ct_cells}")
    for flag, value in (("--ndb-k", ndb_k), ("--kid-subsets", kid_subsets), ("--batch-size", batch_size),
                        ("--size", size)):
        if value < 1:
            raise UsageError(f"{flag} must be ≥ 1, got {value}")
    sources = {str(path): open_image_source(path)  # a missing or empty path fails before any slow work
               for path in [real, *([train] if train else []), *exclude]}
    if train and len(sources[str(train)].entries) < ct_cells:
        raise UsageError(f"--train {train}: C_T needs at least --ct-cells = {ct_cells} images")
    panel = build_rulers(rulers, features, inception_weights, device, batch_size, kid_subsets)
    cands = candidates(ckpts, fakes, groups, device) + ([ceiling_candidate()] if ceiling else [])
    space = panel[0]
    for r in panel:
        r.describe(torch.zeros(2, 3, size, size, dtype=torch.uint8))  # a missing network fails now, offline or not
    skip = frozenset(i for path in exclude for i in image_ids([e[0] for e in sources[str(path)].entries]))

    # ---- the real images: 2n, descriptors per ruler (cached), split into reference A and floor B
    t = time.perf_counter()
    got = cached_descriptors(real, panel, 2 * n, size, cache_dir, use_cache, progress=True, exclude=skip)
    timings["real descriptors"] = time.perf_counter() - t
    n_asked, n_read = n, len(got.names)
    if n_read < 2 * n:
        n = n_read // 2
        warn(f"--real has {n_read} readable images{' not excluded' if exclude else ''}, fewer than 2×--n={2 * n_asked}"
             f" (reference + baseline split); using n={n}", notes)
        if n < MIN_N:
            raise UsageError(f"--real needs at least {2 * MIN_N} readable images, {real} has {n_read}")
    perm = np.random.default_rng(seed).permutation(n_read)
    a_idx, b_idx = perm[:n], perm[n:2 * n]
    if n < 1000:
        warn(f"n={n} < 1000: KID uses subsets of {n} instead of 1000 and FID is biased upwards — compare only "
             f"numbers computed with the same n", notes)
    k = min(ndb_k, max(2, n // 10))
    if k < ndb_k:
        warn(f"NDB: {n} reference images are too few for K={ndb_k} bins; using K={k}", notes)
    feats = got.descriptors[space.name][a_idx]
    centers = mt.fit_bins(feats, k, seed=seed)
    ref = Reference(real, size, [got.names[i] for i in a_idx], {r.name: got.descriptors[r.name][a_idx] for r in panel},
                    {r.name: got.descriptors[r.name][b_idx] for r in panel}, [got.names[i] for i in b_idx],
                    feats, centers, mt.nearest(feats, centers)[1], mt.vendi_bandwidth(feats), kid_subsets)
    used = ref.names + ref.baseline_names
    real_info = {"source": real, "n_read": n_read, "skipped": got.skipped, "excluded": got.excluded,
                 "exclude": list(exclude), "from_cache": got.from_cache, "cache_keys": got.keys,
                 "image_ids_sha256": _ids_digest(used)}
    cache = dict(extractor=space.extractor_name, size=size, cache_dir=cache_dir, use_cache=use_cache,
                 weights_path=inception_weights, batch_size=batch_size, device=device, progress=True)
    if train:
        t = time.perf_counter()
        _add_train(ref, real_info, train, cache, ct_cells, seed, notes)
        timings["training features (C_T)"] = time.perf_counter() - t

    # ---- every row: images, every ruler's descriptors, the nearest-neighbour metrics, pictures
    used_ids = set(image_ids(used))
    rows, descs, pics = [], {}, {}
    for c in cands + [Candidate("real-vs-real", "real split", real)]:
        t1 = time.perf_counter()
        if c.kind == "real split":
            images, skipped = load_named(real, ref.baseline_names, size), 0  # decoding is cheap
            descs[c.name] = ref.baseline
        else:
            images, skipped = c.images(n, seed, size, notes)
            descs[c.name] = {}
            for r in panel:
                t = time.perf_counter()
                descs[c.name][r.name] = r.describe(images, seed=seed)
                timings[f"{r.name}: describe"] = timings.get(f"{r.name}: describe", 0) + time.perf_counter() - t
        t = time.perf_counter()
        metrics, extras = feature_metrics(descs[c.name][space.name], ref, seed)
        timings["nearest-neighbour metrics"] = timings.get("nearest-neighbour metrics", 0) + time.perf_counter() - t
        row = Row(c.name, c.kind, c.source, len(images), metrics, group=c.group, skipped=skipped,
                  weights_sha256=c.weights_sha256,
                  ndb=dict(extras["ndb"]), near_duplicates=extras["diversity"]["near_duplicates"],
                  ct=extras.get("ct"), selection=_overlap(c, used_ids, len(used), notes))
        row.pictures = pictures_for(c.name, images, extras, ref, pics)
        row.seconds = time.perf_counter() - t1
        rows.append(row)
        print(f"{c.name}: described in {row.seconds:.1f}s", file=sys.stderr)

    # ---- every ruler scores every row against A, with a spread from paired rounds (shared halves)
    names = [row.name for row in rows]
    rounds = {}
    for r in panel:
        t = time.perf_counter()
        points, rounds[r.name] = r.measure(ref.desc[r.name], [descs[x][r.name] for x in names], spread_rounds, seed)
        for row, p, spread in zip(rows, points, rounds[r.name].std(axis=0, ddof=1)):
            row.metrics.update(p)
            row.metrics.update({f"{key}_std": float(s) for key, s in zip(r.paired_keys, spread)})
        timings[f"{r.name}: score"] = time.perf_counter() - t
    if sanity is not None:
        from .sanity import translate
        for row in rows:
            row.translations = [e.to_dict() for r in panel if row.metrics.get(r.metrics[0].key) is not None
                                for e in translate(sanity, r.metrics[0].key, row.metrics[r.metrics[0].key], top=1)]

    models = [row for row in rows if row.kind in ("generator", "images")]
    verdict = compare(models, rounds, panel, names, groups, floor=rows[-1])
    protocol = {"features": space.extractor_name, "feature_dim": int(ref.feats.shape[1]), "n": n, "seed": seed,
                "size": size, "rulers": [r.name for r in panel], "preprocess": f"{PREPROCESS}, size={size}",
                "generated": f"sample_z(n, z_dim, seed={seed}), at {size}×{size}",
                "real_split": f"first {2 * n} images by name{' not excluded' if exclude else ''}, permuted with "
                              f"seed {seed}: A = reference, B = baseline", "kid_subsets": kid_subsets,
                "kid_subset_size": min(mt.KID_SUBSET_SIZE, n),
                "spread": f"std over {spread_rounds} rounds, each on a random half of the reference and the same "
                          f"random half of every sample set (paired)",
                "k_precision_recall": mt.K_PRECISION_RECALL, "k_density_coverage": mt.K_DENSITY_COVERAGE,
                "ndb_k": k, "ndb_alpha": mt.NDB_ALPHA, "near_dup_percentile": mt.NEAR_DUP_PERCENTILE,
                "vendi_kernel": f"Gaussian, length scale {ref.vendi_h:.3g} (median distance of reference rows)",
                "ct_cells": ct_cells, "ct_min_samples": mem.CT_MIN_SAMPLES, "inception_weights": inception_weights}
    report = Report(protocol=protocol, real=real_info, models=models, baseline=rows[-1],
                    ceiling=next((row for row in rows if row.kind == "ceiling"), None), verdict=verdict,
                    rulers={r.name: {"identity": r.identity(), "sees": getattr(r, "sees", ""),
                                     "metrics": [m._asdict() for m in r.metrics]} for r in panel},
                    warnings=notes, timings={k: round(v, 1) for k, v in timings.items()},
                    seconds=round(time.perf_counter() - t0, 2))
    return report, pics
