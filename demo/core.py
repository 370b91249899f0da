"""The demo's logic, apart from its page: load generators, validate inputs, draw images and GIFs.

Used by app.py (the Gradio page). It never imports the training loop.

    slots = [load_slot("gan", "GAN", "checkpoints/gan", explicit=False, device="cpu"), ...]
    demo = Demo(slots)
    gan_png, wgan_png = demo.compare(seed=42, truncation=1.0)   # 320×320 uint8 arrays

Bad input raises gr.Error with a one-line message, which Gradio shows in the page and
returns over the API while the server keeps serving. No input is ever used as a path.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from animegan.checkpoint import GeneratorLoadError, load_generator
from animegan.sampling import lerp, slerp, to_uint8, z_from_seed

MAX_SEED = 2**32 - 1
TRUNC_MIN, TRUNC_MAX = 0.0, 1.5
FRAMES_MIN, FRAMES_MAX = 2, 64
METHODS = ("slerp", "lerp")
SCALE = 5  # 64×64 → 320×320, nearest neighbour: every generated pixel stays a visible square
GIF_SCALE, GIF_FPS, STRIP_SCALE, STRIP_COLS = 4, 12, 2, 8
DEFAULT_SEED = 42
GIF_DIR = Path(tempfile.gettempdir()) / f"animegan-app-{os.getpid()}"
atexit.register(shutil.rmtree, GIF_DIR, ignore_errors=True)



@dataclass
class Slot:
    """One of the two compared models: where it came from and, if it loaded, the generator."""

    key: str  # "gan" | "wgan-gp"
    title: str
    source: str
    generator: torch.nn.Module | None = None
    problem: str | None = None  # why it is not loaded, for the start-up banner
    metrics: dict = field(default_factory=dict)


# ---- loading ----------------------------------------------------------------------------

def read_metrics(source: str) -> dict:
    """metrics.json next to the weights (local folder or Hub repo), or {} — its schema is not fixed."""
    path = Path(source) / "metrics.json"
    try:
        if not path.is_file() and not Path(source).exists() and source.count("/") == 1:
            from huggingface_hub import hf_hub_download
            path = Path(hf_hub_download(source, "metrics.json"))
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except Exception:  # absent, unreachable or malformed: the About tab says so instead
        return {}


def load_slot(key: str, title: str, source: str, explicit: bool, device: str) -> Slot:
    """Load one generator. A source the user named must load (else exit with one line); a missing
    default only warns, so the app still starts and says what is missing."""
    slot = Slot(key, title, source)
    if not explicit and not Path(source).exists():
        flag, where = "--" + key, shown(source)
        slot.problem = (f"no {title} generator at {where}. Train one (`python -m animegan.train --model {key} "
                        f"--data FACES.tar --out runs/{key}`), export it (`python -m animegan.export runs/{key} "
                        f"--to {where}`), or pass `{flag} FOLDER_OR_HUB_REPO_ID` "
                        f"(env ANIMEGAN_{key.upper().replace('-', '_')}).")
        return slot
    try:
        slot.generator = load_generator(source, device=device).eval()
    except GeneratorLoadError as e:
        if explicit:
            raise SystemExit(f"error: {title}: {e}")
        slot.problem = f"{title}: {e}"
        return slot
    slot.metrics = read_metrics(source)
    return slot


# ---- input checks: one friendly line per mistake, shown as a toast and returned over the API --

def _whole(value, name: str, lo: int, hi: int) -> int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or float(value) != int(value) or not lo <= int(value) <= hi:
        raise gr.Error(f"{name} must be a whole number from {lo} to {hi} (got {value!r}).")
    return int(value)


def check_seed(value, name: str = "Seed") -> int:
    return _whole(value, name, 0, MAX_SEED)


def check_frames(value) -> int:
    return _whole(value, "Frames", FRAMES_MIN, FRAMES_MAX)


def check_truncation(value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not TRUNC_MIN <= value <= TRUNC_MAX:
        raise gr.Error(f"Truncation must be a number from {TRUNC_MIN} to {TRUNC_MAX} (got {value!r}).")
    return float(value)


def check_method(value) -> str:
    if value not in METHODS:
        raise gr.Error(f"Method must be one of {', '.join(METHODS)} (got {value!r}).")
    return value


# ---- drawing ----------------------------------------------------------------------------

def draw(slot: Slot, z: torch.Tensor) -> np.ndarray | None:
    """B×z_dim latents → B×64×64×3 uint8, or None for a model that did not load."""
    if slot.generator is None:
        return None
    device = next(slot.generator.parameters()).device
    with torch.inference_mode():
        x = slot.generator(z.to(device))  # B×3×64×64 in [-1, 1]
    return to_uint8(x).permute(0, 2, 3, 1).numpy()  # B×64×64×3


def upscale(img: np.ndarray, s: int) -> np.ndarray:
    return img.repeat(s, axis=0).repeat(s, axis=1)  # H×W×3 → sH×sW×3, nearest neighbour


def tile(imgs: np.ndarray, cols: int, s: int, gap: int = 2) -> np.ndarray:
    """B×h×w×3 → one image, row-major, `cols` per row, each cell upscaled s×, white gaps."""
    n, h, w, _ = imgs.shape
    rows = -(-n // cols)
    cols = min(cols, n)
    out = np.full((rows * (h * s + gap) - gap, cols * (w * s + gap) - gap, 3), 255, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        out[r * (h * s + gap):r * (h * s + gap) + h * s, c * (w * s + gap):c * (w * s + gap) + w * s] = upscale(im, s)
    return out


def draw_seeds(slot: Slot, seeds: list[int], truncation: float) -> np.ndarray | None:
    """The same z per seed for every model (only its length follows the model's z_dim)."""
    if slot.generator is None:
        return None
    return draw(slot, torch.stack([z_from_seed(s, slot.generator.z_dim) for s in seeds]) * truncation)


def write_gif(frames: np.ndarray, tag: str) -> str:
    """Frames a→b→a (ping-pong, so the loop has no jump) as an animated GIF in a private temp dir."""
    GIF_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in GIF_DIR.glob("*.gif"):  # Gradio copies each result into its own cache at once
        try:
            if now - old.stat().st_mtime > 300:
                old.unlink()
        except FileNotFoundError:  # another request pruned it first
            pass
    seq = list(frames) + list(frames[-2:0:-1])
    pics = [Image.fromarray(upscale(f, GIF_SCALE)) for f in seq]
    path = GIF_DIR / f"{tag}-{uuid.uuid4().hex[:12]}.gif"
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=round(1000 / GIF_FPS), loop=0)
    return str(path)


