"""The Judge tab in the running app (app.py in a subprocess, as users reach it): its endpoints, a real
browser casting votes, a `kill -9` in the middle of voting, and (slow) 20 clients voting for 30 s.

    pytest tests/test_votes_app.py                 # endpoints and the browser: under a minute on 2 cores
    pytest tests/test_votes_app.py -m slow         # kill -9 and restart, and the 30 s load test

Like tests/test_app.py: without Chromium the browser test skips and says why, and
ANIMEGAN_REQUIRE_BROWSER=1 (set by CI) turns that skip into a failure.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.checkpoint import export_generator
from animegan.models import Generator
from demo.votes import DB_FILE, Ticket, Tokens, VoteStore
from test_app import CHROMIUM_FLAGS, chromium, start_app, stop_app  # noqa: F401  (chromium: a fixture)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
KEY = "test-key-0123456789abcdef"  # the server signs with it, so tests can make tokens it accepts or refuses
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
       "ANIMEGAN_VOTE_KEY": KEY}
for name in ("HF_TOKEN", "ANIMEGAN_VOTES_REPO", "ANIMEGAN_REAL_FACES", "ANIMEGAN_DATA_DIR"):
    ENV.pop(name, None)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    for i, key in enumerate(("gan", "wgan-gp")):
        torch.manual_seed(i)
        export_generator(Generator(ngf=8), root / key)
    (root / "real").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(root / "real" / f"{i}.png")
    return root


def start(files: Path, data: Path, *extra: str, log_name: str = "app.log") -> tuple[subprocess.Popen, str]:
    return start_app(files / "gan", files / "wgan-gp", data, files / log_name, *extra, env=ENV)


@pytest.fixture(scope="module")
def server(files):
    data = files / "data"
    proc, url = start(files, data, "--real-faces", str(files / "real"), "--vote-rate", "1000")
    yield url, data
    stop_app(proc)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server[0], verbose=False)


def _rows(data: Path) -> list[dict]:
    store = VoteStore(data / DB_FILE, create=False)  # a second reader beside the app: WAL allows it
    try:
        return store.rows()
    finally:
        store.close()


def _img(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_judge_endpoints_are_public_and_named(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(api) == {"/compare", "/interpolate", "/explore", "/judge_pair", "/judge_real_pair", "/judge_vote"}
    assert api["/judge_pair"]["parameters"] == [] and len(api["/judge_pair"]["returns"]) == 3
    assert [p["parameter_name"] for p in api["/judge_vote"]["parameters"]] == ["token", "choice"]


def _wait_text(page, selector: str, text: str, timeout=30_000) -> None:
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
                           arg=[selector, text], timeout=timeout)


@pytest.mark.browser
def test_browser_ten_votes_by_clicking_keys_and_the_tally(chromium, server):  # noqa: F811
    from playwright.sync_api import sync_playwright
    url, data = server
    before = len(_rows(data))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{url}?tab=judge", wait_until="domcontentloaded")
            page.wait_for_selector("#judge-left img", state="visible", timeout=60_000)
            assert "GAN" not in page.locator("#judge-left").inner_text()  # no names on the faces
            buttons = ["#judge-left-btn", "#judge-right-btn", "#judge-tie-btn"]
            for i in range(10):
                src = page.get_attribute("#judge-left img", "src")
                page.click(buttons[i % 3])
                _wait_text(page, "#judge-count", f"Your votes: {i + 1}")
                page.wait_for_function("s => document.querySelector('#judge-left img')?.src !== s", arg=src,
                                       timeout=30_000)  # the next pair is there
            page.screenshot(path=str(ARTIFACTS / "app_browser_judge.png"), full_page=True)
            rows = _rows(data)[before:]
            assert len(rows) == 10 and [r["choice"] for r in rows] == [("left", "right", "tie")[i % 3] for i in range(10)]
            title = {"gan": "GAN", "wgan-gp": "WGAN-GP"}
            last = rows[-1]  # a "left" vote: the line after it names the sides and the choice
            assert page.locator("#judge-status").inner_text().strip() == (
                f"Last pair: left was {title[last['left_model']]}, right was {title[last['right_model']]} — "
                f"you chose {title[last['left_model']]}.")
            assert len({r["pair_id"] for r in rows}) == 10 and len({r["session"] for r in rows}) == 1

            page.get_by_role("tab", name="About & metrics").click()  # the first test to vote: "10 votes in all"
            _wait_text(page, "#judge-tally", f"{before + 10} votes in all")
            decisive = sum(r["winner"] is not None for r in _rows(data) if r["mode"] == "pairwise")
            _wait_text(page, "#judge-tally", f"of {decisive} decisive votes")

            page.get_by_role("tab", name="Judge").click()  # keys: ← votes left, space can't tell
            page.wait_for_selector("#judge-left img", state="visible")
            page.keyboard.press("ArrowLeft")
            _wait_text(page, "#judge-count", "Your votes: 11")
            page.keyboard.press(" ")
            _wait_text(page, "#judge-count", "Your votes: 12")
            assert [r["choice"] for r in _rows(data)[-2:]] == ["left", "tie"]

            page.get_by_label("Real or generated?").check()  # R and G in real-or-generated mode
            page.wait_for_selector("#judge-face img", state="visible", timeout=30_000)
            page.keyboard.press("g")
            _wait_text(page, "#judge-count", "Your votes: 13")
            _wait_text(page, "#judge-status", "you said generated")
            assert _rows(data)[-1]["mode"] == "real" and _rows(data)[-1]["choice"] == "generated"
            page.screenshot(path=str(ARTIFACTS / "app_browser_judge_real.png"), full_page=True)
        finally:
            browser.close()


def test_a_pair_is_one_seed_at_random_sides_and_a_vote_says_which_was_which(client, server):
    before = len(_rows(server[1]))
    left, right, token = client.predict(api_name="/judge_pair")
    ticket = Tokens(KEY.encode()).open(token)  # the test knows the key; a visitor does not
    gan, wgan = client.predict(ticket.seed, 1.0, api_name="/compare")
    by_key = {"gan": _img(gan), "wgan-gp": _img(wgan)}
    assert np.array_equal(_img(left), by_key[ticket.shown[0]]) and np.array_equal(_img(right), by_key[ticket.shown[1]])
    out = client.predict(token, "right", api_name="/judge_vote")
    assert out["accepted"] is True and out["winner"] == ticket.shown[1] and out["left"] == ticket.shown[0]
    assert out["your_votes"] == 1 and out["message"].startswith("Last pair: left was")
    rows = _rows(server[1])
    assert len(rows) == before + 1 and rows[-1]["pair_id"] == ticket.pair_id and rows[-1]["seed"] == ticket.seed
    assert (rows[-1]["left_model"], rows[-1]["right_model"], rows[-1]["choice"]) == (*ticket.shown, "right")

    face, token = client.predict(api_name="/judge_real_pair")
    assert _img(face).shape == (320, 320, 3)
    out = client.predict(token, "generated", api_name="/judge_vote")
    assert out["source"] == Tokens(KEY.encode()).open(token).shown[0] and out["your_votes"] == 2


def test_forged_replayed_expired_and_bad_votes_are_refused_and_store_nothing(client, server):
    from gradio_client.exceptions import AppError
    tokens = Tokens(KEY.encode())
    _, _, good = client.predict(api_name="/judge_pair")
    client.predict(good, "left", api_name="/judge_vote")
    n = len(_rows(server[1]))
    models = tokens.open(good).models
    expired = tokens.issue(Ticket.pairwise(5, "gan", "wgan-gp", models), now=time.time() - 7200)
    forged = Tokens(b"not the server's key, 32 bytes..").issue(Ticket.pairwise(5, "gan", "wgan-gp", models))
    _, _, fresh = client.predict(api_name="/judge_pair")
    parts = fresh.split(".")
    flipped = ".".join(parts[:5] + ["0" * len(parts[5])] + parts[6:])  # claims other generators
    for token, choice, message in [
            (good, "left", "already has a vote"),  # replayed
            (good, "right", "already has a vote"),  # cast twice, changing the mind
            (expired, "left", "This pair expired"),
            (forged, "left", "not issued by this server"),
            (flipped, "left", "not issued by this server"),
            ("", "left", "No token"),
            (fresh, "up", "must be one of left, right, tie"),
            (fresh, "real", "must be one of left, right, tie")]:
        with pytest.raises(AppError, match=message):
            client.predict(token, choice, api_name="/judge_vote")
    assert len(_rows(server[1])) == n
    assert client.predict(fresh, "tie", api_name="/judge_vote")["winner"] is None  # the fresh one still works


def _voter(url: str, stop_at: float, halt: threading.Event, acked: list, refused: list, lock: threading.Lock,
           seed: int, replay_every: int = 0) -> None:
    """Pairs and votes until stop_at or halt; every acknowledged vote's pair id (and id) is noted."""
    from gradio_client import Client
    rng = random.Random(seed)
    try:
        c = Client(url, verbose=False)
    except Exception:
        return
    tokens = Tokens(KEY.encode())
    last = None
    while time.time() < stop_at and not halt.is_set():
        try:
            if replay_every and last and rng.randrange(replay_every) == 0:
                token = last  # a replay: must be refused
            else:
                _, _, token = c.predict(api_name="/judge_pair")
            out = c.predict(token, rng.choice(["left", "right", "tie"]), api_name="/judge_vote")
            with lock:
                acked.append((tokens.open(token).pair_id, out["vote_id"]))
            last = token
        except Exception as e:  # a refusal (replays) or, after a kill, a dead server
            with lock:
                refused.append(str(e)[:120])
            if "already has a vote" not in str(e):
                time.sleep(0.2)


