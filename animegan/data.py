"""Image data from a folder (searched recursively), a .zip or a .tar, or several → uint8 tensors.

Every image gets the report's preprocessing: RGB, Resize(size) on the short side,
CenterCrop(size). Decoded images are kept in memory as uint8 (30k × 3×64×64 =
370 MB) so a training step never touches the disk; a few corrupt, truncated, empty or
non-image files are skipped, counted and reported once. Data that mostly does not decode is
refused with one line before the slow work: a format this Pillow cannot read (e.g. AVIF before
Pillow 11.3: the line names the codec and the fix), or more than max(3 files, 1 %) unreadable.

    data = load_images("anime-faces.zip", size=64)   # .images: N×3×64×64 uint8
    data = load_images("data/train-*.zip")           # several archives: a glob, or a.zip,b.zip
    python -m animegan.data split anime-faces-96.tar --select 1000 --test 2000 --out data/
    python -m animegan.data pack data/train.tar data/train64.zip --format webp --quality 83
    python -m animegan.data pack data/train.tar data/train.zip --format avif --quality 90 --shard-mib 20

`pack` writes the images already preprocessed (size×size), or a first-N subset with
the original bytes (`--format keep --limit N`): a compact copy for a machine with little room or
bandwidth. `--shard-mib N` splits it into OUT-00000.zip, OUT-00001.zip, … of at most N MiB each.

Every data path read through `open_image_source` / `load_images` (training, the quick FD) may name
several folders/archives, as sharded data sets do: a glob ('data/train-*.zip') or a comma-separated list (a.zip,b.zip), items
of which may be globs. They are read as one set, archive by archive in sorted path order, each in
name order; names get the archive's stem as a prefix (train-00001/123.webp) so they stay unique.

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
import contextlib
import glob
import hashlib
import io
import json
import math
import os
import re
import sys
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, NamedTuple

import torch
from PIL import Image, features
from torchvision.transforms import functional as TF

from .files import write_json
from .monitor import track

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".avif")
# Per extension: the codec's name, its Pillow feature (None: always built in), how to get it, and
# the pack format to use instead.
_PILLOW = "pip install -U pillow"
CODECS = {".avif": ("AVIF", "avif", "pip install 'pillow>=11.3' or pillow-avif-plugin", "webp"),
          ".webp": ("WebP", "webp", _PILLOW, "png"), ".jpg": ("JPEG", "jpg", _PILLOW, "png"),
          ".jpeg": ("JPEG", "jpg", _PILLOW, "png"), ".png": ("PNG", "zlib", _PILLOW, "webp"),
          ".bmp": ("BMP", None, _PILLOW, "png")}
# A few unreadable files (a truncated download, a text file named .png) are skipped and counted;
# more than MAX_BAD_FILES and more than MAX_BAD_SHARE of the files means the data itself is wrong,
# and training on the rest would hide it.
MAX_BAD_FILES, MAX_BAD_SHARE = 3, 0.01
PROBES = 3  # files of each extension decoded up front; if none decodes, the whole format is suspect


class DataError(Exception):
    """Unusable data path; the message is one line and names the path."""


def _is_image_name(name: str) -> bool:
    base = os.path.basename(name)
    # Skip macOS resource forks and hidden files that Kaggle/Mac zips contain.
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

    def where(self, name: str) -> Path:
        """The archive or folder that holds image `name`."""
        return self.path

    def stamp(self) -> list | None:
        """What identifies this version of the files besides `entries` (which hold each file's size,
        and its mtime outside a zip): an archive's [size, mtime]; None for a folder."""
        if self.path.is_dir():
            return None
        st = self.path.stat()
        return [st.st_size, st.st_mtime]

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


_GLOB = re.compile(r"[*?[]")


