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
import os
import random
import sys
from pathlib import Path

import gradio as gr
import torch

from demo.core import (DEFAULT_SEED, FRAMES_MAX, FRAMES_MIN, MAX_SEED, METHODS, TRUNC_MAX, TRUNC_MIN, Demo,
                           load_slot, shown)

HERE = Path(__file__).resolve().parent
CSS = "#gan-image img, #wgan-image img, .pixelated img { image-rendering: pixelated; }"


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
                f"- **{s.title}**: `{shown(s.source)}`" + (f", z_dim {s.generator.z_dim}, "
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
