"""Deploying to a Hugging Face Space, verified offline: the folder `python -m demo.deploy` builds is
exactly what the Space receives, and the app starts from it alone.

    pytest tests/test_deploy.py
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from demo.deploy import PLAIN_GIT_LIMIT, build, local_modules

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

# Runs app.py as a Space would, but refuses to import this repository's packages from anywhere
# except the built folder (the editable install would otherwise fill in a missing module).
ONLY_THE_SPACE = """
import importlib.abc, importlib.machinery, os, runpy, sys
HERE = os.getcwd()
class OnlyHere(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in ("animegan", "demo", "eval"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path if "." in name else [HERE])
        if spec is None or not (spec.origin or "").startswith(HERE):
            raise ModuleNotFoundError(f"{name} is not in the Space's folder")
        return spec
sys.meta_path.insert(0, OnlyHere())
sys.argv = ["app.py", *sys.argv[1:]]
runpy.run_path("app.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    out = tmp_path_factory.mktemp("space")
    return out, dict(build(out))


def test_the_card_parses_and_pins_the_same_gradio(space):
    folder, _ = space
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    pin = re.search(r"^gradio==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert meta["sdk"] == "gradio" and str(meta["sdk_version"]) == pin
    assert meta["app_file"] == "app.py" and (folder / meta["app_file"]).is_file()


def test_every_imported_module_and_nothing_else_is_shipped(space):
    folder, files = space
    modules = {p.relative_to(ROOT).as_posix() for p in local_modules(ROOT)}
    assert {"app.py", "demo/core.py", "demo/explore.py", "animegan/checkpoint.py", "animegan/models.py",
            "eval/report.py", "eval/__init__.py"} <= modules
    assert modules <= set(files)
    assert {"requirements.txt", "README.md", "checkpoints/gan/model.safetensors",
            "checkpoints/wgan-gp/model.safetensors", "checkpoints/gan/metrics.json"} <= set(files)
    assert not [f for f in files if f.split("/")[0] in ("data", "runs", "reports", "tests", "scripts", "benchmarks")]
    assert not [f for f in files if f.endswith((".tar", ".jpg", ".pt", ".pyc"))]
    assert (folder / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    from demo.metrics import FD_FIGURE
    assert FD_FIGURE.as_posix() in files, "the About tab's figure travels with the app"


def test_file_sizes_are_within_the_hubs_limits(space):
    _, files = space
    big = sorted(f for f, size in files.items() if size > PLAIN_GIT_LIMIT)
    assert big == ["checkpoints/gan/model.safetensors", "checkpoints/wgan-gp/model.safetensors"]
    assert sum(files.values()) < 100 * 2**20


def test_build_refuses_a_file_over_the_hubs_limit_and_a_file_as_out(tmp_path, monkeypatch):
    import demo.deploy as deploy
    monkeypatch.setattr(deploy, "HUB_FILE_LIMIT", 2**20)  # 1 MiB: the shipped weights are over it
    with pytest.raises(SystemExit, match="file limit: checkpoints/gan/model.safetensors"):
        build(tmp_path / "space")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        build(tmp_path / "file")


def test_the_app_starts_from_the_built_folder_alone(space):
    folder, _ = space
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    log = open(folder.parent / "space-app.log", "w+")
    proc = subprocess.Popen([sys.executable, "-c", ONLY_THE_SPACE, "--port", str(port)], cwd=folder, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    pytest.fail(f"the app did not start from the Space's folder:\n{log.read()[-3000:]}")
                time.sleep(0.5)
        from gradio_client import Client
        gan, wgan = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(1, 1.0, [1, 0, 0, 0, 0, 0],
                                                                             api_name="/explore")
        assert Path(gan).stat().st_size > 0 and Path(wgan).stat().st_size > 0
        log.seek(0)
        started = log.read()
        assert "loaded GAN from" in started and "loaded WGAN-GP from" in started and "warning" not in started
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_dry_run_lists_files_and_sizes_and_uploads_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "demo.deploy", "someone/animegan-demo", "--dry-run", "--out",
                        str(tmp_path / "space")], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s+13\.\d\d MB  checkpoints/gan/model\.safetensors  \(large-file storage\)$", r.stdout, re.M)
    assert "nothing uploaded" in r.stdout and (tmp_path / "space" / "app.py").is_file()


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_an_upload_without_the_hub_fails_with_one_line(env):
    r = subprocess.run([sys.executable, "-m", "demo.deploy", "someone/animegan-demo"], cwd=ROOT,
                       env={**ENV, **env, "HF_TOKEN": "hf_not_a_real_token"}, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nothing uploaded to spaces/someone/animegan-demo: ")
