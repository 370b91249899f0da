"""Training-step throughput: our `gan` step vs the classic fp32 NCHW DCGAN loop, in one process.

    python benchmarks/train_throughput.py [--threads N] [--batch-size 64] [--rounds 3] [--steps 6]

The reference is the textbook DCGAN loop (Sigmoid + BCELoss, fp32, NCHW
tensors, D updated on real then fake, G reusing the same fake batch) on the
very same Generator/Discriminator architecture. Ours is `animegan.train.Trainer`
with `--precision auto` (bf16 autocast + channels_last on CPUs with bf16) and
fp32 for comparison. Rounds alternate reference/ours so a busy machine hurts
both alike; the median of rounds is reported. Also prints WGAN-GP critic img/s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from animegan.config import resolve
from animegan.data import LoadedImages
from animegan.models import Discriminator, Generator
from animegan.trainer import Trainer


class ReferenceLoop:
    """The classic fp32 NCHW DCGAN training step, written out plainly."""

    def __init__(self, images: torch.Tensor, batch: int):
        torch.manual_seed(0)
        self.G = Generator()
        self.D = nn.Sequential(Discriminator(norm="batch"), nn.Sigmoid())
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.bce, self.images, self.batch, self.i = nn.BCELoss(), images, batch, 0

    def step(self):
        idx = torch.arange(self.i, self.i + self.batch) % len(self.images)
        self.i += self.batch
        real = self.images[idx].float() / 127.5 - 1
        ones, zeros = torch.ones(self.batch), torch.zeros(self.batch)
        self.D.zero_grad()
        self.bce(self.D(real), ones).backward()
        fake = self.G(torch.randn(self.batch, 100))
        self.bce(self.D(fake.detach()), zeros).backward()
        self.opt_d.step()
        self.G.zero_grad()
        self.bce(self.D(fake), ones).backward()
        self.opt_g.step()


def rate(step, n: int, images_per_step: int) -> float:
    step()  # warm-up (oneDNN primitive creation)
    t = time.perf_counter()
    for _ in range(n):
        step()
    return n * images_per_step / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b = args.batch_size
    images = torch.randint(0, 256, (4096, 3, 64, 64), dtype=torch.uint8)
    data = LoadedImages(images, [], 0, "synthetic")

    def trainer(model, precision):
        cfg = resolve({"model": model, "precision": precision, "data": "-", "out": "-", "steps": 1,
                       "batch_size": b})
        return Trainer(cfg, data, torch.device("cpu"))

    ref, ours, ours32 = ReferenceLoop(images, b), trainer("gan", "auto"), trainer("gan", "fp32")
    wgan = trainer("wgan-gp", "auto")
    res = {"reference fp32 NCHW": [], f"ours auto ({ours.dtype or 'fp32'}, channels_last)": [],
           "ours fp32 channels_last": [], "wgan-gp critic (ours auto)": []}
    keys = list(res)
    for r in range(args.rounds):
        res[keys[0]].append(rate(ref.step, args.steps, b))
        res[keys[1]].append(rate(ours.train_step, args.steps, b))
        res[keys[2]].append(rate(ours32.train_step, args.steps, b))
        res[keys[3]].append(rate(wgan.train_step, max(1, args.steps // 5), b * wgan.cfg.n_critic))
        print(f"round {r + 1}: " + ", ".join(f"{v[-1]:.1f}" for v in res.values()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {b}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    for k, v in med.items():
        print(f"{k:42s} {v:8.1f} img/s")
    print(f"speed-up of our gan step over the reference: {med[keys[1]] / med[keys[0]]:.2f}×")


if __name__ == "__main__":
    main()
