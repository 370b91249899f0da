"""The Gradio demo (app.py), end to end and offline.

Tiny random generators (ngf=8) are exported to a temp folder, the app runs in a
subprocess on a free port, and everything talks to it as users do: through
gradio_client, and (marked `browser`) through headless Chromium.

    pytest tests/test_app.py                   # all, about a minute on 2 cores
    pytest tests/test_app.py -m "not browser"  # without Chromium

Without Chromium the browser test skips and says why; ANIMEGAN_REQUIRE_BROWSER=1 (set by CI)
turns that skip into a failure.
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

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from animegan.checkpoint import export_generator, weights_sha256
from animegan.models import Generator
from eval.rulers.effnet import FID, KID

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
    (root / "gan" / "metrics.json").write_text(json.dumps(
        {"name": "gan", "n": 100, "features": "effnet-lite0",
         "metrics": {"fid": 41.5, "fid_std": 0.25, "kid": 0.03, "ndb": 7},
         "real_vs_real": {"fid": 3.25, "kid": 2e-07}, "random_init": {"fid": 250.0}, "protocol": "tiny",
         "rulers": {"effnet": {"sees": "ImageNet features", "metrics": [FID._asdict(), KID._asdict()]}},
         "translations": [{"metric": "fid", "phrase": "as far from real faces as real faces blurred with σ = 1.3 px"}],
         "verdict": "gan is ahead on 1 of 1 rulers.",
         "weights_sha256": weights_sha256(root / "gan")}))
    (root / "wgan-gp" / "metrics.json").write_text(json.dumps(  # scores of weights that are gone
        {"name": "wgan-gp", "n": 100, "metrics": {"fid": 12.0}, "weights_sha256": "0" * 64}))
    return root / "gan", root / "wgan-gp"


def start_app(gan, wgan, data_dir, log_path: Path, *extra: str, env: dict = ENV,
              timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """app.py in a subprocess on a free port, logging to `log_path` (appended); (process, url) once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_path, "a+")
    proc = subprocess.Popen([sys.executable, "app.py", "--gan", str(gan), "--wgan-gp", str(wgan),
                             "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), *extra],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                log.seek(0)
                pytest.fail(f"app did not start:\n{log.read()[-3000:]}")
            time.sleep(0.5)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(model_dirs):
    root = Path(model_dirs[0]).parent
    proc, url = start_app(*model_dirs, root / "data", root / "app.log")  # votes: not in the home folder
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server, verbose=False)


def _img(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_only_the_documented_endpoints_are_public(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/compare", "/interpolate", "/explore", "/judge_pair", "/judge_real_pair",
                                           "/judge_vote"}  # the Judge tab's: tests/test_votes_app.py
    assert [p["parameter_name"] for p in api["named_endpoints"]["/explore"]["parameters"]] == ["seed", "truncation",
                                                                                            "offsets"]


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


def test_explore_moves_both_models_along_their_own_directions(client):
    zero = [_img(p) for p in client.predict(123, 0.8, [0] * 6, api_name="/explore")]
    assert all(a.shape == (320, 320, 3) for a in zero)
    same_as_compare = [_img(p) for p in client.predict(123, 0.8, api_name="/compare")]
    assert all(np.array_equal(a, b) for a, b in zip(zero, same_as_compare))
    moved = [_img(p) for p in client.predict(123, 0.8, [2.5, 0, 0, 0, 0, 0], api_name="/explore")]
    assert all(not np.array_equal(a, b) for a, b in zip(zero, moved)), "slider 1 should change both faces"
    again = [_img(p) for p in client.predict(123, 0.8, [2.5, 0, 0, 0, 0, 0], api_name="/explore")]
    assert all(np.array_equal(a, b) for a, b in zip(moved, again))
    other = _img(client.predict(123, 0.8, [0, 2.5, 0, 0, 0, 0], api_name="/explore")[0])
    assert not np.array_equal(other, moved[0]), "direction 2 is not direction 1"


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
    ((1, 1.0, [0] * 5), "/explore", "Offsets must hold 6 numbers"),
    ((1, 1.0, [0] * 7), "/explore", "Offsets must hold 6 numbers"),
    ((1, 1.0, [0, 0, 3.5, 0, 0, 0]), "/explore", "Offset 3 must be a number from -3 to 3"),
    ((1, 1.0, [0, "up", 0, 0, 0, 0]), "/explore", "Offset 2 must be a number"),
    ((1, 1.0, [0, True, 0, 0, 0, 0]), "/explore", "Offset 2 must be a number"),
    ((1, 1.0, "0,0,0,0,0,0"), "/explore", "Offsets must be a list of 6 numbers"),
    ((2**64, 1.0, [0] * 6), "/explore", "Seed must be a whole number"),
    ((1, 1.6, [0] * 6), "/explore", "greater than maximum"),
])
def test_bad_inputs_are_refused_and_the_server_keeps_serving(client, args, api_name, message):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)
    assert _img(client.predict(7, 1.0, api_name="/compare")[0]).shape == (320, 320, 3)


