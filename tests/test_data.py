import hashlib
import json
import io
import math
import os
import re
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.data import DataError, load_images, open_image_source, split_archive


def _png(mode, size=(30, 20), color=None):
    im = Image.new(mode, size, color if color is not None else 128)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size=(40, 40)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def messy(tmp_path):
    d = tmp_path / "messy"
    (d / "sub").mkdir(parents=True)
    (d / "good.jpg").write_bytes(_jpeg())
    (d / "sub" / "gray.png").write_bytes(_png("L"))
    (d / "rgba.png").write_bytes(_png("RGBA", color=(255, 0, 0, 0)))  # fully transparent red
    (d / "palette.png").write_bytes(_png("P"))
    (d / "photo.webp").write_bytes(b"")  # zero bytes
    (d / "corrupt.jpg").write_bytes(_jpeg()[:200])  # truncated JPEG
    (d / "notes.png").write_text("this is text, not a PNG")
    (d / "readme.txt").write_text("ignored: not an image extension")
    return d


def test_folder_with_bad_files_skips_and_counts(messy, capsys):
    data = load_images(messy, size=16)
    assert data.images.shape == (4, 3, 16, 16) and data.images.dtype == torch.uint8
    assert sorted(data.names) == ["good.jpg", "palette.png", "rgba.png", "sub/gray.png"]
    assert data.skipped == 3
    err = capsys.readouterr().err
    assert err.count("skipped 3 unreadable") == 1  # reported once
    # Transparent pixels are composited on white, grayscale becomes 3 equal channels.
    rgba = data.images[data.names.index("rgba.png")]
    assert (rgba == 255).all()
    gray = data.images[data.names.index("sub/gray.png")]
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all() and (gray == 128).all()


def test_resize_then_center_crop():
    # A 40×20 image whose left and right quarters are black: after Resize(8) → 16×8, crop 8×8 keeps the middle.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10:30] = 200
    from animegan.data import decode_image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    out = decode_image(buf.getvalue(), 8)
    assert out.shape == (3, 8, 8)
    assert out[:, :, 2:6].float().mean() > 190


def _fill(archive_add, names):
    for n in names:
        archive_add(n, _jpeg() if n.endswith(".jpg") else _png("RGB"))


def test_zip_like_kaggle_and_tar(tmp_path):
    z = tmp_path / "faces.zip"
    with zipfile.ZipFile(z, "w") as zf:
        _fill(zf.writestr, ["images/a.jpg", "images/b.png", "__MACOSX/images/._a.jpg", "images/.hidden.png"])
        zf.writestr("images/bad.jpg", b"garbage")
    data = load_images(z, size=8)
    assert data.names == ["images/a.jpg", "images/b.png"] and data.skipped == 1

    t = tmp_path / "faces.tar"
    with tarfile.open(t, "w") as tf:
        def add(name, raw):
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
        _fill(add, ["x/1.jpg", "x/2.png", "x/3.jpg"])
    data = load_images(t, size=8)
    assert data.images.shape == (3, 3, 8, 8) and data.skipped == 0
    assert [e[0] for e in open_image_source(t).entries] == ["x/1.jpg", "x/2.png", "x/3.jpg"]


