"""benchmarks/train_throughput.py: the profile covers a few steps, however long the timed run."""
import torch

from animegan.trainer import Trainer
from benchmarks import train_throughput


def test_profile_covers_a_small_fixed_number_of_steps(monkeypatch):
    """A GPU step is hundreds of kernels: profiling every timed step (--steps 300) meant parsing about
    a million events. The profile must run a fixed handful of steps whatever --steps says."""
    calls = []
    real = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", lambda self: calls.append(1) or real(self))
    threads = torch.get_num_threads()  # --threads sets torch's global thread count: restored below
    try:
        res = train_throughput.main(["--device", "cpu", "--models", "gan", "--img-size", "16", "--ngf", "4", "--ndf", "4",
                                     "--batch-size", "4", "--precision", "fp32", "--threads", "1", "--steps", "12",
                                     "--rounds", "1", "--profile", "--no-reference"])
    finally:
        torch.set_num_threads(threads)
    row = res["rows"][0]
    warm, timed = 2, 12
    assert row["profiled_steps"] == 3 and len(calls) == warm + timed + 5  # 1 skipped + 1 warm-up + 3 recorded
    assert 0 < row["profile_events"] < 20_000 and row["wall_ms"] > 0
    assert torch.autograd.profiler._is_profiler_enabled is False
