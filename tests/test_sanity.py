"""eval.disturb (disturbances of real faces) and eval.sanity (the rulers' sanity suite, translations).

Stand-in rulers keep this fast: FD of a per-image 4×4 colour thumbnail plus a 4×4 map of detail
(mean |Laplacian|), which rises with blur and noise; and a colour-blind twin that sees only grey.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from animegan.features import frechet_distance
from eval import sanity as sn
from eval.disturb import (
    DISTURBANCES,
    Clusters,
    black_rectangles,
    contaminate,
    desaturate,
    drop_modes,
    gaussian_blur,
    gaussian_noise,
    mode_clusters,
    mode_drop_plan,
    random_init_samples,
    reduce_contrast,
    salt_and_pepper,
    swirl,
    thumbnails,
)
from eval.rulers import RULERS, Ruler
from eval.schema import Metric

LAP = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces-96.tar"  # as conftest's


class ThumbRuler(Ruler):
    """FD of [4×4 colour thumbnail, 4 × the 4×4 map of mean |Laplacian| of grey]."""
    name = "thumb"
    colour = True
    metrics = (Metric("thumb_fd", "Thumbnail FD", "tFD", "lower", "{:.3f}", "FD of thumbnails and detail"),)

    def identity(self) -> dict:
        return {"name": self.name}

    def describe(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        x = images.float() / 255
        grey = (x * LUMA).sum(1, keepdim=True)
        detail = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), LAP).abs()
        base = x if self.colour else grey
        # ×4: the detail dimensions must weigh as much as the colours in the FD, or blur hides
        return torch.cat([F.adaptive_avg_pool2d(base, 4).flatten(1),
                          4 * F.adaptive_avg_pool2d(detail, 4).flatten(1)], 1).double()

    def score(self, ref: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict[str, float]:
        return {self.metrics[0].key: frechet_distance(ref, fake)}


class GreyRuler(ThumbRuler):
    name = "grey"
    colour = False
    metrics = (Metric("grey_fd", "Grey FD", "gFD", "lower", "{:.3f}", "colour-blind FD"),)


def synth(n: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """n uint8 images: a coloured background, six coloured rectangles and fine stripes (the detail
    that blur removes), all drawn at random."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.full((size, size, 3), rng.integers(0, 256, 3), np.float64)
        for _ in range(6):
            y0, x0 = rng.integers(0, size - 4, 2)
            h, w = rng.integers(3, size // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
        period, phase, ang = rng.uniform(3, 8), rng.uniform(0, 6.3), rng.uniform(0, 3.14)
        img += 30 * np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period + phase)[..., None]
        out[i] = np.clip(img, 0, 255)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a CPU shared with other jobs, worker threads spin-wait: one thread is ~10× faster for these
    small tensors and k-means fits."""
    from threadpoolctl import (
        threadpool_limits,  # scikit-learn's own dependency; KMeans' OpenMP pool
    )

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return synth(64, seed=1)


@pytest.fixture(scope="module")
def pool() -> torch.Tensor:
    return synth(64, seed=99)  # stands in for random-init samples: other images, cheap


@pytest.fixture(scope="module")
def clusters(images):
    return mode_clusters(thumbnails(images), seed=3)  # once: k-means is the slow part of "modes"


def extras_for(name: str, pool: torch.Tensor, clusters=None) -> dict:
    return {"pool": pool} if name == "random-init" else {"clusters": clusters} if name == "modes" else {}


def mean_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


# ---- disturbances -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(DISTURBANCES))
def test_disturbance_identity_shape_determinism_and_order(name, images, pool, clusters):
    d = DISTURBANCES[name]
    extra = extras_for(name, pool, clusters)
    assert torch.equal(d.apply(images, 0, seed=3, **extra), images)
    assert len(d.strengths) >= 4 and all(b > a for a, b in zip((0,) + d.strengths, d.strengths))
    changes = []
    for s in d.strengths:
        out = d.apply(images, s, seed=3, **extra)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert torch.equal(out, d.apply(images, s, seed=3, **extra))  # seeded: reproducible
        changes.append(mean_change(out, images))
    assert all(b > a for a, b in zip([0.0] + changes, changes)), (name, changes)  # stronger → farther
    assert d.label(d.strengths[0]) and d.phrase(d.strengths[0]).startswith("real faces ")


@pytest.mark.parametrize("fn", [gaussian_noise, salt_and_pepper, black_rectangles, contaminate, drop_modes])
def test_random_disturbances_depend_on_the_seed(fn, images, pool):
    kw = {"pool": pool} if fn is contaminate else {}
    s = 2 if fn is black_rectangles else 0.2
    assert not torch.equal(fn(images, s, seed=0, **kw), fn(images, s, seed=1, **kw))


def test_disturbances_leave_the_input_and_global_rng_alone(images, pool, clusters):
    before, state = images.clone(), torch.get_rng_state()
    for name, d in DISTURBANCES.items():
        d.apply(images, d.strengths[-1], seed=0, **extras_for(name, pool, clusters))
    assert torch.equal(images, before) and torch.equal(torch.get_rng_state(), state)


def test_bad_input_is_one_line_error(images):
    with pytest.raises(ValueError, match="uint8 N×3×H×W"):
        gaussian_blur(images.float(), 1.0)
    with pytest.raises(ValueError, match="blur σ must be in"):
        gaussian_blur(images, -1.0)
    with pytest.raises(ValueError, match="share must be in"):
        salt_and_pepper(images, 1.5)
    with pytest.raises(ValueError, match="contamination pool must hold"):
        contaminate(images, 0.5, pool=images[:3])


def test_blur_of_a_constant_image_is_constant():
    flat = torch.full((2, 3, 20, 64), 77, dtype=torch.uint8)
    flat[1] = 200
    for sigma in (0.5, 1.0, 3.0, 10.0):  # 10: a kernel wider than the image
        assert torch.equal(gaussian_blur(flat, sigma), flat)


def test_blur_keeps_the_mean_and_smooths(images):
    out = gaussian_blur(images, 2.0)
    assert abs(out.float().mean() - images.float().mean()) < 0.5
    def grad(x: torch.Tensor) -> float:
        return x.float().diff(dim=-1).abs().mean().item()
    assert grad(out) < 0.5 * grad(images)


def test_noise_and_salt_and_pepper_are_nested_over_strengths(images):
    weak, strong = salt_and_pepper(images, 0.05, seed=2), salt_and_pepper(images, 0.2, seed=2)
    hit_weak, hit_strong = (weak != images).any(1), (strong != images).any(1)
    assert not (hit_weak & ~hit_strong).any()  # every pixel salted at 5 % is salted at 20 %
    salted = (strong == 0).all(1) | (strong == 255).all(1)
    assert abs(salted.float().mean().item() - 0.2) < 0.02
    n1, n2 = gaussian_noise(images, 0.05, seed=2).float(), gaussian_noise(images, 0.1, seed=2).float()
    mid = (n1 > 0) & (n1 < 255) & (n2 > 0) & (n2 < 255)  # unclipped: the same field, doubled (± rounding)
    assert torch.allclose((n2 - images.float())[mid], 2 * (n1 - images.float())[mid], atol=1.5)


def test_rectangles_are_black_nested_and_sized(images):
    one, three = black_rectangles(images, 1, seed=4), black_rectangles(images, 3, seed=4)
    black1, black3 = (one != images).any(1), (three != images).any(1)
    assert not (black1 & ~black3).any()
    assert (three[black3.unsqueeze(1).expand_as(three)] == 0).all()
    cover = ((one == 0).all(1)).float().mean(dim=(1, 2))  # one rectangle: 1/64 .. 1/16 of the image
    assert (cover >= 1 / 64 - 1e-6).all() and (cover <= 1 / 16 + 0.02).all()


def test_swirl_identity_centre_and_constant():
    x = synth(4, seed=5, size=33)  # odd side: the centre is a pixel
    assert torch.equal(swirl(x, 0.0), x)
    for s in (0.5, 2.0, 4.0):
        out = swirl(x, s)
        assert torch.equal(out[:, :, 16, 16], x[:, :, 16, 16])
        assert not torch.equal(out, x)
    flat = torch.full((1, 3, 64, 64), 123, dtype=torch.uint8)
    assert torch.equal(swirl(flat, 4.0), flat)  # mirrored outside: no black corners


def test_swirl_matches_skimage_definition_at_one_pixel():
    # A single bright pixel at distance ρ from the centre of a 65×65 image moves by the angle
    # −strength·exp(−ρ / (radius·ln 2 / 5)): the output at angle φ reads the input at φ + θ(ρ).
    x = torch.zeros(1, 3, 65, 65, dtype=torch.uint8)
    x[..., 32, 32 + 10] = 255
    strength, radius = 1.0, 100.0
    theta = strength * np.exp(-10 / (radius * np.log(2) / 5))
    out = swirl(x, strength, radius=radius)[0, 0].float()
    yc, xc = np.unravel_index(int(out.argmax()), out.shape)
    ang = np.arctan2(yc - 32, xc - 32)
    assert abs(ang - (-theta)) < 0.12 and abs(np.hypot(yc - 32, xc - 32) - 10) <= 1


def test_desaturating_grey_changes_nothing_and_full_is_grey(images):
    grey = images[:, :1].expand(-1, 3, -1, -1).contiguous()
    for f in (0.25, 1.0):
        assert torch.equal(desaturate(grey, f), grey)
    full = desaturate(images, 1.0)
    assert (full.max(1).values.int() - full.min(1).values.int()).max() <= 1
    assert torch.equal(reduce_contrast(grey[:, :, :1, :1], 0.5), grey[:, :, :1, :1])  # one pixel: its own mean


def test_mode_dropping_removes_whole_clusters_and_keeps_the_count(images):
    share, seed = 0.3, 7
    clusters = mode_clusters(thumbnails(images), k=8, seed=seed)
    labels = clusters.labels
    plan = mode_drop_plan(clusters, share, seed)
    out = drop_modes(images, share, seed=seed, k=8)
    assert out.shape == images.shape and torch.equal(out, images[torch.as_tensor(plan.index)])
    gone = np.isin(labels, plan.dropped)
    assert gone.any() and not gone.all()
    assert not np.isin(labels[plan.index], plan.dropped).any()  # no row copies a dropped face
    kept_rows = {bytes(img.numpy().tobytes()) for img in out}
    assert not kept_rows & {bytes(images[i].numpy().tobytes()) for i in np.flatnonzero(gone)}
    assert np.array_equal(plan.index[~gone], np.flatnonzero(~gone))  # kept faces stay in place
    biggest = np.bincount(labels).max() / len(labels)
    assert abs(plan.share - share) <= biggest / 2 + 1e-9
    assert set(mode_drop_plan(clusters, 0.1, seed).dropped) <= set(plan.dropped)  # nested over shares
    # clusters given: the same output without k-means again
    assert torch.equal(drop_modes(images, share, seed=seed, clusters=clusters), out)


def test_mode_dropping_takes_one_region_first():
    # two far-apart groups of four clusters each: dropping half the faces drops one whole group
    centers = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [100, 100], [101, 100], [100, 101], [101, 101]], float)
    clusters = Clusters(np.repeat(np.arange(8), 5), centers)
    for seed in range(6):
        dropped = set(mode_drop_plan(clusters, 0.5, seed).dropped)
        assert dropped in ({0, 1, 2, 3}, {4, 5, 6, 7})
    bare = [set(mode_drop_plan(clusters.labels, 0.5, s).dropped) for s in range(6)]  # labels only: random
    assert any(d not in ({0, 1, 2, 3}, {4, 5, 6, 7}) for d in bare)


def test_contamination_replaces_exactly_the_share(images, pool):
    for share in (0.1, 0.25, 0.5):
        out = contaminate(images, share, seed=3, pool=pool)
        changed = (out != images).flatten(1).any(1)
        m = round(share * len(images))
        assert int(changed.sum()) == m
        assert torch.equal(out[changed].sort(0).values, pool[:m].sort(0).values)
    weak = (contaminate(images, 0.1, seed=3, pool=pool) != images).flatten(1).any(1)
    assert not (weak & ~changed).any()


def test_random_init_samples_are_seeded_and_pure():
    state = torch.get_rng_state()
    a, b = random_init_samples(3, seed=0), random_init_samples(3, seed=0)
    assert a.shape == (3, 3, 64, 64) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, random_init_samples(3, seed=1))
    assert torch.equal(torch.get_rng_state(), state)
    assert random_init_samples(2, size=32).shape == (2, 3, 32, 32)


def test_the_table_phrases():
    assert DISTURBANCES["blur"].phrase(1.3) == "real faces blurred with σ = 1.3 px"
    assert DISTURBANCES["noise"].phrase(0.07) == "real faces with Gaussian noise σ = 0.07"
    assert DISTURBANCES["random-init"].phrase(0.3) == "real faces with 30 % of the faces replaced by random-init samples"
    for d in DISTURBANCES.values():
        assert set(d.info()) == {"name", "strengths", "unit", "scale", "reads", "axis", "description"}
        json.dumps(d.info())


# ---- the suite ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def suite():
    ref, test = sn.split_real(synth(200, seed=0), n=100, seed=0)
    calls = []

    def counting(ruler, imgs, tag):
        calls.append((ruler.name, tag))
        return sn.describe_plain(ruler, imgs, tag)

    result = sn.run_suite([ThumbRuler(), GreyRuler()], ref, test, disturbances=["blur", "noise", "desaturate"],
                          seed=0, describe_cached=counting)
    return result, calls


def test_suite_sees_blur_and_noise_rise(suite):
    result, _ = suite
    for key in ("thumb_fd", "grey_fd"):
        for d in ("blur", "noise"):
            c = result.curve(key, d)
            assert c.increasing and c.rho == pytest.approx(1.0), (key, d, c.values)
            assert c.strengths[0] == 0 and c.strengths[1:] == list(DISTURBANCES[d].strengths)
    assert result.curve("thumb_fd", "desaturate").increasing
    assert not result.curve("grey_fd", "desaturate").increasing  # colour-blind: cannot see washed-out
    assert result.failures() == [f for f in result.failures() if f.startswith("grey:grey_fd × desaturate")]
    assert len(result.failures()) == 1 and result.failures(["blur", "noise"]) == []


def test_suite_describes_the_reference_and_floor_once(suite):
    result, calls = suite
    n_strengths = sum(len(d["strengths"]) for d in result.disturbances)
    for name in ("thumb", "grey"):
        tags = [t for r, t in calls if r == name]
        assert sum(t.role == "ref" for t in tags) == 1
        assert sum(t.role == "test" and not t.disturbance for t in tags) == 1
        assert len(tags) == 2 + n_strengths and len({t.key for t in tags}) == len(tags)
    floors = {c.values[0] for c in result.curves if c.metric == "thumb_fd"}
    assert len(floors) == 1  # one real-vs-real floor shared by every disturbance


def test_result_round_trips_through_json(suite, tmp_path):
    result, _ = suite
    d = json.loads(json.dumps(result.to_dict()))
    back = sn.SanityResult.from_dict(d)
    assert back.to_dict() == d
    assert d["curves"][0].keys() >= {"ruler", "metric", "disturbance", "strengths", "values", "increasing",
                                     "spearman"}
    paths = sn.write_result(result, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.joinpath("out").iterdir()) == ["rulers_sanity.png", "sanity.json",
                                                                          "sanity.md"]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    md = paths["md"].read_text()
    assert "| Thumbnail FD (thumb, `thumb_fd`) | ✓ ρ 1.00 | ✓ ρ 1.00 | ✓ ρ 1.00 |" in md
    assert "| Grey FD (grey, `grey_fd`) | ✓ ρ 1.00 | ✓ ρ 1.00 | ✗" in md
    assert "| σ = 1.5 px |" in md and "0 (real vs real)" in md


def test_disk_cache_reuses_descriptors(tmp_path):
    ref, test = sn.split_real(synth(60, seed=2), n=30, seed=0)
    cache = sn.DiskCache(tmp_path / "cache")
    kw = {"disturbances": ["blur", "modes"], "strengths": {"blur": [1.0, 2.0], "modes": [0.2, 0.4]}}
    first = sn.run_suite([ThumbRuler()], ref, test, describe_cached=cache, **kw)
    assert cache.misses == 6 and cache.hits == 0
    second = sn.run_suite([ThumbRuler()], ref, test, describe_cached=cache, **kw)
    assert cache.hits == 6 and first.to_dict()["curves"] == second.to_dict()["curves"]
    # other mode features → other disturbed images → other cache entries
    sn.run_suite([ThumbRuler()], ref, test, describe_cached=cache, features=torch.randn(30, 5), **kw)
    assert cache.misses == 6 + 2


def test_suite_rejects_bad_arguments(images):
    with pytest.raises(sn.UsageError, match="unknown disturbance 'fog'; known: blur"):
        sn.run_suite([ThumbRuler()], images, images, disturbances=["fog"])
    with pytest.raises(sn.UsageError, match="positive and increasing"):
        sn.run_suite([ThumbRuler()], images, images, disturbances=["blur"], strengths={"blur": [2, 1]})
    with pytest.raises(sn.UsageError, match="distinct names"):
        sn.run_suite([ThumbRuler(), ThumbRuler()], images, images)
    with pytest.raises(sn.UsageError, match="need 2×n = 200"):
        sn.split_real(images, 100)


def test_split_is_disjoint_and_seeded():
    x = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 2, 2).contiguous()
    ref, test = sn.split_real(x, 8, seed=0)
    a, b = set(ref[:, 0, 0, 0].tolist()), set(test[:, 0, 0, 0].tolist())
    assert len(a) == len(b) == 8 and not a & b and a | b == set(range(16))
    assert torch.equal(sn.split_real(x, 8, seed=0)[0], ref) and not torch.equal(sn.split_real(x, 8, seed=1)[0], ref)


# ---- translation --------------------------------------------------------------------------------

def hand_made(extra_ruler: bool = False) -> sn.SanityResult:
    infos = [{**DISTURBANCES[n].info(), "strengths": s} for n, s in
             (("blur", [0.5, 1.0, 2.0]), ("noise", [0.02, 0.05, 0.1]), ("swirl", [1.0, 2.0, 4.0]))]
    metrics = [{"ruler": "r", "key": "fd", "name": "FD", "title": "FD", "better": "lower", "fmt": "{:.1f}", "scale": 1},
               {"ruler": "r", "key": "prec", "name": "P", "title": "P", "better": "higher", "fmt": "{:.2f}", "scale": 1},
               {"ruler": "r", "key": "acc", "name": "C2ST", "title": "acc", "better": "floor", "fmt": "{:.2f}",
                "scale": 1}]
    c = sn.Curve
    curves = [c("r", "fd", "blur", "lower", [0, 0.5, 1.0, 2.0], [1, 2, 4, 8]),
              c("r", "fd", "noise", "lower", [0, 0.02, 0.05, 0.1], [1, 3, 5, 7]),
              c("r", "fd", "swirl", "lower", [0, 1.0, 2.0, 4.0], [1, 3, 2, 5]),   # turns back: unreadable
              c("r", "prec", "blur", "higher", [0, 0.5, 1.0, 2.0], [0.9, 0.8, 0.5, 0.2]),
              c("r", "acc", "blur", "floor", [0, 0.5, 1.0, 2.0], [0.5, 0.55, 0.7, 0.9])]
    if extra_ruler:
        metrics.append({**metrics[0], "ruler": "s"})
        curves.append(c("s", "fd", "blur", "lower", [0, 0.5, 1.0, 2.0], [10, 20, 40, 80]))
    return sn.SanityResult(seed=0, n_ref=10, n_test=10, metrics=metrics, disturbances=infos, curves=curves)


def test_translate_known_answers():
    res = hand_made()
    def by(eqs: list[sn.Equivalent]) -> dict[str, sn.Equivalent]:
        return {e.disturbance: e for e in eqs}
    exact = by(sn.translate(res, "fd", 4.0))
    assert set(exact) == {"blur", "noise"}  # swirl's curve does not rise at every step
    assert exact["blur"].strength == 1.0 and exact["blur"].status == "within"
    assert exact["blur"].phrase == "as far from real faces as real faces blurred with σ = 1.0 px"
    assert exact["noise"].strength == pytest.approx(0.035)
    half = by(sn.translate(res, "fd", 3.0))
    assert half["blur"].strength == pytest.approx(0.75) and half["noise"].strength == pytest.approx(0.02)
    assert half["noise"].phrase == "as far from real faces as real faces with Gaussian noise σ = 0.02"
    for v in (0.2, 1.0):  # below and at the floor
        for e in sn.translate(res, "fd", v):
            assert (e.status, e.strength, e.label, e.phrase) == ("floor", 0.0, "", sn.FLOOR_PHRASE)
    top = sn.translate(res, "fd", 8.0)
    assert [(e.disturbance, e.status) for e in top] == [("blur", "within"), ("noise", "beyond")]
    assert top[0].strength == 2.0
    assert top[1].phrase == ("farther from real faces than real faces with Gaussian noise σ = 0.10 "
                             "(the strongest tested)")
    assert [e.disturbance for e in sn.translate(res, "fd", 99.0)] == ["blur", "noise"]
    assert sn.translate(res, "fd", 3.0, top=1)[0].disturbance == "blur"
    assert sn.translate(res, "fd", 3.0, prefer=["noise"])[0].disturbance == "noise"
    assert by(sn.translate(res, "fd", 3.0))["blur"].sensitivity == 1.0


def test_translate_reads_higher_and_floor_metrics():
    res = hand_made()
    (p,) = sn.translate(res, "prec", 0.65)
    assert p.strength == pytest.approx(0.75)
    (a,) = sn.translate(res, "acc", 0.6)  # |0.6 − 0.5| = 0.1: between 0.05 (σ 0.5) and 0.2 (σ 1)
    assert a.strength == pytest.approx(0.5 + 0.5 / 3)
    assert sn.translate(res, "acc", 0.5)[0].status == "floor"


def test_a_bounded_metric_rises_until_its_limit():
    c = lambda values, limit=1.0: sn.Curve("r", "acc", "noise", "floor", [0, 0.05, 0.1, 0.2], values, limit)  # noqa: E731
    assert c([0.5, 0.8, 1.0, 1.0]).increasing               # certain at 0.1: cannot rise at 0.2
    assert c([0.5, 0.8, 0.998, 1.0]).increasing             # within 1 % of the way to the limit counts as there
    assert not c([0.5, 0.8, 1.0, 1.0], limit=None).increasing  # an unbounded metric must rise at every step
    assert not c([0.5, 0.8, 0.8, 1.0]).increasing           # flat below the limit
    assert not c([0.5, 1.0, 0.9, 1.0]).increasing           # leaves the limit again
    assert not c([1.0, 1.0, 1.0, 1.0]).increasing           # at the limit from the floor: sees nothing rise
    assert c([0.5, 0.8, 1.0, 1.0]).saturated.tolist() == [False, False, True, True]
    assert sn.Curve.from_dict(c([0.5, 0.8, 1.0, 1.0]).to_dict()).limit == 1.0


def test_translate_reads_a_saturating_curve_up_to_its_limit():
    res = hand_made()
    res.curves[-1] = sn.Curve("r", "acc", "blur", "floor", [0, 0.5, 1.0, 2.0], [0.5, 0.7, 1.0, 1.0], 1.0)
    (a,) = sn.translate(res, "acc", 0.85)  # half-way from 0.7 (σ 0.5) to 1.0 (σ 1)
    assert a.status == "within" and a.strength == pytest.approx(0.75)
    (top,) = sn.translate(res, "acc", 1.0)  # certain: at least the first strength that made it certain
    assert top.status == "beyond" and top.strength == 1.0
    assert top.phrase == ("at least as far from real faces as real faces blurred with σ = 1.0 px "
                          "(where acc reaches its limit)")


def test_translate_names_the_ruler_when_keys_clash():
    res = hand_made(extra_ruler=True)
    with pytest.raises(KeyError, match="name one as RULER:fd"):
        sn.translate(res, "fd", 3.0)
    assert sn.translate(res, "s:fd", 30.0)[0].strength == pytest.approx(0.75)
    with pytest.raises(KeyError, match="no metric 'nope'"):
        sn.translate(res, "nope", 1.0)


# ---- rulers by name, the CLI --------------------------------------------------------------------

def test_unknown_ruler_is_a_one_line_error():
    with pytest.raises(sn.UsageError, match=r"unknown ruler 'nope'; known: "):
        sn.get_rulers(["nope"])


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "real"
    folder.mkdir()
    for i, img in enumerate(synth(48, seed=3)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    monkeypatch.setitem(RULERS, "thumb-test", type("ThumbTest", (ThumbRuler,), {"name": "thumb-test"}))
    out = tmp_path / "out"
    rc = sn.main(["--real", str(folder), "--n", "24", "--rulers", "thumb-test", "--disturbances", "blur,noise",
                  "--out", str(out), "--no-cache"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"sanity.json", "sanity.md", "rulers_sanity.png"}
    d = json.loads((out / "sanity.json").read_text())
    assert d["n_ref"] == d["n_test"] == 24 and {c["disturbance"] for c in d["curves"]} == {"blur", "noise"}
    assert "Does each ruler rise" in capsys.readouterr().out
    rc = sn.main(["--real", str(folder), "--n", "24", "--rulers", "thumb-test,nope", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: unknown ruler 'nope'; known:") and "\n" not in err
    assert not (tmp_path / "x").exists()


# ---- real faces (slow; the shape of "every ruler rises with blur and noise") ----------------------

@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason="needs the shared anime-faces archive")
def test_stand_in_ruler_rises_with_blur_and_noise_on_real_faces():
    from animegan.data import load_images

    ref, test = sn.split_real(load_images(SHARED_DATA, size=64, limit=400).images, n=200, seed=0)
    result = sn.run_suite([ThumbRuler()], ref, test, disturbances=["blur", "noise"])
    assert result.failures() == []


def test_a_ruler_run_later_merges_into_an_earlier_result():
    ref, test = sn.split_real(synth(60, seed=2), n=30, seed=0)
    kw = {"disturbances": ["blur"], "strengths": {"blur": [1.0, 2.0]}}
    both = sn.run_suite([ThumbRuler(), GreyRuler()], ref, test, **kw)
    merged = sn.run_suite([ThumbRuler()], ref, test, **kw).merge(sn.run_suite([GreyRuler()], ref, test, **kw))
    assert set(merged.rulers) == {"thumb", "grey"} and len(merged.curves) == len(both.curves) == 2
    assert {(c.ruler, tuple(c.values)) for c in merged.curves} == {(c.ruler, tuple(c.values)) for c in both.curves}
    assert sn.translate(merged, "grey_fd", both.curve("grey_fd", "blur").values[1])[0].strength == pytest.approx(1.0)
    with pytest.raises(sn.UsageError, match="both sanity results hold"):
        merged.merge(sn.run_suite([GreyRuler()], ref, test, **kw))
    with pytest.raises(sn.UsageError, match="same real faces"):
        merged.merge(sn.run_suite([GreyRuler()], ref[:20], test[:20], **kw))