def test_bad_paths_raise_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_images(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("nope")
    with pytest.raises(DataError, match="no readable image") as e:
        load_images(bad)
    assert "\n" not in str(e.value)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_images(tmp_path / "file.txt")


def names_in(tar):
    return [e[0] for e in open_image_source(tar).entries]


def test_split_is_three_way_deterministic_and_disjoint(tiny_images, tmp_path):
    held = [("test", 5), ("select", 3)]
    assert split_archive(str(tiny_images), str(tmp_path / "s1"), held) == {"test": 5, "select": 3, "train": 16}
    split_archive(str(tiny_images), str(tmp_path / "s2"), held)
    parts = {p: names_in(tmp_path / "s1" / f"{p}.tar") for p in ("train", "select", "test")}
    for p, names in parts.items():
        assert names == names_in(tmp_path / "s2" / f"{p}.tar")
        assert (tmp_path / "s1" / f"{p}.tar").read_bytes() == (tmp_path / "s2" / f"{p}.tar").read_bytes()
    assert sum(len(v) for v in parts.values()) == 24 and len(set().union(*parts.values())) == 24
    # the rule: sha256 of the file name; first --test, next --select, the rest train
    by_hash = sorted(os.listdir(tiny_images), key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    assert sorted(parts["test"]) == sorted(by_hash[:5]) and sorted(parts["select"]) == sorted(by_hash[5:8])
    # the older two-way split holds out the same first 8: train.tar is byte-identical
    assert split_archive(str(tiny_images), str(tmp_path / "v"), [("val", 8)]) == {"val": 8, "train": 16}
    assert (tmp_path / "v" / "train.tar").read_bytes() == (tmp_path / "s1" / "train.tar").read_bytes()
    assert sorted(names_in(tmp_path / "v" / "val.tar")) == sorted(parts["test"] + parts["select"])
    assert not list((tmp_path / "s1").glob("*.tmp"))


def test_split_groups_duplicates_by_content(tiny_images, tmp_path):
    """A byte-different copy with identical pixels and a near-identical variant are one face: one file is
    kept, in the part of the group's last file by the name order, and split.json lists the others."""
    by_hash = lambda names: sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())  # noqa: E731
    first = by_hash(os.listdir(tiny_images))[0]  # a test face under the name rule
    img = np.asarray(Image.open(tiny_images / first))
    Image.fromarray(img).save(tiny_images / "copy_same_pixels.bmp")  # other bytes, same pixels
    variant = img.astype(int)
    variant[:2, :2] = 255 - variant[:2, :2]  # a small local change: an "expression variant"
    Image.fromarray(variant.clip(0, 255).astype(np.uint8)).save(tiny_images / "variant.png")
    counts = split_archive(str(tiny_images), str(tmp_path / "s"), [("test", 5), ("select", 3)])
    assert sum(counts.values()) == 24  # 26 files, 24 faces
    manifest = json.loads((tmp_path / "s" / "split.json").read_text())
    assert manifest["duplicates"]["groups"] == 1 and manifest["duplicates"]["files_dropped"] == 2
    (group,) = manifest["duplicates"]["kept_and_dropped"]
    assert sorted(group) == sorted([first, "copy_same_pixels.bmp", "variant.png"])
    kept, last = group[0], by_hash(group)[-1]
    assert kept == by_hash(group)[0]  # the first file of the group by the name order is kept
    parts = {p: names_in(tmp_path / "s" / f"{p}.tar") for p in ("train", "select", "test")}
    home = [p for p, names in parts.items() if kept in names]
    assert len(home) == 1 and not any(n in names for names in parts.values() for n in group[1:])
    # the group is placed by its last file: the same part a lone file with that name would get
    faces = by_hash([n for n in os.listdir(tiny_images) if n not in group] + [last])
    rank = faces.index(last)
    assert home == ["test" if rank < 5 else "select" if rank < 8 else "train"]


def test_content_groups_chain_and_keep_distinct_faces_apart():
    from animegan.data import content_groups
    g = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)
    near = faces[1].clone()
    near[:, :2, :2] = 0  # a few pixels off: still the same drawing
    images = torch.stack([faces[0], faces[1], faces[2], near, faces[0].clone(), faces[3]])
    assert content_groups(images) == [[0, 4], [1, 3], [2], [5]]
    assert content_groups(images, near=0) == [[0, 4], [1], [2], [3], [5]]  # exact pixels only


