"""Known-answer tests of the `swd` and `c2st` rulers on synthetic images (no real data needed).

Synthetic "faces": a flat background, three coloured rectangles (edges: the fine pyramid levels) and
mild pixel noise (texture). Two seeds are two samples of one distribution; blur, desaturation and a
brightness shift are faults whose effect on each metric is known in advance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy import stats

from eval.rulers import RULERS
from eval.rulers.c2st import C2ST, bootstrap, clopper_pearson, split
from eval.rulers.swd import LEVELS, SWD, laplacian_pyramid, pyr_up, sliced_wasserstein

# The shared real-face archive next to the checkout (as tests/conftest.py finds it); only the slow test reads it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces-96.tar"


def synthetic(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """n uint8 3×size×size images of one distribution; a different seed is a different sample.

    Like drawn faces, the colour sits in large areas (background and rectangles share a hue and differ
    in brightness) and the fine detail is achromatic (edges in brightness, grey pixel noise)."""
    rng = np.random.default_rng(seed)
    hue = rng.uniform(60, 200, (n, 3, 1, 1))
    img = np.broadcast_to(hue, (n, 3, size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(3):
        y0, x0 = rng.integers(0, size - 8, (2, n))[:, :, None, None]
        h, w = rng.integers(8, size // 2, (2, n))[:, :, None, None]
        inside = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
        img = np.where(inside[:, None], hue * rng.uniform(0.4, 1.3, (n, 1, 1, 1)), img)
    img = img + rng.normal(0, 8, (n, 1, size, size))
    return torch.from_numpy(np.clip(img.round(), 0, 255).astype(np.uint8))


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * int(np.ceil(3 * sigma)) + 1
    return TF.gaussian_blur(x.float(), [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)


def desaturate(x: torch.Tensor, amount: float) -> torch.Tensor:
    f = x.float()
    grey = (0.299 * f[:, 0] + 0.587 * f[:, 1] + 0.114 * f[:, 2])[:, None]
    return (grey + (1 - amount) * (f - grey)).round().clamp(0, 255).to(torch.uint8)


def shift(x: torch.Tensor, by: int | list[int]) -> torch.Tensor:
    """Add a constant (per channel if a list) to every pixel."""
    return (x.int() + torch.tensor(by).reshape(-1, 1, 1)).clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are too small to gain from a second thread, which only spins (and slows every
    test several-fold) when other jobs share the CPU. Determinism holds for any fixed thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- SWD

@pytest.fixture(scope="module")
def swd_sets():
    # Fewer patches and directions than the defaults keep these tests fast; the known answers hold.
    ruler = SWD(patches_per_level=16, directions=128)
    a, b = synthetic(200, 1), synthetic(200, 2)
    return ruler, a, b, ruler.describe(a), ruler.describe(b)


def test_registered():
    assert RULERS["swd"] is SWD and RULERS["c2st"] is C2ST
    assert SWD.metrics[0].key == "swd" and [m.key for m in SWD.metrics[1:]] == [f"swd_{s}" for s in LEVELS]
    assert [m.key for m in C2ST.metrics] == ["c2st", "c2st_lo", "c2st_hi"] and C2ST.metrics[0].better == "floor"


def test_sliced_wasserstein_by_hand():
    # 1-D: sorted [0 1 3] vs [0 2 5] → |0|+|1|+|2| over 3 points = 1, in either direction.
    a, b = torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([[2.0], [5.0], [0.0]])
    assert sliced_wasserstein(a, b, torch.tensor([[1.0], [-1.0]])) == pytest.approx(1.0)
    # 2-D: along x the sets agree (0), along y every point moves by 1 → mean over the two directions 0.5.
    a2, b2 = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert sliced_wasserstein(a2, b2, torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        sliced_wasserstein(a, b[:2], torch.tensor([[1.0]]))


def test_pyramid_reconstructs_and_is_flat_on_constants():
    x = synthetic(4, 0).float()
    band64, band32, resid16 = laplacian_pyramid(x)
    assert band64.shape[-1] == 64 and band32.shape[-1] == 32 and resid16.shape[-1] == 16
    assert torch.allclose(band64 + pyr_up(band32 + pyr_up(resid16)), x, atol=1e-3)
    flat = laplacian_pyramid(torch.full((1, 3, 64, 64), 77.0))
    assert flat[0].abs().max() < 1e-4 and flat[1].abs().max() < 1e-4 and torch.allclose(flat[2], torch.tensor(77.0))


def test_describe_shape_dtype_and_rows(swd_sets):
    _, a, _, _, _ = swd_sets
    ruler = SWD()
    da = ruler.describe(a)
    assert da.shape == (200, 3, 48, 147) and da.dtype == torch.float16
    assert torch.equal(ruler.describe(a, seed=0), da)                  # deterministic
    assert not torch.equal(ruler.describe(a, seed=1), da)              # the seed moves the patches
    idx = torch.tensor([5, 0, 17])
    assert torch.equal(ruler.describe(a[idx]), da[idx])               # row i ← image i alone
    # 2,000 real images must stay within ~100 MB of cache.
    assert 2000 * da[0].numel() * da.element_size() <= 100e6
    with pytest.raises(ValueError):
        ruler.describe(a.float())
    with pytest.raises(ValueError):
        ruler.describe(a[:, :, :32, :32])


def test_self_zero_halves_small_shift_large(swd_sets):
    ruler, _, _, da, db = swd_sets
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in ruler.score(da, da).values())
    same = ruler.score(da, db)
    shifted = ruler.score(da, ruler.describe(shift(synthetic(200, 2), 50)))
    assert same["swd"] < 0.2 * shifted["swd"], (same, shifted)
    # A brightness shift lives in the Gaussian residual; the band-pass levels barely see it.
    assert shifted["swd_16"] > 5 * same["swd_16"]
    assert same["swd"] == pytest.approx(np.mean([same[f"swd_{s}"] for s in LEVELS]))


def test_blur_raises_fine_level_more_and_monotone(swd_sets):
    ruler, _, b, da, db = swd_sets
    floor = ruler.score(da, db)
    scores = [ruler.score(da, ruler.describe(blur(b, s))) for s in (0.5, 1.0, 1.5, 2.0)]
    rel = {lv: scores[1][f"swd_{lv}"] / floor[f"swd_{lv}"] for lv in LEVELS}
    assert rel[64] > 3 * rel[16], rel
    fine = [s["swd_64"] for s in scores]
    assert fine == sorted(fine) and fine[0] > 2 * floor["swd_64"], fine


def test_colour_faults_raise_coarse_level(swd_sets):
    # The consequence of normalising by the reference's statistics: a colour cast and washed-out
    # colours are visible, in the 16×16 residual; the band-pass levels are blind to a constant cast.
    ruler, _, b, da, db = swd_sets
    floor = ruler.score(da, db)
    cast = ruler.score(da, ruler.describe(shift(b, [30, 0, -20])))
    assert cast["swd_16"] > 3 * floor["swd_16"], (floor, cast)
    assert cast["swd_64"] < 1.5 * floor["swd_64"] and cast["swd_32"] < 1.5 * floor["swd_32"], (floor, cast)
    pale = ruler.score(da, ruler.describe(desaturate(b, 0.6)))
    assert pale["swd_16"] > 2 * floor["swd_16"], (floor, pale)
    assert pale["swd_16"] / floor["swd_16"] > 2 * pale["swd_64"] / floor["swd_64"], (floor, pale)


def test_score_seed_and_unequal_counts(swd_sets):
    ruler, _, _, da, db = swd_sets
    assert ruler.score(da, db, seed=3) == ruler.score(da, db, seed=3)
    assert ruler.score(da, db, seed=3) != ruler.score(da, db, seed=4)   # other directions, a bit other value
    s = ruler.score(da, db[:50])                                       # the larger set is subsampled
    assert set(s) == {m.key for m in ruler.metrics} and all(np.isfinite(v) and v > 0 for v in s.values())
    out = ruler.paired(da, [db, db], rounds=2)
    assert out.shape == (2, 2, 4) and np.array_equal(out[:, 0], out[:, 1])


# -------------------------------------------------------------------------------------------- C2ST

def test_clopper_pearson_by_hand():
    # Exact values: k = 0 → upper = 1 − (α/2)^(1/n); k = n → lower = (α/2)^(1/n); 5 of 10 → the tables' 0.1871.
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** 0.1), abs=1e-9)
    assert clopper_pearson(10, 10) == pytest.approx((0.025 ** 0.1, 1.0), abs=1e-9)
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-6) and hi == pytest.approx(0.812914, abs=1e-6)
    # The definition: at the ends, seeing k or more (k or fewer) successes has probability α/2.
    lo, hi = clopper_pearson(530, 1000)
    assert stats.binom.sf(529, 1000, lo) == pytest.approx(0.025, abs=1e-9)
    assert stats.binom.cdf(530, 1000, hi) == pytest.approx(0.025, abs=1e-9)
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_split_is_disjoint_and_seeded():
    tr, va, te = split(100, 0)
    assert len(te) == 50 and len(va) == 10 and len(tr) == 40
    assert len(set(tr) | set(va) | set(te)) == 100
    assert all(np.array_equal(p, q) for p, q in zip(split(100, 0), (tr, va, te)))


# 32×32 images and a shorter schedule keep the three fits below cheap (the classifier's global pooling
# takes any size); the known answers hold for the default schedule too.
N_C2ST, SIZE_C2ST = 96, 32


@pytest.fixture(scope="module")
def c2st_fits():
    ruler = C2ST(max_epochs=8, patience=2)
    real, other = synthetic(N_C2ST, 41, SIZE_C2ST), synthetic(N_C2ST, 42, SIZE_C2ST)
    blurred = blur(other, 1.5)  # the pixel noise is gone: obvious to any texture-sensitive classifier
    return ruler, real, other, blurred, ruler.fit(real, other, seed=0), ruler.fit(real, blurred, seed=0)


def test_c2st_same_distribution_near_half(c2st_fits):
    *_, same, _ = c2st_fits
    assert same.lo <= 0.5 <= same.hi, same.accuracy
    assert len(same.real_test) == len(same.fake_test) == N_C2ST // 2


def test_c2st_obvious_difference_near_one(c2st_fits):
    *_, diff = c2st_fits
    assert diff.accuracy > 0.9 and diff.lo > 0.5, diff.accuracy
    worst = diff.surest_fakes(5)
    assert set(worst) <= set(diff.fake_test)
    order = np.argsort(diff.fake_logit)
    assert np.array_equal(worst, diff.fake_test[order[:5]])


def test_c2st_deterministic_and_describe(c2st_fits):
    ruler, real, other, _, same, _ = c2st_fits
    assert torch.equal(ruler.describe(real), real) and ruler.cache_real is False
    again = ruler.fit(real, other, seed=0)
    assert again.accuracy == same.accuracy and np.array_equal(again.fake_logit, same.fake_logit)
    with pytest.raises(ValueError):
        ruler.describe(real.float())


def test_c2st_paired_shape_and_means(c2st_fits, monkeypatch):
    ruler, real, other, blurred, same, diff = c2st_fits
    out = bootstrap([same, diff], rounds=40, seed=0)
    assert out.shape == (40, 2, 3)
    assert np.all(out[..., 1] <= out[..., 0]) and np.all(out[..., 0] <= out[..., 2])
    assert abs(out[:, 0, 0].mean() - same.accuracy) < 0.03
    assert abs(out[:, 1, 0].mean() - diff.accuracy) < 0.03
    assert out[:, 0, 0].std() > 0   # the held-out rows really are resampled
    # Paired: one round's real rows are the same for both models, so a model compared with itself
    # differs by exactly 0 in every round.
    twice = bootstrap([same, same], rounds=5, seed=0)
    assert np.array_equal(twice[:, 0], twice[:, 1])
    # paired() = one fit per generated set (same split and seed), then this bootstrap; the fits are
    # looked up here (they were trained above) to keep the test fast.
    trained = {other.data_ptr(): same, blurred.data_ptr(): diff}
    calls = []
    monkeypatch.setattr(ruler, "fit", lambda ref, fake, seed=0: calls.append(seed) or trained[fake.data_ptr()])
    assert np.array_equal(ruler.paired(real, [other, blurred], rounds=40, seed=0), out[:, :, :1])  # accuracy only
    assert calls == [0, 0]
    with pytest.raises(ValueError):
        bootstrap([same, same._replace(fake_test=same.fake_test[::-1])])


# ------------------------------------------------------------------------------ real faces (slow)

@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason="needs the real anime-faces archive for real-face numbers")
def test_real_faces_floor_and_blur():
    from animegan.data import load_images
    x = load_images(SHARED_DATA, size=64, limit=1000).images
    a, b = x[:500], x[500:]
    swd = SWD()
    da = swd.describe(a)
    floor, blurred = swd.score(da, swd.describe(b)), swd.score(da, swd.describe(blur(b, 1.0)))
    assert blurred["swd_64"] > 5 * floor["swd_64"], (floor, blurred)
    c2st = C2ST()
    same, diff = c2st.fit(a, b), c2st.fit(a, blur(b, 1.0))
    assert same.lo <= 0.5 <= same.hi and diff.accuracy > 0.85, (same.accuracy, diff.accuracy)
