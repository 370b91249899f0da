"""Parity: does a device, precision or step implementation learn what the CPU fp32 step learns?

A correctness check, not a speed benchmark: run it before trusting a fast step (the CUDA graph,
torch.compile) or a new device with a release.

    python -m animegan.parity --data data/train.tar                       # CPU: eager vs graph path vs bf16
    python -m animegan.parity --data DATA --eval-real SELECT --json parity.json --variants \\
        cuda-fp32,cuda-fp32-tf32,cuda-fp32-bench,cuda-bf16,cuda-bf16-release,cuda-bf16-plainio,cuda-bf16-graph

    from animegan.parity import check_parity          # what a release command calls
    res = check_parity(load_images("data/train.tar", limit=2048), "gan", ["cuda-bf16-graph@cuda-bf16"], steps=100)
    row = res["variants"]["cuda-bf16-graph vs cuda-bf16"]
    use_graph = row["ok"] and row["step_ms"] < row["reference_step_ms"]

Every variant trains the same model from the same seed, on the same images in the same order with
the same noise, for --steps generator steps; --reference (default cpu-fp32)
is the reference. A variant is DEVICE-PRECISION[-OPTION…]:

  cpu | cuda     device;   fp32 | bf16   autocast (fp32 = none)
  tf32           TF32 convolutions and matrix products (torch's cuDNN default; off otherwise here)
  bench          cudnn.benchmark (the trainer turns it on for CUDA; otherwise off and deterministic)
  release        tf32 + bench: what `python -m animegan.train` runs with on CUDA
  graph          --step-impl graph (on a CPU: the same static-buffer path, without capture)
  graphnocap     CUDA: the graph step's arithmetic (capturable optimisers, static buffers) launched op by
                 op, without capture: `X-graph@X-graphnocap` must be bit-identical
  compile        --step-impl compile
  plainio        the trainer's CUDA-specific step code replaced by the plain version: blocking noise
                 copies without pinning, permutation and gather on the CPU, torch's AveragedModel EMA
  emaconst       EMA with its constant decay from step 1 (no warm-up); changes only the EMA's FD
  seedN          seed N instead of --seed (a different draw of the same training: the spread scale)
A variant may name its own reference after '@' (e.g. cuda-bf16-plainio@cuda-bf16): it is then
compared with that one, which runs too. Two variants whose arithmetic is the same (same device,
precision and TF32, deterministic cuDNN, the same kernels: eager = plainio = the CPU graph path,
graphnocap = the CUDA graph) must agree bit for bit.

Checks per variant against the reference (all printed; exit code 1 if one fails or errs):
  1. the first step's losses, where both start from identical weights, data and noise, so any
     difference is arithmetic: difference ≤ STEP1_TOL of the coarser arithmetic of the two, relative
     to the value (absolute for values below 1, as critic values near 0 are)
     (0 when both are deterministic fp32 on the same CPU code path: they must be bit-identical);
  2. the mean D and G loss over the second half of the run, and
  3. the quick FD of the EMA generator at the end (with --eval-real): within twice what a different
     seed changes them (the largest difference of the seed twins — the reference's training with
     other seeds, run here — from the reference; --no-seed-twin leaves the floors),
     and never less than the floors: WINDOW_FLOOR or the reference's step-to-step scatter over
     that half (a shift inside the scatter is not one), and FD_FLOOR. After a few dozen steps GAN
     training is chaotic, so later steps are compared as distributions, not step by step;
  4. a graph or compile variant ran as asked (`impl`): a graph whose capture failed falls back to
     the eager step, whose numbers say nothing about the graph.
The autocast policy of the ops the models use is printed per device (the dtype each op returns).

Each variant runs on its own: one that raises is recorded with its error and the others still run.
--json FILE is rewritten (atomically) after every run, so a check cut short keeps what it measured:
{"torch", "autocast", "args", "models": {MODEL: {"model", "steps", "batch_size", "ok",
"runs": {NAME: {"step_impl", "seconds", "step_ms", "fd"?, "error"?, "stats"}},
"variants": {LABEL: {"ok", "error", "reference", "step_impl", "step_ms", "reference_step_ms",
"checks", "class", "step1_rel", "step1_tol", "window_diff", "fd_diff"?, …}}}}}. LABEL is the variant's
name, with " vs REF" when it names its own reference; step_ms is a warm step's wall time (median over
the run's second half, each step read back), so a caller can take a fast step only where it passes
and is faster than its reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .config import SEED_OFFSET, UsageError, resolve
from .data import DataError, LoadedImages, load_images
from .faststep import GraphStep
from .files import write_json
from .quickfd import QuickFD
from .trainer import EMA, Trainer, ema_decay_at

# Step-1 relative tolerance per arithmetic, ten times what its rounding gives on these models
# (fp32: sums of ~10⁴ products, ~1e-6; TF32: a 10-bit mantissa, ~5e-4; bf16: 8 bits, ~4e-3 per
# operand through four layers and BatchNorm, measured up to ~1e-2 on CPU).
STEP1_TOL = {"exact": 0.0, "fp32": 1e-4, "tf32": 5e-3, "bf16": 5e-2}
WINDOW_FLOOR = 0.05  # mean-loss difference below which two runs count as the same (nats or critic units)
FD_FLOOR = 5.0  # quick-FD difference below which two runs count as the same (its sampling noise at n = 1000)


@dataclass
class Variant:
    name: str
    device: str
    precision: str
    tf32: bool = False
    bench: bool = False
    impl: str = "eager"
    plainio: bool = False
    emaconst: bool = False
    seed: int | None = None
    ref: str | None = None
    result: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "Variant":
        name, _, ref = spec.partition("@")
        dev, prec, *opts = name.split("-")
        if dev not in ("cpu", "cuda") or prec not in ("fp32", "bf16"):
            raise UsageError(f"variant {name!r}: expected DEVICE-PRECISION[-OPTION…], e.g. cuda-bf16-graph")
        v = cls(name, dev, prec, ref=ref or None)
        for o in opts:
            if o in ("tf32", "bench", "plainio", "emaconst"):
                setattr(v, o, True)
            elif o == "release":
                v.tf32 = v.bench = True
            elif o in ("graph", "graphnocap", "compile"):
                v.impl = o
            elif o.startswith("seed") and o[4:].isdigit():
                v.seed = int(o[4:])
            else:
                raise UsageError(f"variant {name!r}: unknown option {o!r}")
        return v

    @property
    def arithmetic(self) -> str:
        if self.precision == "bf16":
            return "bf16"
        return "tf32" if self.tf32 and self.device == "cuda" else "fp32"

    @property
    def kernels(self) -> str:
        """Which arithmetic the step runs: the eager kernels, the capturable-optimiser ones, or compiled."""
        if self.impl == "compile":
            return "compiled"
        return "capturable" if self.device == "cuda" and self.impl in ("graph", "graphnocap") else "eager"

    def exact_with(self, ref: "Variant") -> bool:
        """The same arithmetic, deterministically: bit-identical results are the only right answer."""
        return (self.device, self.precision, self.tf32, self.kernels) == (ref.device, ref.precision, ref.tf32, ref.kernels) \
            and not (self.bench or ref.bench) and self.kernels != "compiled"


class PlainIOTrainer(Trainer):
    """The trainer with its CUDA-specific step code replaced by the plain version: images and the
    permutation stay on the CPU and each batch is gathered there and copied (blocking), noise is
    copied without pinning, and the EMA is torch's AveragedModel (device counter, decay read back)."""

    def __init__(self, cfg, data, device):
        super().__init__(cfg, data, device)
        self.images = self.images.cpu()
        decay = cfg.ema_decay

        def multi_avg(ema_params, params, n):
            torch._foreach_lerp_(ema_params, params, 1 - ema_decay_at(decay, int(n)))
        self.ema = AveragedModel(self.G, multi_avg_fn=multi_avg, use_buffers=False)

    def to_device(self, t):
        return t.to(self.device)


