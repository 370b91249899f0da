"""Atomic training-state checkpoints, and the light generator export that ships.

Two kinds of files:
- `RUN/checkpoints/step_0001234.pt`: the full training state (G, D, EMA, both
  optimisers, step, epoch, RNG states, config) as tensors and plain containers,
  loaded with `torch.load(weights_only=True)` — never unpickled.
- a generator folder (`config.json` + `model.safetensors`), written by
  `PyTorchModelHubMixin.save_pretrained`, that rebuilds the EMA generator with
  no flags; `load_generator` reads it from a folder or a Hub repo id.

Every write goes to a temporary file in the same folder and is renamed with
`os.replace`, so a run killed at any moment leaves the last good file intact.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from .files import atomic_write, sha256_file, write_json
from .models import Generator

CKPT_RE = re.compile(r"^step_(\d{7,})\.pt$")


class GeneratorLoadError(ValueError):
    """A path or repo id that does not hold an exported generator (one-line message)."""


class CheckpointError(ValueError):
    """A training checkpoint that cannot be used (one-line message)."""


# ---- full training state ---------------------------------------------------

def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def save_state(run_dir: str | os.PathLike, step: int, state: dict, keep: int = 3) -> Path:
    """Write state atomically as step_XXXXXXX.pt and keep only the newest `keep`."""
    path = checkpoint_path(run_dir, step)
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_state(path: str | os.PathLike, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong file, unsafe pickle: all one message
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


def load_latest_state(run_dir: str | os.PathLike, map_location="cpu") -> tuple[dict, Path] | None:
    """Newest readable checkpoint of a run; unreadable ones are reported and skipped."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return load_state(path, map_location), path
        except CheckpointError as e:
            print(f"warning: {e}; trying an older one", file=sys.stderr)
    return None


# ---- generator export ------------------------------------------------------

WEIGHTS_FILE = "model.safetensors"
# Files beside the weights that describe them (scores, samples, the model card, the training record): an export that
# changes the weights drops them, so no folder ever shows numbers of other weights.
DESCRIBES_WEIGHTS = ("metrics.json", "samples.png", "README.md", "training_info.json")


def weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 of an exported generator's model.safetensors: the identity metrics.json records."""
    return sha256_file(Path(folder) / WEIGHTS_FILE)


def export_generator(generator: Generator, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write config.json + model.safetensors (+ optional training_info.json) atomically as a folder.

    Other files of an existing folder are kept when the weights are unchanged; when they change,
    the files that describe the old weights (DESCRIBES_WEIGHTS) are dropped (README.md becomes
    huggingface_hub's generic card)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        generator.save_pretrained(tmp)
        if extra:
            write_json(tmp / "training_info.json", extra)
        if out.is_dir():
            # save_pretrained writes a generic README.md: a card of the same weights replaces it.
            same = (out / WEIGHTS_FILE).is_file() and weights_sha256(out) == weights_sha256(tmp)
            ours = {WEIGHTS_FILE, "config.json"} | ({"training_info.json"} if extra else set())
            for f in out.iterdir():
                keep = f.name not in DESCRIBES_WEIGHTS and not (tmp / f.name).exists()
                if f.is_file() and f.name not in ours and (same or keep):
                    shutil.copy2(f, tmp / f.name)
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_generator(path_or_repo_id: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """A generator in eval mode from an exported folder or a Hugging Face Hub repo id."""
    src = str(path_or_repo_id)
    p = Path(src)
    if p.exists():
        if not (p / "config.json").is_file() or not (p / "model.safetensors").is_file():
            raise GeneratorLoadError(
                f"{src} is not an exported generator folder (needs config.json and model.safetensors; "
                f"export one with `python -m animegan.export RUN_DIR --to {src}`)")
    elif src.startswith((".", "/", "~")) or src.count("/") != 1:
        raise GeneratorLoadError(f"generator not found: {src} is neither a folder nor a Hub repo id (owner/name)")
    try:
        g = Generator.from_pretrained(src, map_location=str(device))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        hint = "" if p.exists() else " (the Hugging Face Hub may be unreachable: download the folder and pass its path)"
        raise GeneratorLoadError(f"cannot load generator from {src}: {first}{hint}") from None
    return g.to(device).eval()
