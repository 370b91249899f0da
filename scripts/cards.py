"""Figures, metrics files and model cards of a release, drawn by the project's own code.

    python scripts/cards.py figures --run runs/gan --run runs/wgan-gp \
        --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp --out docs/figures
    python scripts/cards.py publish-metrics reports/release/report.json --to checkpoints
    python scripts/cards.py model-card checkpoints/gan --run runs/gan
    python scripts/cards.py model-card checkpoints/gan    # only its evaluation section

`scripts/release.sh` calls these as functions; the commands redo one piece by hand. figures: loss
curves, FD against training time, fixed-noise grids through training, and a side-by-side of the
shipped generators on the same seeds. publish-metrics: each model's row of an eval report as
checkpoints/NAME/metrics.json with the sha256 of the weights it describes, which the demo's metrics
tab reads. model-card: the model card (README.md) and samples.png of a shipped generator.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from animegan.checkpoint import load_generator, weights_sha256
from animegan.files import write_json
from animegan.monitor import read_metrics
from animegan.sampling import z_from_seed
from eval.schema import Report


def _smooth(ys: list[float], w: int) -> list[float]:
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y - (ys[i - w] if i >= w else 0.0)
        out.append(acc / min(i + 1, w))
    return out


def figures(args) -> None:
    if args.grids < 1:
        raise SystemExit(f"error: --grids must be ≥ 1, got {args.grids}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [Path(r) for r in args.run]
    names = [json.loads((r / "config.json").read_text())["model"] for r in runs]

    # 1. loss curves, one panel per model (the report's figures 8 and 16)
    fig, axes = plt.subplots(1, len(runs), figsize=(6.2 * len(runs), 3.8), squeeze=False)
    for ax, run, name in zip(axes[0], runs, names):
        rows = [r for r in read_metrics(run / "metrics.jsonl") if "g_loss" in r]
        keys = ["d_loss", "g_loss"] + (["wasserstein", "gp"] if name == "wgan-gp" else ["d_real", "d_fake"])
        w = max(1, len(rows) // 60)
        for k in keys:
            ax.plot([r["step"] for r in rows], _smooth([r[k] for r in rows], w), lw=1, label=k)
        ax.set_title(f"{name}: losses (moving average of {w} log rows)")
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=110)
    plt.close(fig)

    # 2. FD against training time and against epochs (real images shown to D ÷ data size)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    longest = max((r.get("train_seconds") or 0 for run in runs for r in read_metrics(run / "metrics.jsonl")),
                  default=0)
    unit, per = ("hours", 3600) if longest > 7200 else ("minutes", 60)
    for run, name in zip(runs, names):
        cfg = json.loads((run / "config.json").read_text())
        pts = {r["step"]: r for r in read_metrics(run / "metrics.jsonl") if "fd" in r}
        pts = sorted(pts.values(), key=lambda r: r["step"])
        if not pts:
            continue
        epochs = [r["step"] * cfg["batch_size"] * cfg["n_critic"] / cfg["images"] for r in pts]
        fd = [r["fd"] for r in pts]
        axes[0].plot([r["train_seconds"] / per for r in pts], fd, "o-", ms=3, label=name)
        axes[1].plot(epochs, fd, "o-", ms=3, label=name)
    axes[0].set_xlabel(f"training wall time ({unit}" + (f", {args.machine})" if args.machine else ")"))
    axes[1].set_xlabel("epochs (real images shown to D ÷ training-set size)")
    for ax in axes:
        ax.set_ylabel("FD, effnet-lite0 (1000 held-out images)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("quick FD against training time")
    axes[1].set_title("quick FD against epochs (the report's unit)")
    fig.tight_layout()
    fig.savefig(out / "fd_vs_time.png", dpi=110)
    plt.close(fig)

    # 3. fixed-noise grids through training (the report's figures 9, 10, 17, 18)
    for run, name in zip(runs, names):
        files = sorted((run / "samples").glob("step_*.png"))
        if not files:
            continue
        picks = [files[round(i * (len(files) - 1) / max(args.grids - 1, 1))] for i in range(args.grids)]
        picks = list(dict.fromkeys(picks))
        fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks), 2.9), squeeze=False)
        for ax, f in zip(axes[0], picks):
            ax.imshow(Image.open(f), interpolation="nearest")
            ax.set_title(f"step {int(f.stem.removeprefix('step_'))}", fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{name}: the same 16 latents through training (EMA generator)", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / f"grids_{name}.png", dpi=110)
        plt.close(fig)

    # 4. the shipped generators side by side on the same seeds
    from torchvision.utils import make_grid
    fig, axes = plt.subplots(1, len(args.ckpt), figsize=(4.6 * len(args.ckpt), 4.9), squeeze=False)
    for ax, ck in zip(axes[0], args.ckpt):
        g = load_generator(ck)
        z = torch.stack([z_from_seed(s, g.z_dim) for s in range(16)])  # the demo's latents of seeds 0–15
        with torch.inference_mode():
            img = make_grid(g(z), nrow=4, normalize=True, value_range=(-1, 1), padding=2)
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"{Path(ck).name}: seeds 0–15", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "side_by_side.png", dpi=110)
    plt.close(fig)
    print(f"wrote figures to {out}")


def publish_metrics(args) -> None:
    """Each generator row of an eval report → TO/NAME/metrics.json, stamped with the sha256 of the weights
    it describes (a row whose evaluated weights differ from the folder's is not published), and the report
    itself as TO/report.json, which the demo's About tab reads for the panel and the verdict."""
    report = Report.load(args.report)
    p, real = report.protocol, report.real
    source = f"`{real.get('source', '?')}`" + (f" minus the images of {', '.join(real['exclude'])}"
                                               if real.get("exclude") else "")
    published = 0
    for row in report.models:
        target = Path(args.to) / row.name
        if row.kind != "generator" or not (target / "config.json").exists():
            continue
        sha = weights_sha256(target)
        if row.weights_sha256 and row.weights_sha256 != sha:
            print(f"skipped {target}: the report evaluated other weights ({row.source})")
            continue
        write_json(target / "metrics.json", {
            "name": row.name, "n": row.n, "features": p["features"], "weights_sha256": sha,
            "metrics": row.metrics, "real_vs_real": report.baseline.metrics,
            "random_init": report.ceiling.metrics if report.ceiling else {},
            "rulers": report.rulers, "translations": row.translations,
            "verdict": report.verdict.summary if report.verdict else None, "selection": row.selection,
            "protocol": f"{p['n']} samples (seed {p['seed']}) vs {p['n']} held-out real images of {source} "
                        f"({p['real_split']}); {p['preprocess']}; rulers {', '.join(p['rulers'])}; ± {p['spread']}; "
                        f"C_T with {p.get('ct_cells')} cells; see docs/evaluation.md"})
        published += 1
        print(f"wrote {target / 'metrics.json'}")
    if published:
        report.save(Path(args.to) / "report.json")
        print(f"wrote {Path(args.to) / 'report.json'}")


CARD = """---
license: mit
library_name: animegan
pipeline_tag: unconditional-image-generation
tags:
  - gan{model_tag}
  - anime
  - dcgan
  - image-generation
---

# animegan {model}: 64×64 anime faces

The exponential-moving-average generator of a {title} trained with
[animegan](https://github.com/animegan/animegan) (`python -m animegan.train --model {model}`)
on the 96×96 anime-faces data set of Jin et al. 2017 (Getchu character crops), at 64×64.
Architecture: the course report's DCGAN generator (z = 100, 4 × ConvTranspose–BatchNorm–ReLU,
ConvTranspose–Tanh; 3,576,704 parameters). {fixes}

![16 samples, seeds 0–15](samples.png)

## Use

```python
from animegan.checkpoint import load_generator      # pip install -r requirements.txt
from animegan.sampling import sample_z
G = load_generator("checkpoints/{model}")            # or a Hub repo id
images = G(sample_z(16, 100, seed=0))                # 16×3×64×64 in [-1, 1]
```

## Training

- Data: {n_images} training images: the train split of `python -m animegan.data split
  anime-faces-96.tar --select 1000 --test 2000` (the 3,000 held-out images were never trained on).
- Budget: {steps} generator steps, {epochs} epochs, {images:,} real images shown to the
  discriminator, {duration} of training wall time on {device} with {threads} thread(s), {autocast} autocast.
- Config: batch {batch_size}, {optimizer} lr {lr_g}, n_critic {n_critic}, critic norm
  `{critic_norm}`, EMA decay {ema_decay}, seed {seed}. Full config: `training_info.json`.
- {source}

{evaluation}"""

EVALUATION = """## Evaluation

{protocol}

{table}

{readings}

Full report, pictures and the commands that reproduce every number: `docs/report.md`; what each
number means: `docs/evaluation.md`. The metrics above are in `metrics.json` (with the sha256 of the
weights they describe), which the demo's metrics tab reads.
"""

FIXES = {"gan": "Discriminator with BatchNorm, BCE on logits, Adam 2e-4 (0.5, 0.999).",
         "wgan-gp": "Critic with layer norm instead of BatchNorm and the gradient penalty taken per sample over "
                    "C×H×W (two fixes of the report's code), RMSprop 2e-4, λ = 10, 5 critic steps per G step."}


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def _evaluation(d: Path) -> str:
    """The card's evaluation section, from metrics.json: the panel beside its floor and ceiling."""
    from eval.report import FEATURE_METRICS, reading, readings, table
    from eval.schema import Metric, Row

    m = json.loads((d / "metrics.json").read_text())
    protocol = (f"Features `{m['features']}`; {m['protocol']}. `random-init` is a randomly initialised generator "
                f"(the ceiling), `real-vs-real` a second real split of equal size (the floor each number can reach "
                f"at this n).")
    rows = [Row(m["name"], "generator", str(d), m["n"], m["metrics"]),
            Row("random-init", "ceiling", "", m["n"], m.get("random_init", {})),
            Row("real-vs-real", "real split", "", m["n"], m["real_vs_real"])]
    panel = [Metric(**x) for r in m.get("rulers", {}).values() for x in r["metrics"]]
    words = readings(m["metrics"], m["real_vs_real"], m["n"])
    words += [f"{reading(t, panel)}." for t in m.get("translations", [])]
    if m.get("verdict"):
        words.append(f"Against the other model: {m['verdict']}")
    if (m.get("selection") or {}).get("overlap"):
        sel = m["selection"]
        words.append(f"**{sel['overlap']} of the {2 * m['n']} real images used here are among the {sel['n']} this "
                     f"generator was selected on** ({sel['source']}): its numbers are somewhat optimistic.")
    return EVALUATION.format(protocol=protocol, table=table(rows, panel, markdown=True) + "\n\n"
                             + table(rows, list(FEATURE_METRICS), markdown=True), readings=" ".join(words))


def model_card(args) -> None:
    d = Path(args.dir)
    if not args.run:  # the run folder is gone: re-render only the evaluation section of the card
        card = (d / "README.md").read_text()
        if "## Evaluation" not in card:
            raise SystemExit(f"{d / 'README.md'} has no evaluation section; give --run to write a whole card")
        (d / "README.md").write_text(card[:card.index("## Evaluation")] + _evaluation(d))
        print(f"wrote the evaluation section of {d / 'README.md'}")
        return
    info = json.loads((d / "training_info.json").read_text())
    c = info["config"]
    g = load_generator(d)
    from torchvision.utils import save_image
    z = torch.stack([z_from_seed(s, g.z_dim) for s in range(16)])
    with torch.inference_mode():
        save_image(g(z), d / "samples.png", nrow=4, normalize=True, value_range=(-1, 1), padding=2)
    rc = json.loads((Path(args.run) / "config.json").read_text())
    source = (f"Exported from checkpoint `{info['checkpoint']}`." if info.get("checkpoint") else
              f"The run's best quick-FD export (step {info['step']}, FD {info['fd_effnet_lite0']:.1f} on "
              f"{info['fd_n']} held-out images), chosen by the quick FD of `--eval-every`."
              if "fd_effnet_lite0" in info else f"The run's export at step {info['step']}.")
    gan = c["model"] == "gan"
    text = CARD.format(model=c["model"], model_tag="" if gan else f"\n  - {c['model']}",
                       title="plain GAN" if gan else "WGAN-GP",
                       fixes=FIXES[c["model"]], n_images=rc.get("images"), steps=info["step"],
                       epochs=info.get("epochs", info["epoch"]),
                       images=info.get("images_seen") or info["step"] * c["batch_size"] * c["n_critic"],
                       duration=_duration(info.get("train_seconds") or 0), source=source,
                       device=args.machine or rc.get("device", "?"), threads=rc.get("threads") or "default",
                       autocast=rc.get("autocast", "fp32"), evaluation=_evaluation(d), **{k: c[k] for k in (
                           "batch_size", "optimizer", "lr_g", "n_critic", "critic_norm", "ema_decay", "seed")})
    (d / "README.md").write_text(text)
    print(f"wrote {d / 'README.md'} and {d / 'samples.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("figures")
    p.add_argument("--run", action="append", required=True)
    p.add_argument("--ckpt", action="append", required=True)
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--grids", type=int, default=5, help="grids per model through training")
    p.add_argument("--machine", default="", help="what the runs trained on, for the time axis's label")
    p.set_defaults(fn=figures)
    p = sub.add_parser("publish-metrics")
    p.add_argument("report")
    p.add_argument("--to", default="checkpoints")
    p.set_defaults(fn=publish_metrics)
    p = sub.add_parser("model-card")
    p.add_argument("dir", help="a shipped generator folder holding training_info.json and metrics.json")
    p.add_argument("--run", help="the run folder it came from (without it, only the card's evaluation "
                   "section is rewritten from metrics.json)")
    p.add_argument("--machine", default="", help="what it trained on, e.g. 'one NVIDIA H100 80GB' "
                   "(default: the run's device)")
    p.set_defaults(fn=model_card)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
