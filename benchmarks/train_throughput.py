"""Training-step throughput per model and step implementation, and what share of the device's peak it is.

    python benchmarks/train_throughput.py [--threads N] [--rounds 3] [--steps 6]                 # CPU
    python benchmarks/train_throughput.py --device cpu --step-impls eager,compile --models gan
    python benchmarks/train_throughput.py --device cuda --step-impls eager,graph --batch-size 128 --profile

Per model and --step-impl it prints real images per second shown to D, generator steps per second,
the FLOPs those images cost and the share of the device's bf16 peak that is. FLOPs per real image
come from the models' own convolutions (counted with hooks) and the passes a step makes (F = one
forward of one image, counted as 2 × multiply-adds):
  gan:      3·F_G + 8·F_D   (G forward and backward; D forward on real and fake and their backward;
                             the G step's D forward and its input-only backward)
  wgan-gp:  F_G + 12·F_D per critic image (no-grad G forward; D on real and fake with backward;
            the penalty's forward, input gradient and double backward ≈ 6·F_D) + (3·F_G + 2·F_D) / n_critic
For a 64×64 DCGAN that is ≈ 2.3 and ≈ 2.9 GFLOP. The peak is measured in the same run (a large bf16
matrix product) and printed next to the datasheet value of the GPU if known.

On CPU the classic fp32 NCHW DCGAN loop is also timed as the reference (`--no-reference` skips it).
Rounds alternate the variants so a busy machine hurts all alike; medians are reported. With
--profile, after the timed rounds, 3 steps of each variant are recorded by torch.profiler (after one
skipped and one warm-up step; a fixed number whatever --steps is) and, on CUDA, the GPU's kernel time
per step is printed next to the wall time: the difference is launch and synchronisation gaps.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

from animegan.config import resolve
from animegan.data import LoadedImages
from animegan.faststep import GraphStep
from animegan.models import Discriminator, Generator
from animegan.trainer import Trainer

# Datasheet dense bf16 tensor-core peaks (TFLOP/s) of GPUs this project has trained on.
DATASHEET_BF16 = {"H100": 990.0, "H200": 990.0}


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


def forward_flops(module: nn.Module, x: torch.Tensor) -> float:
    """FLOPs (2 × multiply-adds) of the convolutions of one forward pass of one image."""
    total = 0.0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):  # every input pixel meets every kernel weight
            total += 2 * inp[0][0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] / m.groups
        elif isinstance(m, nn.Conv2d):  # every output pixel meets every kernel weight
            total += 2 * out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] / m.groups

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        module.eval()(x[:1])
    for h in handles:
        h.remove()
    return total


def flops_per_real_image(cfg) -> float:
    g = Generator(cfg.z_dim, cfg.ngf, 3, cfg.img_size)
    d = Discriminator(cfg.ndf, 3, cfg.img_size, cfg.critic_norm)
    fg, fd = forward_flops(g, torch.zeros(1, cfg.z_dim)), forward_flops(d, torch.zeros(1, 3, cfg.img_size, cfg.img_size))
    if cfg.loss == "wgan-gp":
        return fg + 12 * fd + (3 * fg + 2 * fd) / cfg.n_critic
    return 3 * fg + 8 * fd


def measured_peak_tflops(device: torch.device) -> float:
    """bf16 matrix-product rate of this device (TFLOP/s): the practical ceiling."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    reps = 10 if device.type == "cuda" else 3
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def warmup_steps(trainer) -> int:
    # A graph step captures after its eager warm-up steps; time only replays.
    return GraphStep.WARMUP + 2 if trainer and isinstance(trainer.fast_step, GraphStep) else 2


def rate(step, n: int, device: torch.device) -> float:
    """Steps per second over n steps (the GPU drained before and after)."""
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return n / (time.perf_counter() - t)