@pytest.mark.parametrize("endpoint, body, message", [
    ("explore", '[1, 1.0, [0, NaN, 0, 0, 0, 0]]', "Offset 2 must be a number from -3 to 3 (got nan)"),
    ("explore", '[1, 1.0, [0, 0, 0, 0, 0, Infinity]]', "Offset 6 must be a number"),
    ("explore", '[NaN, 1.0, [0, 0, 0, 0, 0, 0]]', "Seed must be a whole number"),
    ("compare", '[1, NaN]', "Truncation must be a number"),
])
def test_nan_over_rest_is_refused_with_one_line(server, client, endpoint, body, message):
    """JSON clients other than gradio_client can send NaN; the answer is the same one-line refusal."""
    req = urllib.request.Request(f"{server}gradio_api/call/{endpoint}", data=f'{{"data": {body}}}'.encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    stream = urllib.request.urlopen(f"{server}gradio_api/call/{endpoint}/{event}", timeout=30).read().decode()
    assert "event: error" in stream and message in stream
    assert _img(client.predict(7, 1.0, api_name="/compare")[0]).shape == (320, 320, 3)


@pytest.mark.parametrize("flag, source", [("--gan", "/nonexistent/folder"), ("--wgan-gp", "nobody/no-such-model")])
def test_a_named_generator_that_cannot_load_exits_with_one_line(model_dirs, flag, source):
    """SystemExit with a message: Python prints that one line, no traceback, and exits with status 1."""
    import app
    other = "--wgan-gp" if flag == "--gan" else "--gan"
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_:
            app.main([flag, source, other, str(model_dirs[0])])
    finally:
        torch.set_num_threads(threads)
    message = str(exit_.value.code)
    assert message.startswith("error:") and source in message and "\n" not in message


# ---- in-process: start-up messages, the About tab, links and downloads --------------------

@pytest.fixture(scope="module")
def demo_fns(model_dirs):
    from demo.core import load_slot
    from demo.endpoints import Demo
    return Demo([load_slot(k, k, str(d), True, "cpu") for k, d in zip(("gan", "wgan-gp"), model_dirs)])


def test_missing_default_checkpoint_is_named_with_how_to_fix(tmp_path, model_dirs):
    from demo.core import load_slot
    from demo.endpoints import Demo
    from demo.metrics import metrics_markdown
    missing = load_slot("wgan-gp", "WGAN-GP", str(tmp_path / "checkpoints" / "wgan-gp"), False, "cpu")
    assert missing.generator is None
    assert "checkpoints/wgan-gp" in missing.problem and "--wgan-gp" in missing.problem
    assert "animegan.train" in missing.problem
    present = load_slot("gan", "GAN", str(model_dirs[0]), False, "cpu")
    demo = Demo([present, missing])
    gan, wgan = demo.compare(3, 1.0)  # the loaded model still answers
    assert gan.shape == (320, 320, 3) and wgan is None
    assert demo.explore(3, 1.0, [1, 0, 0, 0, 0, 0])[1] is None
    assert "| FID | lower ↓ | 41.50 ± 0.25 | – | 3.25 |" in metrics_markdown(demo.slots)  # with its spread
    nothing = Demo([missing, missing])
    assert "No evaluation results" in metrics_markdown(nothing.slots)
    with pytest.raises(gr.Error, match="No generator is loaded"):
        nothing.compare(3, 1.0)


def test_grid_of_the_next_seeds(demo_fns):
    from demo.core import MAX_SEED
    gan, wgan = demo_fns.grid(MAX_SEED, 1.0, 10)  # wraps around to seeds 0 … 9
    assert gan.shape == wgan.shape == (3 * 128 + 2 * 2, 4 * 128 + 3 * 2, 3)  # 4 per row, 2× cells, 2 px gaps
    first = demo_fns.compare(0, 1.0)[0][::5, ::5]
    assert np.array_equal(gan[:128:2, :128:2], first)
    with pytest.raises(gr.Error, match="Grid size"):
        demo_fns.grid(1, 1.0, 17)


def test_metrics_tab_is_one_row_per_known_metric_and_ignores_other_weights(model_dirs):
    from demo.metrics import OTHER_WEIGHTS, metrics_markdown, read_metrics
    from eval.report import FEATURE_METRICS
    gan, gan_note = read_metrics(str(model_dirs[0]))
    assert gan["metrics"]["fid"] == 41.5 and gan_note is None
    assert read_metrics(str(model_dirs[1])) == ({}, OTHER_WEIGHTS)  # its weights_sha256 is not these weights'
    from demo.core import load_slot
    slots = [load_slot(k, t, str(d), True, "cpu") for k, t, d in zip(("gan", "wgan-gp"), ("GAN", "WGAN-GP"), model_dirs)]
    table = metrics_markdown(slots)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| metric")]
    assert [r.split(" | ")[0][2:] for r in rows] == [FID.name, KID.name]  # not "ndb": no row for it
    assert rows[1].split(" | ")[2:6] == ["30.00", "–", "0.0002", "–"]  # KID ×10³, as titled; the floor keeps its digits
    assert rows[0].split(" | ")[2:6] == ["41.50 ± 0.25", "–", "3.25", "250.00"]  # ± paired std; the ceiling
    assert rows[0].endswith(f"| {FID.meaning} |") and not {m.key for m in FEATURE_METRICS} & {"fid", "kid"}
    assert "gan is ahead on 1 of 1 rulers." not in table  # only one checkpoint's metrics.json counts: no shared verdict
    assert "blurred with σ = 1.3 px" in table
    assert f"WGAN-GP**: {OTHER_WEIGHTS}" in table and "n = 100" in table


def test_metrics_of_any_shape_are_read_defensively(tmp_path):
    from demo.metrics import read_metrics
    (tmp_path / "metrics.json").write_text("[1, 2, 3]")
    assert read_metrics(str(tmp_path)) == ({}, None)
    (tmp_path / "metrics.json").write_text("{not json")
    assert read_metrics(str(tmp_path)) == ({}, None)
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"fid": 1.0}, "weights_sha256": "ab"}))
    assert read_metrics(str(tmp_path))[1] == "metrics.json describes other weights"  # no weights at all here
    from demo.metrics import _value
    assert _value({"ct": float("nan"), "fid": 3}, "ct") is None and _value({"fid": 3}, "fid") == 3  # NaN shows "–"


