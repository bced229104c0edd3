"""Training-conditional (alpha, delta) thresholds (METHOD.md §3.1): the rank
is the smallest k with P(Binomial(n, 1 - alpha) <= k - 1) >= 1 - delta,
checked against an exact rational binomial computation here."""

import json
import math
import pickle
from fractions import Fraction

import numpy as np
import pytest

import confseg


def conditional_rank(n, alpha, delta):
    """Smallest k <= n with P(Bin(n, 1 - alpha) <= k - 1) >= 1 - delta, else n + 1, exactly."""
    a, d = Fraction(alpha), Fraction(delta)
    p = 1 - a
    cdf = Fraction(0)
    for k in range(1, n + 1):
        j = k - 1
        cdf += math.comb(n, j) * p**j * a ** (n - j)
        if cdf >= 1 - d:
            return k
    return n + 1


def min_n(alpha, delta):
    """Smallest n with a finite threshold: (1 - alpha)^n <= delta, exactly."""
    n = 1
    while (1 - Fraction(alpha)) ** n > Fraction(delta):
        n += 1
    return n


def test_reference_matches_the_documented_values():
    assert conditional_rank(100, 0.1, 0.1) == 95  # METHOD.md / the library's doc example
    assert min_n(0.1, 0.05) == 29


@pytest.fixture(scope="module")
def data():
    scores, masks = confseg.synthetic((12, 12), 1000, seed=21)
    return scores, masks


@pytest.mark.parametrize("n, alpha, delta", [(100, 0.1, 0.1), (29, 0.1, 0.05), (250, 0.05, 0.01), (57, 0.2, 0.3), (1000, 0.1, 0.05)])
def test_marginal_rank_is_the_exact_binomial_rank(data, n, alpha, delta):
    scores, masks = data
    cal = confseg.Calibrator()
    stats = cal.statistics(scores[:n], masks[:n])
    sets = cal.fit(stats, alpha=alpha, delta=delta)
    k = conditional_rank(n, alpha, delta)
    assert k <= n
    for side, z in (("inner", stats.tau), ("outer", stats.gamma)):
        t = sets.thresholds[side]
        assert t["rank"] == k, (side, t["rank"], k)
        assert t["value"] == np.sort(z)[k - 1]
        assert t["needed"] == min_n(alpha, delta)
    # the conditional rank is never below the marginal one
    plain = cal.fit(stats, alpha=alpha)
    assert plain.thresholds["inner"]["rank"] <= k
    assert sets.delta == delta and plain.delta is None
    assert f"with probability >= {1 - delta}" in sets.guarantee
    assert "over the calibration set" in sets.description


def test_each_side_uses_its_own_level_and_max_uses_the_joint_one(data):
    scores, masks = data
    n = 300
    cal = confseg.Calibrator()
    stats = cal.statistics(scores[:n], masks[:n])
    sets = cal.fit(stats, alpha=0.1, mode="bonferroni", weights=(1, 4), delta=0.1)
    for side in ("inner", "outer"):
        t = sets.thresholds[side]
        assert t["rank"] == conditional_rank(n, t["alpha"], 0.1)
    sets = cal.fit(stats, alpha=0.1, mode="max", delta=0.2)
    k = conditional_rank(n, 0.1, 0.2)
    assert sets.thresholds["inner"]["rank"] == k
    assert sets.lambda_inner == np.sort(np.maximum(stats.tau, stats.gamma))[k - 1]


def test_too_few_images_for_the_delta_guarantee(data):
    scores, masks = data
    cal = confseg.Calibrator()
    stats = cal.statistics(scores[:28], masks[:28])
    with pytest.warns(UserWarning, match="28"):
        sets = cal.fit(stats, alpha=0.1, delta=0.05)
    assert sets.lambda_inner == math.inf and sets.thresholds["inner"]["rank"] is None
    assert sets.thresholds["inner"]["needed"] == 29


def test_delta_survives_json_and_pickle(data, tmp_path):
    scores, masks = data
    cal = confseg.Calibrator()
    sets = cal.fit(cal.statistics(scores[:100], masks[:100]), alpha=0.1, mode="max", delta=0.1)
    assert json.loads(sets.to_json())["delta"] == 0.1
    back = confseg.ConfidenceSets.from_json(sets.to_json())
    assert back == sets and back.delta == 0.1
    assert pickle.loads(pickle.dumps(sets)) == sets
    sets.save(tmp_path / "cal.json")
    assert confseg.ConfidenceSets.load(tmp_path / "cal.json").delta == 0.1


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.1, float("nan")])
def test_bad_delta_is_a_value_error(data, delta):
    scores, masks = data
    cal = confseg.Calibrator()
    stats = cal.statistics(scores[:50], masks[:50])
    with pytest.raises(ValueError, match="delta"):
        cal.fit(stats, alpha=0.1, delta=delta)


def test_validate_takes_delta(data):
    scores, masks = data
    kw = dict(n_cal=100, alphas=[0.1], repeats=50, seed=3, geometry_splits=0, record_splits=3)
    plain = confseg.validate(scores[:400], masks[:400], **kw)[0]
    cond = confseg.validate(scores[:400], masks[:400], delta=0.1, **kw)[0]
    # same splits, a rank at least as large: coverage at least as large on every split
    assert cond["inner_coverage"] >= plain["inner_coverage"]
    assert cond["outer_coverage"] >= plain["outer_coverage"]
    # every recorded split is fitted at the conditional rank, as Calibrator.fit fits it
    cal = confseg.Calibrator()
    stats = cal.statistics(scores[:400], masks[:400])
    assert len(cond["recorded"]) == 3
    for rec, rec_plain in zip(cond["recorded"], plain["recorded"]):
        assert rec["calibration"] == rec_plain["calibration"]
        part = stats.select(rec["calibration"])
        for delta, r in ((0.1, rec), (None, rec_plain)):
            sets = cal.fit(part, alpha=0.1, delta=delta)
            assert (r["lambda_inner"], r["lambda_outer"]) == (sets.lambda_inner, sets.lambda_outer)
        assert conditional_rank(100, 0.1, 0.1) == 95 > math.ceil(0.9 * 101)
        assert rec["lambda_inner"] > rec_plain["lambda_inner"] or rec["lambda_outer"] > rec_plain["lambda_outer"]
    with pytest.raises(ValueError, match="delta"):
        confseg.validate(scores[:400], masks[:400], delta=2.0, **kw)