def data_paths(spec: str | os.PathLike) -> list[Path]:
    """The folders and archives a data path names. A path that exists is itself; otherwise a
    comma-separated list whose items may be glob patterns ('data/train-*.zip', 'a.zip,b.zip',
    'x.tar,shards/*.zip'). Several paths are sorted, so their order does not depend on how they were
    listed. One-line DataError: a pattern that matches nothing, a listed path that does not exist,
    a path named twice."""
    text = os.fspath(spec)
    if os.path.exists(text) or ("," not in text and not _GLOB.search(text)):
        return [Path(text)]  # ImageSource says so if it does not exist
    paths: list[Path] = []
    inside = f" (in {text})" if "," in text else ""
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if _GLOB.search(item) and not os.path.exists(item):
            hits = sorted(glob.glob(item))
            if not hits:
                raise DataError(f"no file matches {item}{inside}")
            paths += [Path(h) for h in hits]
        elif not os.path.exists(item):
            raise DataError(f"data path does not exist: {item}{inside}")
        else:
            paths.append(Path(item))
    if not paths:
        raise DataError(f"no data path in {text!r}")
    seen: set[Path] = set()
    for p in paths:
        if p.resolve() in seen:
            raise DataError(f"{p} is named twice in {text}: its images would count twice")
        seen.add(p.resolve())
    return sorted(paths, key=str)


class MultiImageSource:
    """Several folders/archives read as one source (a sharded pack, or a data set in parts).

    Entries come archive by archive (paths sorted), each archive's sorted by name, so the order is
    stable. Names are prefixed with the archive's stem (`train-00001/123.webp`), or a longer part of
    its path where stems repeat, so they stay unique; `image_ids` ignores the prefix, so an image
    has the same id as in the unsharded pack."""

    def __init__(self, paths: list[Path], spec: str):
        self.path = Path(spec)  # what messages name
        self.sources = [ImageSource(p) for p in paths]
        self.entries: list[tuple[str, int, float]] = []
        self._owner: dict[str, tuple[ImageSource, str]] = {}
        for prefix, src in zip(_prefixes(paths), self.sources):
            for name, size, mtime in src.entries:
                full = f"{prefix}/{name}"
                self._owner[full] = (src, name)
                self.entries.append((full, size, mtime))

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, name: str) -> bytes:
        src, inner = self._owner[name]
        return src.read(inner)

    def where(self, name: str) -> Path:
        return self._owner[name][0].path

    def stamp(self) -> list:
        """[[path, size, mtime] per archive]; a folder's size and mtime are null (entries hold its files')."""
        return [[str(s.path), *(s.stamp() or [None, None])] for s in self.sources]


def _prefixes(paths: list[Path]) -> list[str]:
    """The shortest unique label per path: its stem, its name, or its path below the common folder."""
    common = Path(os.path.commonpath([p.absolute() for p in paths]))
    for label in (lambda p: p.stem, lambda p: p.name,
                  lambda p: p.absolute().relative_to(common).with_suffix("").as_posix(),
                  lambda p: p.absolute().relative_to(common).as_posix()):
        names = [label(p) for p in paths]
        if len(set(names)) == len(names):
            return names
    raise DataError(f"cannot name the images of {', '.join(map(str, paths))} apart")


def open_image_source(path: str | os.PathLike) -> ImageSource | MultiImageSource:
    """A folder, .zip or .tar; or several (a glob or a comma-separated list, `data_paths`) as one."""
    paths = data_paths(path)
    return ImageSource(paths[0]) if len(paths) == 1 else MultiImageSource(paths, os.fspath(path))


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


def codec_available(feature: str | None) -> bool:
    if feature is None:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an older Pillow warns about a feature it does not know
        return bool(features.check(feature))


def _one_line(e: BaseException) -> str:
    msg = re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", "", (str(e).strip().splitlines() or [""])[0])
    return f"{type(e).__name__}: {msg[:200]}"


