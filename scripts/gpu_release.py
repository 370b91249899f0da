"""The pieces of the GPU release run (scripts/gpu_release.sh) that are not training.

    python scripts/gpu_release.py prepare --train data/train64_avif90.zip --select data/select.tar \\
        --test data/test.tar --out .gpu                                          # here, on the CPU
    python scripts/gpu_release.py join .gpu --out .gpu/work/train.zip           # on the device
    python scripts/gpu_release.py plan .gpu/work/throughput.json --images 27088 --minutes 6.5
    python scripts/gpu_release.py score /tmp/runs --real .gpu/p1/test.zip --json /tmp/runs/test_fd.json
    python scripts/gpu_release.py collect /tmp/runs --to $OUT

prepare: the device takes at most 64 MiB per call, the repository's tracked files included, so the
data travels in three parts over three consecutive calls (the device keeps ignored files while it
stays warm): p1 (with the wheels: the quick-FD sets `select` and `test`, the first training
images), p2 and p3 (the rest of the training pack). Each part is a folder with its zips and the
manifest; the manifest records every part's size and sha256, the image names in order and a
sha256 of the decoded pixels, so `join` on the device can say exactly what is missing or differs.
join: verifies the parts, decodes the pack once (in parallel) and writes it as uncompressed BMP in
one zip (lossless, so training sees the same pixels; each training process then loads it in
seconds), and compares the pixels with the ones decoded here.
plan: from measured rates, how many epochs the seed-0 runs and the extra seeds get in the time.
score: quick FD of every run's best and final exports on the test split (never used for training
or selection). collect: the results as at most 8 files of at most 16 MiB for $OUT.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MiB = 1 << 20
DEVICE_LIMIT = 64 * MiB  # what one call may send, tracked files included
OUT_FILE_LIMIT = 16 * MiB  # what one file of $OUT may weigh to come back
OUT_FILES = 8
QUICK_FD_SETS = 1000  # held-out images per quick-FD set (select, test)
MODELS = ("gan", "wgan-gp")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def tracked_bytes(repo: Path) -> int:
    """What the device call sends besides carried paths: tracked files plus untracked, not ignored ones."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file())


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else \
        (path.stat().st_size if path.exists() else 0)


def pixel_digest(images) -> str:
    return hashlib.sha256(images.numpy().tobytes()).hexdigest()


def names_digest(names) -> str:
    """sha256 of the image names without extensions, in order (a pack renames .jpg to .avif, join to .bmp)."""
    return hashlib.sha256("\n".join(os.path.splitext(n)[0] for n in names).encode()).hexdigest()


# ---- prepare (CPU) ------------------------------------------------------------------------

def entry_cost(info: zipfile.ZipInfo) -> int:
    """Bytes a stored zip entry takes: its data, a 30-byte local and a 46-byte central header, its name twice."""
    return info.compress_size + 76 + 2 * len(info.filename.encode())


