"""Does bf16 autocast change what the models learn? Short fp32 and bf16 runs, curves side by side.

    python benchmarks/precision_curves.py --data data/val.tar --out runs/precision [--gan-steps 300 --wgan-steps 60]

Trains each model twice with the same seed and data order (the only
difference is --precision), then draws the loss curves of both precisions on
one axis per model into OUT/precision_curves.png and prints the mean losses
of the last third of each run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from animegan.train import main as train
from animegan.monitor import read_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="runs/precision")
    ap.add_argument("--gan-steps", type=int, default=300)
    ap.add_argument("--wgan-steps", type=int, default=60)
    ap.add_argument("--width", type=int, default=32, help="ngf = ndf for these short runs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out)
    runs = {}
    for model, steps in (("gan", args.gan_steps), ("wgan-gp", args.wgan_steps)):
        for prec in ("fp32", "bf16"):
            run = out / f"{model}-{prec}"
            rc = train(["--model", model, "--data", args.data, "--out", str(run), "--steps", str(steps),
                        "--precision", prec, "--ngf", str(args.width), "--ndf", str(args.width),
                        "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                        "--log-every", "5", "--sample-every", str(steps), "--ckpt-every", str(steps)])
            if rc:
                sys.exit(rc)
            runs[(model, prec)] = read_metrics(run / "metrics.jsonl")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    summary = {}
    for ax, model in zip(axes, ("gan", "wgan-gp")):
        for prec, style in (("fp32", "-"), ("bf16", "--")):
            rows = runs[(model, prec)]
            for key, color in (("d_loss", "tab:blue"), ("g_loss", "tab:orange")):
                ax.plot([r["step"] for r in rows], [r[key] for r in rows], style, color=color, lw=1,
                        label=f"{key} {prec}")
            tail = rows[len(rows) * 2 // 3:]
            summary[f"{model} {prec}"] = {k: round(sum(r[k] for r in tail) / len(tail), 4)
                                          for k in ("d_loss", "g_loss")}
        ax.set_title(f"{model}: fp32 (solid) vs bf16 autocast (dashed)")
        ax.set_xlabel("generator step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "precision_curves.png", dpi=110)
    (out / "precision_summary.json").write_text(json.dumps(summary, indent=2))
    for k, v in summary.items():
        print(f"{k:14s} mean of last third: d_loss {v['d_loss']:.4f}  g_loss {v['g_loss']:.4f}")
    print(f"wrote {out / 'precision_curves.png'}")


if __name__ == "__main__":
    main()
