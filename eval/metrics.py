"""Sample-quality and diversity metrics as pure functions of feature matrices.

Real features X (N×D), generated features Y (M×D), Euclidean distance;
NND_k(x) = distance from x to its k-th nearest neighbour in its own set, itself
excluded.

- frechet_distance   FID (Heusel et al. 2017), through torch-fidelity's own functions.
- kernel_distance    KID (Bińkowski et al. 2018), unbiased MMD², cubic kernel, through torch-fidelity.
- precision_recall   Kynkäänniemi et al. 2019, k = 3.
- density_coverage   Naeem et al. 2020, k = 5; coverage is the mode-dropping number.
- sample_diversity   collapse: ours, mean NN distance among Y ÷ the same for an equal-size real
                     sample; near_duplicates: Arora & Zhang 2017 (birthday paradox), share of Y
                     whose nearest Y is closer than the 1st percentile of real–real NN distances.
- ndb                Richardson & Weiss 2018: K k-means bins of X, two-proportion z-tests, JS.
- fd_spread          the sampling noise of FID: its std over random halves of both sets.
- vendi_score        Friedman & Dieng 2023: exp(entropy of the similarity matrix's eigenvalues),
                     an effective number of distinct samples.

Copying the training set is measured in eval.memorisation (C_T of Meehan et al. 2020).

Nearest neighbours come from scikit-learn's NearestNeighbors (chunked brute force);
"which balls hold this point" needs every pair, so it runs over row chunks of
torch.cdist — memory stays ~64 MB however big N and M are (50k × 50k is fine).

    from eval.metrics import precision_recall, density_coverage
    precision_recall(real, fake)   # {'precision': 0.71, 'recall': 0.52}
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)

from animegan.features import frechet_distance  # noqa: F401 — defined once, where training's quick FD needs it

CHUNK_ELEMENTS = 1 << 23  # distances per cdist chunk: 8M float64 = 64 MB

# The protocol's fixed choices, recorded in every report.json next to the numbers they produced.
K_PRECISION_RECALL = 3
K_DENSITY_COVERAGE = 5
KID_SUBSET_SIZE = 1000
NEAR_DUP_PERCENTILE = 1.0
NDB_ALPHA = 0.05


def _t(x) -> torch.Tensor:
    """Any 2-D array-like → float64 CPU tensor (float64: distances of near-identical points stay exact)."""
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().cpu().to(torch.float64)
    if x.dim() != 2 or len(x) == 0:
        raise ValueError(f"features must be a non-empty N×D matrix, got shape {tuple(x.shape)}")
    return x.contiguous()


def _rng_subset(n: int, m: int, seed: int) -> np.ndarray:
    """m distinct indices of range(n), seeded; everything (in order) if m ≥ n."""
    return np.arange(n) if m >= n else np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def knn_radii(x, k: int) -> np.ndarray:
    """NND_k for every row of x (self excluded): N."""
    x = _t(x)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {len(x)}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x.numpy()).kneighbors(x.numpy())
    return dist[:, k]  # column 0 is the point itself (or an exact duplicate: same distance 0)


def nearest(query, ref) -> tuple[np.ndarray, np.ndarray]:
    """Distance and index of each query row's nearest row in ref."""
    dist, idx = NearestNeighbors(n_neighbors=1).fit(_t(ref).numpy()).kneighbors(_t(query).numpy())
    return dist[:, 0], idx[:, 0]


