"""Image data from a folder (searched recursively), a .zip or a .tar → uint8 tensors.

Every image gets the report's preprocessing: RGB, Resize(size) on the short side,
CenterCrop(size). Decoded images are kept in memory as uint8 (30k × 3×64×64 =
370 MB) so a training step never touches the disk; corrupt, truncated, empty or
non-image files are skipped, counted and reported once.

    data = load_images("anime-faces.zip", size=64)   # .images: N×3×64×64 uint8
    python -m animegan.data split anime-faces-96.tar --select 1000 --test 2000 --out data/
    python -m animegan.data pack data/train.tar data/train64.zip --format webp --quality 83

`pack` writes the images already preprocessed (size×size), or a first-N subset with
the original bytes (`--format keep --limit N`): a compact copy to send to a remote GPU.

The split rule is by content: files whose decoded 64×64 pixels are identical, or whose 16×16
thumbnails are near-identical (the set holds expression variants of one drawing), are one face; a
face keeps one file and never sits in two parts. Faces are ordered by the sha256 of their last
file's name; the first `--test` go to test.tar (the evaluation's reference and real-vs-real floor),
the next `--select` to select.tar (quick FD, `--eval-real`, the choice of the best export), the rest
to train.tar — deterministic and independent of file order. Model selection never sees a test image,
and no test face has a duplicate in train. split.json lists every dropped duplicate. `--val N`
writes the older two-way split (val.tar held test ∪ select).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import torch
from PIL import Image
from torchvision.transforms import functional as TF

from .files import write_json
from .monitor import track

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".avif")


class DataError(Exception):
    """Unusable data path; the message is one line and names the path."""


def _is_image_name(name: str) -> bool:
    base = os.path.basename(name)
    # Skip macOS resource forks and hidden files that Kaggle/Mac zips carry.
    if base.startswith(".") or "__MACOSX" in name:
        return False
    return base.lower().endswith(IMAGE_EXTS)


class ImageSource:
    """Sorted image entries of a folder / zip / tar, and their raw bytes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        p = self.path
        if not p.exists():
            raise DataError(f"data path does not exist: {p}")
        self._zip = self._tar = None
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and _is_image_name(str(f.relative_to(p))))
            self._files = {str(f.relative_to(p)): f for f in files}
            self.entries = [(n, f.stat().st_size, f.stat().st_mtime) for n, f in self._files.items()]
        elif zipfile.is_zipfile(p):
            self._zip = zipfile.ZipFile(p)
            infos = sorted((i for i in self._zip.infolist() if not i.is_dir() and _is_image_name(i.filename)),
                           key=lambda i: i.filename)
            self._members = {i.filename: i for i in infos}
            self.entries = [(i.filename, i.file_size, 0.0) for i in infos]
        elif p.is_file() and _looks_like_tar(p):
            self._tar = tarfile.open(p)
            infos = sorted((m for m in self._tar.getmembers() if m.isfile() and _is_image_name(m.name)),
                           key=lambda m: m.name)
            self._members = {m.name: m for m in infos}
            self.entries = [(m.name, m.size, float(m.mtime)) for m in infos]
        else:
            raise DataError(f"not a folder, .zip or .tar of images: {p}")
        if not self.entries:
            raise DataError(f"no image files ({', '.join(IMAGE_EXTS)}) found in {p}")

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._members[name])
        if self._tar is not None:
            f = self._tar.extractfile(self._members[name])
            return f.read() if f is not None else b""
        return self._files[name].read_bytes()


def _looks_like_tar(p: Path) -> bool:
    try:
        return tarfile.is_tarfile(p)
    except OSError:
        return False


def image_ids(names: list[str]) -> list[str]:
    """A short, archive-independent id per image (sha256 of its file name without folder or
    extension), so the same face packed as .jpg in a tar or .webp in a zip has the same id."""
    return [hashlib.sha256(PurePosixPath(n).stem.encode()).hexdigest()[:12] for n in names]


def open_image_source(path: str | os.PathLike) -> ImageSource:
    return ImageSource(path)


