"""Files the demo hands out: animated GIFs and downloads, in a private temp folder pruned as it goes.

    path = write_gif(frames, "gan", scale=4)                       # frames: B×64×64×3 uint8
    paths = write_downloads({"gan_seed42": img}, scale=5)          # …_64px.png and …_320px.png

Gradio copies every returned file into its own cache at once, so files older than a few
minutes are no longer needed and are deleted by the next write.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from demo.core import upscale

OUT_DIR = Path(tempfile.gettempdir()) / f"animegan-app-{os.getpid()}"
KEEP_SECONDS = 300
GIF_FPS = 12
atexit.register(shutil.rmtree, OUT_DIR, ignore_errors=True)


def _fresh_folder() -> Path:
    """A new folder for one request's files, after deleting those of requests long gone."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except FileNotFoundError:  # another request pruned it first
            pass
    folder = OUT_DIR / uuid.uuid4().hex[:12]
    folder.mkdir()
    return folder


def _save_gif(frames: np.ndarray, path: Path, scale: int) -> None:
    """Frames a→b→a (ping-pong, so the loop has no jump) as an animated GIF, each pixel scale× scale."""
    seq = list(frames) + list(frames[-2:0:-1])
    pics = [Image.fromarray(upscale(f, scale)) for f in seq]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=round(1000 / GIF_FPS), loop=0)


def write_gif(frames: np.ndarray, tag: str, scale: int) -> str:
    path = _fresh_folder() / f"{tag}.gif"
    _save_gif(frames, path, scale)
    return str(path)


def write_downloads(images: dict[str, np.ndarray], scale: int, gifs: dict[str, np.ndarray] | None = None,
                    gif_scale: int = 1) -> list[str]:
    """Each image (H×W×3) as NAME_<W>px.png at generated resolution and at the shown size (scale×);
    each animation (B×H×W×3) as NAME_<W>px.gif likewise."""
    folder, paths = _fresh_folder(), []
    for name, img in images.items():
        for s in (1, scale):
            path = folder / f"{name}_{img.shape[1] * s}px.png"
            Image.fromarray(upscale(img, s)).save(path)
            paths.append(str(path))
    for name, frames in (gifs or {}).items():
        for s in (1, gif_scale):
            path = folder / f"{name}_{frames.shape[2] * s}px.gif"
            _save_gif(frames, path, s)
            paths.append(str(path))
    return paths
