"""Gradio demo: the plain GAN and the WGAN-GP draw the same noise, side by side.

    python app.py                                    # checkpoints/gan + checkpoints/wgan-gp
    python app.py --gan runs/gan/generator --wgan-gp someone/animegan-wgan-gp --port 7861
    ANIMEGAN_GAN=DIR_OR_REPO ANIMEGAN_WGAN_GP=DIR_OR_REPO python app.py

Named API endpoints (gradio_client; see docs/readme/app.md):
    /compare     (seed, truncation)                 -> (GAN png, WGAN-GP png), 320×320
    /interpolate (seed_a, seed_b, frames, method)   -> (GAN gif, WGAN-GP gif, GAN strip, WGAN-GP strip)

Both models see exactly the same z for a seed (`animegan.sampling.z_from_seed`),
scaled by the truncation factor. Generators are loaded once, in eval mode, and
run under `torch.inference_mode()`. The training loop is never imported.
"""
from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import random
import shutil
import sys
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

HERE = Path(__file__).resolve().parent
MAX_SEED = 2**32 - 1
TRUNC_MIN, TRUNC_MAX = 0.0, 1.5
FRAMES_MIN, FRAMES_MAX = 2, 64
METHODS = ("slerp", "lerp")
SCALE = 5  # 64×64 → 320×320, nearest neighbour: every generated pixel stays a visible square
GIF_SCALE, GIF_FPS, STRIP_SCALE, STRIP_COLS = 4, 12, 2, 8
DEFAULT_SEED = 42
GIF_DIR = Path(tempfile.gettempdir()) / f"animegan-app-{os.getpid()}"
atexit.register(shutil.rmtree, GIF_DIR, ignore_errors=True)
CSS = "#gan-image img, #wgan-image img, .pixelated img { image-rendering: pixelated; }"


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
        flag, shown = "--" + key, _shown(source)
        slot.problem = (f"no {title} generator at {shown}. Train one (`python -m animegan.train --model {key} "
                        f"--data FACES.tar --out runs/{key}`), export it (`python -m animegan.export runs/{key} "
                        f"--to {shown}`), or pass `{flag} FOLDER_OR_HUB_REPO_ID` "
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


def _shown(source: str) -> str:
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


ABOUT = """
### What you are looking at
Two 64×64 generators with **the same architecture** (DCGAN-style: four
`ConvTranspose2d → BatchNorm → ReLU` blocks from a 100-d `z ~ N(0, I)`, then
`ConvTranspose2d → Tanh`), trained on the same anime faces. Only the training
objective differs:

- **GAN**: the report's setup, binary cross-entropy, Adam (lr 2e-4, β = 0.5, 0.999), one D step per G step.
- **WGAN-GP** (Gulrajani et al. 2017): a critic without sigmoid and a gradient penalty λ = 10 on
  interpolates of real and fake images, RMSprop lr 2e-4.

We fixed two bugs of the original course report: its gradient penalty took the norm over colour
channels per pixel instead of **one norm per sample** over C×H×W, and its critic kept `BatchNorm`,
which couples the samples the penalty treats one by one (our critic uses layer norm).

The same seed gives the same `z` to both models, so differences you see come from training alone.
**Truncation** scales `z`: below 1 trades variety for typical-looking faces; 0 gives every seed the
same image (the "average" face). Images are upscaled with nearest neighbour: one square = one pixel.
"""


def build_demo(demo_fns: Demo, concurrency: int = 2) -> gr.Blocks:
    slots = demo_fns.slots
    # Two lanes: images (compare, grid) and animations. A burst of 64-frame interpolations then
    # holds at most one worker, and /compare keeps answering beside it.
    gen = dict(concurrency_id="images", concurrency_limit=concurrency)
    anim = dict(concurrency_id="animations", concurrency_limit=1)
    loaded = any(s.generator is not None for s in slots)  # the default seed's answer shows at start-up
    first = demo_fns.compare(DEFAULT_SEED, 1.0) if loaded else (None, None)
    first_interp = demo_fns.interpolate(DEFAULT_SEED, 7, 16, "slerp") if loaded else (None,) * 4
    problems = [s.problem for s in slots if s.problem]
    with gr.Blocks(title="GAN vs WGAN-GP · anime faces", delete_cache=(1800, 3600)) as blocks:
        gr.Markdown("# GAN vs WGAN-GP on anime faces\nThe same noise, two training objectives. "
                    "Pick a seed and compare; the **About** tab explains the models and shows their scores.")
        if problems:
            gr.Markdown("> ⚠️ **Missing model:** " + "<br>".join(problems), elem_id="missing")
        with gr.Tab("Compare"):
            with gr.Row(equal_height=True):
                seed = gr.Number(DEFAULT_SEED, label=f"Seed (0 … {MAX_SEED})", precision=None, elem_id="seed", scale=2)
                dice = gr.Button("🎲 Random seed", scale=1)
                trunc = gr.Slider(TRUNC_MIN, TRUNC_MAX, value=1.0, step=0.05, label="Truncation (scale of z)", scale=3)
                go = gr.Button("Generate", variant="primary", elem_id="generate", scale=1)
            with gr.Row():
                out_a = gr.Image(first[0], label=slots[0].title, format="png", elem_id="gan-image",
                                 interactive=False, height=340)
                out_b = gr.Image(first[1], label=slots[1].title, format="png", elem_id="wgan-image",
                                 interactive=False, height=340)
            with gr.Accordion("More seeds: a grid of the next ones", open=False):
                with gr.Row():
                    show_grid = gr.Checkbox(False, label="Also draw the next seeds on every Generate")
                    count = gr.Slider(8, 16, value=8, step=1, label="How many")
                with gr.Row(visible=False) as grid_row:
                    grid_a = gr.Image(label=f"{slots[0].title}: seeds +1 … +N", format="png", interactive=False,
                                      elem_classes="pixelated")
                    grid_b = gr.Image(label=f"{slots[1].title}: seeds +1 … +N", format="png", interactive=False,
                                      elem_classes="pixelated")

            def grid_if_shown(s, t, show, n):
                if not show:
                    return gr.skip(), gr.skip(), gr.update(visible=False)
                return (*demo_fns.grid(s, t, n), gr.update(visible=True))

            cmp_io = dict(fn=demo_fns.compare, inputs=[seed, trunc], outputs=[out_a, out_b], **gen)
            grid_io = dict(fn=grid_if_shown, inputs=[seed, trunc, show_grid, count],
                           outputs=[grid_a, grid_b, grid_row], api_visibility="private", **gen)
            go.click(api_name="compare", **cmp_io)
            go.click(**grid_io)
            seed.submit(api_name="compare_on_enter", api_visibility="private", **cmp_io).then(**grid_io)
            trunc.release(api_name="compare_on_slide", api_visibility="private", **cmp_io).then(**grid_io)
            show_grid.change(**grid_io)
            count.release(**grid_io)
            dice.click(lambda: random.randint(0, MAX_SEED), None, seed, api_visibility="private",
                       queue=False).then(api_name="compare_random", api_visibility="private", **cmp_io).then(**grid_io)
            gr.Examples([[DEFAULT_SEED, 1.0], [7, 0.7], [2024, 1.2], [123456789, 0.5], [3, 0.0]],
                        inputs=[seed, trunc], outputs=[out_a, out_b], fn=demo_fns.compare,
                        run_on_click=True, cache_examples=False, api_visibility="private")

        with gr.Tab("Interpolate"):
            with gr.Row(equal_height=True):
                seed_a = gr.Number(DEFAULT_SEED, label="Seed A", precision=None, elem_id="seed-a")
                seed_b = gr.Number(7, label="Seed B", precision=None, elem_id="seed-b")
                frames = gr.Slider(FRAMES_MIN, FRAMES_MAX, value=16, step=1, label="Frames")
                method = gr.Radio(list(METHODS), value="slerp", label="Path",
                                  info="slerp keeps |z| typical of a Gaussian; lerp cuts through the middle")
                go_i = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
            with gr.Row():
                gif_a = gr.Image(first_interp[0], label=f"{slots[0].title} animation", type="filepath",
                                 interactive=False, elem_classes="pixelated", height=300)
                gif_b = gr.Image(first_interp[1], label=f"{slots[1].title} animation", type="filepath",
                                 interactive=False, elem_classes="pixelated", height=300)
            gr.Markdown("Each animation plays a → b → a so that it loops without a jump; "
                        "the strips below hold the frames once, left to right, 8 per row.")
            strip_a = gr.Image(first_interp[2], label=f"{slots[0].title}: frames", format="png",
                               interactive=False, elem_classes="pixelated")
            strip_b = gr.Image(first_interp[3], label=f"{slots[1].title}: frames", format="png",
                               interactive=False, elem_classes="pixelated")
            interp_in, interp_out = [seed_a, seed_b, frames, method], [gif_a, gif_b, strip_a, strip_b]
            go_i.click(demo_fns.interpolate, interp_in, interp_out, api_name="interpolate", **anim)
            gr.Examples([[DEFAULT_SEED, 7, 16, "slerp"], [1, 2, 32, "lerp"], [100, 4000000000, 8, "slerp"]],
                        inputs=interp_in, outputs=interp_out, fn=demo_fns.interpolate,
                        run_on_click=True, cache_examples=False, api_visibility="private")

        with gr.Tab("About & metrics"):
            gr.Markdown(ABOUT)
            gr.Markdown("### Evaluation of the loaded checkpoints\n" + demo_fns.metrics_markdown())
            gr.Markdown("### Loaded from\n" + "\n".join(
                f"- **{s.title}**: `{_shown(s.source)}`" + (f", z_dim {s.generator.z_dim}, "
                f"{sum(p.numel() for p in s.generator.parameters()):,} parameters" if s.generator else
                " (not loaded)") for s in slots))
    return blocks


def parse_args(argv=None) -> argparse.Namespace:
    on_spaces = bool(os.environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(description="Gradio demo comparing the GAN and the WGAN-GP generators.")
    p.add_argument("--gan", default=os.environ.get("ANIMEGAN_GAN"),
                   help="exported generator folder or Hub repo id (default: env ANIMEGAN_GAN or checkpoints/gan)")
    p.add_argument("--wgan-gp", default=os.environ.get("ANIMEGAN_WGAN_GP"),
                   help="same for the WGAN-GP (default: env ANIMEGAN_WGAN_GP or checkpoints/wgan-gp)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces else "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or 7860))
    p.add_argument("--device", default="cpu", help="torch device for both generators (default: cpu)")
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("ANIMEGAN_CONCURRENCY") or 2),
                   help="requests generating at the same time (default 2: one per CPU core of a free Space)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per request (default: CPU cores ÷ concurrency, at least 1)")
    p.add_argument("--max-queue", type=int, default=128, help="waiting requests beyond this are refused")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.concurrency < 1 or args.max_queue < 1:
        raise SystemExit("error: --concurrency and --max-queue must be at least 1")
    # Two requests that each spread over both cores only wait on each other's OpenMP barriers:
    # on a busy 2-core machine one request with 2 threads took 10× longer than with 1.
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // args.concurrency))
    slots = [load_slot(key, title, src or str(HERE / "checkpoints" / key), bool(src), args.device)
             for key, title, src in (("gan", "GAN", args.gan), ("wgan-gp", "WGAN-GP", args.wgan_gp))]
    for s in slots:
        print(f"warning: {s.problem}" if s.problem else f"loaded {s.title} from {s.source}", file=sys.stderr)
    blocks = build_demo(Demo(slots), concurrency=args.concurrency)
    blocks.queue(max_size=args.max_queue, default_concurrency_limit=args.concurrency)
    blocks.launch(server_name=args.host, server_port=args.port, css=CSS, show_error=True)


if __name__ == "__main__":
    main()
