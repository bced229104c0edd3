"""ignore_label= (issue 19 item 3): voxels with the ignore value count
nowhere. With identity transforms and an ignored strip at the border,
statistics, thresholds, risk state, coverage and validation equal those
of the images with the strip cropped away; the CLI, given the same files
and --ignore-label, fits the same thresholds."""

import json

import numpy as np
import pytest

import confseg

N, H, W, STRIP = 40, 16, 20, 4


def strip_and_cropped(seed=7, n=N):
    scores, masks = confseg.synthetic((H, W - STRIP), range(n), seed=seed)
    s = np.zeros((n, H, W))
    m = np.full((n, H, W), 255, dtype=np.uint8)
    s[:, :, STRIP:] = scores
    m[:, :, STRIP:] = masks
    # extreme scores on the ignored strip: counted, they would decide every statistic
    s[:, :, :STRIP] = np.where(np.arange(STRIP) % 2 == 0, 1e6, -1e6)
    return s, m, scores, masks.astype(np.uint8)


def test_statistics_and_thresholds_equal_those_of_the_cropped_images():
    s, m, sc, mc = strip_and_cropped()
    for kw in [{}, {"inner_tolerance": "3vox", "outer_tolerance": 0.1}]:
        c = confseg.Calibrator(**kw)
        got = c.statistics(s, m, ignore_label=255)
        want = c.statistics(sc, mc)
        np.testing.assert_array_equal(got.tau, want.tau)
        np.testing.assert_array_equal(got.gamma, want.gamma)
        a = c.fit(got, alpha=0.1, mode="max")
        b = c.fit(want, alpha=0.1, mode="max")
        assert a.thresholds == b.thresholds
        # the same masks as floats, and as a list of images
        got_f = c.statistics(list(s), [x.astype(float) for x in m], ignore_label=255)
        np.testing.assert_array_equal(got_f.tau, want.tau)
    # without the option, 255 is refused with a hint naming it
    with pytest.raises(ValueError, match="ignore_label=255"):
        confseg.Calibrator().statistics(s, m)
    with pytest.raises(ValueError, match="ignore label"):
        confseg.Calibrator().statistics(s, m, ignore_label=1)


def test_transformed_risk_coverage_and_validation_leave_ignored_voxels_out():
    s, m, sc, mc = strip_and_cropped()
    c = confseg.Calibrator()
    got = c.statistics_transformed(s, s, m, ignore_label=255)
    want = c.statistics_transformed(sc, sc, mc)
    np.testing.assert_array_equal(got.tau, want.tau)
    r1 = c.fit(c.risk_statistics(s, m, risk="recall", ignore_label=255), alpha=0.1, mode="risk-control")
    r2 = c.fit(c.risk_statistics(sc, mc, risk="recall"), alpha=0.1, mode="risk-control")
    assert r1.thresholds == r2.thresholds
    sets = c.fit(want, alpha=0.2, mode="max")
    t, tm, tc, tmc = strip_and_cropped(seed=8, n=30)
    ci, co = sets.covers(t, tm, ignore_label=255)
    di, do = sets.covers(tc, tmc)
    np.testing.assert_array_equal(ci, di)
    np.testing.assert_array_equal(co, do)
    assert not sets.covers(t, np.where(tm == 255, 0, tm))[0].all()  # counted as background, the strip breaks I ⊆ Y
    kw = dict(n_cal=25, alphas=[0.1, 0.2], repeats=50, mode="max", seed=3, geometry_splits=0)
    a = confseg.validate(s, m, ignore_label=255, **kw)
    b = confseg.validate(sc, mc, **kw)
    for x, y in zip(a, b):
        for key in ("joint_coverage", "inner_coverage", "outer_coverage"):
            assert x[key] == y[key]
        for key in ("inner_share", "outer_share", "inner_size_ratio", "outer_size_ratio"):
            assert x["efficiency"][key] == y["efficiency"][key]


def test_the_cli_fits_the_same_thresholds(cli, tmp_path):
    s, m, _, _ = strip_and_cropped()
    np.save(tmp_path / "s.npy", s)
    np.save(tmp_path / "m.npy", m)
    cli("calibrate", "--masks", tmp_path / "m.npy", "--scores", tmp_path / "s.npy", "--ignore-label", "255",
        "--alpha", "0.1", "--mode", "max", "-o", tmp_path / "cal.json")
    c = confseg.Calibrator()
    sets = c.fit(c.statistics(s, m, ignore_label=255), alpha=0.1, mode="max")
    fitted = json.loads((tmp_path / "cal.json").read_text())
    assert fitted["ignore_label"] == 255
    loaded = confseg.ConfidenceSets.load(str(tmp_path / "cal.json"))
    assert loaded.thresholds == sets.thresholds
    # covers() falls back to the recorded ignore label
    t, tm, _, _ = strip_and_cropped(seed=9, n=10)
    np.testing.assert_array_equal(loaded.covers(t, tm)[0], sets.covers(t, tm, ignore_label=255)[0])


def test_sets_fitted_in_python_record_the_ignore_label(tmp_path):
    """Sets fitted from arrays with ignore_label= record it, as the CLI's
    files do: covers() and the saved file ignore the same voxels."""
    s, m, _, _ = strip_and_cropped()
    c = confseg.Calibrator()
    sets = c.fit(c.statistics(s, m, ignore_label=255), alpha=0.1, mode="max")
    assert sets.record["ignore_label"] == 255
    t, tm, _, _ = strip_and_cropped(seed=9, n=10)
    np.testing.assert_array_equal(sets.covers(t, tm)[0], sets.covers(t, tm, ignore_label=255)[0])
    sets.save(tmp_path / "py.json")
    assert json.loads((tmp_path / "py.json").read_text())["ignore_label"] == 255
    # statistics of masks with different ignore labels do not mix
    with pytest.raises(ValueError, match="ignore label"):
        c.statistics(s, m, ignore_label=255) + c.statistics(s, np.where(m == 255, 7, m), ignore_label=7)