class Decoding:
    """Decode `names` of a source in order, skipping unreadable files (listed in `.bad`).

    Refuses with a one-line DataError, before decoding thousands: an extension none of whose first
    PROBES files decodes (this Pillow lacks the codec, or the files are not what their name says)
    when it has more files than may be skipped; and, as it goes, more unreadable files than
    `allowed` = max(MAX_BAD_FILES, MAX_BAD_SHARE of the files).

        dec = Decoding(src, names, 64)
        for name, raw, image in dec.run(progress=True): ...   # then dec.bad"""

    def __init__(self, src, names: list[str], size: int):
        self.src, self.names, self.size = src, names, size
        self.allowed = max(MAX_BAD_FILES, int(MAX_BAD_SHARE * len(names)))
        self.bad: list[str] = []
        self.first_error: BaseException | None = None
        self._probed: dict[str, tuple[bytes, torch.Tensor | BaseException]] = {}
        by_ext: dict[str, list[str]] = {}
        for n in names:
            by_ext.setdefault(os.path.splitext(n)[1].lower(), []).append(n)
        for ext, group in by_ext.items():
            errors = []
            for name in group[:PROBES]:
                raw, got = self._decode(name)
                self._probed[name] = (raw, got)
                if not isinstance(got, BaseException):
                    break
                errors.append(got)
            else:  # no probe decoded
                if len(group) > self.allowed:
                    raise DataError(self._unreadable(ext, group[:PROBES], errors[0]))

    def _decode(self, name: str) -> tuple[bytes, torch.Tensor | BaseException]:
        raw = b""
        try:
            raw = self.src.read(name)
            return raw, decode_image(raw, self.size)
        except Exception as e:  # any reader or decoder error means "not a usable image"
            return raw, e

    def _unreadable(self, ext: str, tried: list[str], error: BaseException) -> str:
        codec, feature, install, instead = CODECS.get(ext, (ext.lstrip(".").upper(), None, _PILLOW, "png"))
        where = self.src.where(tried[0])
        if not codec_available(feature):
            return f"{where}: this Pillow cannot decode {codec} ({install}, or repack with --format {instead})"
        return (f"{where}: the first {len(tried)} {ext} files do not decode as {codec} ({', '.join(tried)}: "
                f"{_one_line(error)}); corrupt, or not {codec}: repack them")

    def run(self, progress: bool = False) -> Iterator[tuple[str, bytes, torch.Tensor]]:
        """(name, raw bytes, uint8 3×size×size) of every readable file, in order."""
        for name in track(self.names, f"decoding {self.src.path.name}", unit="image", enabled=progress):
            raw, got = self._probed.pop(name) if name in self._probed else self._decode(name)
            if isinstance(got, BaseException):
                self.bad.append(name)
                self.first_error = self.first_error or got
                if len(self.bad) > self.allowed:
                    raise DataError(
                        f"{self.src.path}: more than {self.allowed} of {len(self.names)} files do not decode "
                        f"({', '.join(self.bad[:3])} …: {_one_line(self.first_error)}); at most {MAX_BAD_FILES} "
                        f"files or {MAX_BAD_SHARE:.0%} are skipped: fix or repack the data")
                continue
            yield name, raw, got


def load_images(path: str | os.PathLike, size: int = 64, limit: int | None = None,
                progress: bool = False, names: list[str] | None = None) -> LoadedImages:
    """Decode all (or the first `limit`, or the `names` given) images of a source; skip and count a
    few bad files, refuse data that mostly does not decode (`Decoding`)."""
    src = open_image_source(path)
    names = [e[0] for e in src.entries][:limit] if names is None else names
    dec = Decoding(src, names, size)
    out, kept = [], []
    for name, _, x in dec.run(progress):
        out.append(x)
        kept.append(name)
    bad = dec.bad
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
    paths: tuple[str, ...] = ()  # the archives written: OUT, or its shards OUT-00000.EXT, …


ZIP_END = 22  # a zip's end-of-central-directory record
TAR_END, TAR_RECORD = 1024, tarfile.RECORDSIZE  # two zero blocks; the file is padded to whole records


