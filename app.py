"""Gradio demo: the plain GAN and the WGAN-GP draw the same noise, side by side.

    python app.py                                    # checkpoints/gan + checkpoints/wgan-gp
    python app.py --gan runs/gan/generator --wgan-gp someone/animegan-wgan-gp --port 7861
    ANIMEGAN_GAN=DIR_OR_REPO ANIMEGAN_WGAN_GP=DIR_OR_REPO python app.py

Named API endpoints (gradio_client; see docs/demo.md):
    /compare     (seed, truncation)                 -> (GAN png, WGAN-GP png), 320×320
    /interpolate (seed_a, seed_b, frames, method)   -> (GAN gif, WGAN-GP gif, GAN strip, WGAN-GP strip)
    /explore     (seed, truncation, offsets)        -> (GAN png, WGAN-GP png), 320×320; offsets: 6 numbers in σ
    /judge_pair       ()                            -> (left png, right png, token): a blind pair, one new seed
    /judge_real_pair  ()                            -> (face png, token): real or generated (with --real-faces)
    /judge_vote  (token, choice)                    -> what was stored; choice left/right/tie or real/generated

Both models see exactly the same z for a seed (`animegan.sampling.z_from_seed`), scaled by the
truncation factor. The page opens in the state its URL names (`?tab=explore&seed=7&trunc=0.8`).
The Judge tab collects blind votes into an SQLite database under --data-dir (default
$ANIMEGAN_DATA_DIR or the per-user data folder); `python -m demo.votes summary` prints the tally.
The logic lives in the `demo` package; this file is the page.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gradio as gr
import torch

from demo.core import DEFAULT_SEED, load_slot
from demo.endpoints import Demo
from demo.explore import explore_tab
from demo.judge import KEYS_JS, Judge, judge_tab, open_judge
from demo.links import restore_and_link
from demo.tabs import about_tab, compare_tab, interpolate_tab
from demo.votes import DATA_ENV, SetupError, data_dir, default_data_dir

HERE = Path(__file__).resolve().parent
CSS = ("#gan-image img, #wgan-image img, #explore-gan img, #explore-wgan img, #judge-left img, #judge-right img, "
       "#judge-face img, .pixelated img { image-rendering: pixelated; }")


def build_demo(demo_fns: Demo, judge: Judge, concurrency: int = 2) -> gr.Blocks:
    # Three lanes: images (compare, grid, explore), animations and judging. A burst of 64-frame
    # interpolations or of votes then holds at most one worker each, and /compare and /explore
    # keep answering beside them.
    lanes = {"images": dict(concurrency_id="images", concurrency_limit=concurrency),
             "animations": dict(concurrency_id="animations", concurrency_limit=1),
             "judge": dict(concurrency_id="judge", concurrency_limit=1)}
    problems = [s.problem for s in demo_fns.slots if s.problem]
    with gr.Blocks(title="GAN vs WGAN-GP · anime faces", delete_cache=(1800, 3600)) as blocks:
        gr.Markdown("# GAN vs WGAN-GP on anime faces\nThe same noise, two training objectives. "
                    "Pick a seed and compare, steer it along each model's principal directions in **Explore**, "
                    "judge them blind in **Judge**; the **About** tab explains the models and shows their scores.")
        if problems:
            gr.Markdown("> ⚠️ **Missing model:** " + "<br>".join(problems), elem_id="missing")
        link = gr.Textbox(label="Link to this view", buttons=["copy"], interactive=False, elem_id="link",
                          value=f"?tab=compare&seed={DEFAULT_SEED}&trunc=1")
        with gr.Tabs(selected="compare", elem_id="tabs") as tabs:
            with gr.Tab("Compare", id="compare") as tab_c:
                compare = compare_tab(demo_fns, lanes["images"])
            with gr.Tab("Interpolate", id="interpolate") as tab_i:
                interpolate_tab(demo_fns, lanes["animations"])
            with gr.Tab("Explore", id="explore") as tab_e:
                explore = explore_tab(demo_fns, lanes["images"])
            with gr.Tab("Judge", id="judge") as tab_j:
                judging = judge_tab(judge, lanes["judge"])
            with gr.Tab("About & metrics", id="about") as tab_a:
                tally = about_tab(demo_fns, HERE, lambda: gr.Markdown(judge.tally_markdown(), elem_id="judge-tally"))
        restore_and_link(blocks, demo_fns, tabs, {"compare": tab_c, "interpolate": tab_i, "explore": tab_e,
                                                  "judge": tab_j, "about": tab_a}, compare, explore, link, lanes["images"])
        judging.wire(blocks, tab_j, tab_a, tally)
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
    p.add_argument("--data-dir", default=None,
                   help=f"folder of the Judge tab's votes database and signing key (default: env {DATA_ENV} or "
                        f"{default_data_dir()})")
    p.add_argument("--real-faces", default=os.environ.get("ANIMEGAN_REAL_FACES"),
                   help="folder, .zip or .tar of real faces: turns on the Judge tab's real-or-generated mode "
                        "(env ANIMEGAN_REAL_FACES; e.g. data/test.tar, faces no model trained on)")
    p.add_argument("--votes-repo", default=os.environ.get("ANIMEGAN_VOTES_REPO"),
                   help="Hub dataset repo OWNER/NAME that the votes are copied to (needs HF_TOKEN; env "
                        "ANIMEGAN_VOTES_REPO): a Space's own disk is wiped at every restart")
    p.add_argument("--vote-rate", type=int, default=int(os.environ.get("ANIMEGAN_VOTE_RATE") or 30),
                   help="votes a visitor may cast per minute (default 30, env ANIMEGAN_VOTE_RATE)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.concurrency < 1 or args.max_queue < 1:
        raise SystemExit("error: --concurrency and --max-queue must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"error: --threads must be ≥ 1, got {args.threads}")
    if args.vote_rate < 1:
        raise SystemExit(f"error: --vote-rate must be ≥ 1, got {args.vote_rate}")
    # Two requests that each spread over both cores only wait on each other's OpenMP barriers:
    # on a busy 2-core machine one request with 2 threads took 10× longer than with 1.
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // args.concurrency))
    slots = [load_slot(key, title, src or str(HERE / "checkpoints" / key), bool(src), args.device)
             for key, title, src in (("gan", "GAN", args.gan), ("wgan-gp", "WGAN-GP", args.wgan_gp))]
    for s in slots:
        print(f"warning: {s.problem}" if s.problem else f"loaded {s.title} from {s.source}", file=sys.stderr)
    try:
        judge = open_judge(slots, data_dir(args.data_dir), args.real_faces, args.votes_repo,
                           os.environ.get("HF_TOKEN"), args.vote_rate)
    except SetupError as e:
        raise SystemExit(f"error: {e}")
    blocks = build_demo(Demo(slots), judge, concurrency=args.concurrency)
    blocks.queue(max_size=args.max_queue, default_concurrency_limit=args.concurrency)
    blocks.launch(server_name=args.host, server_port=args.port, css=CSS, js=KEYS_JS, show_error=True)


if __name__ == "__main__":
    main()
