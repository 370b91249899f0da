"""The metrics measure what they claim: hand-built feature sets with known answers (offline, fast)."""
import numpy as np
import pytest
import torch
from scipy import linalg

from eval import metrics as dv

D = 8


def mixture(n, clusters, seed, k=10, spread=20.0):
    """n points from the given clusters of a fixed, well-separated k-cluster Gaussian mixture."""
    centres = torch.randn(k, D, generator=torch.Generator().manual_seed(123)) * spread
    g = torch.Generator().manual_seed(seed)
    which = torch.as_tensor(clusters)[torch.randint(len(clusters), (n,), generator=g)]
    return centres[which] + torch.randn(n, D, generator=g), which


ALL = list(range(10))


def test_identical_sets_are_perfect():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    assert abs(dv.frechet_distance(x, x)) < 1e-6
    pr, dc = dv.precision_recall(x, x), dv.density_coverage(x, x)
    assert pr == {"precision": 1.0, "recall": 1.0}
    assert dc["coverage"] == 1.0
    with pytest.warns(UserWarning, match="subsets of 400"):
        kid_same = dv.kernel_distance(x, x, subsets=20)
    # The unbiased estimator counts k(x_i, x_i) in the cross term when both sets are the same
    # rows: a -O(1/m) offset (≈ -2·(k(x,x) − k(x,y))/m ≈ -14/m here), not a real distance.
    assert abs(kid_same["kid"]) < 20 / 400
    with pytest.warns(UserWarning):
        shifted = dv.kernel_distance(x, x + 1.0, subsets=20)
    assert shifted["kid"] > 10 * abs(kid_same["kid"])


def test_kid_of_two_samples_of_one_distribution_is_near_zero():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1000, 16, generator=g), torch.randn(1000, 16, generator=g)
    kid = dv.kernel_distance(a, b, subsets=20, subset_size=500)
    assert abs(kid["kid"]) < 0.02 and kid["kid_subset_size"] == 500
    assert dv.kernel_distance(a, b + 0.5, subsets=20, subset_size=500)["kid"] > 0.1


def test_collapsed_generator():
    real, _ = mixture(500, ALL, seed=0)
    g = torch.Generator().manual_seed(1)
    fake = real[:1] + 1e-3 * torch.randn(500, D, generator=g)  # one image, tiny noise
    div = dv.sample_diversity(real, fake)
    assert div["collapse"] < 0.01
    assert div["near_duplicates"]["rate"] > 0.95
    assert dv.density_coverage(real, fake)["coverage"] < 0.05
    assert dv.precision_recall(real, fake)["recall"] < 0.05
    a, b, dist = div["near_duplicates"]["closest_pairs"][0]
    assert a != b and dist == pytest.approx(float((fake[a] - fake[b]).norm()), rel=1e-6)


def test_generator_dropping_half_the_modes():
    real, real_c = mixture(1000, ALL, seed=0)
    fake, _ = mixture(1000, [0, 1, 2, 3, 4], seed=1)
    centers = dv.fit_bins(real, k=10, seed=0)
    res = dv.ndb(real, fake, centers=centers)
    # The five dropped clusters are exactly the under-filled bins; the kept five hold twice
    # their share, so they differ too (over-filled) — NDB/K counts both.
    assert len(res["underfilled"]) == 5 and len(res["overfilled"]) == 5
    _, bin_of_real = dv.nearest(real, centers)
    dropped_bins = {int(bin_of_real[i]) for i in range(len(real)) if int(real_c[i]) >= 5}
    assert set(res["underfilled"]) == dropped_bins
    assert res["js"] > 0.2
    cov = dv.density_coverage(real, fake)["coverage"]
    assert 0.4 < cov < 0.6
    # Precision stays where a full-coverage sample of the same data puts it (k=3 balls in 8-D
    # miss the tails: ~0.9), while recall drops with the missing modes.
    same, _ = mixture(1000, ALL, seed=2)
    base, pr = dv.precision_recall(real, same), dv.precision_recall(real, fake)
    assert pr["precision"] > 0.8 and pr["precision"] > base["precision"] - 0.05
    assert pr["recall"] < 0.6 < base["recall"]


def test_two_disjoint_real_splits_look_alike():
    a, _ = mixture(600, ALL, seed=0)
    b, _ = mixture(600, ALL, seed=1)
    div = dv.sample_diversity(a, b)
    assert 0.85 < div["collapse"] < 1.15
    assert div["near_duplicates"]["rate"] < 0.05
    res = dv.ndb(a, b, k=10, seed=0)
    assert res["ndb_over_k"] <= 0.2  # around α = 0.05 (0–2 bins of 10 by chance)
    pr = dv.precision_recall(a, b)
    assert pr["precision"] > 0.8 and pr["recall"] > 0.8


