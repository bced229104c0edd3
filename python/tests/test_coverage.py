"""The guarantee through the Python API, as tests/coverage.rs checks it in
Rust: over seeded replications on synthetic exchangeable data, the
coverage of the rank-k threshold is k/(n+1) within 4 standard errors of
the replication mean (Beta(k, n+1-k) conditional coverage plus binomial
test noise). Sample sizes are small (n = 19, 39) so that 1/(n+1), the
effect of an off-by-one rank, is more than twice the tolerance."""

import math

import numpy as np
import pytest

import confseg

M = 50  # test images per replication
REPS = 1000
SHAPE = (16, 20)


def rank(alpha, n):
    """k = ceil((1 - alpha)(n + 1)), in exact integer arithmetic (alpha in hundredths)."""
    percent = round(alpha * 100)
    assert abs(alpha * 100 - percent) < 1e-9
    return -(-((100 - percent) * (n + 1)) // 100)


def beta_var(k, n):
    a, b = k, n + 1 - k
    return a * b / ((a + b) ** 2 * (a + b + 1))


def tolerance(alpha, n):
    p = 1 - alpha
    return 4 * math.sqrt((beta_var(rank(alpha, n), n) + p * (1 - p) / M) / REPS)


def estimate(calibrator, n, seed, **levels):
    """Mean inner, outer and joint coverage over REPS replications."""
    hits = np.zeros(3)
    per_chunk = 100
    for start in range(0, REPS, per_chunk):
        scores, masks = confseg.synthetic(SHAPE, range(start * (n + M), (start + per_chunk) * (n + M)), seed=seed)
        for r in range(per_chunk):
            base = r * (n + M)
            stats = calibrator.statistics(scores[base:base + n], masks[base:base + n])
            sets = calibrator.fit(stats, **levels)
            ok_i, ok_o = sets.covers(scores[base + n:base + n + M], masks[base + n:base + n + M])
            hits += (ok_i.sum(), ok_o.sum(), (ok_i & ok_o).sum())
    return hits / (REPS * M)


def assert_exact(what, got, alpha, n):
    want = rank(alpha, n) / (n + 1)
    tol = tolerance(alpha, n)
    assert abs(got - want) <= tol, f"{what}: coverage {got:.4f}, expected {want:.4f} ± {tol:.4f}"


@pytest.mark.parametrize("n, alpha, seed", [(19, 0.1, 1), (39, 0.2, 2)])
def test_marginal_coverage_is_k_over_n_plus_1(n, alpha, seed):
    ci, co, _ = estimate(confseg.Calibrator(), n, seed, alpha=alpha)
    assert_exact("marginal inner", ci, alpha, n)
    assert_exact("marginal outer", co, alpha, n)


def test_bonferroni_split_gives_joint_coverage():
    n = 39
    ci, co, cj = estimate(confseg.Calibrator(), n, 3, alpha=0.25, mode="bonferroni", weights=(1, 4))
    assert_exact("bonferroni inner", ci, 0.05, n)
    assert_exact("bonferroni outer", co, 0.2, n)
    assert cj >= 0.75 - tolerance(0.25, n)


@pytest.mark.filterwarnings("ignore:mode max")  # sigmoid vs logits: different scales, still valid
def test_max_mode_joint_coverage_is_tight():
    _, _, cj = estimate(confseg.Calibrator(inner="sigmoid"), 19, 104, alpha=0.1, mode="max")
    assert_exact("max joint (sigmoid/identity)", cj, 0.1, 19)
    _, _, cj = estimate(confseg.Calibrator(), 19, 4, alpha=0.1, mode="max")
    assert_exact("max joint (identity)", cj, 0.1, 19)


def test_tolerance_detects_an_off_by_one_rank():
    for n, alpha in [(19, 0.1), (39, 0.2), (39, 0.05)]:
        assert tolerance(alpha, n) < 0.5 / (n + 1)


def test_too_few_images_cover_always():
    scores, masks = confseg.synthetic(SHAPE, 25, seed=6)
    cal = confseg.Calibrator()
    with pytest.warns(UserWarning, match="only n = 5"):
        sets = cal.fit(cal.statistics(scores[:5], masks[:5]), alpha=0.1)
    assert sets.lambda_inner == math.inf and sets.thresholds["inner"]["rank"] is None
    ok_i, ok_o = sets.covers(scores[5:], masks[5:])
    assert ok_i.all() and ok_o.all()
