"""Does a generator copy its training set? Pure functions of feature matrices.

- data_copying   the C_T statistic of Meehan, Chaudhuri & Dasgupta 2020 ("A non-parametric test to
                 detect data-copying in generative models"): the training set T is cut into k-means
                 cells; in each cell a Mann–Whitney test asks whether generated samples Q lie closer
                 to their nearest training image than held-out real images P do, as a z-score; C_T is
                 the average of the cells' z weighted by P's share of each cell (cells holding fewer
                 than τ·m generated samples are left out). Reading: strongly negative (< −3) = the
                 samples sit closer to the training images than unseen real images do — copying;
                 ≈ 0 (|C_T| ≲ 3 at n = 1000) = as close as new real data; strongly positive = farther
                 from the training set than real data — underfitting (poor samples), not copying.
- memorisation   the older summary: median NN distance Y→train ÷ held-out→train, with a Mann–Whitney
                 z over all samples (cf. Stein et al. 2023). It drifts with image quality, so a bad
                 generator looks "fine" (> 1); C_T names that case.

    ct = data_copying(train, heldout, fake)["ct"]      # −40 copies, 0 fine, +40 far off
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.cluster import KMeans

from .metrics import _t, nearest


def _z_u(q_dist: np.ndarray, p_dist: np.ndarray) -> float:
    """Mann–Whitney U of Q's against P's training-NN distances as a z-score (< 0: Q closer)."""
    m, n = len(q_dist), len(p_dist)
    u = stats.mannwhitneyu(q_dist, p_dist, alternative="two-sided").statistic  # U of the first sample
    return float((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))


def copying_cells(train, heldout, cells: int = 5, seed: int = 0) -> dict:
    """What C_T needs of the training and held-out sets, fitted once per evaluation: k-means cells of
    the training set, and each held-out image's cell and distance to its nearest training image there."""
    t, p = _t(train).numpy(), _t(heldout).numpy()
    if len(t) < cells:
        raise ValueError(f"C_T needs at least {cells} training samples, got {len(t)}")
    km = KMeans(n_clusters=cells, n_init=3, random_state=seed).fit(t.astype(np.float32))  # float32: 2× faster
    cell_t, cell_p = km.labels_, km.predict(p.astype(np.float32))
    p_dist = np.zeros(len(p))
    for c in range(cells):
        if (cell_p == c).any():
            p_dist[cell_p == c] = nearest(p[cell_p == c], t[cell_t == c])[0]
    return {"km": km, "train": t, "cell_t": cell_t, "cell_p": cell_p, "p_dist": p_dist, "cells": cells}


CT_MIN_SAMPLES = 20  # a cell is judged only where the generator puts at least this many samples


def data_copying(train, heldout, fake, cells: int = 5, min_samples: int = CT_MIN_SAMPLES, seed: int = 0,
                 fitted: dict | None = None) -> dict:
    """C_T (Meehan et al. 2020) of generated features against training and held-out real features;
    `fitted` (from copying_cells) skips refitting when many sets are tested against the same two."""
    f = fitted or copying_cells(train, heldout, cells, seed)
    q = _t(fake).numpy()
    cell_q = f["km"].predict(q.astype(np.float32))
    tau = min_samples / len(q)  # Meehan's Π_τ: only cells the generator populates enough
    k = f["cells"]
    z, p_share, q_share = np.full(k, np.nan), np.zeros(k), np.zeros(k)
    for c in range(k):
        in_p, in_q = f["cell_p"] == c, cell_q == c
        p_share[c], q_share[c] = in_p.mean(), in_q.mean()
        if in_p.any() and q_share[c] >= tau:
            z[c] = _z_u(nearest(q[in_q], f["train"][f["cell_t"] == c])[0], f["p_dist"][in_p])
    used = ~np.isnan(z)
    ct = float(np.dot(p_share[used], z[used]) / p_share[used].sum()) if p_share[used].sum() > 0 else float("nan")
    return {"ct": ct, "cells": k, "min_samples": min_samples, "cells_used": int(used.sum()),
            "z": [None if np.isnan(v) else float(v) for v in z], "p_share": p_share.tolist(),
            "q_share": q_share.tolist()}


def memorisation(fake, train, heldout, heldout_dist=None) -> dict:
    """median NN distance Y→train ÷ median NN distance held-out real→train, and each sample's nearest
    training image (for pictures); `heldout_dist` skips recomputing the held-out images' distances."""
    d_fake, idx = nearest(fake, train)
    d_held = nearest(heldout, train)[0] if heldout_dist is None else np.asarray(heldout_dist)
    med_held = float(np.median(d_held))
    z = _z_u(d_fake, d_held)
    return {"ratio": float(np.median(d_fake) / med_held) if med_held > 0 else float("nan"),
            "median_fake": float(np.median(d_fake)), "median_heldout": med_held,
            "mw_z": z, "nn_index": idx.tolist(), "nn_dist": d_fake.tolist()}