def fid_scipy(a, b):
    """Independent FID: scipy's matrix square root instead of torch-fidelity's eigenvalues."""
    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_closed_form_and_scipy():
    g = torch.Generator().manual_seed(0)
    mu, s = torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([2.0, 1.0, 1.0, 0.5])
    x = torch.randn(20000, 4, generator=g)
    y = mu + s * torch.randn(20000, 4, generator=g)
    closed = float((mu ** 2).sum() + ((1 - s) ** 2).sum())  # N(0,I) vs N(mu, diag s²): 3.25
    ours = dv.frechet_distance(x, y)
    assert ours == pytest.approx(closed, abs=0.1)
    assert ours == pytest.approx(fid_scipy(x, y), rel=1e-6)
    z = torch.randn(500, 32, generator=g) @ torch.randn(32, 32, generator=g)
    w = torch.randn(500, 32, generator=g) @ torch.randn(32, 32, generator=g)
    assert dv.frechet_distance(z, w) == pytest.approx(fid_scipy(z, w), rel=1e-5)


def test_ball_membership_is_the_same_in_small_chunks(monkeypatch):
    real, _ = mixture(300, ALL, seed=0)
    fake, _ = mixture(200, [0, 1, 2], seed=1)
    whole = (dv.precision_recall(real, fake), dv.density_coverage(real, fake))
    monkeypatch.setattr(dv, "CHUNK_ELEMENTS", 1000)  # 3 rows at a time
    assert (dv.precision_recall(real, fake), dv.density_coverage(real, fake)) == whole


def test_knn_radii_exclude_self_and_handle_duplicates():
    x = torch.tensor([[0.0], [1.0], [3.0], [3.0]])
    assert dv.knn_radii(x, 1).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert dv.knn_radii(x, 2).tolist() == [3.0, 2.0, 2.0, 2.0]
    d, j = dv.nn_within(x)
    assert d.tolist() == [1.0, 1.0, 0.0, 0.0] and j.tolist()[2:] == [3, 2]
    with pytest.raises(ValueError):
        dv.knn_radii(x, 4)


def test_fast_fd_is_torch_fidelitys_fd():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 64, generator=g) / 8
    x, y = torch.relu(torch.randn(300, 64, generator=g) @ w), torch.relu(torch.randn(200, 64, generator=g) @ w + 0.1)
    for a, b in ((x, y), (y, x), (x[:40], y)):  # n < m, n > m, n < d
        assert dv.fd_exact(a.double(), b.double()) == pytest.approx(dv.frechet_distance(a, b), rel=1e-6)


def test_fd_spread_is_the_sampling_noise_of_fd():
    """Against the truth: the std of FD over 30 independent pairs of samples of two fixed distributions."""
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.5, 2, D)

    def pair(n):
        return torch.randn(n, D, generator=g) * scale, torch.randn(n, D, generator=g) + 0.3

    truth = np.std([dv.fd_exact(*(x.double() for x in pair(400))) for _ in range(30)], ddof=1)
    est = [dv.fd_spread(*pair(400), rounds=20, seed=i)["fid_std"] for i in range(3)]
    assert all(0.5 * truth < e < 2.5 * truth for e in est) and 0.7 * truth < np.mean(est) < 2 * truth, (truth, est)
    assert dv.fd_spread(*pair(1600), rounds=20)["fid_std"] < 0.9 * np.mean(est)  # less noise at larger n


def test_vendi_counts_distinct_points():
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 7):
        pts = 10 * torch.randn(k, 512, generator=g)  # far apart compared with the length scale 1
        assert dv.vendi_score(pts.repeat(40, 1), bandwidth=1.0) == pytest.approx(k, rel=1e-3)
    eye = torch.eye(5)
    assert dv.vendi_score(eye.repeat_interleave(3, 0), bandwidth=0.01) == pytest.approx(5, rel=1e-6)  # exactly k
    assert dv.vendi_score(torch.cat([eye[:1].repeat(9, 1), eye[1:2]]), bandwidth=0.01) < 2  # unequal weights count less


def test_vendi_ignores_where_the_set_sits_and_sees_collapse():
    real, _ = mixture(1000, ALL, seed=0)
    h = dv.vendi_bandwidth(real)
    v_real = dv.vendi_score(real, h)
    shifted = real + real.std(0, keepdim=True)  # every feature moved by 1 σ: fidelity, not diversity
    assert dv.vendi_score(shifted, h) == pytest.approx(v_real, rel=1e-6)
    collapsed = real[:1] + 1e-3 * torch.randn(1000, D, generator=torch.Generator().manual_seed(1))
    v_col = dv.vendi_score(collapsed, h)
    assert v_real > 5 and v_col < 1.1 and v_real > 5 * v_col