def ball_membership(points, centers, radii: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each radius vector r (len(centers)): how many balls B(c_i, r_i) hold each point (P),
    and whether each ball holds any point (C). One chunked pass over all P×C distances."""
    p, c = _t(points), _t(centers)
    rs = [torch.as_tensor(np.asarray(r), dtype=torch.float64) for r in radii]
    counts = [torch.zeros(len(p), dtype=torch.long) for _ in rs]
    hit = [torch.zeros(len(c), dtype=torch.bool) for _ in rs]
    step = max(1, CHUNK_ELEMENTS // len(c))
    for i in range(0, len(p), step):
        d = torch.cdist(p[i:i + step], c)  # chunk×C
        for r, cnt, h in zip(rs, counts, hit):
            inside = d <= r[None, :]
            cnt[i:i + step] = inside.sum(1)
            h |= inside.any(0)
    return [x.numpy() for x in counts], [x.numpy() for x in hit]


def kernel_distance(feats_a, feats_b, subsets: int = 100, subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> dict:
    """KID mean ± std over `subsets` random subsets; the subset size shrinks (with a warning) below it."""
    a, b = _t(feats_a), _t(feats_b)
    size = min(subset_size, len(a), len(b))
    if size < subset_size:
        warnings.warn(f"KID: only {min(len(a), len(b))} samples, using subsets of {size} instead of "
                      f"{subset_size} (KID is noisier)", stacklevel=2)
    if size < 2:
        raise ValueError("KID needs at least 2 samples per set")
    out = kid_features_to_metric(a, b, kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
    return {"kid": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD], "kid_subset_size": size}


def precision_recall(real, fake, k: int = K_PRECISION_RECALL) -> dict:
    """Improved precision (Y inside the real manifold) and recall (X inside the generated one)."""
    (in_real,), _ = ball_membership(fake, real, [knn_radii(real, k)])
    (in_fake,), _ = ball_membership(real, fake, [knn_radii(fake, k)])
    return {"precision": float((in_real > 0).mean()), "recall": float((in_fake > 0).mean())}


def density_coverage(real, fake, k: int = K_DENSITY_COVERAGE) -> dict:
    """density = Σ_j Σ_i 1[y_j ∈ B(x_i, NND_k(x_i))] / (kM); coverage = share of real balls hit."""
    (counts,), (covered,) = ball_membership(fake, real, [knn_radii(real, k)])
    return {"density": float(counts.sum() / (k * len(counts))), "coverage": float(covered.mean())}


def nn_within(x) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest *other* row of the same set: distances, indices."""
    x = _t(x)
    if len(x) < 2:
        raise ValueError("need at least 2 samples for nearest-neighbour distances")
    dist, idx = NearestNeighbors(n_neighbors=2).fit(x.numpy()).kneighbors(x.numpy())
    # With exact duplicates the point itself may come second; both columns are then 0.
    self_first = idx[:, 0] == np.arange(len(x))
    return np.where(self_first, dist[:, 1], dist[:, 0]), np.where(self_first, idx[:, 1], idx[:, 0])


def sample_diversity(real, fake, percentile: float = NEAR_DUP_PERCENTILE, seed: int = 0, top: int = 8) -> dict:
    """Collapse score and near-duplicate rate from one NN search each; equal sample sizes."""
    real, fake = _t(real), _t(fake)
    m = min(len(real), len(fake))  # NN distances shrink with sample size: compare equal sizes
    r = real[_rng_subset(len(real), m, seed)]
    f_idx = _rng_subset(len(fake), m, seed + 1)
    d_real, _ = nn_within(r)
    d_fake, j = nn_within(fake[f_idx])
    threshold = float(np.percentile(d_real, percentile))
    pairs, seen = [], set()
    for a in np.argsort(d_fake, kind="stable"):  # closest generated pairs, each pair once
        pair = tuple(sorted((int(f_idx[a]), int(f_idx[j[a]]))))
        if pair not in seen:
            seen.add(pair)
            pairs.append([pair[0], pair[1], float(d_fake[a])])
        if len(pairs) >= top:
            break
    mean_real = float(d_real.mean())
    return {
        "collapse": float(d_fake.mean() / mean_real) if mean_real > 0 else float("nan"),
        "mean_nn_fake": float(d_fake.mean()), "mean_nn_real": mean_real, "m": m,
        "near_duplicates": {"rate": float((d_fake < threshold).mean()), "threshold": threshold,
                            "percentile": percentile, "closest_pairs": pairs},
    }


def fit_bins(real, k: int = 50, seed: int = 0) -> np.ndarray:
    """K k-means centres of the real features (K×D) — the bins of NDB."""
    x = _t(real).numpy()
    if len(x) < k:
        raise ValueError(f"NDB needs at least K={k} real samples, got {len(x)}")
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x).cluster_centers_


