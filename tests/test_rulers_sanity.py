"""Every ruler of the panel rises monotonically with blur and with noise (Heusel et al. 2017's first check).

Small n, and no data set: the "real" faces are samples of the shipped WGAN-GP generator — faces, so
the anime encoder sees images of its own domain (on flat synthetic rectangles it sees almost
nothing, as an ImageNet network would on x-rays), and sharp enough for blur to remove detail. The
strengths are where a 6-epoch classifier at n = 128 goes from chance to certain: C2ST's accuracy
rises until it reaches 1.0 and stays there (`Curve.increasing`). `python -m eval.sanity --real
data/test.tar` is the full suite on real faces. Each ruler's headline metric is checked (SWD's
coarse level is meant to see layout and colour, not blur or noise).
"""
from pathlib import Path

import pytest
import torch

from animegan.checkpoint import load_generator
from eval import sanity as sn
from eval.evaluate import generate
from eval.rulers import get_ruler, known_rulers

PANEL = [name for name in ("effnet", "swd", "c2st", "anime") if name in known_rulers()]
STRENGTHS = {"blur": [0.75, 1.5, 3.0], "noise": [0.05, 0.1, 0.2]}
QUICK = {"c2st": {"max_epochs": 6, "patience": 2, "channels": (8, 16, 32, 64)}}
N = 128
GENERATOR = Path(__file__).resolve().parents[1] / "checkpoints" / "wgan-gp"


@pytest.fixture(scope="module")
def faces():
    return generate(load_generator(GENERATOR), 2 * N, seed=11, size=64)


@pytest.mark.parametrize("name", PANEL)
def test_every_ruler_rises_with_blur_and_noise(name, faces):
    torch.manual_seed(0)
    ruler = get_ruler(name, **QUICK.get(name, {}))
    ref, test = sn.split_real(faces, n=N, seed=0)
    result = sn.run_suite([ruler], ref, test, disturbances=list(STRENGTHS), strengths=STRENGTHS)
    head = [c for c in result.curves if c.metric == ruler.metrics[0].key]
    assert sorted(c.disturbance for c in head) == ["blur", "noise"]
    for c in head:
        assert c.increasing, (c.disturbance, c.values)
        b = c.badness
        if c.limit is None:  # an unbounded distance: each step a clear rise, not sampling noise
            assert all(hi - lo > 0.2 * abs(b[0]) + 1e-9 for lo, hi in zip(b, b[1:])), (c.disturbance, c.values)
        else:
            assert b[-1] - b[0] > 0.3, (c.disturbance, c.values)  # C2ST: from near chance to near certain