def decode_image(raw: bytes, size: int) -> torch.Tensor:
    """Bytes → uint8 3×size×size: RGB, Resize(size), CenterCrop(size). Raises on bad data."""
    with Image.open(io.BytesIO(raw)) as im:
        im.load()  # forces a full decode so truncated files fail here, not later
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")  # composite on white: transparent pixels are not black faces
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        else:
            im = im.convert("RGB")
        im = TF.center_crop(TF.resize(im, size), size)
        return TF.pil_to_tensor(im)


@dataclass
class LoadedImages:
    images: torch.Tensor  # N×3×size×size uint8
    names: list[str]
    skipped: int
    source: str


def load_images(path: str | os.PathLike, size: int = 64, limit: int | None = None,
                progress: bool = False, names: list[str] | None = None) -> LoadedImages:
    """Decode all (or the first `limit`, or the `names` given) images of a source; skip and count bad files."""
    src = open_image_source(path)
    names = [e[0] for e in src.entries][:limit] if names is None else names
    out, kept, bad = [], [], []
    for name in track(names, f"decoding {src.path.name}", unit="image", enabled=progress):
        try:
            out.append(decode_image(src.read(name), size))
            kept.append(name)
        except Exception:  # any decoder error means "not a usable image": skip, count
            bad.append(name)
    if bad:
        ex = ", ".join(bad[:3]) + (" …" if len(bad) > 3 else "")
        print(f"warning: skipped {len(bad)} unreadable file(s) of {len(names)} in {src.path} ({ex})",
              file=sys.stderr)
    if not out:
        raise DataError(f"no readable image in {src.path} ({len(bad)} file(s) failed to decode)")
    return LoadedImages(torch.stack(out), kept, len(bad), str(src.path))