class ArchiveWriter:
    """Members into OUT.zip / OUT.tar, or with `shard_mib` into shards OUT-00000.EXT, OUT-00001.EXT, …
    of at most that many MiB each (a member's cost is counted before it is added). Everything is written
    to temporary files that `commit` moves into place, then removing shards a larger earlier pack
    left (a glob would pick them up); `abort` removes them."""

    def __init__(self, out_path: str, shard_mib: float | None = None):
        self.out, self.shard_mib = out_path, shard_mib
        self.limit = None if shard_mib is None else int(shard_mib * 2 ** 20)  # bytes
        self.base, self.ext = os.path.splitext(out_path)
        self.as_zip = self.ext.lower() == ".zip"  # a tar pads each small file to 512-byte blocks; a zip does not
        self.finals: list[str] = []
        self.arc = None
        self.used = 0  # bytes of the current archive, its end records not counted

    def _cost(self, name: str, n_bytes: int) -> int:
        b = len(name.encode("utf-8"))
        if self.as_zip:  # local header + data, central directory entry (no extra fields at these sizes)
            return 30 + b + n_bytes + 46 + b
        # header and data in 512-byte blocks; a long or non-ASCII name adds a pax header and its records
        pax = 0 if b < 100 and name.isascii() else 512 + 512 * math.ceil((b + 128) / 512)
        return pax + 512 + 512 * math.ceil(n_bytes / 512)

    def _size(self, used: int, cost: int) -> int:
        """The archive's size on disk with `used` bytes of members and one more costing `cost`."""
        if self.as_zip:
            return used + cost + ZIP_END
        return TAR_RECORD * math.ceil((used + cost + TAR_END) / TAR_RECORD)

    def _open_next(self) -> None:
        self.close_current()
        final = f"{self.base}-{len(self.finals):05d}{self.ext}" if self.limit else self.out
        self.finals.append(final)
        tmp = final + ".tmp"
        self.arc = zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) if self.as_zip else tarfile.open(tmp, "w")
        self.used = 0

    def add(self, name: str, raw: bytes, mtime: float) -> None:
        cost = self._cost(name, len(raw))
        if self.limit and self._size(0, cost) > self.limit:
            raise DataError(f"{name} ({len(raw)} bytes) does not fit in a {self.shard_mib:g} MiB shard; "
                            "raise --shard-mib")
        if self.arc is None or (self.limit and self._size(self.used, cost) > self.limit):
            self._open_next()
        if self.as_zip:
            self.arc.writestr(name, raw)
        else:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(raw), int(mtime)
            self.arc.addfile(info, io.BytesIO(raw))
        self.used += cost

    def close_current(self) -> None:
        if self.arc is not None:
            self.arc.close()
            self.arc = None

    def commit(self) -> tuple[str, ...]:
        self.close_current()
        for final in self.finals:
            os.replace(final + ".tmp", final)
        if self.limit:
            k = len(self.finals)
            while os.path.exists(stale := f"{self.base}-{k:05d}{self.ext}"):
                os.unlink(stale)
                k += 1
        return tuple(self.finals)

    def abort(self) -> None:
        self.close_current()
        for final in self.finals:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(final + ".tmp")


