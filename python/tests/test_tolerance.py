"""Tolerance events through the Python package: the statistics equal a
plain NumPy computation of each event's smallest threshold, the fitted
sets state the event, and bad tolerances are refused with the fix."""

import numpy as np
import pytest

import confseg


def data(n=30, seed=3):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, 12, 14))
    masks = scores + rng.normal(scale=0.7, size=scores.shape) > 0.4
    return scores, masks


def kth_largest_after(values, m):
    """The (m+1)-th largest value, -inf if there are at most m."""
    v = np.sort(values)[::-1]
    return v[m] if len(v) > m else -np.inf


def envelope(f, y, pct):
    """Brute force: the largest distinct u with FDP({f >= u}) > pct/100."""
    worst = -np.inf
    for u in np.unique(f):
        sel = f >= u
        if (~y[sel]).sum() * 100 > pct * sel.sum():
            worst = max(worst, u)
    return worst


def test_counts_and_shares_equal_numpy():
    scores, masks = data()
    cal = confseg.Calibrator(outer_tolerance="3vox", inner_tolerance="2vox")
    got = cal.statistics(scores, masks)
    tau = [kth_largest_after(s[~m], 2) for s, m in zip(scores, masks)]
    gamma = [kth_largest_after(-s[m], 3) for s, m in zip(scores, masks)]
    np.testing.assert_array_equal(got.tau, tau)
    np.testing.assert_array_equal(got.gamma, gamma)
    # the outer share: floor(eps |Y|) voxels, exactly as written (0.07 of 100 is 7)
    got = confseg.Calibrator(outer_tolerance=0.07).statistics(scores, masks)
    gamma = [kth_largest_after(-s[m], (7 * int(m.sum())) // 100) for s, m in zip(scores, masks)]
    np.testing.assert_array_equal(got.gamma, gamma)
    # the inner share: the monotone envelope of the false discovery proportion
    got = confseg.Calibrator(inner_tolerance="10%").statistics(scores, masks)
    np.testing.assert_array_equal(got.tau, [envelope(s, m, 10) for s, m in zip(scores, masks)])


def test_volumes_use_the_spacing_and_transformed_scores_take_tolerances():
    scores, masks = data()
    by_volume = confseg.Calibrator(outer_tolerance="1.5mm3", spacing=[0.5, 1.0])
    by_count = confseg.Calibrator(outer_tolerance="3vox")
    np.testing.assert_array_equal(by_volume.statistics(scores, masks).gamma, by_count.statistics(scores, masks).gamma)
    np.testing.assert_array_equal(
        by_count.statistics_transformed(scores, scores, masks).gamma, by_count.statistics(scores, masks).gamma
    )


def test_fitted_sets_state_the_event_and_validate_uses_it():
    scores, masks = data(60)
    cal = confseg.Calibrator(outer="distance", inner_tolerance="5vox", outer_tolerance=0.1)
    assert (cal.inner_tolerance, cal.outer_tolerance) == ("5vox", "0.1")
    sets = cal.fit(cal.statistics(scores, masks), alpha=0.2, mode="marginal")
    assert "P(|inner \\ truth| <= 5 voxels) >= 0.8" in sets.guarantee
    assert "P(|truth \\ outer| <= ⌊0.1 |truth|⌋) >= 0.8" in sets.guarantee
    strict = confseg.Calibrator(outer="distance")
    plain = strict.fit(strict.statistics(scores, masks), alpha=0.2, mode="marginal")
    assert sets.thresholds["outer"]["value"] < plain.thresholds["outer"]["value"]

    def recorded(**kw):
        r = confseg.validate(scores, masks, n_cal=40, repeats=2, outer="distance", alphas=[0.2], mode="marginal",
                             record_splits=1, geometry_splits=0, **kw)
        return r[0]["recorded"][0]

    rec = recorded(inner_tolerance="5vox", outer_tolerance=0.1)
    idx = rec["calibration"]
    refit = cal.fit(cal.statistics(scores[idx], masks[idx]), alpha=0.2, mode="marginal")
    assert float(rec["lambda_outer"]) == refit.thresholds["outer"]["value"]
    assert float(recorded()["lambda_outer"]) != float(rec["lambda_outer"])


@pytest.mark.parametrize(
    "value, needle",
    [(5, "5vox"), (1.5, "below 1"), (-0.1, "at least 0"), (True, "not a bool"), ("2.5vox", "whole number"),
     ([1], "a share")],
)
def test_bad_tolerances_name_the_fix(value, needle):
    with pytest.raises(ValueError, match="outer_tolerance") as e:
        confseg.Calibrator(outer_tolerance=value)
    assert needle in str(e.value)


def test_risk_control_refuses_a_tolerance():
    scores, masks = data()
    cal = confseg.Calibrator(outer_tolerance=0.05)
    with pytest.raises(ValueError, match="no tolerance"):
        cal.fit(cal.risk_statistics(scores, masks), alpha=0.2, mode="risk-control")