# Two files are one face when their decoded size×size pixels are identical, or when their centred,
# unit-length 16×16 colour thumbnails lie closer than this. The data set holds many expression
# variants of one drawing; on the anime-faces set, 12 of 12 sampled pairs at distances 0.30–0.35 were
# the same drawing, while pairs at 0.40–0.45 start to be different drawings of one character.
NEAR_DUP_DISTANCE = 0.35


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×3×H×W → N×768: 16×16 colour thumbnails, each centred and scaled to unit length, so a
    brightness offset or a recompression barely moves them while another drawing does."""
    x = torch.nn.functional.adaptive_avg_pool2d(images.float(), 16).flatten(1)  # N×768
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)


def content_groups(images: torch.Tensor, near: float = NEAR_DUP_DISTANCE) -> list[list[int]]:
    """Indices of images that show one face: identical pixels, or thumbnails closer than `near`
    (chained: a ~ b and b ~ c put a, b, c in one group). Every index is in exactly one group; groups
    and their members are in index order."""
    from sklearn.neighbors import NearestNeighbors

    parent = list(range(len(images)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, x in enumerate(images):
        h = hashlib.sha256(x.numpy().tobytes()).hexdigest()
        join(first.setdefault(h, i), i)
    if near > 0 and len(images) > 1:
        t = thumbnails(images).numpy()
        for i, nbrs in enumerate(NearestNeighbors(radius=near).fit(t).radius_neighbors(t, return_distance=False)):
            for j in nbrs:
                join(i, int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(images)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


def split_archive(src_path: str, out_dir: str, held_out: list[tuple[str, int]], size: int = 64,
                  near: float = NEAR_DUP_DISTANCE) -> dict[str, int]:
    """Write out_dir/PART.tar for each (PART, count) of `held_out` and out_dir/train.tar with the rest,
    by content: files that show one face (`content_groups` of the decoded size×size images) count as
    one face, keep one file (the first by the order below) and never straddle two parts. Faces are
    ordered by the sha256 of their *last* file's name, and the first `count` go to the first part,
    and so on; so a face with a file late in that order is trained on, never held out. Unreadable
    files are skipped. Writes out_dir/split.json (the rule, the counts and every dropped duplicate)
    and returns {part: images}. All parts are written to temporary files first, so a failure
    replaces none of them."""
    src = open_image_source(src_path)
    total = sum(k for _, k in held_out)

    def check(faces: int, what: str) -> None:
        if any(k < 1 for _, k in held_out) or total >= faces:
            sizes = " + ".join(f"--{part} {k}" for part, k in held_out)
            raise DataError(f"{sizes} must each be ≥ 1 and leave training images: {src_path} has {faces} {what}")

    check(len(src.entries), "files")  # before decoding anything
    order = sorted((e[0] for e in src.entries), key=lambda n: hashlib.sha256(os.path.basename(n).encode()).hexdigest())
    loaded = load_images(src_path, size=size, names=order, progress=True)
    names = loaded.names  # readable files, in name-hash order
    groups = content_groups(loaded.images, near)  # each group's members ascend in that order
    groups.sort(key=lambda g: g[-1])
    check(len(groups), "distinct faces")
    part_of, start = {}, 0
    for part, k in held_out + [("train", len(groups) - total)]:
        part_of.update((names[g[0]], part) for g in groups[start:start + k])
        start += k
    parts = [part for part, _ in held_out] + ["train"]
    os.makedirs(out_dir, exist_ok=True)
    tars = {part: tarfile.open(os.path.join(out_dir, f"{part}.tar.tmp"), "w") for part in parts}
    counts = dict.fromkeys(parts, 0)
    try:
        for name, fsize, mtime in src.entries:
            if name not in part_of:  # a duplicate of a kept file, or unreadable
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mtime = fsize, int(mtime)
            tars[part_of[name]].addfile(info, io.BytesIO(src.read(name)))
            counts[part_of[name]] += 1
    except BaseException:
        for tar in tars.values():
            tar.close()
            os.unlink(tar.name)
        raise
    for tar in tars.values():
        tar.close()
    dups = [g for g in groups if len(g) > 1]
    manifest = {"source": str(src_path), "files": len(src.entries), "unreadable": loaded.skipped,
                "faces": len(groups), "parts": counts, "size": size, "near_dup_distance": near,
                "rule": "files grouped by content (identical size×size pixels, or 16×16 thumbnail distance < "
                        "near_dup_distance); faces ordered by sha256 of their last file's name; parts in order "
                        + ", ".join(parts) + "; one file kept per face",
                "duplicates": {"groups": len(dups), "files_dropped": sum(len(g) - 1 for g in dups),
                               "kept_and_dropped": [[names[i] for i in g] for g in dups]}}
    for part in parts:
        os.replace(os.path.join(out_dir, f"{part}.tar.tmp"), os.path.join(out_dir, f"{part}.tar"))
    write_json(os.path.join(out_dir, "split.json"), manifest)
    return counts


PACK_FORMATS = {"keep": None, "png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "avif": "AVIF"}
# Encoder settings beyond quality; AVIF with full-resolution colour (4:4:4), the setting the data A/B measured.
PACK_OPTIONS = {"webp": {"method": 6}, "avif": {"subsampling": "4:4:4", "speed": 4}}


class PackResult(NamedTuple):
    written: int
    skipped: int
    psnr: float | None  # dB over all pixels, decoded pack vs the preprocessed images; None unless lossy


def pack_archive(src_path: str, out_path: str, size: int = 64, fmt: str = "webp", quality: int = 90,
                 limit: int | None = None) -> PackResult:
    """Write the first `limit` images of a source (sorted names) to a .tar or .zip, preprocessed to
    size×size and encoded as `fmt`, or with their original bytes (`keep`). For webp/jpeg/avif, also
    measures what the compression costs: the PSNR of the decoded pack against the preprocessed images."""
    if fmt not in PACK_FORMATS:
        raise DataError(f"--format must be one of {', '.join(PACK_FORMATS)}, got {fmt!r}")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be in 1..100, got {quality}")
    src = open_image_source(src_path)
    entries = src.entries[:limit]
    tmp = out_path + ".tmp"
    written = skipped = 0
    sq_err, n_px = 0.0, 0
    lossy = fmt in ("webp", "jpeg", "avif")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    as_zip = out_path.lower().endswith(".zip")  # a tar pads each small file to 512-byte blocks; a zip does not
    with (zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) if as_zip else tarfile.open(tmp, "w")) as arc:
        for name, _, mtime in entries:
            raw = src.read(name)
            if fmt != "keep":
                try:
                    x = decode_image(raw, size)
                except Exception:
                    skipped += 1
                    continue
                buf = io.BytesIO()
                TF.to_pil_image(x).save(buf, PACK_FORMATS[fmt], quality=quality, **PACK_OPTIONS.get(fmt, {}))
                raw, name = buf.getvalue(), os.path.splitext(name)[0] + "." + fmt
                if lossy:
                    y = decode_image(raw, size)
                    sq_err += float(((y.float() - x.float()) ** 2).sum())
                    n_px += x.numel()
            if as_zip:
                arc.writestr(name, raw)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(raw), int(mtime)
                arc.addfile(info, io.BytesIO(raw))
            written += 1
    if not written:
        os.unlink(tmp)
        raise DataError(f"no readable image in {src_path}")
    os.replace(tmp, out_path)
    psnr = None
    if lossy:
        psnr = float("inf") if sq_err == 0 else 10 * math.log10(255 ** 2 / (sq_err / n_px))
    return PackResult(written, skipped, psnr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m animegan.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("split", help="deterministic train/select/test split into .tar files")
    sp.add_argument("src", help="folder, .zip or .tar of images")
    sp.add_argument("--select", type=int, default=None,
                    help="images for model selection: quick FD, --eval-real, best export (default: 1000)")
    sp.add_argument("--test", type=int, default=None,
                    help="images for the final evaluation only (eval.fid's --real) (default: 2000)")
    sp.add_argument("--val", type=int, default=None,
                    help="the older two-way split: N images to val.tar, the rest to train.tar")
    sp.add_argument("--out", required=True, help="output folder for train.tar, select.tar and test.tar")
    pp = sub.add_parser("pack", help="a compact .tar/.zip of preprocessed images (or a subset with original bytes)")
    pp.add_argument("src", help="folder, .zip or .tar of images")
    pp.add_argument("out", help="output .tar, or .zip (smaller for many small files)")
    pp.add_argument("--size", type=int, default=64, help="image side after Resize + CenterCrop (default: 64)")
    pp.add_argument("--format", default="webp", choices=tuple(PACK_FORMATS),
                    help="webp / jpeg / avif (lossy, --quality; avif in 4:4:4), png (lossless) or keep (original "
                         "bytes, no preprocessing) (default: webp)")
    pp.add_argument("--quality", type=int, default=90, help="webp/jpeg/avif quality 1..100 (default: 90)")
    pp.add_argument("--limit", type=int, default=None, help="only the first N images by name")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            n, bad, psnr = pack_archive(args.src, args.out, args.size, args.format, args.quality, args.limit)
            extra = f", skipped {bad} unreadable" if bad else ""
            extra += f"; PSNR {psnr:.1f} dB against the {args.size}×{args.size} preprocessed images" \
                if psnr is not None else ""
            print(f"wrote {args.out} ({n} images, {os.path.getsize(args.out) / 1e6:.1f} MB{extra})")
            return 0
        if args.val is not None and (args.select is not None or args.test is not None):
            raise DataError("give either --select/--test (three-way split) or --val (two-way split), not both")
        test, select = 2000 if args.test is None else args.test, 1000 if args.select is None else args.select
        held_out = [("val", args.val)] if args.val is not None else [("test", test), ("select", select)]
        counts = split_archive(args.src, args.out, held_out)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dups = json.loads(Path(args.out, "split.json").read_text())["duplicates"]
    print("wrote " + ", ".join(f"{args.out}/{part}.tar ({k} images)" for part, k in counts.items())
          + f"; dropped {dups['files_dropped']} duplicate files of {dups['groups']} faces (listed in "
          f"{args.out}/split.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
