"""The training step made fast without changing what it computes: `Trainer.update` replayed as one
CUDA graph, or run through torch.compile. The eager `Trainer.update` stays the reference, and
the parity check (`python -m animegan.parity`, animegan/parity.py) compares every implementation with it.

    --step-impl eager    the reference: every op launched from Python
    --step-impl graph    CUDA: the whole step (D phase, G phase, both optimiser steps) captured once and
                         replayed; the drawn inputs are copied into static buffers first; no host sync
    --step-impl compile  torch.compile of G and D (for WGAN-GP only G: AOTAutograd has no double
                         backward, which the gradient penalty needs)
    --step-impl auto     what was measured fastest for the device and model (AUTO), else eager

A combination that cannot work (a graph on a CPU, several processes, fp16's GradScaler) falls back
to eager, and `Trainer.step_impl` says what runs and why. So does a graph whose warm-up or capture
fails at run time: the run goes on eagerly from that step (`GraphStep._fall_back`), and
`Trainer.step_impl` / `Trainer.step_impl_fallback` record the reason for the run's config.json.
"""
from __future__ import annotations

import contextlib
import copy
import sys

import torch

# The measured-best implementation per (device type, model); anything missing runs eagerly. CPU:
# torch.compile measured 0.93× the eager step (benchmarks/train_throughput.py --step-impls
# eager,compile; docs/scaling.md), so no entry. CUDA stays eager until the parity check
# (animegan/parity.py) and the throughput benchmark have run the graph step on a GPU.
AUTO: dict[tuple[str, str], str] = {}


def resolve_step_impl(requested: str, device: torch.device, model: str, world: int,
                      dtype: torch.dtype | None) -> tuple[str, str]:
    """(the implementation that runs, why it is not the requested one or '')."""
    impl = AUTO.get((device.type, model), "eager") if requested == "auto" else requested
    why = ""
    if impl == "graph":
        if device.type != "cuda":
            why = "a CUDA graph needs a CUDA device"
        elif dtype == torch.float16:
            why = "fp16's GradScaler reads the gradients on the host"
    if impl in ("graph", "compile") and world > 1:
        why = "not under DDP (several processes)"
    return ("eager", f"{impl} asked for: {why}") if why else (impl, "")


def make_fast_step(trainer) -> tuple[str, "GraphStep | None"]:
    """Set the trainer up for its --step-impl; returns (description, the step callable or None)."""
    impl, why = resolve_step_impl(trainer.cfg.step_impl, trainer.device, trainer.cfg.model, trainer.world,
                                  trainer.dtype)
    if impl == "graph":
        return "graph", GraphStep(trainer)
    if impl == "compile":
        trainer.g_net = torch.compile(trainer.G)
        if trainer.cfg.loss == "wgan-gp":
            return "compile (G only: the penalty's double backward needs an eager D)", None
        trainer.d_net = trainer.d_frozen = torch.compile(trainer.D)
        return "compile", None
    return f"eager ({why})" if why else "eager", None


