"""The CUDA-only code of the step, checked on a CPU: device spelling, which copies are pinned.

A CPU device has no index, so a CPU run never sees `cuda` ≠ `cuda:0`; these tests make the
comparison happen with a patched `torch.cuda` and tensors on the `meta` device (shapes, no data).
"""
import pytest
import torch

from animegan.config import resolve
from animegan.data import load_images
from animegan.faststep import GraphStep
from animegan.trainer import Trainer, normalize_device, pick_device


def _trainer(images, model="gan", **over):
    cfg = resolve({"model": model, "data": "-", "out": "-", "steps": 4, "img_size": 16, "ngf": 4, "ndf": 4,
                   "batch_size": 4, "precision": "fp32", **over})
    return Trainer(cfg, load_images(images, 16), torch.device("cpu"))


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda as on a machine whose current GPU is cuda:1 (nothing is allocated on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


def record_copies(monkeypatch) -> list:
    """From now on, record pin_memory() and .to() calls instead of running them (a meta tensor
    cannot be pinned)."""
    calls = []

    def pin(self):
        calls.append(("pin", self.device))
        return self

    def to(self, *args, **kwargs):
        calls.append(("to", self.device, args[0] if args else kwargs.get("device")))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", to)
    return calls


def test_cuda_is_spelled_with_its_index(fake_cuda):
    """A tensor on the GPU reports cuda:N: the trainer's device must be spelled the same way, or
    `tensor.device == trainer.device` is False for tensors already in place."""
    assert normalize_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert normalize_device("cuda:0") == torch.device("cuda", 0)
    assert normalize_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda", 1)
    assert pick_device("auto") == torch.device("cuda", 1)
    assert pick_device("cpu") == torch.device("cpu")


def test_to_device_pins_host_tensors_only(tiny_images, monkeypatch):
    """The noise is drawn on the host and pinned before its non-blocking copy; a tensor that is not
    on the host (here a meta tensor standing for one on the GPU) must never be pinned: pin_memory()
    of a CUDA tensor raises."""
    t = _trainer(tiny_images)
    pins = record_copies(monkeypatch)
    t.device = torch.device("cuda", 0)
    t.to_device(torch.empty(2, 3, device="meta"))
    assert pins == [("to", torch.device("meta"), torch.device("cuda", 0))]
    pins.clear()
    t.to_device(torch.zeros(2, 3))
    assert pins == [("pin", torch.device("cpu")), ("to", torch.device("cpu"), torch.device("cuda", 0))]
    pins.clear()
    t.device = torch.device("meta")  # not CUDA: a plain copy, no pinning
    t.to_device(torch.zeros(2, 3))
    assert pins == [("to", torch.device("cpu"), torch.device("meta"))]


def test_graph_step_pins_only_host_to_cuda_copies(tiny_images, monkeypatch):
    """GraphStep copies the drawn inputs into its static buffers: pinning only pays (and only works)
    for a host tensor going to a CUDA buffer."""
    t = _trainer(tiny_images)
    g = GraphStep(t, capture=False)
    x = t.draw_inputs()
    g._setup(x)
    monkeypatch.setattr(g, "_run", lambda: torch.zeros(2))
    pins = record_copies(monkeypatch)
    g.static = type(x)(*[[torch.empty_like(v, device="meta") for v in part] for part in (x.real, x.z, x.eps)])
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src, non_blocking=False: self)
    g(x)  # host inputs, meta buffers: no pinning
    assert not [c for c in pins if c[0] == "pin"]


def _same_steps(a: Trainer, b: Trainer, n: int) -> None:
    """n steps of each; every step's losses and the final weights must be equal, bit for bit."""
    for i in range(n):
        sa, sb = a.train_step(), b.train_step()
        assert {k: float(v) for k, v in sa.items()} == {k: float(v) for k, v in sb.items()}, f"step {i + 1}"
    assert a.step == b.step == n and a.batches == b.batches
    for part in ("G", "D"):
        sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), part


def _eager_again(t: Trainer) -> None:
    assert t.fast_step is None and t.autocast_cache is True
    for opt in (t.opt_g, t.opt_d):
        assert all(g["capturable"] is False for g in opt.param_groups)
        assert all(s["step"].is_cpu for s in opt.state.values())


def test_graph_capture_failure_falls_back_to_the_eager_step(tiny_images, capsys):
    """On a CPU the capture cannot even start (no CUDA stream): the run goes on eagerly from that
    very step, computed once, and says why in one line and in trainer.step_impl."""
    a, b = _trainer(tiny_images, "wgan-gp", n_critic=2), _trainer(tiny_images, "wgan-gp", n_critic=2)
    a.fast_step = GraphStep(a)  # capture=True, capturable optimisers
    _same_steps(a, b, 3)
    _eager_again(a)
    assert a.step_impl_fallback and a.step_impl == f"eager (graph capture failed: {a.step_impl_fallback})"
    err = [ln for ln in capsys.readouterr().err.splitlines() if "graph capture failed" in ln]
    assert len(err) == 1 and a.step_impl_fallback in err[0]


class _FakeStream:
    def wait_stream(self, other):
        pass


def test_a_capture_that_fails_after_running_is_undone_and_redone_eagerly(tiny_images, monkeypatch, capsys):
    """The CUDA plumbing replaced so that the warm-up steps run on the CPU and the capture runs the
    step's body and then fails: the state the body changed is put back, the step is computed once
    eagerly, and every step equals the eager reference."""
    import contextlib
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, s: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", object)

    @contextlib.contextmanager
    def failing_capture(graph):
        yield
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nsecond line")

    monkeypatch.setattr(torch.cuda, "graph", failing_capture)
    a, b = _trainer(tiny_images), _trainer(tiny_images)
    a.fast_step = GraphStep(a, capture=True, capturable=False)
    _same_steps(a, b, GraphStep.WARMUP + 3)
    _eager_again(a)
    assert a.step_impl == "eager (graph capture failed: RuntimeError: CUDA error: operation not permitted " \
                          "when stream is capturing)"
    assert capsys.readouterr().err.count("graph capture failed") == 1