def prepare(args) -> int:
    from animegan.data import load_images, pack_archive
    out = Path(args.out)
    repo = Path(args.repo)
    parts = [out / f"p{i}" for i in (1, 2, 3)]
    for p in parts:
        p.mkdir(parents=True, exist_ok=True)
        for old in [*p.glob("train*.zip"), p / "manifest.json"]:
            old.unlink(missing_ok=True)
    wheels = Path(args.wheels) if args.wheels else repo / ".whl"
    if not sorted(wheels.glob("*.whl")):
        print(f"error: no wheels in {wheels}: download them first (docs/scaling.md, 'Training on a lent GPU'); "
              f"call 1 carries them and its room depends on their size", file=sys.stderr)
        return 2
    # The quick-FD sets travel as their original bytes: the same files the CPU scores against.
    for name, src in (("select", args.select), ("test", args.test)):
        pack_archive(src, str(parts[0] / f"{name}.zip"), fmt="keep", limit=QUICK_FD_SETS)
    base = tracked_bytes(repo) + args.margin_mib * MiB
    carried = {1: folder_bytes(wheels) + folder_bytes(parts[0]), 2: 0, 3: 0}
    room = {i: args.call_mib * MiB - base - carried[i] for i in carried}
    src = zipfile.ZipFile(args.train)
    infos = sorted((i for i in src.infolist() if not i.is_dir()), key=lambda i: i.filename)
    total = sum(entry_cost(i) for i in infos)
    if total > sum(max(r, 0) for r in room.values()):
        print(f"error: the training pack ({total / MiB:.1f} MiB) does not fit into the room of three calls "
              f"({', '.join(f'{max(r, 0) / MiB:.1f}' for r in room.values())} MiB after the repository's "
              f"{base / MiB:.1f} MiB and the wheels)", file=sys.stderr)
        return 2
    # Fill the parts in name order (part 1 first, so the smoke test and parity have training images).
    assignment, i, used = {1: [], 2: [], 3: []}, 1, 0
    for info in infos:
        cost = entry_cost(info)
        while used + cost > room[i]:
            i, used = i + 1, 0
            if i > 3:
                print("error: the training pack does not fit into three calls", file=sys.stderr)
                return 2
        assignment[i].append(info)
        used += cost
    if not assignment[1]:
        print("error: no room for training images in call 1 (the smoke test and the parity check need some)",
              file=sys.stderr)
        return 2
    manifest = {"train_source": str(args.train), "images": len(infos),
                "names_sha256": names_digest(i.filename for i in infos), "parts": {}}
    for k, members in assignment.items():
        path = parts[k - 1] / f"train{k}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for info in members:
                z.writestr(info.filename, src.read(info))
        manifest["parts"][f"p{k}"] = {"file": f"p{k}/train{k}.zip", "images": len(members),
                                      "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    for name in ("select", "test"):
        path = parts[0] / f"{name}.zip"
        manifest[name] = {"file": f"p1/{name}.zip", "sha256": sha256_file(path)}
    manifest["size"] = args.size
    manifest["pixels_sha256"] = pixel_digest(load_images(args.train, size=args.size).images)
    # Every part carries the manifest, so any call can check what it has.
    for p in parts:
        (p / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"repository: {tracked_bytes(repo) / MiB:.1f} MiB travels with every call (+{args.margin_mib} MiB margin)")
    for k, p in enumerate(parts, 1):
        extra = folder_bytes(wheels) if k == 1 else 0
        size = folder_bytes(p) + extra
        print(f"call {k}: carry {'.whl, ' if k == 1 else ''}{p.relative_to(repo) if p.is_relative_to(repo) else p}: "
              f"{size / MiB:.2f} MiB, {manifest['parts'][f'p{k}']['images']} training images "
              f"(total {(base + size) / MiB:.2f} of {args.call_mib:g} MiB)")
    return 0


# ---- join (device) ------------------------------------------------------------------------

def _decode(args: tuple[str, list[str], int]) -> list[tuple[str, bytes]]:
    """Decode a chunk of a part zip into BMP bytes of the preprocessed image (worker process)."""
    from torchvision.transforms import functional as TF
    from animegan.data import decode_image
    path, names, size = args
    out = []
    with zipfile.ZipFile(path) as z:
        for n in names:
            x = decode_image(z.read(n), size)
            buf = io.BytesIO()
            TF.to_pil_image(x).save(buf, "BMP")
            out.append((os.path.splitext(n)[0] + ".bmp", buf.getvalue()))
    return out


def check_parts(root: Path, wanted: list[str] | None = None, verify: bool = True) -> dict | None:
    """The manifest if the wanted parts (default: all) are there and intact; else one error line and None."""
    manifests = sorted(root.glob("p*/manifest.json"))
    if not manifests:
        print(f"error: no part of the data in {root} (no p*/manifest.json): run the calls in order, "
              f"starting with call 1", file=sys.stderr)
        return None
    manifest = json.loads(manifests[0].read_text())
    missing, bad = [], []
    for key, part in manifest["parts"].items():
        if wanted and key not in wanted:
            continue
        path = root / part["file"]
        if not path.is_file():
            missing.append(f"{part['file']} (call {key[1:]})")
        elif verify and sha256_file(path) != part["sha256"]:
            bad.append(part["file"])
    if missing or bad:
        print("error: " + "; ".join(x for x in (missing and f"missing {', '.join(missing)}",
                                                 bad and f"corrupt {', '.join(bad)}") if x)
              + ". The device keeps files only while it stays warm (30 s after a call): if it was given back "
              "between calls, start again with call 1.", file=sys.stderr)
        return None
    print(f"data parts {', '.join(wanted or manifest['parts'])} present and intact")
    return manifest


def verify(args) -> int:
    return 0 if check_parts(Path(args.root), args.parts.split(",") if args.parts else None) else 2


def join(args) -> int:
    root = Path(args.root)
    manifest = check_parts(root, verify=args.verify)
    if manifest is None:
        return 2
    jobs = []
    for part in manifest["parts"].values():
        with zipfile.ZipFile(root / part["file"]) as z:
            names = sorted(z.namelist())
        for i in range(0, len(names), 500):
            jobs.append((str(root / part["file"]), names[i:i + 500], manifest["size"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers or os.cpu_count()) as pool, \
            zipfile.ZipFile(str(out) + ".tmp", "w", zipfile.ZIP_STORED) as z:
        for chunk in pool.map(_decode, jobs):
            for name, raw in chunk:
                z.writestr(name, raw)
    os.replace(str(out) + ".tmp", out)
    from animegan.data import load_images
    data = load_images(out, size=manifest["size"])
    if names_digest(data.names) != manifest["names_sha256"]:
        print(f"error: {out} does not hold the manifest's {manifest['images']} images in its order", file=sys.stderr)
        return 2
    same = pixel_digest(data.images) == manifest["pixels_sha256"]
    print(f"joined {len(manifest['parts'])} parts into {out}: {len(data.images)} images, pixels "
          + ("identical to the CPU's decode" if same else
             "DIFFERENT from the CPU's decode (this Pillow decodes the pack differently; training continues)"))
    return 0


# ---- plan (device) ------------------------------------------------------------------------

def plan(args) -> int:
    rows = json.loads(Path(args.throughput).read_text())["rows"]
    impl = json.loads(Path(args.impl).read_text()) if args.impl and Path(args.impl).is_file() else {}
    rate = {}
    for r in rows:  # the rate of the step each model will train with (the first row if it was not measured)
        m = r.get("model")
        if m in MODELS and (r["step_impl"].split()[0] == impl.get(m, "eager") or m not in rate):
            rate[m] = r["real_img_per_s"]
    sec = {m: args.images / rate[m] for m in ("gan", "wgan-gp")}  # GPU seconds per epoch, one process alone
    usable = args.minutes * 60 * args.efficiency
    cad = args.eval_epochs
    # The extra seeds (two per model) share the GPU equally with everything else; they must be done
    # within `share` of the time, so the seed-0 runs have the rest alone.
    lo, hi = sorted(sec.values())
    e1 = math.floor(args.share * usable / (2 * lo + 4 * hi) / cad) * cad
    left = usable - e1 * 2 * (lo + hi)
    e0 = min(args.epochs, math.floor(left / (sec["gan"] + sec["wgan-gp"]) / cad) * cad)
    need = args.epochs * (sec["gan"] + sec["wgan-gp"]) / 60
    limit = (f"{args.epochs} epochs of both need {need:.1f} GPU-minutes at the measured "
             f"{rate['gan']:.0f} (gan) and {rate['wgan-gp']:.0f} (wgan-gp) real img/s; "
             f"{args.minutes:g} min of training at {args.efficiency:.0%} efficiency give seed 0 about {e0} epochs")
    out = {"images": args.images, "minutes": args.minutes, "rates": rate, "impl": impl, "epochs_seed0_expected": e0,
           "epochs_extra_seeds": max(e1, cad), "eval_epochs": cad, "note": limit}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n") if args.out else None
    print(json.dumps(out))
    return 0


# ---- impl (device) ------------------------------------------------------------------------

def choose_impl(args) -> int:
    """Per model, the graph step if it ran (smoke test), replays what it captured (parity: graph vs
    the same arithmetic op by op, bit for bit; that arithmetic vs the eager step) and is faster
    (throughput); else eager. Reads and updates the choice file, so each call narrows it."""
    out = Path(args.out)
    impl = json.loads(out.read_text()) if out.is_file() else {m: "graph" for m in MODELS}
    why = {}
    for m, rc in zip(MODELS, (args.smoke or "").split(",") if args.smoke else []):
        if rc != "0":
            impl[m], why[m] = "eager", f"the smoke test with the graph step exited {rc}"
    if args.parity and Path(args.parity).is_file():
        report = json.loads(Path(args.parity).read_text())["models"]
        for m in MODELS:
            rows = report.get(m, {}).get("variants", {})
            graph_rows = {k: r for k, r in rows.items() if "graph" in k.split(" vs ")[0]}
            bad = [k for k, r in graph_rows.items() if not r["ok"]]
            if not graph_rows:
                bad = ["no graph rows in the parity report"]
            if bad:
                impl[m], why[m] = "eager", f"parity: {', '.join(bad)}"
    elif args.parity:
        impl, why = {m: "eager" for m in MODELS}, {m: f"no parity report at {args.parity}" for m in MODELS}
    if args.throughput and Path(args.throughput).is_file():
        rows = json.loads(Path(args.throughput).read_text())["rows"]
        for m in MODELS:
            rate = {r["step_impl"].split()[0]: r["real_img_per_s"] for r in rows if r.get("model") == m}
            if impl[m] == "graph" and rate.get("graph", 0) <= rate.get("eager", 0):
                impl[m], why[m] = "eager", f"graph {rate.get('graph', 0):.0f} ≤ eager {rate.get('eager', 0):.0f} img/s"
    out.write_text(json.dumps(impl) + "\n")
    for m in MODELS:
        print(f"{m}: step {impl[m]}" + (f" ({why[m]})" if m in why else ""))
    return 0


# ---- score and collect (device) -----------------------------------------------------------

def score(args) -> int:
    import torch

    from animegan.checkpoint import load_generator
    from animegan.config import SEED_OFFSET
    from animegan.quickfd import QuickFD
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, qfd = [], {}
    for run in sorted(p for p in Path(args.runs).iterdir() if (p / "config.json").is_file()):
        cfg = json.loads((run / "config.json").read_text())
        key = (cfg["seed"], cfg["img_size"], cfg["z_dim"])
        if key not in qfd:
            qfd[key] = QuickFD(args.real, args.n, cfg["z_dim"], cfg["seed"] + SEED_OFFSET["quick_fd"], cfg["img_size"],
                               device)
        for export in ("generator_best", "generator"):
            if (run / export / "model.safetensors").is_file():
                info = json.loads((run / export / "training_info.json").read_text())
                fd = qfd[key](load_generator(run / export, device))
                rows.append({"run": run.name, "model": cfg["model"], "seed": cfg["seed"], "export": export,
                             "step": info["step"], "epochs": info.get("epochs"), "fd_select": info.get("fd_effnet_lite0"),
                             "fd_test": round(fd, 4), "test_n": qfd[key].n})
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{'run':14s} {'export':15s} {'step':>7s} {'epochs':>7s} {'FD select':>10s} {'FD test':>8s}")
    for r in rows:
        sel = f"{r['fd_select']:.2f}" if r["fd_select"] is not None else "-"
        print(f"{r['run']:14s} {r['export']:15s} {r['step']:7d} {r['epochs'] or 0:7.1f} {sel:>10s} {r['fd_test']:8.2f}")
    return 0


def _tar(path: Path, members: list[tuple[Path, str]], gz: bool = False) -> None:
    with tarfile.open(path, "w:gz" if gz else "w") as t:
        for src, name in members:
            if src.exists():
                t.add(src, arcname=name)


def collect(args) -> int:
    runs, out = Path(args.runs), Path(args.to)
    out.mkdir(parents=True, exist_ok=True)
    ship = [d for d in sorted(runs.iterdir()) if d.is_dir() and d.name.endswith("-s0")]
    for run in ship:  # seed 0: best (selected on the select split) and final exports
        for export, tag in (("generator_best", "best"), ("generator", "final")):
            if (run / export).is_dir():
                _tar(out / f"{run.name.removesuffix('-s0')}-{tag}.tar", [(run / export, export)])
    small = []
    for run in sorted(d for d in runs.iterdir() if d.is_dir()):
        for f in ("config.json", "metrics.jsonl", "train.log", "generator_best/training_info.json",
                  "generator/training_info.json"):
            small.append((run / f, f"{run.name}/{f}"))
    small += [(f, f.name) for f in sorted(runs.glob("*.json")) + sorted(runs.glob("*.log"))]
    _tar(out / "runs.tar.gz", small, gz=True)
    grids = [(g, f"{run.name}/{g.name}") for run in sorted(d for d in runs.iterdir() if d.is_dir())
             for g in sorted((run / "samples").glob("step_*.png"))]
    _tar(out / "samples.tar", grids)
    files = sorted(p for p in out.iterdir() if p.is_file())
    big = [f"{p.name} ({p.stat().st_size / MiB:.1f} MiB)" for p in files if p.stat().st_size > OUT_FILE_LIMIT]
    print(f"collected {len(files)} files in {out}: " + ", ".join(f"{p.name} {p.stat().st_size / MiB:.1f} MiB" for p in files))
    if big or len(files) > OUT_FILES:
        print(f"warning: only {OUT_FILES} files of at most 16 MiB come back; over: {', '.join(big) or len(files)}",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="split the data into the three calls' parts (CPU)")
    p.add_argument("--train", required=True, help="the packed training set, a .zip (python -m animegan.data pack)")
    p.add_argument("--select", required=True, help="held-out images for model selection (first 1000 travel)")
    p.add_argument("--test", required=True, help="held-out images for the final numbers (first 1000 travel)")
    p.add_argument("--out", default=".gpu")
    p.add_argument("--size", type=int, default=64, help="the pack's image side")
    p.add_argument("--repo", default=".", help="the checkout whose tracked files travel with every call")
    p.add_argument("--wheels", help="the wheels call 1 carries (default: REPO/.whl)")
    p.add_argument("--margin-mib", type=float, default=1.0, help="room left for untracked files of the checkout")
    p.add_argument("--call-mib", type=float, default=DEVICE_LIMIT / MiB, help="what one call may send (the device's limit)")
    p.set_defaults(fn=prepare)
    p = sub.add_parser("verify", help="check that the given parts of the data are there and intact (device)")
    p.add_argument("root", help="the folder holding p1/ p2/ p3/")
    p.add_argument("--parts", help="e.g. p1,p2 (default: all)")
    p.set_defaults(fn=verify)
    p = sub.add_parser("join", help="check the parts and join them into one training zip (device)")
    p.add_argument("root", help="the folder holding p1/ p2/ p3/")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the sha256 of each part")
    p.set_defaults(fn=join)
    p = sub.add_parser("plan", help="epochs per run from measured throughput (device)")
    p.add_argument("throughput", help="benchmarks/train_throughput.py --json output")
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--minutes", type=float, required=True, help="training time of the release call")
    p.add_argument("--epochs", type=int, default=500, help="the seed-0 target")
    p.add_argument("--eval-epochs", type=int, default=5, help="the quick-FD cadence; epochs are multiples of it")
    p.add_argument("--impl", help="the per-model choice file of `impl` (default: eager for both)")
    p.add_argument("--efficiency", type=float, default=0.8, help="share of the time the GPU trains (evals, switching)")
    p.add_argument("--share", type=float, default=0.6, help="share of the time the extra seeds may take")
    p.add_argument("--out")
    p.set_defaults(fn=plan)
    p = sub.add_parser("impl", help="per model: graph or eager, from the smoke test, parity and throughput (device)")
    p.add_argument("--out", required=True, help="the choice file (JSON), read and updated")
    p.add_argument("--smoke", help="exit codes of the gan and wgan-gp smoke tests, e.g. 0,0")
    p.add_argument("--parity", help="benchmarks/parity.py --json output")
    p.add_argument("--throughput", help="benchmarks/train_throughput.py --json output")
    p.set_defaults(fn=choose_impl)
    p = sub.add_parser("score", help="quick FD of every run's exports on the test split (device)")
    p.add_argument("runs")
    p.add_argument("--real", required=True)
    p.add_argument("--n", type=int, default=QUICK_FD_SETS)
    p.add_argument("--json", required=True)
    p.set_defaults(fn=score)
    p = sub.add_parser("collect", help="the results as ≤ 8 files of ≤ 16 MiB (device)")
    p.add_argument("runs")
    p.add_argument("--to", required=True)
    p.set_defaults(fn=collect)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
