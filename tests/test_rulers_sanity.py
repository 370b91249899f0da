"""Every ruler of the panel rises monotonically with blur and with noise (Heusel et al. 2017's first check).

Small n on synthetic images (coloured rectangles: sharp edges, flat colours), so it runs anywhere
without the data set; `python -m eval.sanity --real data/test.tar` is the full suite on real faces.
Each ruler's headline metric is checked (SWD's coarse level is meant to see layout and colour, not
blur or noise); C2ST trains a narrower network on a shorter schedule here.
"""
import pytest
import torch

from animegan.data import load_images
from eval import sanity as sn
from eval.rulers import get_ruler, known_rulers
from eval.testing import write_images

PANEL = [name for name in ("effnet", "swd", "c2st", "anime") if name in known_rulers()]
STRENGTHS = {"blur": [0.75, 1.5, 3.0], "noise": [0.02, 0.05, 0.1]}
QUICK = {"c2st": {"max_epochs": 6, "patience": 2, "channels": (8, 16, 32, 64)}}


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return load_images(write_images(tmp_path_factory.mktemp("panel") / "x", 128, seed=11, size=64)).images


@pytest.mark.parametrize("name", PANEL)
def test_every_ruler_rises_with_blur_and_noise(name, faces):
    torch.manual_seed(0)
    ruler = get_ruler(name, **QUICK.get(name, {}))
    ref, test = sn.split_real(faces, n=64, seed=0)
    result = sn.run_suite([ruler], ref, test, disturbances=list(STRENGTHS), strengths=STRENGTHS)
    head = [c for c in result.curves if c.metric == ruler.metrics[0].key]
    assert sorted(c.disturbance for c in head) == ["blur", "noise"]
    for c in head:
        assert c.increasing, (c.disturbance, c.values)
        assert c.badness[-1] - c.badness[0] > 0.5 * abs(c.badness[0]) + 1e-9, (c.disturbance, c.values)  # a rise
