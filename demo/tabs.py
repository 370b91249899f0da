"""The page's Compare, Interpolate and About tabs, built inside app.py's gr.Blocks.

Each builder lays out one tab and wires its events to a `Demo`; `lane` is the concurrency
group its work runs in. Only /compare, /interpolate and /explore (and the Judge tab's
/judge_pair, /judge_real_pair and /judge_vote) are public API endpoints.
"""
from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from demo.core import DEFAULT_SEED, FRAMES_MAX, FRAMES_MIN, MAX_SEED, METHODS, TRUNC_MAX, TRUNC_MIN, shown
from demo.endpoints import Demo
from demo.metrics import FD_FIGURE, metrics_markdown

PRIVATE = dict(api_visibility="private")
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


def downloads(fn, inputs: list, lane: dict, what: str) -> None:
    """An accordion whose button writes every image of the tab at 64 px per face and at the shown size."""
    with gr.Accordion(f"Download {what} (generated resolution and shown size)", open=False):
        button = gr.Button("Prepare files", size="sm")
        files = gr.File(file_count="multiple", label="Files", interactive=False)
    button.click(fn, inputs, files, **PRIVATE, **lane)


def compare_tab(d: Demo, lane: dict) -> SimpleNamespace:
    slots = d.slots
    first = d.compare(DEFAULT_SEED, 1.0) if any(s.generator for s in slots) else (None, None)
    with gr.Row(equal_height=True):
        seed = gr.Number(DEFAULT_SEED, label=f"Seed (0 … {MAX_SEED})", precision=None, elem_id="seed", scale=2)
        dice = gr.Button("🎲 Random seed", scale=1)
        trunc = gr.Slider(TRUNC_MIN, TRUNC_MAX, value=1.0, step=0.05, label="Truncation (scale of z)", scale=3)
        go = gr.Button("Generate", variant="primary", elem_id="generate", scale=1)
    with gr.Row():
        out_a = gr.Image(first[0], label=slots[0].title, format="png", elem_id="gan-image", interactive=False,
                         height=340)
        out_b = gr.Image(first[1], label=slots[1].title, format="png", elem_id="wgan-image", interactive=False,
                         height=340)
    with gr.Accordion("More seeds: a grid of the next ones", open=False):
        with gr.Row():
            show_grid = gr.Checkbox(False, label="Also draw the next seeds on every Generate")
            count = gr.Slider(8, 16, value=8, step=1, label="How many")
        with gr.Row(visible=False) as grid_row:
            grid_a = gr.Image(label=f"{slots[0].title}: seeds +1 … +N", format="png", interactive=False,
                              elem_classes="pixelated")
            grid_b = gr.Image(label=f"{slots[1].title}: seeds +1 … +N", format="png", interactive=False,
                              elem_classes="pixelated")
    downloads(d.compare_files, [seed, trunc, show_grid, count], lane, "these faces")

    def grid_if_shown(s, t, show, n):
        if not show:
            return gr.skip(), gr.skip(), gr.update(visible=False)
        return (*d.grid(s, t, n), gr.update(visible=True))

    cmp_io = dict(fn=d.compare, inputs=[seed, trunc], outputs=[out_a, out_b], **lane)
    grid_io = dict(fn=grid_if_shown, inputs=[seed, trunc, show_grid, count], outputs=[grid_a, grid_b, grid_row],
                   **PRIVATE, **lane)
    events = [go.click(api_name="compare", **cmp_io)]
    go.click(**grid_io)
    events.append(seed.submit(api_name="compare_on_enter", **PRIVATE, **cmp_io).then(**grid_io))
    events.append(trunc.release(api_name="compare_on_slide", **PRIVATE, **cmp_io).then(**grid_io))
    show_grid.change(**grid_io)
    count.release(**grid_io)
    events.append(dice.click(lambda: random.randint(0, MAX_SEED), None, seed, **PRIVATE, queue=False)
                  .then(api_name="compare_random", **PRIVATE, **cmp_io).then(**grid_io))
    gr.Examples([[DEFAULT_SEED, 1.0], [7, 0.7], [2024, 1.2], [123456789, 0.5], [3, 0.0]],
                inputs=[seed, trunc], outputs=[out_a, out_b], fn=d.compare,
                run_on_click=True, cache_examples=False, **PRIVATE)
    return SimpleNamespace(seed=seed, trunc=trunc, images=[out_a, out_b], events=events)