class Demo:
    """The two slots and the functions behind every endpoint."""

    def __init__(self, slots: list[Slot]):
        self.slots = slots

    def _need_models(self) -> None:
        if all(s.generator is None for s in self.slots):
            raise gr.Error("No generator is loaded on this server; see the message at the top of the page.")

    def compare(self, seed, truncation):
        """One seed, both models: returns the GAN's and the WGAN-GP's image (320×320 PNG)."""
        seed, truncation = check_seed(seed), check_truncation(truncation)
        self._need_models()
        outs = []
        for s in self.slots:
            img = draw_seeds(s, [seed], truncation)
            outs.append(None if img is None else upscale(img[0], SCALE))
        return tuple(outs)

    def grid(self, seed, truncation, count):
        """The next `count` seeds after `seed` (wrapping at 2^32), both models, as two tiled images."""
        seed, truncation = check_seed(seed), check_truncation(truncation)
        count = _whole(count, "Grid size", 1, 16)
        self._need_models()
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(1, count + 1)]
        outs = []
        for s in self.slots:
            imgs = draw_seeds(s, seeds, truncation)
            outs.append(None if imgs is None else tile(imgs, cols=4, s=2))
        return tuple(outs)

    def interpolate(self, seed_a, seed_b, frames, method):
        """The path z(seed_a) → z(seed_b) drawn by both models: two GIFs (a→b→a) and two frame strips."""
        seed_a, seed_b = check_seed(seed_a, "Seed A"), check_seed(seed_b, "Seed B")
        frames, method = check_frames(frames), check_method(method)
        self._need_models()
        mix = slerp if method == "slerp" else lerp
        gifs, strips = [], []
        for s in self.slots:
            if s.generator is None:
                gifs.append(None), strips.append(None)
                continue
            za, zb = z_from_seed(seed_a, s.generator.z_dim), z_from_seed(seed_b, s.generator.z_dim)
            z = torch.stack([mix(za, zb, float(t)) for t in torch.linspace(0, 1, frames)])  # frames×z_dim
            imgs = draw(s, z)
            gifs.append(write_gif(imgs, s.key))
            strips.append(tile(imgs, cols=STRIP_COLS, s=STRIP_SCALE, gap=0))
        return (*gifs, *strips)

    # ---- about tab -----------------------------------------------------------------------

    def metrics_markdown(self) -> str:
        # an eval row {"name", "n", "metrics": {...}} reads as fid, kid, …; any other shape as dotted keys
        flat = [{k.removeprefix("metrics."): v for k, v in _flatten(s.metrics)} for s in self.slots]
        keys = list(dict.fromkeys(k for f in flat for k in f))
        if not keys:
            return ("*No evaluation results are shipped with these checkpoints yet* (no `metrics.json` in "
                    "the checkpoint folders). Run the evaluation toolkit (`python -m eval.fid`) to make one.")
        head = "| metric | " + " | ".join(s.title for s in self.slots) + " |\n|---|" + "---:|" * len(self.slots)
        rows = [f"| `{k}` | " + " | ".join(_fmt(f.get(k)) for f in flat) + " |" for k in keys[:80]]
        return "\n".join([head, *rows]) + "\n\n*Read at start-up from each checkpoint folder's `metrics.json`.*"


def shown(source: str) -> str:
    """A path relative to the working directory when it lies below it (shorter, and no home folders)."""
    p = Path(source).absolute()
    return os.path.relpath(p) if p.is_relative_to(Path.cwd()) else source


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, name + ".")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            yield name, v
        elif isinstance(v, list) and len(v) <= 4 and all(isinstance(x, (int, float, str)) for x in v):
            yield name, ", ".join(_fmt(x) for x in v)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")[:60]
