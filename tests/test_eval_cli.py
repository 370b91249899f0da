"""`python -m eval.fid` end to end on tiny synthetic sets, and its bad-input handling."""
import json
from pathlib import Path

import pytest
import torch

from animegan.checkpoint import export_generator
from animegan.models import Generator
from eval import cli
from eval.testing import write_images

FAST = ["--n", "20", "--kid-subsets", "5", "--ndb-k", "4", "--fid-spread", "3", "--ct-cells", "1", "--rulers", "effnet"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    torch.manual_seed(0)
    export_generator(Generator(ngf=8), root / "gen")
    return {"root": root, "gen": root / "gen", "real": write_images(root / "real", 48, seed=1),
            "train": write_images(root / "train", 30, seed=2), "fake": write_images(root / "fake", 24, seed=3),
            "cache": root / "cache"}


def run(args, capsys):
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_end_to_end_report_and_warm_cache(sets, tmp_path, capsys):
    args = ["--ckpt", sets["gen"], "--fake", sets["fake"], "--real", sets["real"], "--train", sets["train"],
            "--cache-dir", sets["cache"], *FAST]
    rc, out, err = run(args + ["--out", tmp_path / "a"], capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert [m["name"] for m in rep["models"]] == ["gen", "fake"]
    assert rep["baseline"]["name"] == "real-vs-real" and rep["baseline"]["n"] == 20
    assert rep["ceiling"]["name"] == "random-init" and rep["ceiling"]["kind"] == "ceiling"
    assert rep["schema"] == 2 and rep["protocol"]["rulers"] == ["effnet"]
    assert rep["protocol"]["features"] == "effnet-lite0" and rep["protocol"]["n"] == 20
    assert rep["real"]["from_cache"] == {"effnet": False} and rep["real"]["train_n"] == 30
    for row in rep["models"] + [rep["baseline"], rep["ceiling"]]:
        m = row["metrics"]
        assert {"fid", "fid_std", "kid", "precision", "recall", "density", "coverage", "collapse",
                "near_dup_rate", "ndb_over_k", "js", "vendi", "ct", "memorisation"} <= set(m)
        assert m["fid"] >= -1e-3 and 0 <= m["coverage"] <= 1 and m["memorisation"] > 0 and m["fid_std"] > 0
        assert 1 <= m["vendi"] <= row["n"]
    # The untrained generator is far from the data; a second real split is close to it.
    gen, base = rep["models"][0]["metrics"], rep["baseline"]["metrics"]
    assert gen["fid"] > 2 * base["fid"] and gen["coverage"] < base["coverage"]
    assert gen["ct"] > 3 and abs(base["ct"]) < 3  # far from the training set: underfitting, not "fine"
    md = (tmp_path / "a" / "report.md").read_text()
    assert "real-vs-real" in md and "effnet-lite0" in md
    assert "underfitting" in md and "no evidence of copying" in md and "distinct faces per 20" in md
    assert "## The panel" in md and "## Where the time went" in md
    for name in ["samples_gen.png", "closest_pairs_gen.png", "memorisation_gen.png", "nn_distances_gen.png",
                 "samples_real-vs-real.png"]:
        assert (tmp_path / "a" / name).stat().st_size > 0 and f"]({name})" in md
    assert "real-vs-real" in out and "FID" in out
    # how lopsided each histogram is, from the same shares as the report's NDB
    from eval.report import bin_concentration
    ndb = rep["models"][0]["ndb"]
    c = bin_concentration(ndb, top=2)
    assert len(c["bins"]) == 2 and ndb["fake_share"][c["bins"][0]] == max(ndb["fake_share"])
    assert c["fake_share"] == pytest.approx(sum(sorted(ndb["fake_share"])[-2:]))
    assert c["empty_bins"] == sum(f == 0 for f in ndb["fake_share"]) and c["k"] == ndb["k"] == len(ndb["real_share"])
    assert "fullest bins" in md
    # Warm cache: the same real set is not extracted again, and the numbers do not move.
    rc, _, err = run(args + ["--out", tmp_path / "b"], capsys)
    assert rc == 0, err
    rep2 = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep2["real"]["from_cache"] == {"effnet": True}
    assert rep2["baseline"]["metrics"]["fid"] == pytest.approx(base["fid"], rel=1e-6)
    assert rep2["models"][0]["metrics"]["fid"] == pytest.approx(gen["fid"], rel=1e-4)


def test_n_larger_than_real_set_and_corrupt_image_warn(sets, tmp_path, capsys):
    real = write_images(tmp_path / "real", 44, seed=4)
    (real / "zz_corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rc, _, err = run(["--fake", sets["fake"], "--real", real, "--n", "100", "--kid-subsets", "5", "--no-cache",
                      "--rulers", "effnet,swd", "--out", tmp_path / "o"], capsys)
    assert rc == 0, err
    assert "skipped 1 unreadable" in err and "fewer than 2×--n=200" in err and "using n=22" in err
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["protocol"]["n"] == 22 and rep["real"]["skipped"] == 1 and rep["warnings"]
    # every ruler of the panel scores every row, the floor and the ceiling too, each with its paired spread
    assert rep["protocol"]["rulers"] == ["effnet", "swd"]
    for row in rep["models"] + [rep["baseline"], rep["ceiling"]]:
        assert {"swd", "swd_64", "swd_32", "swd_16", "swd_std", "fid", "fid_std"} <= set(row["metrics"])
    assert rep["ceiling"]["metrics"]["swd"] > 2 * rep["baseline"]["metrics"]["swd"]
    assert rep["verdict"] is None  # one image set: nothing to compare it with


def test_selection_overlap_warns(sets, tmp_path):
    from animegan.data import open_image_source
    from animegan.data import image_ids
    from eval.evaluate import Candidate, _overlap, _selection
    real_names = [e[0] for e in open_image_source(sets["real"]).entries]
    torch.manual_seed(1)
    info = {"selection": {"source": "select.tar", "n": 4, "image_ids": image_ids(real_names[:4])}}
    export_generator(Generator(ngf=8), tmp_path / "chosen", extra=info)
    spec = Candidate("chosen", "generator", str(tmp_path / "chosen"), selection=_selection(str(tmp_path / "chosen")))
    assert _selection(str(sets["gen"])) is None  # no record: nothing to check
    notes = []
    used = set(image_ids([Path(n).stem + ".webp" for n in real_names[:40]]))  # ids ignore the format
    assert _overlap(spec, used, 40, notes) == {"source": "select.tar", "n": 4, "overlap": 4}
    assert len(notes) == 1 and "selected on 4 of the 40 real images" in notes[0] and "--exclude" in notes[0]
    assert _overlap(spec, set(image_ids(real_names[4:44])), 40, notes)["overlap"] == 0 and len(notes) == 1


def one_line_error(rc, out, err, *words):
    assert rc == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_one_line_and_exit_2(sets, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes(b"nope")
    one = tmp_path / "one"  # one training image: fewer than C_T's 5 cells
    one.mkdir()
    (one / "a.png").write_bytes(next(Path(sets["real"]).iterdir()).read_bytes())
    notgen = tmp_path / "notgen"
    notgen.mkdir()
    (notgen / "weights.bin").write_bytes(b"x")
    base = ["--cache-dir", sets["cache"], "--out", tmp_path / "r", *FAST]
    one_line_error(*run(["--ckpt", sets["gen"], "--real", tmp_path / "missing", *base], capsys), "missing")
    one_line_error(*run(["--ckpt", sets["gen"], "--real", empty, *base], capsys), "empty")
    one_line_error(*run(["--ckpt", notgen, "--real", sets["real"], *base], capsys), "notgen")
    one_line_error(*run(["--fake", empty, "--real", sets["real"], *base], capsys), "empty")
    one_line_error(*run(["--fake", corrupt, "--real", sets["real"], *base], capsys), "no readable image")
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], "--features", "nope", *base], capsys),
                   "unknown feature extractor")
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], "--n", "5", *base[:4]], capsys), "--n")
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], *base, "--rulers", "effnet,ruler9"], capsys),
                   "unknown ruler 'ruler9'")
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], "--exclude", tmp_path / "gone", *base],
                        capsys), "gone")
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], *base, "--fid-spread", "1"], capsys),
                   "--fid-spread")
    for flag in ("--ndb-k", "--kid-subsets", "--batch-size", "--size"):
        one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], *base, flag, "0"], capsys), flag)
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], "--train", one, *base, "--ct-cells", "5"],
                        capsys), "--ct-cells")
    assert not (tmp_path / "r").exists()  # nothing half-written
    with pytest.raises(SystemExit) as e:  # argparse: neither --ckpt nor --fake
        cli.main(["--real", str(sets["real"])])
    assert e.value.code == 2


def test_inception_offline_exits_2_naming_alternatives(sets, tmp_path, capsys, monkeypatch):
    import urllib.error

    import torch_fidelity.feature_extractor_inceptionv3 as inc

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(inc, "load_state_dict_from_url", offline)
    one_line_error(*run(["--fake", sets["fake"], "--real", sets["real"], "--features", "inception",
                         "--out", tmp_path / "r", *FAST], capsys), "--inception-weights", "effnet-lite0")