def interpolate_tab(d: Demo, lane: dict) -> None:
    slots = d.slots
    first = d.interpolate(DEFAULT_SEED, 7, 16, "slerp") if any(s.generator for s in slots) else (None,) * 4
    with gr.Row(equal_height=True):
        seed_a = gr.Number(DEFAULT_SEED, label="Seed A", precision=None, elem_id="seed-a")
        seed_b = gr.Number(7, label="Seed B", precision=None, elem_id="seed-b")
        frames = gr.Slider(FRAMES_MIN, FRAMES_MAX, value=16, step=1, label="Frames")
        method = gr.Radio(list(METHODS), value="slerp", label="Path",
                          info="slerp keeps |z| typical of a Gaussian; lerp cuts through the middle")
        go = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
    with gr.Row():
        gif_a = gr.Image(first[0], label=f"{slots[0].title} animation", type="filepath",
                         interactive=False, elem_classes="pixelated", height=300)
        gif_b = gr.Image(first[1], label=f"{slots[1].title} animation", type="filepath",
                         interactive=False, elem_classes="pixelated", height=300)
    gr.Markdown("Each animation plays a → b → a so that it loops without a jump; "
                "the strips below hold the frames once, left to right, 8 per row.")
    strip_a = gr.Image(first[2], label=f"{slots[0].title}: frames", format="png", interactive=False,
                       elem_classes="pixelated")
    strip_b = gr.Image(first[3], label=f"{slots[1].title}: frames", format="png", interactive=False,
                       elem_classes="pixelated")
    downloads(d.interpolate_files, [seed_a, seed_b, frames, method], lane, "the animations and strips")
    interp_in, interp_out = [seed_a, seed_b, frames, method], [gif_a, gif_b, strip_a, strip_b]
    go.click(d.interpolate, interp_in, interp_out, api_name="interpolate", **lane)
    gr.Examples([[DEFAULT_SEED, 7, 16, "slerp"], [1, 2, 32, "lerp"], [100, 4000000000, 8, "slerp"]],
                inputs=interp_in, outputs=interp_out, fn=d.interpolate,
                run_on_click=True, cache_examples=False, **PRIVATE)


def about_tab(d: Demo, root: Path, beside_metrics=None):
    """`beside_metrics`, if given, builds more of the tab right after the metrics table (the Judge
    tally); about_tab returns what it returned."""
    gr.Markdown(ABOUT)
    gr.Markdown("### Evaluation of the loaded checkpoints\n" + metrics_markdown(d.slots))
    extra = beside_metrics() if beside_metrics is not None else None
    if (root / FD_FIGURE).is_file():
        gr.Markdown("### Quick FD against training time\nEach training run's quick FD (effnet-lite0 features, "
                    "1,000 generated vs 1,000 held-out images, the same latents at every evaluation).")
        gr.Image(str(root / FD_FIGURE), show_label=False, interactive=False, type="filepath")
    with gr.Accordion("Raw metrics.json of each checkpoint", open=False):
        for s in d.slots:
            gr.JSON(s.metrics or None, label=f"{s.title}: {shown(s.source)}/metrics.json"
                    + (f" ({s.metrics_note}; ignored)" if s.metrics_note else ""))
    gr.Markdown("### Loaded from\n" + "\n".join(
        f"- **{s.title}**: `{shown(s.source)}`" + (f", z_dim {s.generator.z_dim}, "
        f"{sum(p.numel() for p in s.generator.parameters()):,} parameters" if s.generator else " (not loaded)")
        for s in d.slots))
    return extra
