"""The demo's building blocks: the two model slots, input checks and drawing.

    slots = [load_slot("gan", "GAN", "checkpoints/gan", explicit=False, device="cpu"), ...]
    img = draw(slots[0], seed_latents(slots[0], [42], truncation=1.0))[0]   # 64×64×3 uint8

Bad input raises gr.Error with a one-line message, which Gradio shows in the page and
returns over the API while the server keeps serving. No input is ever used as a path.
The training loop is never imported.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from animegan.checkpoint import GeneratorLoadError, load_generator
from animegan.sampling import generate, to_uint8, z_from_seed
from demo.directions import K, Directions
from demo.metrics import read_metrics

MAX_SEED = 2**32 - 1
TRUNC_MIN, TRUNC_MAX = 0.0, 1.5
FRAMES_MIN, FRAMES_MAX = 2, 64
OFFSET_MAX = 3.0  # Explore sliders run from −3σ to +3σ
METHODS = ("slerp", "lerp")
SCALE = 5  # 64×64 → 320×320, nearest neighbour: every generated pixel stays a visible square
DEFAULT_SEED = 42


@dataclass(eq=False)
class Slot:
    """One of the two compared models: where it came from and, if it loaded, the generator."""

    key: str  # "gan" | "wgan-gp"
    title: str
    source: str
    generator: torch.nn.Module | None = None
    problem: str | None = None  # why it is not loaded, for the start-up banner
    metrics: dict = field(default_factory=dict)  # metrics.json, or {} when absent or describing other weights
    metrics_note: str | None = None  # why metrics.json was ignored
    directions: Directions | None = None  # filled on first use by Demo (about a second per model)


# ---- loading ----------------------------------------------------------------------------

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
    slot.metrics, slot.metrics_note = read_metrics(source)
    return slot


def shown(source: str) -> str:
    """A path relative to the working directory when it lies below it (shorter, and no home folders)."""
    p = Path(source).absolute()
    return os.path.relpath(p) if p.is_relative_to(Path.cwd()) else source


# ---- input checks: one friendly line per mistake, shown as a toast and returned over the API --

def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_whole(value, name: str, lo: int, hi: int) -> int:
    if not _number(value) or float(value) != int(value) or not lo <= int(value) <= hi:
        raise gr.Error(f"{name} must be a whole number from {lo} to {hi} (got {value!r}).")
    return int(value)


def check_seed(value, name: str = "Seed") -> int:
    return check_whole(value, name, 0, MAX_SEED)


def check_frames(value) -> int:
    return check_whole(value, "Frames", FRAMES_MIN, FRAMES_MAX)


def check_truncation(value) -> float:
    if not _number(value) or not TRUNC_MIN <= value <= TRUNC_MAX:
        raise gr.Error(f"Truncation must be a number from {TRUNC_MIN} to {TRUNC_MAX} (got {value!r}).")
    return float(value)


def check_method(value) -> str:
    if value not in METHODS:
        raise gr.Error(f"Method must be one of {', '.join(METHODS)} (got {value!r}).")
    return value


def check_offsets(value) -> list[float]:
    """A list of K numbers in [−3, 3]: how far to move along each principal direction, in σ."""
    if not isinstance(value, (list, tuple)):
        raise gr.Error(f"Offsets must be a list of {K} numbers, one per direction (got {value!r}).")
    if len(value) != K:
        raise gr.Error(f"Offsets must hold {K} numbers, one per direction (got {len(value)}).")
    for i, v in enumerate(value, 1):
        if not _number(v) or abs(v) > OFFSET_MAX:
            raise gr.Error(f"Offset {i} must be a number from {-OFFSET_MAX:g} to {OFFSET_MAX:g} (got {v!r}).")
    return [float(v) for v in value]


# ---- drawing ----------------------------------------------------------------------------

def draw(slot: Slot, z: torch.Tensor) -> np.ndarray | None:
    """B×z_dim latents → B×64×64×3 uint8, or None for a model that did not load."""
    if slot.generator is None:
        return None
    return to_uint8(generate(slot.generator, z)).permute(0, 2, 3, 1).numpy()  # B×3×64×64 → B×64×64×3


def seed_latents(slot: Slot, seeds: list[int], truncation: float) -> torch.Tensor:
    """The same z per seed for every model (only its length follows the model's z_dim), scaled."""
    return torch.stack([z_from_seed(s, slot.generator.z_dim) for s in seeds]) * truncation


def upscale(img: np.ndarray, s: int) -> np.ndarray:
    return img.repeat(s, axis=0).repeat(s, axis=1)  # H×W×3 → sH×sW×3, nearest neighbour


def tile(imgs: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """B×h×w×3 → one image at generated resolution, row-major, `cols` per row, white gaps.

    Upscaling the result s× gives the shown image (gaps included), so both sizes are one picture."""
    n, h, w, _ = imgs.shape
    rows, cols = -(-n // cols), min(cols, n)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = im
    return out
