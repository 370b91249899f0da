"""The data-copying test C_T (Meehan et al. 2020) on feature sets whose answer is known."""
import pytest
import torch

from eval import memorisation as memo

D = 8


def cloud(n, seed, shift=0.0):
    """n points of one fixed 6-cluster Gaussian mixture in D dimensions (shift: move them all away)."""
    centres = torch.randn(6, D, generator=torch.Generator().manual_seed(123)) * 6
    g = torch.Generator().manual_seed(seed)
    return centres[torch.randint(6, (n,), generator=g)] + torch.randn(n, D, generator=g) + shift


@pytest.fixture(scope="module")
def sets():
    return {"train": cloud(3000, 0), "heldout": cloud(600, 1)}


def test_light_noise_copies_of_training_images_are_copying(sets):
    g = torch.Generator().manual_seed(2)
    copies = sets["train"][:600] + 0.05 * torch.randn(600, D, generator=g)
    res = memo.data_copying(sets["train"], sets["heldout"], copies)
    assert res["ct"] < -10 and res["cells_used"] == 5
    assert all(z < -3 for z in res["z"] if z is not None)
    # the older ratio agrees here: samples sit much closer than held-out images
    old = memo.memorisation(copies, sets["train"], sets["heldout"])
    assert old["ratio"] < 0.2 and old["mw_z"] < -10 and old["nn_index"][:3] == [0, 1, 2]


def test_new_real_images_are_neither_copying_nor_underfitting(sets):
    for seed in (3, 4, 5):
        res = memo.data_copying(sets["train"], sets["heldout"], cloud(600, seed))
        assert abs(res["ct"]) < 3, res


def test_far_samples_are_underfitting_where_the_ratio_said_fine(sets):
    # a random-init generator's samples: far from every training image, and all alike
    far = cloud(600, 6, shift=15.0)[:, :] * 0.2
    res = memo.data_copying(sets["train"], sets["heldout"], far)
    assert res["ct"] > 10 and res["cells_used"] >= 1
    assert memo.memorisation(far, sets["train"], sets["heldout"])["ratio"] > 1  # "fine" by the old reading


def test_cells_without_enough_samples_are_left_out(sets):
    # copies crowded into one cell, and 5 strays in another: only the crowded cell is judged
    fitted = memo.copying_cells(sets["train"], sets["heldout"])
    cell_t = fitted["cell_t"]
    crowded, other = sets["train"][cell_t == 0][:100], sets["train"][cell_t == 1][:5]
    res = memo.data_copying(sets["train"], sets["heldout"], torch.cat([crowded, other]) + 0.05, fitted=fitted)
    assert res["cells_used"] == 1 and res["z"][0] < -3 and res["z"][1] is None
    assert res["ct"] == pytest.approx(res["z"][0])  # the one judged cell carries all the weight
    few = sets["train"][:10] + 0.05
    res = memo.data_copying(sets["train"], sets["heldout"], few)
    assert res["cells_used"] == 0 and res["ct"] != res["ct"]  # NaN: nothing to judge
    with pytest.raises(ValueError):
        memo.data_copying(sets["train"][:3], sets["heldout"], few)