def profile_steps(step, device: torch.device, wait: int = 1, warmup: int = 1, active: int = 3) -> dict:
    """A few steps under torch.profiler: `wait` steps untouched, `warmup` traced but dropped, `active`
    recorded. A fixed handful, not the timed steps: a GPU step is hundreds of kernels, and hundreds of
    profiled steps are about a million events to parse, which takes longer than the benchmark.
    Returns per recorded step: wall ms, GPU kernel ms and kernels (0 on a CPU), and the event count."""
    from torch.profiler import ProfilerActivity, profile, schedule
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    n = wait + warmup + active
    sync(device)
    with profile(activities=activities, schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1)) as prof:
        for i in range(n):
            if i == wait + warmup:
                sync(device)
                t = time.perf_counter()
            step()
            if i == n - 1:
                sync(device)
                wall = time.perf_counter() - t
            prof.step()
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    return {"profiled_steps": active, "wall_ms": wall * 1e3 / active,
            "kernel_ms": sum(e.device_time_total for e in kernels) / 1e3 / active,
            "kernels": len(kernels) / active, "profile_events": len(events)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--models", default="gan,wgan-gp")
    ap.add_argument("--step-impls", default="eager", help="comma-separated --step-impl values to compare")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6, help="timed generator steps per round (wgan-gp: a fifth)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true", help="CPU: skip the classic fp32 DCGAN loop")
    ap.add_argument("--profile", action="store_true", help="profile 3 steps per variant after the timed rounds; "
                    "CUDA: kernel time vs wall time per step")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    b = args.batch_size
    images = torch.randint(0, 256, (max(4096, 4 * b * 5), 3, args.img_size, args.img_size), dtype=torch.uint8)
    data = LoadedImages(images, [], 0, "synthetic")

    variants: dict[str, tuple] = {}
    if device.type == "cpu" and not args.no_reference and (args.img_size, args.ngf, args.ndf) == (64, 64, 64):
        ref = ReferenceLoop(images, b)
        variants["reference: classic DCGAN loop, fp32 NCHW"] = (ref.step, 1, b, None)
    for model in args.models.split(","):
        for impl in args.step_impls.split(","):
            cfg = resolve({"model": model, "precision": args.precision, "data": "-", "out": "-", "steps": 1,
                           "batch_size": b, "device": args.device, "step_impl": impl, "img_size": args.img_size,
                           "ngf": args.ngf, "ndf": args.ndf})
            t = Trainer(cfg, data, device)
            key = f"{model} {t.step_impl} ({t.precision})"
            variants[key] = (t.train_step, max(1, args.steps // cfg.n_critic), b * cfg.n_critic, t)
    for key, (step, _, _, _) in variants.items():  # oneDNN / cuDNN set-up, compilation, graph capture
        t0 = time.perf_counter()
        for _ in range(warmup_steps(variants[key][3])):
            step()
        sync(device)
        print(f"warm-up {key}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    steps_per_s: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for key, (step, n, _, _) in variants.items():
            steps_per_s[key].append(rate(step, n, device))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} steps/s" for k, v in steps_per_s.items()),
              file=sys.stderr)

    peak = measured_peak_tflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    sheet = next((v for k, v in DATASHEET_BF16.items() if k in name), None)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {name}, threads {torch.get_num_threads()}, batch {b}, load average {load:.1f}"
          + (f", cpu capability {torch.backends.cpu.get_cpu_capability()}" if device.type == "cpu" else ""))
    print(f"bf16 peak: measured {peak:.1f} TFLOP/s (matrix product)"
          + (f", datasheet {sheet:.0f} dense" if sheet else ""))
    results = {"device": name, "torch": torch.__version__, "batch_size": b, "load_average": load,
               "peak_tflops_measured": peak, "peak_tflops_datasheet": sheet, "rows": []}
    print(f"{'variant':58s} {'real img/s':>10s} {'G steps/s':>9s} {'GFLOP/img':>9s} {'TFLOP/s':>8s} {'% peak':>7s}")
    for key, (step, n, per_step, t) in variants.items():
        sps = statistics.median(steps_per_s[key])
        img_s = sps * per_step
        gflop = flops_per_real_image(t.cfg if t else resolve({"model": "gan", "data": "-", "out": "-", "steps": 1})) / 1e9
        tflops = img_s * gflop / 1e3
        row = {"variant": key, "model": t.cfg.model if t else "reference", "step_impl": t.step_impl if t else "",
               "real_img_per_s": img_s, "g_steps_per_s": sps, "gflop_per_img": gflop, "tflops": tflops,
               "share_of_peak": tflops / peak}
        if args.profile and t:
            row.update(profile_steps(step, device))
        results["rows"].append(row)
        print(f"{key:58s} {img_s:10.1f} {sps:9.2f} {gflop:9.2f} {tflops:8.3f} {100 * tflops / peak:6.2f}%"
              + (f"   profiled {row['profiled_steps']} steps: wall {row['wall_ms']:.2f} ms/step"
                 + (f", {row['kernels']:.0f} GPU kernels {row['kernel_ms']:.2f} ms "
                    f"({100 * row['kernel_ms'] / row['wall_ms']:.0f} % busy)" if device.type == "cuda" else
                    f", {row['profile_events'] / row['profiled_steps']:.0f} profiler events per step")
                 if "wall_ms" in row else ""))
    rows = {r["variant"]: r for r in results["rows"]}
    ref_key = next((k for k in rows if k.startswith("reference")), None)
    if ref_key:
        for key in rows:
            if key != ref_key and key.startswith("gan "):
                print(f"speed-up of {key} over the reference: {rows[key]['real_img_per_s'] / rows[ref_key]['real_img_per_s']:.2f}×")
    for model in args.models.split(","):
        base = next((r for k, r in rows.items() if k.startswith(f"{model} eager")), None)
        for key, r in rows.items():
            if base and key.startswith(f"{model} ") and r is not base:
                print(f"{key} / {base['variant']}: {r['real_img_per_s'] / base['real_img_per_s']:.2f}×")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
