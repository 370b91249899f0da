"""The Judge tab's storage, tokens and statistics (demo.votes), and its logic in-process (demo.judge).

    pytest tests/test_votes.py          # a few seconds, offline

The running app (endpoints, a real browser, kill -9, 20 clients) is tests/test_votes_app.py.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import demo.votes as votes
from demo.votes import (HubSync, RateLimit, SetupError, Ticket, Tokens, VoteError, VoteStore, load_key, summary_lines,
                        votes_needed, votes_to_detect, wilson)

ROOT = Path(__file__).resolve().parents[1]
KEY = b"k" * 32
MODELS_FP = "0123456789ab"


# ---- statistics: known answers ------------------------------------------------------------

def _wilson_by_hand(k, n, z=1.96):
    """The textbook formula, written out again on its own to check the implementation."""
    p = k / n
    root = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((p + z * z / (2 * n) - root) / (1 + z * z / n), (p + z * z / (2 * n) + root) / (1 + z * z / n))


@pytest.mark.parametrize("k, n, expected", [
    (0, 0, (0.0, 1.0)),          # no votes: nothing known
    (5, 10, (0.2366, 0.7634)),   # centre (0.5 + 0.19208)/1.38416 = 0.5, half-width 1.41602·√0.034604 = 0.26341
    (0, 10, (0.0, 0.2775)),      # upper 2·0.19208/1.38416 = 0.27754: not 0, as p ± z·SE would say
    (10, 10, (0.7225, 1.0)),
    (50, 100, (0.4038, 0.5962)),
    (1, 3, (0.0615, 0.7923)),
])
def test_wilson_interval_known_answers(k, n, expected):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(expected[0], abs=5e-5) and hi == pytest.approx(expected[1], abs=5e-5)
    if n:
        assert (lo, hi) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)
        assert lo <= k / n <= hi


def test_wilson_refuses_impossible_counts():
    for k, n in ((3, 2), (-1, 5), (1.5, 3), (True, 3)):
        with pytest.raises(ValueError):
            wilson(k, n)


@pytest.mark.parametrize("margin, n", [(0.10, 97), (0.05, 385), (0.03, 1068), (0.02, 2401), (0.01, 9604)])
def test_votes_needed_for_a_margin(margin, n):
    # n = 1.96²·0.25 / margin²: 96.04, 384.16, 1067.1, 2401, 9604 decisive votes, rounded up
    assert votes_needed(margin) == n
    lo, hi = wilson(n // 2, n)
    assert hi - lo <= 2 * margin + 1e-3  # that many votes do give an interval about that narrow


def test_votes_to_detect_a_preference_with_80_percent_power():
    assert votes_to_detect(0.55) == 783  # ((0.98 + 0.8416·√0.2475)/0.05)² = 782.5
    assert votes_to_detect(0.60) == 194
    assert votes_to_detect(0.45) == 783  # symmetric about 50 %
    with pytest.raises(ValueError):
        votes_to_detect(0.5)
    with pytest.raises(ValueError):
        votes_needed(0)


# ---- tokens -------------------------------------------------------------------------------

def _pair_ticket(left="wgan-gp", right="gan", seed=7):
    return Ticket.pairwise(seed, left, right, MODELS_FP)


def test_a_token_round_trips_and_hides_the_sides():
    tokens = Tokens(KEY, ttl=60)
    token = tokens.issue(_pair_ticket(seed=987654321), now=1000)
    t = tokens.open(token, now=1030)
    assert (t.mode, t.seed, t.shown, t.models, t.issued, t.expires) == ("pairwise", 987654321, ("wgan-gp", "gan"),
                                                                      MODELS_FP, 1000, 1060)
    # the page holds the token: neither the seed nor which model is where can be read from it
    visible, sealed = token.split(".")[:6], votes._unb64(token.split(".")[6])
    assert "gan" not in ".".join(visible) and b"gan" not in sealed and b"987654321" not in sealed
    swapped = tokens.issue(Ticket("pairwise", 987654321, ("gan", "wgan-gp"), MODELS_FP, pair_id=t.pair_id), now=1000)
    assert swapped.split(".")[:6] == token.split(".")[:6]  # same visible part …
    assert tokens.open(swapped, now=1000).shown == ("gan", "wgan-gp")  # … and still the true sides
    real = tokens.open(tokens.issue(Ticket.real("real", 3, MODELS_FP, "faces/003.png"), now=5), now=6)
    assert (real.mode, real.shown, real.seed, real.item) == ("real", ("real",), 3, "faces/003.png")


def _flip(text: str, i: int) -> str:
    c = text[i]
    return text[:i] + ("A" if c != "A" else "B") + text[i + 1:]


def test_forged_tokens_are_refused():
    tokens = Tokens(KEY)
    token = tokens.issue(_pair_ticket(), now=1000)
    parts = token.split(".")
    forged = [
        Tokens(b"another key of 32 bytes........").issue(_pair_ticket(), now=1000),  # signed with another key
        ".".join(parts[:3] + [parts[3], str(int(parts[4]) + 10**6)] + parts[5:]),  # expiry pushed back
        ".".join(parts[:2] + ["0" * 32] + parts[3:]),  # another pair id
        ".".join(parts[:5] + ["ffffffffffff"] + parts[6:]),  # other generators
        ".".join(parts[:1] + ["r"] + parts[2:]),  # another mode
        ".".join(parts[:6] + [_flip(parts[6], 3)] + parts[7:]),  # sealed seed / sides altered
        ".".join(parts[:7] + [_flip(parts[7], 5)]),  # MAC altered
        token + "x", "v1.p.nonsense", "x" * 200,
    ]
    for bad in forged:
        with pytest.raises(VoteError) as e:
            tokens.open(bad, now=1001)
        assert e.value.reason == "forged" and "not issued by this server" in str(e.value), bad
    for missing in (None, "", "   ", 42):
        with pytest.raises(VoteError) as e:
            tokens.open(missing, now=1001)
        assert e.value.reason == "missing" and "/judge_pair" in str(e.value)


def test_an_expired_token_is_refused_after_its_ttl():
    tokens = Tokens(KEY, ttl=600)
    token = tokens.issue(_pair_ticket(), now=1000)
    assert tokens.open(token, now=1600).seed == 7  # the last second still counts
    with pytest.raises(VoteError) as e:
        tokens.open(token, now=1700)
    assert e.value.reason == "expired" and "expired 100 s ago" in str(e.value) and "10 minutes" in str(e.value)


def test_a_ticket_must_name_both_models_or_one_known_source():
    tokens = Tokens(KEY)
    for bad in (Ticket.pairwise(1, "gan", "gan", MODELS_FP), Ticket.real("stylegan", 1, MODELS_FP)):
        with pytest.raises(ValueError):
            tokens.issue(bad)


# ---- key and data folder ---------------------------------------------------------------------

def test_the_key_is_made_once_with_mode_0600_or_comes_from_the_environment(tmp_path):
    key = load_key(tmp_path, environ={})
    path = tmp_path / votes.KEY_FILE
    assert len(key) == 64 and load_key(tmp_path, environ={}) == key
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o644)
        assert load_key(tmp_path, environ={}) == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(tmp_path, environ={"ANIMEGAN_VOTE_KEY": "s" * 20}) == b"s" * 20
    with pytest.raises(SetupError, match="at least 16 characters"):
        load_key(tmp_path, environ={"ANIMEGAN_VOTE_KEY": "short"})
    path.write_text("abc")
    with pytest.raises(SetupError, match="damaged"):
        load_key(tmp_path, environ={})


def test_processes_starting_together_agree_on_one_key(tmp_path):
    keys, start = [], threading.Barrier(8)

    def make():
        start.wait()
        keys.append(load_key(tmp_path, environ={}))
    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and [p.name for p in tmp_path.iterdir()] == [votes.KEY_FILE]  # no temp files left


def test_data_folder_flag_then_environment_then_per_user_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEGAN_DATA_DIR", str(tmp_path / "env"))
    assert votes.data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert votes.data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("ANIMEGAN_DATA_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert votes.data_dir(None) == tmp_path / "xdg" / "animegan"
        monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # invalid per the XDG spec: ignored
        assert votes.data_dir(None) == Path.home() / ".local" / "share" / "animegan"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SetupError, match="is a file"):
        votes.prepare_dir(tmp_path / "file")


# ---- the store ------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    s = VoteStore(tmp_path / votes.DB_FILE)
    yield s
    s.close()


def test_the_database_is_wal_versioned_and_stores_what_the_token_says(store):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == votes.SCHEMA_VERSION == store.version
    tokens = Tokens(KEY)
    ticket = tokens.open(tokens.issue(_pair_ticket(left="gan", right="wgan-gp", seed=99), now=50), now=60)
    vote = store.record(ticket, "right", session="s1", now=61.5)
    assert vote.winner == "wgan-gp" and vote.id == 1
    row = dict(zip(votes.COLUMNS, con.execute(f"SELECT {', '.join(votes.COLUMNS)} FROM votes").fetchone()))
    assert row == {"id": 1, "pair_id": ticket.pair_id, "mode": "pairwise", "models": MODELS_FP, "seed": 99,
                   "left_model": "gan", "right_model": "wgan-gp", "source": None, "item": None, "choice": "right",
                   "winner": "wgan-gp", "session": "s1", "served_at": 50.0, "voted_at": 61.5}
    con.close()


def test_a_pair_is_voted_once_and_a_bad_choice_stores_nothing(store):
    tokens = Tokens(KEY)
    ticket = tokens.open(tokens.issue(_pair_ticket()))
    with pytest.raises(VoteError) as e:
        store.record(ticket, "up", session="s")
    assert e.value.reason == "choice" and "left, right, tie" in str(e.value)
    with pytest.raises(VoteError, match="real, generated"):
        store.record(tokens.open(tokens.issue(Ticket.real("gan", 1, MODELS_FP))), "left", session="s")
    assert store.count() == 0
    store.record(ticket, "tie", session="s")
    with pytest.raises(VoteError) as e:
        store.record(ticket, "left", session="other")  # a replay, even from another session
    assert e.value.reason == "used" and store.count() == 1
    assert store.rows()[0]["choice"] == "tie" and store.rows()[0]["winner"] is None


def test_many_threads_racing_one_token_store_exactly_one_vote(store):
    tokens = Tokens(KEY)
    ticket = tokens.open(tokens.issue(_pair_ticket()))
    results, start = [], threading.Barrier(16)

    def go(i):
        start.wait()
        try:
            store.record(ticket, "left", session=f"s{i}")
            results.append("ok")
        except VoteError as e:
            results.append(e.reason)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["used"] * 15 and store.count() == 1


def _vote(store, tokens, ticket, choice, session="s"):
    return store.record(tokens.open(tokens.issue(ticket)), choice, session)


def test_the_tally_counts_wins_ties_and_fool_rates_per_set_of_weights(store):
    tokens = Tokens(KEY)
    for choice in ["left"] * 6 + ["right"] * 2 + ["tie"] * 2:  # WGAN-GP on the left: 6 wins, 2 losses, 2 ties
        _vote(store, tokens, _pair_ticket(left="wgan-gp", right="gan"), choice)
    _vote(store, tokens, _pair_ticket(left="gan", right="wgan-gp"), "right")  # WGAN-GP on the right: one more win
    for source, said in [("gan", "real"), ("gan", "generated"), ("wgan-gp", "real"), ("real", "real"),
                         ("real", "real"), ("real", "generated")]:
        _vote(store, tokens, Ticket.real(source, 1, MODELS_FP, "x.png" if source == "real" else None), said)
    _vote(store, tokens, Ticket.pairwise(1, "gan", "wgan-gp", "ffffffffffff"), "left")  # other weights
    t = store.tally(MODELS_FP)
    assert (t.wgan_wins, t.gan_wins, t.ties, t.decisive, t.pairwise, t.real, t.total) == (7, 2, 2, 9, 11, 6, 17)
    assert t.shown == {"real": 3, "gan": 2, "wgan-gp": 1} and t.judged_real == {"real": 2, "gan": 1, "wgan-gp": 1}
    assert t.other_models == 1
    assert store.tally("ffffffffffff").gan_wins == 1 and store.tally().total == 1  # default: the last voted
    lines = summary_lines(t)
    assert lines[0] == "Pairwise: 11 votes, 9 decisive, 2 can't tell (18.2 %)."
    lo, hi = wilson(7, 9)
    assert lines[1] == f"WGAN-GP preferred over GAN: 77.8 % (95 % CI {100 * lo:.1f} % – {100 * hi:.1f} %; 7 of 9)."
    assert lines[2].startswith("Verdict at 95 %: no preference")  # 9 votes: the interval still holds 50 %
    assert "Baseline, real faces judged real: 66.7 %" in lines[-2] and "1 votes on other weights" in lines[-1]


def test_migrations_run_once_in_order_and_keep_the_votes(tmp_path, monkeypatch):
    path = tmp_path / "v.sqlite3"
    old = VoteStore(path)
    tokens = Tokens(KEY)
    _vote(old, tokens, _pair_ticket(), "left")
    old.close()
    # a later version of the schema: one more step, which must run exactly once
    step = "ALTER TABLE votes ADD COLUMN note TEXT; UPDATE votes SET note = 'migrated' WHERE note IS NULL;"
    monkeypatch.setattr(votes, "MIGRATIONS", [*votes.MIGRATIONS, step])
    monkeypatch.setattr(votes, "SCHEMA_VERSION", len(votes.MIGRATIONS))
    new = VoteStore(path)
    assert new.version == votes.SCHEMA_VERSION == 2 and new.count() == 1
    new.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT choice, note FROM votes").fetchall() == [("left", "migrated")]
    con.execute("UPDATE votes SET note = 'kept'")
    con.commit()
    con.close()
    VoteStore(path).close()  # opening again runs nothing
    assert sqlite3.connect(path).execute("SELECT note FROM votes").fetchone()[0] == "kept"
    # a database newer than the code: refused with one line, not damaged
    monkeypatch.setattr(votes, "SCHEMA_VERSION", 1)
    monkeypatch.setattr(votes, "MIGRATIONS", votes.MIGRATIONS[:1])
    with pytest.raises(SetupError, match="schema version 2, newer than this code's 1"):
        VoteStore(path)


def test_a_failed_migration_leaves_the_old_version(tmp_path, monkeypatch):
    path = tmp_path / "v.sqlite3"
    VoteStore(path).close()
    monkeypatch.setattr(votes, "MIGRATIONS", [*votes.MIGRATIONS, "ALTER TABLE votes ADD COLUMN a TEXT; NOT SQL;"])
    monkeypatch.setattr(votes, "SCHEMA_VERSION", 2)
    with pytest.raises(SetupError):
        VoteStore(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "a" not in [r[1] for r in con.execute("PRAGMA table_info(votes)")]  # the first statement rolled back too


# ---- rate limit ---------------------------------------------------------------------------

def test_rate_limit_is_a_sliding_window_per_session():
    rate = RateLimit(3, window=60)
    assert [rate.take("a", now=t) for t in (0, 1, 2)] == [0, 0, 0]
    assert rate.take("a", now=10) == pytest.approx(50)  # the first vote leaves the window at t = 60
    assert rate.take("b", now=10) == 0  # another session is not affected
    rate.undo("a")  # a refused vote gives its slot back: … but the one at t=10 was never taken
    assert rate.take("a", now=11) == 0  # slot of t=2 given back above
    assert rate.take("a", now=60) == 0 and rate.take("a", now=60.5) > 0
    with pytest.raises(ValueError):
        RateLimit(0)


# ---- export and the command line -----------------------------------------------------------

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "demo.votes", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_cli_summary_and_export_as_csv_and_jsonl(tmp_path):
    s = VoteStore(tmp_path / votes.DB_FILE)
    tokens = Tokens(KEY)
    for choice in ("left", "left", "right", "tie"):
        _vote(s, tokens, _pair_ticket(left="wgan-gp", right="gan"), choice)
    _vote(s, tokens, Ticket.real("real", 4, MODELS_FP, "a,b \"c\".png"), "generated")  # a name CSV must quote
    s.close()
    r = _cli("summary", "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"5 votes in {tmp_path / votes.DB_FILE}") and f"generators {MODELS_FP} (5 votes)" in r.stdout
    assert "Pairwise: 4 votes, 3 decisive, 1 can't tell (25.0 %)." in r.stdout
    assert "WGAN-GP preferred over GAN: 66.7 %" in r.stdout and "real faces judged real: 0.0 %" in r.stdout
    r = _cli("export", "--out", str(tmp_path / "v.csv"), env={"ANIMEGAN_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.strip() == f"wrote 5 votes to {tmp_path / 'v.csv'}"
    rows = list(csv.DictReader(open(tmp_path / "v.csv", newline="")))
    assert [r["choice"] for r in rows] == ["left", "left", "right", "tie", "generated"]
    assert [r["winner"] for r in rows] == ["wgan-gp", "wgan-gp", "gan", "", ""] and rows[4]["item"] == 'a,b "c".png'
    assert _cli("export", "--data-dir", str(tmp_path), "--out", str(tmp_path / "v.jsonl")).returncode == 0
    lines = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert lines[0]["winner"] == "wgan-gp" and lines[4]["source"] == "real" and lines[4]["seed"] == 4
    assert list(lines[0]) == list(votes.COLUMNS)
    assert [p.name for p in tmp_path.glob(".v.*")] == []  # atomic writes leave no temp file


@pytest.mark.parametrize("args, message", [
    (["summary", "--data-dir", "{tmp}/nothing-here"], "no votes database at {tmp}/nothing-here/votes.sqlite3"),
    (["summary", "--data-dir", "{tmp}/file"], "is a file, not a folder"),
    (["export", "--data-dir", "{tmp}", "--out", "{tmp}/votes.txt"], "must end in .csv or .jsonl"),
    (["export", "--data-dir", "{tmp}", "--out", "{tmp}/no/such/folder/v.csv"], "does not exist"),
    (["export", "--data-dir", "{tmp}", "--out", "{tmp}/dir.csv"], "is a folder"),
])
def test_cli_bad_paths_are_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.csv").mkdir()
    r = _cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message.format(tmp=tmp_path) in r.stderr
    assert not (tmp_path / "nothing-here").exists()  # a summary creates nothing


# ---- the Hub copy, configured offline ----------------------------------------------------------

def test_hub_copy_is_off_without_a_repo_and_refuses_half_a_configuration(tmp_path):
    assert HubSync.configure(None, "hf_x", tmp_path) is None and HubSync.configure("", None, tmp_path) is None
    with pytest.raises(SetupError, match="needs a Hub token"):
        HubSync.configure("me/votes", None, tmp_path)
    with pytest.raises(SetupError, match="OWNER/NAME"):
        HubSync.configure("votes", "hf_x", tmp_path)


class FakeScheduler:
    """CommitScheduler's surface the app uses: the constructor's arguments and a lock."""
    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.lock = kwargs, threading.Lock()
        FakeScheduler.made.append(self)


def test_hub_copy_appends_jsonl_under_the_schedulers_lock_and_restores(tmp_path):
    sync = HubSync.configure("me/animegan-votes", "hf_secret", tmp_path / "data")
    assert sync.scheduler_kwargs() == {
        "repo_id": "me/animegan-votes", "repo_type": "dataset", "folder_path": tmp_path / "data" / "hub",
        "path_in_repo": "votes", "every": 5.0, "private": True, "token": "hf_secret", "allow_patterns": ["*.jsonl"]}
    sync.start(scheduler_cls=FakeScheduler)
    assert FakeScheduler.made[-1] is sync.scheduler and sync.folder.is_dir()
    store = VoteStore(tmp_path / "data" / votes.DB_FILE)
    tokens = Tokens(KEY)
    rows = [_vote(store, tokens, _pair_ticket(), c).row() for c in ("left", "right")]
    with sync.scheduler.lock:  # an upload in progress holds the lock: the append waits for it
        writer = threading.Thread(target=sync.append, args=(rows[0],))
        writer.start()
        writer.join(0.3)
        assert writer.is_alive() and not sync.file.exists()
    writer.join()
    sync.append(rows[1])
    assert sync.file.parent == tmp_path / "data" / "hub" and sync.file.name.startswith("votes-")
    assert [json.loads(x) for x in sync.file.read_text().splitlines()] == rows

    # a restarted Space: an empty disk, and the repo holds what was uploaded (plus a torn last line)
    remote = tmp_path / "remote"
    (remote / "votes").mkdir(parents=True)
    bogus = json.dumps({**rows[0], "pair_id": "f" * 32, "mode": "bogus"})  # breaks the table's CHECK: skipped
    (remote / "votes" / sync.file.name).write_text(sync.file.read_text() + bogus + '\n{"pair_id": "cut off')
    asked = []

    def download(**kwargs):
        asked.append(kwargs)
        return str(remote)
    fresh = VoteStore(tmp_path / "fresh.sqlite3")
    assert sync.restore(fresh, download=download) == 2 and sync.restore(fresh, download=download) == 0
    assert asked[0] == {"repo_id": "me/animegan-votes", "repo_type": "dataset", "token": "hf_secret",
                        "allow_patterns": ["votes/*.jsonl"]}
    assert [r["pair_id"] for r in fresh.rows()] == [r["pair_id"] for r in rows]
    # an imported pair counts as used: the same token cannot be voted again after the restart
    same_pair = Ticket("pairwise", 7, ("wgan-gp", "gan"), MODELS_FP, pair_id=rows[0]["pair_id"])
    with pytest.raises(VoteError, match="already has a vote"):
        fresh.record(tokens.open(tokens.issue(same_pair)), "left", "s")
    store.close()
    fresh.close()


# ---- the Judge in-process: pairs, real faces, the rate limit, the About panel -----------------------

@pytest.fixture(scope="module")
def slots(tmp_path_factory):
    from animegan.checkpoint import export_generator
    from animegan.models import Generator
    from demo.core import load_slot
    root = tmp_path_factory.mktemp("gens")
    for i, key in enumerate(("gan", "wgan-gp")):
        torch.manual_seed(i)
        export_generator(Generator(ngf=8), root / key)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app does: on a busy 2-core machine two threads per call were 40× slower
    yield [load_slot(k, t, str(root / k), True, "cpu") for k, t in (("gan", "GAN"), ("wgan-gp", "WGAN-GP"))]
    torch.set_num_threads(threads)


@pytest.fixture
def real_dir(tmp_path):
    d = tmp_path / "real"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (80, 70, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (d / "broken.png").write_bytes(b"not an image")
    return d


def test_a_pair_is_both_models_on_one_seed_at_random_sides(slots, tmp_path):
    import random
    from demo.endpoints import Demo
    from demo.judge import Judge
    judge = Judge(slots, VoteStore(tmp_path / "v.sqlite3"), KEY, rng=random.Random(3))
    compare = Demo(slots).compare
    lefts = []
    for _ in range(12):
        left, right, token = judge.pair()
        t = judge.tokens.open(token)
        gan, wgan = compare(t.seed, 1.0)
        by_key = {"gan": gan, "wgan-gp": wgan}
        assert np.array_equal(left, by_key[t.shown[0]]) and np.array_equal(right, by_key[t.shown[1]])
        lefts.append(t.shown[0])
    assert {"gan", "wgan-gp"} == set(lefts)  # both sides occur
    assert len({judge.tokens.open(judge.pair()[2]).seed for _ in range(5)}) == 5  # a fresh seed each time
    vote = judge.vote(token, "right", session="abc")
    assert vote.winner == t.shown[1] and judge.reveal(vote).startswith(
        f"Last pair: left was {judge.titles[t.shown[0]]}, right was {judge.titles[t.shown[1]]}")
    assert judge.counted("abc") == "**Your votes: 1**" and judge.counted("other") == "**Your votes: 0**"


def test_real_or_generated_draws_real_faces_half_the_time(slots, tmp_path, real_dir):
    import random
    from demo.judge import Judge, RealFaces
    real = RealFaces.open(real_dir)
    assert len(real) == 5
    judge = Judge(slots, VoteStore(tmp_path / "v.sqlite3"), KEY, real=real, rng=random.Random(0))
    sources = []
    for _ in range(60):
        face, token = judge.real_item()
        t = judge.tokens.open(token)
        assert face.shape == (320, 320, 3)
        if t.shown[0] == "real":
            assert t.item != "broken.png"
            assert np.array_equal(face[::5, ::5], real.face(t.seed))  # 64×64, upscaled like the generated faces
        sources.append(t.shown[0])
    counts = {s: sources.count(s) for s in ("real", "gan", "wgan-gp")}
    assert 18 <= counts["real"] <= 42 and counts["gan"] > 5 and counts["wgan-gp"] > 5, counts
    vote = judge.vote(token, "generated", "s")
    assert vote.ticket.shown[0] == t.shown[0] and judge.reveal(vote).endswith("you said generated.")
    with pytest.raises(VoteError, match="left, right, tie"):
        judge.vote(judge.pair()[2], "real", "s")
    with pytest.raises(SetupError, match="--real-faces: data path does not exist"):
        RealFaces.open(tmp_path / "missing")
    import gradio as gr
    with pytest.raises(gr.Error, match="start the app with --real-faces"):
        Judge(slots, judge.store, KEY).real_item()


def test_a_session_over_the_rate_limit_is_refused_and_nothing_is_stored(slots, tmp_path):
    from demo.judge import Judge
    judge = Judge(slots, VoteStore(tmp_path / "v.sqlite3"), KEY, rate=RateLimit(3))
    for _ in range(3):
        judge.vote(judge.pair()[2], "left", "busy")
    token = judge.pair()[2]
    with pytest.raises(VoteError) as e:
        judge.vote(token, "left", "busy")
    assert e.value.reason == "rate" and "at most 3 a minute" in str(e.value) and "Nothing was stored" in str(e.value)
    assert judge.store.count() == 3
    judge.vote(token, "left", "calm")  # the refused token was not used up; another session may go on
    assert judge.store.count() == 4
    # a refused replay does not eat into the session's allowance either
    calm = [judge.pair()[2] for _ in range(2)]
    with pytest.raises(VoteError, match="already has a vote"):
        judge.vote(token, "left", "calm")
    for tok in calm:
        judge.vote(tok, "tie", "calm")
    assert judge.store.count() == 6


def test_weights_fingerprint_and_the_about_panel(slots, tmp_path):
    from demo.judge import Judge, fingerprint, tally_markdown
    from demo.votes import Tally
    assert fingerprint(slots) == fingerprint(slots) and len(fingerprint(slots)) == 12
    assert fingerprint(slots) != fingerprint(slots[::-1])
    judge = Judge(slots, VoteStore(tmp_path / "v.sqlite3"), KEY)
    assert "**0 votes** in all" in judge.tally_markdown() and "| – | – | 0 decisive votes |" in judge.tally_markdown()
    text = tally_markdown(Tally(wgan_wins=30, gan_wins=10, ties=10, shown={"real": 10, "gan": 10, "wgan-gp": 0},
                                judged_real={"real": 8, "gan": 3, "wgan-gp": 0}), judge.titles, "abc")
    lo, hi = wilson(30, 40)
    assert f"| WGAN-GP preferred over GAN (can't tell left out) | **75.0 %** | {100 * lo:.1f} % – {100 * hi:.1f} % |" \
           " 30 of 40 decisive votes |" in text
    assert "| can't tell | 20.0 % | | 10 of 50 pairwise votes |" in text
    assert "| GAN fool rate: its faces judged real | **30.0 %** |" in text
    assert "| WGAN-GP fool rate: its faces judged real | – | – | 0 faces |" in text
    assert "| baseline: real faces judged real | **80.0 %** |" in text
    assert "**70 votes** in all: 50 pairwise, 20 real-or-generated" in text and "WGAN-GP looks better" in text
    assert "roughly 385 decisive votes" in text