def ndb(real, fake, centers=None, k: int = 50, alpha: float = NDB_ALPHA, seed: int = 0) -> dict:
    """Number of statistically different bins (two-tailed two-proportion z-test, pooled p) and JS."""
    real, fake = _t(real), _t(fake)
    centers = fit_bins(real, k, seed) if centers is None else np.asarray(centers, dtype=np.float64)
    k = len(centers)
    n_r = np.bincount(nearest(real, centers)[1], minlength=k)
    n_f = np.bincount(nearest(fake, centers)[1], minlength=k)
    p_r, p_f = n_r / n_r.sum(), n_f / n_f.sum()
    pooled = (n_r + n_f) / (n_r.sum() + n_f.sum())
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_r.sum() + 1 / n_f.sum()))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p_f - p_r) / se, 0.0)
    different = np.abs(z) > stats.norm.ppf(1 - alpha / 2)
    mix = (p_r + p_f) / 2

    def kl(p):  # KL(p ‖ mix); empty bins of p add nothing
        nz = p > 0
        return float(np.sum(p[nz] * np.log(p[nz] / mix[nz])))
    order = np.argsort(z, kind="stable")
    return {
        "ndb": int(different.sum()), "ndb_over_k": float(different.mean()), "k": k, "alpha": alpha,
        "js": 0.5 * kl(p_r) + 0.5 * kl(p_f),  # nats, in [0, ln 2]
        "underfilled": [int(b) for b in order if different[b] and z[b] < 0],  # most dropped first
        "overfilled": [int(b) for b in order[::-1] if different[b] and z[b] > 0],
        "real_share": p_r.tolist(), "fake_share": p_f.tolist(), "z": z.tolist(),
    }


def fd_exact(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD through the cross matrix instead of d×d square roots: with centred A, B,
    Tr((Σa Σb)^½) is the nuclear norm of A Bᵀ / √((n−1)(m−1)); a set with more rows than
    dimensions is first reduced to its R factor (A = QR keeps ‖A Bᵀ‖_*). The same number as
    torch-fidelity's (to ~1e-7), ~20× faster — what makes the spread affordable."""
    a, b = _t(a), _t(b)  # float64: the cross term cancels most of the trace terms
    A, B = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    ra, rb = (torch.linalg.qr(x, mode="r").R if len(x) > x.shape[1] else x for x in (A, B))
    nuclear = torch.linalg.svdvals(ra @ rb.T).sum()
    mu = a.mean(0) - b.mean(0)
    return float(mu @ mu + (A * A).sum() / na + (B * B).sum() / nb - 2 * nuclear / (na * nb) ** 0.5)


def fd_spread(real, fake, rounds: int = 20, seed: int = 0) -> dict:
    """The sampling noise of FD at this n: the std of FD over `rounds` random halves of both sets, drawn
    without replacement (the delete-d jackknife with d = n/2, Shao & Wu 1989, whose variance factor is
    then 1). In simulations at n ≤ d it overstates the true std by 1.2–1.7×; a bootstrap, whose
    duplicates inflate FD, by 2–4×."""
    a, b = _t(real), _t(fake)
    if rounds < 2 or min(len(a), len(b)) < 4:
        raise ValueError("fd_spread needs at least 2 rounds and 4 samples per set")
    g = torch.Generator().manual_seed(seed)
    fds = [fd_exact(a[torch.randperm(len(a), generator=g)[:len(a) // 2]],
                     b[torch.randperm(len(b), generator=g)[:len(b) // 2]]) for _ in range(rounds)]
    return {"fid_std": float(np.std(fds, ddof=1)), "fid_spread_rounds": rounds}


def vendi_bandwidth(real) -> float:
    """The Vendi kernel's length scale: half the median distance between two reference rows (any n). At the
    full median, two typical faces still count as 0.6 alike and 1,000 real faces read as ~18 distinct
    (effnet-lite0); at half, they read as ~390, and a generator's faces as fewer."""
    x = _t(real)
    x = x[_rng_subset(len(x), 2000, 0)]
    return float(torch.pdist(x).median()) / 2


def vendi_score(feats, bandwidth: float) -> float:
    """exp(Shannon entropy of the eigenvalues of K/n) (Friedman & Dieng 2023), K the Gaussian kernel
    exp(−‖x − y‖² / 2h²) with the reference's length scale h (`vendi_bandwidth`): an effective number of
    distinct samples. The kernel depends on differences only, so the score does not move when the whole
    set moves (its distance to real data is FD's job, not Vendi's); the fixed h keeps a set collapsed to
    one tight cluster at ≈ 1 (a scale-free kernel, cosine after centring, would call tight noise diverse).
    k equally frequent points much farther apart than h score k."""
    x = _t(feats)
    d2 = torch.cdist(x, x).square()
    lam = torch.linalg.eigvalsh(torch.exp(-d2 / (2 * bandwidth ** 2)) / len(x)).clamp_min(0)
    lam = lam[lam > 1e-12]
    return float(torch.exp(-(lam * lam.log()).sum()))
