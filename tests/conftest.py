import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# Scripts the tests start as subprocesses import this checkout, not another installed copy.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# An app started by a test keeps its votes (and vote key) in a throwaway folder, not the user's data folder.
os.environ.setdefault("ANIMEGAN_DATA_DIR", tempfile.mkdtemp(prefix="animegan-test-data-"))

SHARED_DATA = ROOT.parent / "shared" / "data" / "anime-faces-96.tar"


@pytest.fixture
def tiny_images(tmp_path):
    """A folder of 24 small random RGB PNGs (different sizes, so resize + crop matter)."""
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        h, w = (20, 24) if i % 2 else (24, 18)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return d