def test_links_round_trip_and_bad_values_are_dropped_with_a_reason():
    from urllib.parse import parse_qsl, urlsplit
    from demo.links import page_link, parse_query
    url = page_link("http://host:7860/?old=1", "explore", 1234, 0.8, [1.5, 0, 0, 0, -2, 0])
    assert url == "http://host:7860/?tab=explore&seed=1234&trunc=0.8&offsets=1.5,0,0,0,-2,0"
    state, problems = parse_query(dict(parse_qsl(urlsplit(url).query)))
    assert state == {"tab": "explore", "seed": 1234, "trunc": 0.8, "offsets": [1.5, 0, 0, 0, -2, 0]} and not problems
    assert page_link("", "compare", 7, 1.0, None) == "?tab=compare&seed=7&trunc=1"
    state, problems = parse_query({"seed": "-3", "trunc": "nan", "offsets": "1,2", "tab": "x", "other": "1"})
    assert state == {} and len(problems) == 4
    assert problems[0].startswith("seed='-3' ignored: Seed must be a whole number")


def test_downloads_hold_generated_and_shown_sizes(demo_fns):
    sizes = {Path(p).name.split("_")[0] + Path(p).suffix + "@" + "x".join(map(str, Image.open(p).size))
             for p in demo_fns.compare_files(5, 1.0, True, 8)}
    assert {"gan.png@64x64", "gan.png@320x320", "wgan-gp.png@64x64", "wgan-gp.png@320x320"} <= sizes
    assert {"gan.png@259x129", "gan.png@518x258"} <= sizes  # the grid: 4 per row, 1 px gaps, then 2×
    files = demo_fns.interpolate_files(1, 2, 4, "slerp")
    gifs = sorted(Image.open(p).size for p in files if p.endswith(".gif"))
    assert gifs == [(64, 64), (64, 64), (256, 256), (256, 256)]
    assert all(Image.open(p).n_frames == 6 for p in files if p.endswith(".gif"))
    by_name = {Path(p).name: p for p in files}
    shown = demo_fns.interpolate(1, 2, 4, "slerp")[2]  # 4 frames in a row, 2× per pixel
    assert _img(by_name["gan_1-2_4frames_slerp_strip_256px.png"]).shape == (64, 256, 3)
    assert np.array_equal(_img(by_name["gan_1-2_4frames_slerp_strip_512px.png"]), shown)
    explore = demo_fns.explore_files(5, 1.0, [0, 1, 0, 0, 0, 0])
    assert any(p.endswith("offsets0_1_0_0_0_0_320px.png") for p in explore)
    assert sum("directions" in p for p in explore) == 4  # both models' strips, two sizes each