def pack_archive(src_path: str, out_path: str, size: int = 64, fmt: str = "webp", quality: int = 90,
                 limit: int | None = None, shard_mib: float | None = None) -> PackResult:
    """Write the first `limit` images of a source (sorted names) to a .tar or .zip, preprocessed to
    size×size and encoded as `fmt`, or with their original bytes (`keep`). For webp/jpeg/avif, also
    measures what the compression costs: the PSNR of the decoded pack against the preprocessed images.
    With `shard_mib`, the images go in order into OUT-00000.EXT, OUT-00001.EXT, … of at most that many
    MiB each, which load together (`--data 'OUT-*.EXT'`) as the unsharded pack."""
    if fmt not in PACK_FORMATS:
        raise DataError(f"--format must be one of {', '.join(PACK_FORMATS)}, got {fmt!r}")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be in 1..100, got {quality}")
    if shard_mib is not None and not shard_mib > 0:
        raise DataError(f"--shard-mib must be > 0, got {shard_mib}")
    Image.init()
    if fmt != "keep" and PACK_FORMATS[fmt] not in Image.SAVE:
        codec, _, install, instead = CODECS["." + fmt if fmt != "jpeg" else ".jpg"]
        raise DataError(f"this Pillow cannot encode {codec} ({install}, or choose --format {instead})")
    src = open_image_source(src_path)
    entries = src.entries[:limit]
    mtimes = {name: mtime for name, _, mtime in entries}
    sq_err, n_px = 0.0, 0
    lossy = fmt in ("webp", "jpeg", "avif")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    out = ArchiveWriter(out_path, shard_mib)
    skipped = written = 0
    try:
        if fmt == "keep":
            dec = None
            members = ((name, src.read(name), None) for name, _, _ in entries)
        else:
            dec = Decoding(src, [e[0] for e in entries], size)
            members = _encoded_members(dec.run(), fmt, quality)
        for name, raw, x in members:
            if lossy:
                y = decode_image(raw, size)
                sq_err += float(((y.float() - x.float()) ** 2).sum())
                n_px += x.numel()
            out.add(name if fmt == "keep" else os.path.splitext(name)[0] + "." + fmt, raw, mtimes[name])
            written += 1
        skipped = len(dec.bad) if dec else 0
        if not written:
            raise DataError(f"no readable image in {src_path}")
        paths = out.commit()
    except BaseException:
        out.abort()
        raise
    psnr = None
    if lossy:
        psnr = float("inf") if sq_err == 0 else 10 * math.log10(255 ** 2 / (sq_err / n_px))
    return PackResult(written, skipped, psnr, paths)


def _encoded_members(decoded, fmt: str, quality: int):
    """(name, encoded bytes, the preprocessed image) per decoded image."""
    for name, _, x in decoded:
        buf = io.BytesIO()
        TF.to_pil_image(x).save(buf, PACK_FORMATS[fmt], quality=quality, **PACK_OPTIONS.get(fmt, {}))
        yield name, buf.getvalue(), x


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
    pp.add_argument("src", help="folder, .zip or .tar of images (several: a glob or a comma-separated list)")
    pp.add_argument("out", help="output .tar, or .zip (smaller for many small files)")
    pp.add_argument("--size", type=int, default=64, help="image side after Resize + CenterCrop (default: 64)")
    pp.add_argument("--format", default="webp", choices=tuple(PACK_FORMATS),
                    help="webp / jpeg / avif (lossy, --quality; avif in 4:4:4), png (lossless) or keep (original "
                         "bytes, no preprocessing) (default: webp)")
    pp.add_argument("--quality", type=int, default=90, help="webp/jpeg/avif quality 1..100 (default: 90)")
    pp.add_argument("--limit", type=int, default=None, help="only the first N images by name")
    pp.add_argument("--shard-mib", type=float, default=None, metavar="N",
                    help="write OUT-00000.EXT, OUT-00001.EXT, … of at most N MiB each instead of OUT; they load "
                         "together with --data 'OUT-*.EXT' as the one pack would")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            n, bad, psnr, paths = pack_archive(args.src, args.out, args.size, args.format, args.quality, args.limit,
                                               args.shard_mib)
            extra = f", skipped {bad} unreadable" if bad else ""
            extra += f"; PSNR {psnr:.1f} dB against the {args.size}×{args.size} preprocessed images" \
                if psnr is not None else ""
            mb = sum(os.path.getsize(p) for p in paths) / 1e6
            if args.shard_mib is None:
                print(f"wrote {args.out} ({n} images, {mb:.1f} MB{extra})")
            else:
                base, ext = os.path.splitext(args.out)
                which = paths[0] if len(paths) == 1 else f"{paths[0]} … {paths[-1]}"
                print(f"wrote {len(paths)} shard(s) of at most {args.shard_mib:g} MiB, {which} ({n} images, "
                      f"{mb:.1f} MB{extra}); read them together with --data '{base}-*{ext}'")
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