class ConstantEMA(EMA):
    """The trainer's EMA without warm-up: the configured decay from the first update on."""

    @torch.no_grad()
    def update_parameters(self, model):
        if int(self.n_averaged) == 0:
            return super().update_parameters(model)
        torch._foreach_lerp_([p.detach() for p in self.module.parameters()],
                             [p.detach() for p in model.parameters()], 1 - self.decay)
        for b_avg, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_avg.copy_(b)
        self.n_averaged += 1


def set_cuda_flags(v: Variant) -> None:
    if v.device != "cuda":
        return
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = v.tf32
    torch.backends.cudnn.benchmark = v.bench
    torch.backends.cudnn.deterministic = not v.bench


def train(v: Variant, data: LoadedImages, model: str, steps: int, batch_size: int, seed: int,
          overrides: dict) -> Trainer:
    """Train variant v for `steps` generator steps; v.result gets every step's losses and timings."""
    cfg = resolve({"model": model, "data": "-", "out": "-", "steps": steps, "batch_size": batch_size,
                   "seed": seed if v.seed is None else v.seed, "precision": v.precision, "device": v.device,
                   "step_impl": "compile" if v.impl == "compile" else "eager", **overrides})
    device = torch.device(v.device)
    set_cuda_flags(v)
    t = (PlainIOTrainer if v.plainio else Trainer)(cfg, data, device)
    set_cuda_flags(v)  # the trainer turns cudnn.benchmark on for CUDA
    if v.emaconst:
        t.ema = ConstantEMA(t.G, cfg.ema_decay)
    if v.impl in ("graph", "graphnocap"):  # on a CPU the same static-buffer path runs, without capture
        cuda = device.type == "cuda"
        t.fast_step = GraphStep(t, capture=cuda and v.impl == "graph", capturable=cuda)
        t.step_impl = "graph" if cuda and v.impl == "graph" else "graph path without capture"
    rows, times, t0 = [], [], time.perf_counter()
    for _ in range(steps):
        s0 = time.perf_counter()
        rows.append({k: float(val) for k, val in t.train_step().items()})  # float(): the step has finished
        times.append(time.perf_counter() - s0)
    # The step's time once warm (cuDNN's choice, graph capture and compilation happen early): the
    # median over the second half of the run.
    v.result = {"stats": rows, "seconds": time.perf_counter() - t0, "step_impl": t.step_impl,
                "step_ms": 1e3 * statistics.median(times[len(times) // 2:])}
    return t


def compare(v: Variant, ref: Variant, twins: list[Variant]) -> dict:
    a, r = v.result["stats"], ref.result["stats"]
    keys = list(r[0])
    cls = "exact" if v.exact_with(ref) else max(v.arithmetic, ref.arithmetic, key=list(STEP1_TOL).index)
    rel1 = max(abs(a[0][k] - r[0][k]) / max(abs(r[0][k]), 1.0) for k in keys)  # relative, absolute below 1
    half = len(r) // 2

    def window(rows, k):
        return sum(x[k] for x in rows[half:]) / max(len(rows) - half, 1)

    d_win = {k: window(a, k) - window(r, k) for k in ("d_loss", "g_loss")}
    twin_win = {k: max((abs(window(t.result["stats"], k) - window(r, k)) for t in twins), default=0.0) for k in d_win}
    out = {"class": cls, "step1_rel": rel1, "step1_tol": STEP1_TOL[cls],
           "mean_abs_diff_first10": {k: sum(abs(x[k] - y[k]) for x, y in zip(a[:10], r[:10])) / min(10, len(r))
                                     for k in keys},
           "mean_abs_diff_all": {k: sum(abs(x[k] - y[k]) for x, y in zip(a, r)) / len(r) for k in keys},
           "window_diff": d_win, "checks": {}}
    out["checks"]["step1"] = rel1 <= STEP1_TOL[cls]
    for k, d in d_win.items():
        scatter = statistics.pstdev(x[k] for x in r[half:]) if len(r) - half > 1 else statistics.pstdev(x[k] for x in r)
        tol = max(WINDOW_FLOOR, scatter, 2 * twin_win.get(k, 0.0))
        out[f"window_tol_{k}"] = tol
        out["checks"][f"window_{k}"] = abs(d) <= tol
    if cls == "exact":
        out["checks"]["bit_identical"] = a == r
    if "fd" in v.result and "fd" in ref.result:
        out["fd_diff"] = v.result["fd"] - ref.result["fd"]
        tol = max([FD_FLOOR, *(2 * abs(t.result["fd"] - ref.result["fd"]) for t in twins if "fd" in t.result)])
        out["fd_tol"] = tol
        out["checks"]["fd"] = abs(out["fd_diff"]) <= tol
    out["ok"] = all(out["checks"].values())
    return out


def autocast_table(devices: list[str]) -> dict:
    """The dtype each op of the models returns under bf16 autocast, per device (the policy as run)."""
    ops = {
        "conv2d": lambda x: F.conv2d(x, torch.randn(8, 4, 3, 3, device=x.device)),
        "conv_transpose2d": lambda x: F.conv_transpose2d(x, torch.randn(4, 8, 4, 4, device=x.device)),
        "batch_norm (train)": lambda x: nn.BatchNorm2d(4).to(x.device)(x.bfloat16()),
        "group_norm": lambda x: nn.GroupNorm(1, 4).to(x.device)(x.bfloat16()),
        "leaky_relu": lambda x: F.leaky_relu(x.bfloat16(), 0.2),
        "tanh": lambda x: torch.tanh(x.bfloat16()),
        "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x.bfloat16(), torch.ones_like(x).bfloat16()),
        "sum": lambda x: x.bfloat16().sum(),
        "linalg_vector_norm": lambda x: x.bfloat16().flatten(1).norm(2, dim=1),
    }
    table = {}
    for dev in devices:
        x = torch.randn(2, 4, 8, 8, device=dev)
        with torch.autocast(dev, dtype=torch.bfloat16):
            table[dev] = {name: str(f(x).dtype).replace("torch.", "") for name, f in ops.items()}
    return table


def _error(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def check_parity(data: LoadedImages, model: str, variants: list[str], steps: int, *,
                 reference: str = "cpu-fp32", twins: list[str] | None = None, batch_size: int = 64,
                 seed: int = 0, overrides: dict | None = None, quick_fd: QuickFD | None = None,
                 on_result: Callable[[dict], None] | None = None, log=sys.stderr) -> dict:
    """Train `model` under the reference, the seed twins and every variant for `steps` generator steps,
    and compare each variant with its reference (module docstring). twins: variant names, default
    [REFERENCE-seed(SEED+1)]; [] for none. Each run's errors are caught and recorded; on_result(result)
    is called after every run with the result so far. Returns {"model", "steps", "batch_size", "ok",
    "runs": {name: run}, "variants": {label: row}}; row["ok"] is False for a failed check or an error."""
    overrides = overrides or {}
    ref = Variant.parse(reference)
    wanted = [Variant.parse(n) for n in variants]
    twin_vs = [Variant.parse(n) for n in (twins if twins is not None else [f"{reference}-seed{seed + 1}"])]
    # Every named variant runs once, each reference before the variants compared with it; a comparison
    # is (variant, its reference): the global one, or its own after '@'.
    named = {ref.name: ref, **{t.name: t for t in twin_vs}}
    for v in wanted:
        if v.ref:
            named.setdefault(v.ref, Variant.parse(v.ref))
        named.setdefault(v.name, v)
    explicit = {ref.name, *(v.name for v in wanted), *(t.name for t in twin_vs)}
    pairs = [*((t.name, ref.name) for t in twin_vs), *((n, ref.name) for n in named if n not in explicit),
             *((v.name, v.ref or ref.name) for v in wanted)]
    yardsticks = {t.name for t in twin_vs}
    res = {"model": model, "steps": steps, "batch_size": batch_size, "reference": ref.name,
           "twins": [t.name for t in twin_vs], "ok": True, "runs": {}, "variants": {}}

    def compare_ready() -> None:
        for name, base_name in pairs:
            label = name + (f" vs {base_name}" if base_name != ref.name else "")
            v, base = named[name], named[base_name]
            if label in res["variants"] or "done" not in v.result or "done" not in base.result:
                continue
            row = {"reference": base_name, "step_impl": v.result.get("step_impl"), "step_ms": v.result.get("step_ms"),
                   "reference_step_ms": base.result.get("step_ms"), "seconds": v.result.get("seconds"),
                   "fd": v.result.get("fd"), "error": v.result.get("error")}
            if row["error"] is None and base.result.get("error"):
                row["error"] = f"reference {base_name} failed: {base.result['error']}"
            if row["error"] is None:
                try:
                    ok_twins = [] if name in yardsticks else \
                        [named[t] for t in yardsticks if not named[t].result.get("error")]
                    row.update(compare(v, base, ok_twins))
                    if v.impl in ("graph", "compile"):
                        row["checks"]["impl"] = str(v.result["step_impl"]).startswith(v.impl)
                        row["ok"] = all(row["checks"].values())
                except Exception as e:  # noqa: BLE001 — one comparison's failure is that row's error
                    row["error"] = _error(e)
            if name in yardsticks and row["error"] is None:
                row["ok"], row["checks"] = True, {}  # the twin is the yardstick, not a candidate
            row["ok"] = row["error"] is None and row.get("ok", False)
            row["stats"] = v.result.get("stats")
            res["variants"][label] = row
            res["ok"] &= row["ok"]

    for v in named.values():
        v.result = {}
        try:
            t = train(v, data, model, steps, batch_size, seed, overrides)
            if quick_fd:
                v.result["fd"] = quick_fd(t.ema_generator())
            del t
            print(f"  {model} {v.name}: {steps} steps in {v.result['seconds']:.1f} s, {v.result['step_ms']:.1f} ms "
                  f"per warm step ({v.result['step_impl']})"
                  + (f", quick FD {v.result['fd']:.2f}" if "fd" in v.result else ""), file=log)
        except Exception as e:  # noqa: BLE001 — a variant that cannot run is a result, not the end of the check
            v.result["error"] = _error(e)
            print(f"  {model} {v.name}: error: {v.result['error']}", file=log)
        v.result["done"] = True
        res["runs"][v.name] = {k: val for k, val in v.result.items() if k != "done"}
        compare_ready()
        if on_result:
            on_result(res)
    return res


def print_table(res: dict, n_images: int) -> None:
    """The per-model verdict table (stdout)."""
    print(f"\n{res['model']}: {res['steps']} steps, batch {res['batch_size']}, {n_images} images, "
          f"reference {res['reference']}" + (f", seed twins {', '.join(res['twins'])}" if res["twins"] else ""))
    print(f"  {'variant':40s} {'step-1 Δ':>9s} {'tol':>7s} {'|Δ| d/g, steps 1-10':>22s} "
          f"{'2nd-half mean Δ d/g (tol)':>30s} {'FD Δ (tol)':>16s} {'ms/step':>8s}  verdict")
    for label, c in res["variants"].items():
        if c["error"]:
            print(f"  {label:40s} ERROR: {c['error']}")
            continue
        first, wd = c["mean_abs_diff_first10"], c["window_diff"]
        fd = f"{c['fd_diff']:+.2f} ({c['fd_tol']:.1f})" if "fd_diff" in c else "-"
        verdict = "yardstick" if label in res["twins"] else ("ok" if c["ok"] else
                                                             "FAIL: " + ", ".join(k for k, ok in c["checks"].items() if not ok))
        print(f"  {label:40s} {c['step1_rel']:9.2e} {c['step1_tol']:7.0e} "
              f"{first['d_loss']:10.2e}/{first['g_loss']:.2e} "
              f"{wd['d_loss']:+9.4f}/{wd['g_loss']:+.4f} ({c.get('window_tol_d_loss', 0):.3f}) {fd:>16s} "
              f"{c['step_ms']:8.1f}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m animegan.parity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="training images (folder, .zip or .tar; several: a glob or a "
                    "comma-separated list)")
    ap.add_argument("--limit", type=int, default=2048, help="use the first N images by name")
    ap.add_argument("--models", default="gan,wgan-gp")
    ap.add_argument("--steps", type=int, default=100, help="generator steps per variant (wgan-gp: a fifth)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default="cpu-fp32")
    ap.add_argument("--variants", default="cpu-fp32-graph,cpu-bf16", help="comma-separated, compared with the reference")
    ap.add_argument("--eval-real", help="held-out images: quick FD of every variant's EMA generator at the end")
    ap.add_argument("--eval-n", type=int, default=1000)
    ap.add_argument("--twin", help="comma-separated seed twins (default: the reference with --seed + 1); GPU "
                    "twins such as cuda-fp32-seed1,cuda-fp32-seed2 save CPU time, and more twins a steadier yardstick")
    ap.add_argument("--no-seed-twin", action="store_true", help="skip the seed twin; tolerances are the floors")
    ap.add_argument("--tiny", action="store_true", help="16×16 images, width 4, batch 4 (the tests' setting)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write every trajectory and check here, rewritten after every run")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except (UsageError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"img_size": 16, "ngf": 4, "ndf": 4} if args.tiny else {}
    if args.tiny:
        args.batch_size = min(args.batch_size, 4)
    size = overrides.get("img_size", 64)
    variants = [n for n in args.variants.split(",") if n]
    twins = [] if args.no_seed_twin else (args.twin.split(",") if args.twin else None)
    parsed = [Variant.parse(n) for n in [args.reference, *variants, *(twins or [])]]  # UsageError before any work
    devices = sorted({v.device for v in parsed} | {Variant.parse(v.ref).device for v in parsed if v.ref})
    if "cuda" in devices and not torch.cuda.is_available():
        raise UsageError("a cuda variant was asked for, but no CUDA device is available")
    data = load_images(args.data, size=size, limit=args.limit)
    print(f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    table = autocast_table(devices)
    print("bf16 autocast, dtype each op returns: " + "; ".join(
        f"{op} " + "/".join(f"{d} {table[d][op]}" for d in devices) for op in table[devices[0]]))
    report = {"torch": torch.__version__, "autocast": table, "args": {**vars(args), "overrides": overrides},
              "models": {}}
    quick_fd = None
    if args.eval_real:
        fd_device = "cuda" if "cuda" in devices else "cpu"
        quick_fd = QuickFD(args.eval_real, args.eval_n, 100, args.seed + SEED_OFFSET["quick_fd"], size, fd_device)

    def save(res: dict) -> None:
        report["models"][res["model"]] = res
        if args.json:
            write_json(args.json, report)

    ok = True
    for model in args.models.split(","):
        steps = args.steps if model == "gan" else max(2, args.steps // 5)
        res = check_parity(data, model, variants, steps, reference=args.reference, twins=twins,
                           batch_size=args.batch_size, seed=args.seed, overrides=overrides, quick_fd=quick_fd,
                           on_result=save)
        print_table(res, len(data.images))
        ok &= res["ok"]
    print("\nparity: " + ("every variant within tolerance" if ok else
                          "FAILED (see the verdict column: a failed check or an error)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