@pytest.mark.slow
def test_the_latency_benchmark_runs(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "benchmarks/app_latency.py", "--calls", "3", "--explore-calls", "3",
                        "--interp-calls", "1", "--clients", "2", "--duration", "2", "--judge-calls", "2",
                        "--json", str(out)],
                       cwd=ROOT, env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["compare"]["n"] == res["explore"]["n"] == 3 and res["interpolate_16"]["n"] == 1
    assert res["load"]["failed"] == 0 and res["compare_serving_floor"]["n"] == 3
    assert all(v["ok"] > 0 for v in res["load"]["by_endpoint"].values())  # both /compare and /explore under load
    assert res["functions_only"]["explore"]["n"] == 3
    assert res["judge_pair"]["n"] == res["judge_vote"]["n"] == 2


# ---- a real browser ---------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium and Playwright, or a visible skip (a failure when ANIMEGAN_REQUIRE_BROWSER=1)."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "no playwright (pip install -r requirements-dev.txt)"
    found = [p for p in map(shutil.which, ("chromium", "chromium-browser")) if p and Path(p).is_file()]
    if not missing and not found:
        missing = "no chromium on this machine (apt-get install -y chromium)"
    if missing:
        (pytest.fail if os.environ.get("ANIMEGAN_REQUIRE_BROWSER") == "1" else pytest.skip)(
            f"browser test: {missing}; CI sets ANIMEGAN_REQUIRE_BROWSER=1 to require it")
    return found[0]


def _changed(page, sels: list[str], before: list[str], width: int = 320) -> None:
    page.wait_for_function(
        """([sels, before, width]) => sels.every((s, i) => {
               const im = document.querySelector(s);
               return im && im.src !== before[i] && im.complete && im.naturalWidth === width; })""",
        arg=[sels, before, width], timeout=30_000)


@pytest.mark.browser
def test_browser_compare_explore_and_a_shared_link(chromium, server):  # chromium first: skip before starting the app
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # launch() gives every run a fresh temporary profile (its own --user-data-dir)
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server, wait_until="domcontentloaded")
            imgs = ["#gan-image img", "#wgan-image img"]
            for sel in imgs:  # the default seed's answer is there at start-up
                page.wait_for_selector(sel, state="visible", timeout=30_000)
            before = [page.get_attribute(sel, "src") for sel in imgs]
            page.fill("#seed input", "20240601")
            page.click("#generate")
            _changed(page, imgs, before)
            assert page.locator("#gan-image").inner_text().strip().startswith("GAN")
            page.screenshot(path=str(ARTIFACTS / "app_browser.png"), full_page=True)
            page.fill("#seed input", "1.5")  # a bad seed: a toast that says why, and the page stays usable
            page.click("#generate")
            page.get_by_text("Seed must be a whole number").first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "app_browser_error.png"), full_page=True)

            # a shared link opens the Explore tab in its state; one slider moves both faces
            page.goto(f"{server}?tab=explore&seed=1234&trunc=0.8&offsets=0,0,1,0,0,0", wait_until="domcontentloaded")
            explore = ["#explore-gan img", "#explore-wgan img"]
            page.wait_for_function("() => document.querySelector('#explore-seed input')?.value === '1234'",
                                   timeout=30_000)
            assert page.input_value("#direction-3 input[type=range]") == "1"
            link = page.locator("#link textarea")
            page.wait_for_function("() => document.querySelector('#link textarea').value.includes('seed=1234')",
                                   timeout=30_000)
            assert "tab=explore" in link.input_value() and "offsets=0,0,1,0,0,0" in link.input_value()
            page.wait_for_timeout(1000)  # let the restored faces arrive before taking "before"
            before = [page.get_attribute(sel, "src") for sel in explore]
            page.locator("#direction-1 input[type=range]").fill("2.5")
            _changed(page, explore, before)
            page.wait_for_function("() => document.querySelector('#link textarea').value.includes('offsets=2.5,0,1')",
                                   timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "app_browser_explore.png"), full_page=True)
        finally:
            browser.close()