def host_staged(src: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`src` ready for a non-blocking copy to `device`: a host tensor bound for a GPU is pinned (a
    copy from page-locked memory does not block the host); any other tensor as it is. Decided by
    where the tensor is, never by comparing devices: pinning a tensor that is not on the host raises."""
    return src.pin_memory() if src.is_cpu and device.type == "cuda" else src


def make_capturable(opt: torch.optim.Optimizer) -> None:
    """Switch an optimiser to capturable=True: its step counts move to the parameters' device, so a
    graph replay reads and increments them there instead of baking in a host value."""
    for group in opt.param_groups:
        group["capturable"] = True
    for p, state in opt.state.items():
        if torch.is_tensor(state.get("step")) and state["step"].device != p.device:
            state["step"] = state["step"].to(p.device)


def portable_optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """opt.state_dict() as an eager optimiser writes it (capturable off, step counts on the CPU), so
    a checkpoint resumes the same under every --step-impl and on every device."""
    sd = opt.state_dict()
    for group in sd["param_groups"]:
        if "capturable" in group:
            group["capturable"] = False
    sd["state"] = {i: {**s, "step": s["step"].cpu()} if torch.is_tensor(s.get("step")) else s
                   for i, s in sd["state"].items()}
    return sd


class GraphStep:
    """`Trainer.update` as one CUDA graph (PyTorch's whole-network capture).

    Each call copies the drawn inputs (real batches, z, ε) into static buffers, with pinned
    non-blocking copies for the host-drawn noise, and replays the graph. The noise is drawn on the
    host from the run's seeded generator exactly as in the eager step, so the random stream, the
    checkpoints and resume are unchanged; nothing inside the graph draws random numbers. The
    optimisers run with capturable=True and autocast without its weight cache (a graph must not
    replay a cache filled at capture). The first WARMUP steps run eagerly on a side stream, so
    cuDNN picks its kernels and optimiser state exists before capture; they are real steps.
    With capture=False the same static-buffer path runs eagerly (what tests use on a CPU); with
    capturable=True as well (CUDA), it is the very arithmetic the graph replays, launched op by op,
    which is what animegan/parity.py compares a graph with, bit for bit. If the warm-up or the
    capture fails, the step falls back to eager for the rest of the run (`_fall_back`)."""

    WARMUP = 3

    def __init__(self, trainer, capture: bool = True, capturable: bool | None = None):
        self.t, self.capture = trainer, capture
        self.capturable = capture if capturable is None else capturable
        self.static = None  # StepInputs of device buffers the graph reads
        self.graph = None
        self.out = None  # the captured step's stats, stacked into one tensor
        self.keys: list[str] = []
        self.warm = 0
        self.side = None

    def __call__(self, x) -> dict:
        if self.capture and self.graph is None:
            return self._until_captured(x)
        if self.static is None:
            self._setup(x)
        self._fill(x)
        if self.graph is None:  # capture=False: the static-buffer path, eagerly
            return self._unpack(self._run())
        self.graph.replay()
        return self._unpack(self.out.clone())  # the graph overwrites self.out at the next replay

    def _fill(self, x) -> None:
        for dst, src in zip(self.static.tensors(), x.tensors()):
            dst.copy_(host_staged(src, dst.device), non_blocking=True)

    def _until_captured(self, x) -> dict:
        """The warm-up steps, then the capture and its first replay. Whatever fails on the way (no
        CUDA stream, an op that capture refuses, an allocation) must not end the run: the state
        saved before this step is put back and the step is computed eagerly, once."""
        t, saved = self.t, self._snapshot()
        try:
            if self.static is None:
                self._setup(x)
            self._fill(x)
            if self.warm < self.WARMUP:
                self.warm += 1
                self.side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(self.side):
                    out = self._run()
                torch.cuda.current_stream().wait_stream(self.side)
                out.record_stream(torch.cuda.current_stream())
                return self._unpack(out.clone())
            self.graph = torch.cuda.CUDAGraph()
            # Gradients set to None before capture are allocated from the graph's own memory pool.
            t.opt_d.zero_grad(set_to_none=True)
            t.opt_g.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.out = self._run()  # recorded, not run: the replay below computes this step
            self.graph.replay()
            return self._unpack(self.out.clone())
        except Exception as e:  # noqa: BLE001 — any failure here means "no graph": fall back, say why
            return self._fall_back(e, saved, x)

    def _snapshot(self) -> dict:
        """Copies of what a step changes: weights, BatchNorm buffers, optimiser and scaler state (the
        optimisers as an eager step keeps them: capturable off, step counts on the host)."""
        t = self.t

        def clone(sd):
            return {k: v.detach().clone() for k, v in sd.items()}
        return {"G": clone(t.G.state_dict()), "D": clone(t.D.state_dict()),
                "opt_g": copy.deepcopy(portable_optimizer_state(t.opt_g)),
                "opt_d": copy.deepcopy(portable_optimizer_state(t.opt_d)),
                "scaler": copy.deepcopy(t.scaler.state_dict())}

    def _fall_back(self, error: Exception, saved: dict, x) -> dict:
        """Put the trainer back as the eager step expects it, record why, and compute this step eagerly."""
        t = self.t
        reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
        if t.device.type == "cuda":
            with contextlib.suppress(Exception):  # let queued side-stream work finish before restoring
                torch.cuda.synchronize(t.device)
        t.G.load_state_dict(saved["G"])
        t.D.load_state_dict(saved["D"])
        t.opt_g.load_state_dict(saved["opt_g"])  # capturable off, step counts back on the host
        t.opt_d.load_state_dict(saved["opt_d"])
        if saved["scaler"]:
            t.scaler.load_state_dict(saved["scaler"])
        t.opt_d.zero_grad(set_to_none=True)  # no gradient tensors from a half-captured graph's pool
        t.opt_g.zero_grad(set_to_none=True)
        t.autocast_cache = True
        self.static = self.graph = self.out = self.side = None
        t.fast_step = None
        t.step_impl, t.step_impl_fallback = f"eager (graph capture failed: {reason})", reason
        print(f"warning: graph capture failed ({reason}); the run continues with the eager step", file=sys.stderr)
        return t.update(x)

    def _setup(self, x) -> None:
        t = self.t
        self.static = type(x)(*[[torch.empty_like(v, device=t.device) for v in part] for part in (x.real, x.z, x.eps)])
        if self.capturable:
            for opt in (t.opt_d, t.opt_g):
                make_capturable(opt)
            t.autocast_cache = False
        if self.capture:
            self.side = torch.cuda.Stream()

    def _run(self) -> torch.Tensor:
        stats = self.t.update(self.static)
        self.keys = list(stats)
        return torch.stack([v.detach().float() for v in stats.values()])

    def _unpack(self, packed: torch.Tensor) -> dict:
        return dict(zip(self.keys, packed.unbind()))