def test_split_cli_sizes_and_bad_input(tiny_images, tmp_path, capsys):
    from animegan.data import main as data_main
    assert data_main(["split", str(tiny_images), "--out", str(tmp_path / "o"), "--select", "2", "--test", "3"]) == 0
    assert "test.tar (3 images)" in capsys.readouterr().out and len(names_in(tmp_path / "o" / "select.tar")) == 2
    assert data_main(["split", str(tiny_images), "--out", str(tmp_path / "v"), "--val", "4"]) == 0
    assert sorted(os.listdir(tmp_path / "v")) == ["split.json", "train.tar", "val.tar"]
    capsys.readouterr()
    for bad in (["--val", "3", "--test", "2"], ["--select", "20", "--test", "4"], ["--test", "0"]):
        assert data_main(["split", str(tiny_images), "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_pack_preprocesses_or_keeps_bytes(messy, tmp_path, capsys):
    from animegan.data import main as data_main
    from animegan.data import pack_archive
    ref = load_images(messy, size=16)
    # png: lossless, so loading the pack gives the very same tensors; bad files are skipped
    n, bad, psnr, paths = pack_archive(str(messy), str(tmp_path / "p.tar"), size=16, fmt="png")
    packed = load_images(tmp_path / "p.tar", size=16)
    assert (n, bad, psnr, paths) == (len(ref.names), ref.skipped, None, (str(tmp_path / "p.tar"),))
    assert torch.equal(packed.images, ref.images)
    assert [os.path.splitext(x)[0] for x in packed.names] == [os.path.splitext(x)[0] for x in ref.names]
    # webp: lossy but close, and already at the training size
    res = pack_archive(str(messy), str(tmp_path / "w.zip"), size=16, fmt="webp", quality=90)
    w = load_images(tmp_path / "w.zip", size=16)
    assert w.images.shape == ref.images.shape
    assert (w.images.float() - ref.images.float()).abs().mean() < 12
    # the reported PSNR is that of the pack as training loads it
    mse = ((w.images.float() - ref.images.float()) ** 2).mean().item()
    assert res.psnr == pytest.approx(10 * math.log10(255 ** 2 / mse), rel=1e-4)
    low = pack_archive(str(messy), str(tmp_path / "w10.zip"), size=16, fmt="jpeg", quality=10).psnr
    assert low < res.psnr
    assert data_main(["pack", str(messy), str(tmp_path / "w2.zip"), "--size", "16"]) == 0
    assert f"PSNR {res.psnr:.1f} dB" in capsys.readouterr().out
    # keep + limit: the first N entries, byte for byte
    assert data_main(["pack", str(messy), str(tmp_path / "k.tar"), "--format", "keep", "--limit", "2"]) == 0
    src, kept = open_image_source(messy), open_image_source(tmp_path / "k.tar")
    assert [e[0] for e in kept.entries] == [e[0] for e in src.entries][:2]
    assert all(kept.read(e[0]) == src.read(e[0]) for e in kept.entries)
    # bad input: one line, exit 2, nothing written
    assert data_main(["pack", str(messy), str(tmp_path / "q.tar"), "--quality", "0"]) == 2
    assert data_main(["pack", str(tmp_path / "nope"), str(tmp_path / "q.tar")]) == 2
    assert not (tmp_path / "q.tar").exists()
    assert capsys.readouterr().err.count("error:") == 2


def _image_zip(path, names, make):
    with zipfile.ZipFile(path, "w") as zf:
        for n in names:
            zf.writestr(n, make(n))
    return path


def _encoded(fmt, seed=0, size=(12, 12)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def test_a_format_this_pillow_cannot_decode_is_refused_up_front(tmp_path, monkeypatch):
    """A pack in a codec this Pillow lacks (as AVIF before Pillow 11.3) fails on every file: refused
    with one line naming the codec and the fix, after a few probes, not after decoding everything."""
    from PIL import features

    import animegan.data as data_mod
    avif = "AVIF" if features.check("avif") else "PNG"  # real AVIF bytes where this Pillow can write them
    z = _image_zip(tmp_path / "train-00000.zip", [f"{i:03d}.avif" for i in range(40)] + ["x.png"],
                   lambda n: _encoded(avif if n.endswith(".avif") else "PNG", seed=len(n)))
    Image.init()
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "AVIF"])  # what a Pillow without AVIF knows
    real_check = features.check
    monkeypatch.setattr(features, "check", lambda f: False if f == "avif" else real_check(f))
    tries = []
    real_decode = data_mod.decode_image
    monkeypatch.setattr(data_mod, "decode_image", lambda raw, size: tries.append(1) or real_decode(raw, size))
    with pytest.raises(DataError) as e:
        load_images(z, size=8)
    assert str(e.value) == (f"{z}: this Pillow cannot decode AVIF (pip install 'pillow>=11.3' or "
                            "pillow-avif-plugin, or repack with --format webp)")
    assert len(tries) <= 4  # probes, not 41 decodes


def test_a_format_whose_files_do_not_decode_is_refused_naming_it(tmp_path):
    """The codec is there but the first files of a kind are not what their name says: refused."""
    z = _image_zip(tmp_path / "faces.zip", [f"{i:03d}.webp" for i in range(20)] + ["a.png"],
                   lambda n: b"not a webp at all" if n.endswith(".webp") else _encoded("PNG"))
    with pytest.raises(DataError, match=r"faces\.zip: the first 3 \.webp files do not decode as WebP") as e:
        load_images(z, size=8)
    assert "\n" not in str(e.value)


def test_one_corrupt_file_among_many_is_skipped_and_counted(tmp_path, capsys):
    names = [f"{i:03d}.png" for i in range(60)]
    z = _image_zip(tmp_path / "faces.zip", names, lambda n: _encoded("PNG", seed=int(n[:3]))[:40]
                   if n == "007.png" else _encoded("PNG", seed=int(n[:3])))
    data = load_images(z, size=8)
    assert len(data.names) == 59 and "007.png" not in data.names and data.skipped == 1
    assert "skipped 1 unreadable file(s) of 60" in capsys.readouterr().err


def test_a_set_with_many_corrupt_files_is_refused(tmp_path):
    """30 % broken is not a few bad files to skip: the data is wrong, and training on the rest would
    hide it."""
    names = [f"{i:03d}.png" for i in range(60)]
    z = _image_zip(tmp_path / "faces.zip", names,
                   lambda n: _encoded("PNG")[:40] if int(n[:3]) % 10 in (4, 5, 6) else _encoded("PNG"))
    with pytest.raises(DataError, match=r"faces\.zip: more than 3 of 60 files do not decode") as e:
        load_images(z, size=8)
    assert "\n" not in str(e.value)


def test_pack_refuses_a_format_this_pillow_cannot_write(tiny_images, tmp_path, monkeypatch):
    from animegan.data import pack_archive
    Image.init()
    monkeypatch.setattr(Image, "SAVE", {k: v for k, v in Image.SAVE.items() if k != "AVIF"})
    with pytest.raises(DataError, match=r"^this Pillow cannot encode AVIF \(pip install 'pillow>=11\.3'"):
        pack_archive(str(tiny_images), str(tmp_path / "a.zip"), size=8, fmt="avif")
    assert not (tmp_path / "a.zip").exists()


# ---- several archives as one data set, and sharded packs


def _pngs_zip(path, names, seed=0):
    return _image_zip(path, names, lambda n: _encoded("PNG", seed=seed + sum(map(ord, n))))


def test_several_archives_as_one_source_glob_or_list(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    names = [f"{i:03d}.png" for i in range(4)]  # the same names in both: prefixed by archive stem
    a, b = _pngs_zip(d / "train-00000.zip", names), _pngs_zip(d / "train-00001.zip", names, seed=7)
    src = open_image_source(f"{d}/train-*.zip")
    assert [e[0] for e in src.entries] == [f"train-0000{k}/{n}" for k in (0, 1) for n in names]
    assert src.read("train-00001/002.png") == open_image_source(b).read("002.png")
    assert src.where("train-00000/001.png") == a and len(src) == 8
    by_glob = load_images(f"{d}/train-*.zip", size=8)
    by_list = load_images(f"{b},{a}", size=8)  # listed in any order: archives are sorted by path
    assert by_glob.names == by_list.names and torch.equal(by_glob.images, by_list.images)
    assert torch.equal(by_glob.images[:4], load_images(a, size=8).images)
    assert torch.equal(by_glob.images[4:], load_images(b, size=8).images)
    # one match is that archive itself; archives with the same stem get longer prefixes
    assert open_image_source(f"{d}/*-00001.zip").entries == open_image_source(b).entries
    (tmp_path / "e").mkdir()
    c = _pngs_zip(tmp_path / "e" / "train-00000.zip", names[:1])
    assert [e[0] for e in open_image_source(f"{a},{c}").entries][-1] == "e/train-00000/000.png"
    # what identifies the archives' versions (for caches keyed on the data)
    st = a.stat()
    assert open_image_source(a).stamp() == [st.st_size, st.st_mtime]
    assert open_image_source(f"{d}/train-*.zip").stamp() == [[str(p), p.stat().st_size, p.stat().st_mtime]
                                                             for p in (a, b)]


def test_several_archives_bad_specs_are_one_line_errors(tmp_path):
    a = _pngs_zip(tmp_path / "a.zip", ["x.png"])
    cases = [(f"{tmp_path}/nope-*.zip", f"no file matches {tmp_path}/nope-*.zip"),
             (f"{a},{tmp_path}/b.zip", f"data path does not exist: {tmp_path}/b.zip (in {a},"),
             (f"{a},{tmp_path}/*.zip", f"{a} is named twice in"),
             (" , ", "no data path in")]
    for spec, msg in cases:
        with pytest.raises(DataError, match=re.escape(msg)) as e:
            load_images(spec, size=8)
        assert "\n" not in str(e.value)


def test_sharded_pack_loads_as_the_whole_pack(tiny_images, tmp_path, capsys):
    """--shard-mib N: OUT-00000.zip, OUT-00001.zip, … each at most N MiB, which together load as
    the unsharded pack does: the same images in the same order, with the same image ids."""
    from animegan.data import image_ids, pack_archive
    from animegan.data import main as data_main
    whole = load_images(tmp_path / "all.zip", size=16) if pack_archive(
        str(tiny_images), str(tmp_path / "all.zip"), size=16, fmt="png").written else None
    for ext, mib in ((".zip", 0.003), (".tar", 0.01)):
        res = pack_archive(str(tiny_images), str(tmp_path / f"train{ext}"), size=16, fmt="png", shard_mib=mib)
        shards = sorted(tmp_path.glob(f"train-*{ext}"))
        assert [str(p) for p in shards] == list(res.paths) and len(shards) >= 3
        assert [p.name for p in shards] == [f"train-{k:05d}{ext}" for k in range(len(shards))]
        assert all(p.stat().st_size <= mib * 2 ** 20 for p in shards)
        assert not (tmp_path / f"train{ext}").exists() and not list(tmp_path.glob("*.tmp"))
        got = load_images(f"{tmp_path}/train-*{ext}", size=16)
        assert torch.equal(got.images, whole.images) and image_ids(got.names) == image_ids(whole.names)
    # a repack into fewer shards leaves no stale shard for the glob to pick up
    assert data_main(["pack", str(tiny_images), str(tmp_path / "train.zip"), "--format", "png", "--size", "16",
                      "--shard-mib", "1"]) == 0
    assert [p.name for p in tmp_path.glob("train-*.zip")] == ["train-00000.zip"]
    out = capsys.readouterr().out
    assert f"{tmp_path}/train-00000.zip" in out and f"--data '{tmp_path}/train-*.zip'" in out
    with pytest.raises(DataError, match="does not fit in a 0.0001 MiB shard"):
        pack_archive(str(tiny_images), str(tmp_path / "tiny.zip"), size=16, fmt="png", shard_mib=0.0001)
    assert not list(tmp_path.glob("tiny*"))
