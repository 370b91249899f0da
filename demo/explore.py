"""The Explore tab: both models' face for a seed, K sliders along each model's principal
directions, and beside each slider a strip of what that direction does.

The sliders write their values into one hidden list (`offsets`, in the browser, no request);
a change of that list calls the public /explore endpoint with trigger_mode="always_last", so a
drag sends one request at a time and only the latest position waits, never a pile.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import gradio as gr

from demo.core import DEFAULT_SEED, MAX_SEED, OFFSET_MAX, TRUNC_MAX, TRUNC_MIN
from demo.directions import K, THUMB_OFFSETS
from demo.endpoints import Demo
from demo.tabs import PRIVATE, downloads

API_DESCRIPTION = (f"seed (0 … {MAX_SEED}) and truncation ({TRUNC_MIN} … {TRUNC_MAX}) as in /compare; "
                   f"offsets: a list of {K} numbers, each from -{OFFSET_MAX:g} to {OFFSET_MAX:g}, how far to move "
                   f"along each model's own first {K} principal directions, in standard deviations. "
                   "Returns the GAN's and the WGAN-GP's face, 320×320 PNG.")
EXPLAINED = """A **principal direction** is an axis along which a model's first-block activations vary most
over random noise (PCA of the 512×4×4 map after its first BatchNorm/ReLU), carried back to a step in z;
slider *i* moves each model along *its own* direction *i*, in standard deviations of that axis.
It is found without labels, so it is **not** a named attribute: one direction often changes several things
at once (hair colour and brightness, say), and direction 1 of one model need not mean the same as
direction 1 of the other. The strips show the seed's face at −3σ, −1.5σ, 0, +1.5σ, +3σ along each direction
with the other sliders at 0."""


def explore_tab(d: Demo, lane: dict) -> SimpleNamespace:
    slots, zeros = d.slots, [0.0] * K
    loaded = any(s.generator for s in slots)
    first = d.explore(DEFAULT_SEED, 1.0, zeros) if loaded else (None, None)
    first_strips = d.strips(DEFAULT_SEED, 1.0) if loaded else (None,) * (2 * K)
    explained = d.explained()
    with gr.Row(equal_height=True):
        seed = gr.Number(DEFAULT_SEED, label=f"Seed (0 … {MAX_SEED})", precision=None, elem_id="explore-seed",
                         scale=2)
        dice = gr.Button("🎲 Random seed", scale=1)
        trunc = gr.Slider(TRUNC_MIN, TRUNC_MAX, value=1.0, step=0.05, label="Truncation (scale of z, as in Compare)",
                          elem_id="explore-trunc", scale=3)
        reset = gr.Button("Reset sliders", elem_id="explore-reset", scale=1)
    with gr.Row():
        img_a = gr.Image(first[0], label=slots[0].title, format="png", elem_id="explore-gan", interactive=False,
                         height=340)
        img_b = gr.Image(first[1], label=slots[1].title, format="png", elem_id="explore-wgan", interactive=False,
                         height=340)
    gr.Markdown(EXPLAINED)
    thumbs = ", ".join(f"{o:+g}σ" if o else "0" for o in THUMB_OFFSETS)
    with gr.Row():
        gr.Markdown(f"**Direction** (−{OFFSET_MAX:g}σ … +{OFFSET_MAX:g}σ) and the share of first-block variance "
                    "it explains", container=False)
        for s in slots:
            gr.Markdown(f"**{s.title}** at {thumbs}", container=False)
    sliders, strips = [], []
    for i in range(K):
        with gr.Row(equal_height=True):
            share = ", ".join(f"{s.title} {100 * e[i]:.1f} %" for s, e in zip(slots, explained) if e)
            sliders.append(gr.Slider(-OFFSET_MAX, OFFSET_MAX, value=0.0, step=0.1, label=f"Direction {i + 1}",
                                     info=share or None, elem_id=f"direction-{i + 1}", scale=2))
            for j, s in enumerate(slots):
                strips.append(gr.Image(first_strips[2 * i + j], label=f"{s.title}, direction {i + 1}",
                                       show_label=False, format="png", interactive=False, elem_classes="pixelated",
                                       height=110, scale=3))
    offsets = gr.JSON(zeros, label="Offsets", visible="hidden", elem_id="explore-offsets")
    downloads(d.explore_files, [seed, trunc, offsets], lane, "these faces and strips")

    def everything(s, t, o):
        return (*d.explore(s, t, o), *d.strips(s, t))

    all_io = dict(fn=everything, inputs=[seed, trunc, offsets], outputs=[img_a, img_b, *strips], **PRIVATE, **lane)
    # .change also catches a slider's own ↺ button and its number box, not only drags
    gr.on([s.change for s in sliders], fn=None, js="(...values) => [values]", inputs=sliders, outputs=offsets,
          **PRIVATE)
    moved = offsets.change(d.explore, [seed, trunc, offsets], [img_a, img_b], api_name="explore",
                           api_description=API_DESCRIPTION, trigger_mode="always_last", **lane)
    # events after which the page's link changes
    events = [moved, seed.submit(**all_io), trunc.release(**all_io),
              dice.click(lambda: random.randint(0, MAX_SEED), None, seed, queue=False, **PRIVATE).then(**all_io),
              reset.click(lambda: [*zeros, zeros], None, [*sliders, offsets], queue=False, **PRIVATE)]
    return SimpleNamespace(seed=seed, trunc=trunc, sliders=sliders, offsets=offsets, images=[img_a, img_b],
                           strips=strips, events=events, everything=everything)