@pytest.mark.slow  # two start-ups of the app: about a minute on a busy 2-core machine
def test_kill_9_in_the_middle_of_voting_loses_no_acknowledged_vote(files):
    data = files / "data-kill"
    proc, url = start(files, data, "--vote-rate", "1000", log_name="kill.log")
    acked, refused, lock, halt = [], [], threading.Lock(), threading.Event()
    try:
        threads = [threading.Thread(target=_voter, args=(url, time.time() + 120, halt, acked, refused, lock, i),
                                    daemon=True) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.time() + 90
        while len(acked) < 15 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the voters still have requests in flight
        proc.wait()
        with lock:
            acknowledged = list(acked)
        halt.set()
        for t in threads:
            t.join(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acknowledged) >= 15, refused[:3]
    proc, url = start(files, data, log_name="kill.log")  # restart on the same folder
    try:
        from gradio_client import Client
        rows = _rows(data)
        stored = {r["pair_id"]: r["id"] for r in rows}
        assert all(stored.get(pair) == vote_id for pair, vote_id in acknowledged)  # every acknowledged vote is there
        assert len(rows) - len(acknowledged) <= 3  # at most the in-flight ones were stored without their answer
        _, _, token = Client(url, verbose=False).predict(api_name="/judge_pair")  # and the app goes on
        assert Client(url, verbose=False).predict(token, "left", api_name="/judge_vote")["vote_id"] == len(rows) + 1
    finally:
        stop_app(proc)


@pytest.mark.slow
def test_twenty_clients_voting_for_30_s_lose_nothing_and_count_nothing_twice(files):
    data = files / "data-load"
    proc, url = start(files, data, "--vote-rate", "1000", log_name="load.log")
    acked, refused, lock = [], [], threading.Lock()
    try:
        stop_at = time.time() + 30
        threads = [threading.Thread(target=_voter, args=(url, stop_at, threading.Event(), acked, refused, lock, i, 5),
                                    daemon=True) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        rows = _rows(data)
    finally:
        stop_app(proc)
    replays = [r for r in refused if "already has a vote" in r]
    assert len(acked) > 20 and replays, (len(acked), refused[:3])
    assert [r for r in refused if "already has a vote" not in r] == []  # nothing else failed
    assert len(rows) == len(acked)  # every accepted vote is a row, and no row without an accepted vote
    assert sorted(r["pair_id"] for r in rows) == sorted(p for p, _ in acked)
    assert len({r["pair_id"] for r in rows}) == len(rows)  # none accepted twice
    print(f"\n20 clients × 30 s: {len(acked)} votes accepted, {len(replays)} replays refused")
