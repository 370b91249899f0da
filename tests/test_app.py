"""The Gradio demo (app.py), end to end and offline.

Tiny random generators (ngf=8) are exported to a temp folder, the app runs in a
subprocess on a free port, and everything talks to it as users do: through
gradio_client, and (marked `browser`) through headless Chromium.

    pytest tests/test_app.py                   # all, about a minute on 2 cores
    pytest tests/test_app.py -m "not browser"  # without Chromium
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.checkpoint import export_generator
from animegan.models import Generator

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gens")
    torch.manual_seed(0)
    export_generator(Generator(ngf=8), root / "gan")
    torch.manual_seed(1)
    export_generator(Generator(ngf=8), root / "wgan-gp")
    (root / "gan" / "metrics.json").write_text(json.dumps({"fid": 41.5, "kid": {"mean": 0.03, "std": 0.001}}))
    return root / "gan", root / "wgan-gp"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dirs):
    port = _free_port()
    log = open(Path(model_dirs[0]).parent / "app.log", "w+")
    proc = subprocess.Popen([sys.executable, "app.py", "--gan", str(model_dirs[0]), "--wgan-gp", str(model_dirs[1]),
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                log.seek(0)
                pytest.fail(f"app did not start:\n{log.read()[-3000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server, verbose=False)


def _img(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_only_the_documented_endpoints_are_public(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/compare", "/interpolate"}


def test_compare_gives_both_models_same_seed_same_image(client):
    gan, wgan = client.predict(123, 1.0, api_name="/compare")
    a, b = _img(gan), _img(wgan)
    assert a.shape == b.shape == (320, 320, 3)
    assert (a[:5, :5] == a[0, 0]).all()  # nearest-neighbour upscale: 5×5 blocks of one colour
    assert not np.array_equal(a, b), "the two models should answer differently"
    again = client.predict(123, 1.0, api_name="/compare")
    assert np.array_equal(a, _img(again[0])) and np.array_equal(b, _img(again[1]))
    other = client.predict(124, 1.0, api_name="/compare")
    assert not np.array_equal(a, _img(other[0])) and not np.array_equal(b, _img(other[1]))


def test_truncation_zero_is_the_same_face_for_every_seed(client):
    one = client.predict(1, 0.0, api_name="/compare")
    two = client.predict(99999, 0.0, api_name="/compare")
    assert np.array_equal(_img(one[0]), _img(two[0]))


def test_interpolate_gifs_and_strips(client):
    gan_gif, wgan_gif, gan_strip, wgan_strip = client.predict(123, 5, 5, "slerp", api_name="/interpolate")
    for gif in (gan_gif, wgan_gif):
        with Image.open(gif) as im:
            assert im.format == "GIF" and im.size == (256, 256)
            assert im.n_frames == 8  # 5 frames a→b, then 3 back (ping-pong loop)
    strip = _img(gan_strip)
    assert strip.shape == (128, 5 * 128, 3)
    # the path starts at seed_a's latent and ends at seed_b's: the first and last frames match /compare
    start, end = (_img(client.predict(s, 1.0, api_name="/compare")[0])[::5, ::5] for s in (123, 5))
    assert np.array_equal(strip[::2, :128:2], start)
    assert np.array_equal(strip[::2, -128::2], end)
    lerp_strip = _img(client.predict(123, 5, 5, "lerp", api_name="/interpolate")[2])
    assert not np.array_equal(strip, lerp_strip)
    assert not np.array_equal(_img(gan_strip), _img(wgan_strip))


@pytest.mark.parametrize("args, api_name, message", [
    ((-1, 1.0), "/compare", "Seed must be a whole number"),
    ((2**32, 1.0), "/compare", "Seed must be a whole number"),
    ((1.5, 1.0), "/compare", "Seed must be a whole number"),
    (("../../etc/passwd", 1.0), "/compare", "Seed must be a whole number"),
    ((1, 1.6), "/compare", "greater than maximum"),
    ((1, -0.1), "/compare", "less than minimum"),
    ((1, 2, 1, "slerp"), "/interpolate", "less than minimum"),
    ((1, 2, 65, "slerp"), "/interpolate", "greater than maximum"),
    ((1, 2, 3.5, "slerp"), "/interpolate", "Frames must be a whole number"),
    ((1, 2**32, 4, "slerp"), "/interpolate", "Seed B must be a whole number"),
    ((1, 2, 4, "cubic"), "/interpolate", "not in the list of choices"),
])
def test_bad_inputs_are_refused_and_the_server_keeps_serving(client, args, api_name, message):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)
    assert _img(client.predict(7, 1.0, api_name="/compare")[0]).shape == (320, 320, 3)


@pytest.mark.parametrize("flag, source", [("--gan", "/nonexistent/folder"), ("--wgan-gp", "nobody/no-such-model")])
def test_a_named_generator_that_cannot_load_exits_with_one_line(model_dirs, flag, source):
    other = "--wgan-gp" if flag == "--gan" else "--gan"
    r = subprocess.run([sys.executable, "app.py", flag, source, other, str(model_dirs[0])],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and source in r.stderr


# ---- in-process: start-up messages and the About tab --------------------------------------

def test_missing_default_checkpoint_is_named_with_how_to_fix(tmp_path, model_dirs):
    import app
    missing = app.load_slot("wgan-gp", "WGAN-GP", str(tmp_path / "checkpoints" / "wgan-gp"), False, "cpu")
    assert missing.generator is None
    assert "checkpoints/wgan-gp" in missing.problem and "--wgan-gp" in missing.problem
    assert "animegan.train" in missing.problem
    present = app.load_slot("gan", "GAN", str(model_dirs[0]), False, "cpu")
    demo = app.Demo([present, missing])
    gan, wgan = demo.compare(3, 1.0)  # the loaded model still answers
    assert gan.shape == (320, 320, 3) and wgan is None
    table = demo.metrics_markdown()
    assert "| `fid` | 41.5 | — |" in table and "`kid.mean`" in table
    nothing = app.Demo([missing, missing])
    assert "No evaluation results" in nothing.metrics_markdown()
    with pytest.raises(app.gr.Error, match="No generator is loaded"):
        nothing.compare(3, 1.0)


def test_grid_of_the_next_seeds(model_dirs):
    import app
    slots = [app.load_slot(k, k, str(d), True, "cpu") for k, d in zip(("gan", "wgan-gp"), model_dirs)]
    demo = app.Demo(slots)
    gan, wgan = demo.grid(app.MAX_SEED, 1.0, 10)  # wraps around to seeds 0 … 9
    assert gan.shape == wgan.shape == (3 * 128 + 2 * 2, 4 * 128 + 3 * 2, 3)  # 4 per row, 2× cells, 2 px gaps
    first = demo.compare(0, 1.0)[0][::5, ::5]
    assert np.array_equal(gan[:128:2, :128:2], first)
    with pytest.raises(app.gr.Error, match="Grid size"):
        demo.grid(1, 1.0, 17)


def test_metrics_of_any_shape_are_read_defensively(tmp_path):
    from demo import core as demo
    (tmp_path / "metrics.json").write_text("[1, 2, 3]")
    assert demo.read_metrics(str(tmp_path)) == {}
    (tmp_path / "metrics.json").write_text("{not json")
    assert demo.read_metrics(str(tmp_path)) == {}
    rows = dict(demo._flatten({"a": {"b": 1.23456789, "c": [1, 2]}, "big": list(range(100)), "d": None}))
    assert rows == {"a.b": 1.23456789, "a.c": "1, 2", "d": None}
    (tmp_path / "metrics.json").write_text(json.dumps({"name": "gan", "n": 5000, "metrics": {"fid": 30.0}}))
    slot = demo.Slot("gan", "GAN", str(tmp_path), metrics=demo.read_metrics(str(tmp_path)))
    table = demo.Demo([slot, slot]).metrics_markdown()  # an eval-report row: its metrics read as plain names
    assert "| `fid` | 30 | 30 |" in table and "| `n` | 5000 | 5000 |" in table


@pytest.mark.slow
def test_the_latency_benchmark_runs(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "benchmarks/app_latency.py", "--calls", "3", "--interp-calls", "1",
                        "--clients", "2", "--duration", "2", "--json", str(out)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["compare"]["n"] == 3 and res["interpolate_16"]["n"] == 1
    assert res["load"]["failed"] == 0 and res["load"]["ok"] > 0 and res["compare_serving_floor"]["n"] == 3


# ---- a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.browser
def test_browser_sets_a_seed_and_sees_both_images(server):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs `pip install -r requirements-dev.txt` (playwright); "
                    "deselect it with -m 'not browser'")
    if not Path(CHROMIUM).exists():
        pytest.fail("the browser test needs Debian's chromium (`apt-get install -y chromium`); "
                    "deselect it with -m 'not browser'")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # launch() gives every run a fresh temporary profile (its own --user-data-dir)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server, wait_until="domcontentloaded")
            imgs = ["#gan-image img", "#wgan-image img"]
            for sel in imgs:  # the default seed's answer is there at start-up
                page.wait_for_selector(sel, state="visible", timeout=30_000)
            before = [page.get_attribute(sel, "src") for sel in imgs]
            page.fill("#seed input", "20240601")
            page.click("#generate")
            page.wait_for_function(
                """([sels, before]) => sels.every((s, i) => {
                       const im = document.querySelector(s);
                       return im && im.src !== before[i] && im.complete && im.naturalWidth === 320; })""",
                arg=[imgs, before], timeout=30_000)
            assert page.locator("#gan-image").inner_text().strip().startswith("GAN")
            page.screenshot(path=str(ARTIFACTS / "app_browser.png"), full_page=True)
            page.fill("#seed input", "1.5")  # a bad seed: a toast that says why, and the page stays usable
            page.click("#generate")
            page.get_by_text("Seed must be a whole number").first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "app_browser_error.png"), full_page=True)
        finally:
            browser.close()
