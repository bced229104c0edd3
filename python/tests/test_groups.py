"""Group-conditional calibration from Python: Calibrator.fit(..., groups=...)
returns a GroupedSets whose per-group thresholds equal fitting each group's
images alone, and whose files the CLI reads."""

import math
import pickle

import numpy as np
import pytest

import confseg


def cohort():
    """60 images: group 0 easy, "hard" noisy, 7 small (4 images)."""
    easy_s, easy_m = confseg.synthetic((12, 12), 60, seed=1, noise=0.3)
    hard_s, hard_m = confseg.synthetic((12, 12), 60, seed=2, noise=3.0)
    groups = [0 if i % 2 == 0 else "hard" for i in range(60)]
    for i in (1, 13, 25, 37):
        groups[i] = 7
    hard = np.array([g == "hard" for g in groups])
    scores = np.where(hard[:, None, None], hard_s, easy_s)
    masks = np.where(hard[:, None, None], hard_m, easy_m)
    return scores, masks, groups


def test_per_group_thresholds_equal_fitting_each_group_alone():
    scores, masks, groups = cohort()
    c = confseg.Calibrator("identity", "sigmoid")
    cal = c.statistics(scores, masks)
    for kw in [dict(alpha=0.1, mode="max"), dict(alpha=0.2, mode="bonferroni", weights=(1, 4)), dict(alpha=0.2, mode="max", delta=0.1)]:
        with pytest.warns(UserWarning, match="group 7: only n = 4"):
            sets = c.fit(cal, groups=groups, **kw)
        assert isinstance(sets, confseg.GroupedSets)
        assert sets.groups == [0, 7, "hard"]
        assert sets.sizes == {0: 30, 7: 4, "hard": 26}
        assert sets.small_groups == "infinite" and sets.pooled == []
        for g in sets.groups:
            idx = [i for i, h in enumerate(groups) if h == g]
            with pytest.warns() if g == 7 else _nothing():
                alone = c.fit(c.statistics(scores[idx], masks[idx]), **kw)
            assert sets.thresholds[g] == {"inner": alone.lambda_inner, "outer": alone.lambda_outer}, g
            assert sets.sets(g) == alone
        assert math.isinf(sets.thresholds[7]["inner"])
        assert "conditionally on the group" in sets.guarantee


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_pooling_small_groups_fits_their_union():
    scores, masks, groups = cohort()
    groups = [("site-x" if i in (3, 15, 27) else g) for i, g in enumerate(groups)]
    c = confseg.Calibrator()
    cal = c.statistics(scores, masks)
    with pytest.warns(UserWarning, match="pooled into one fit"):
        sets = c.fit(cal, alpha=0.15, mode="max", groups=groups, pool_small_groups=True)
    assert sets.small_groups == "pool"
    assert sets.pooled == [7, "site-x"]
    union = [i for i, g in enumerate(groups) if g in (7, "site-x")]
    expected = c.fit(cal.select(union), alpha=0.15, mode="max")
    assert math.isfinite(expected.lambda_inner)
    assert sets.sets(7) == expected and sets.sets("site-x") == expected
    # ignoring the option leaves them infinite
    with pytest.warns(UserWarning):
        alone = c.fit(cal, alpha=0.15, mode="max", groups=groups)
    assert math.isinf(alone.thresholds[7]["inner"])
    assert "only marginally" in sets.guarantee


def test_predict_uses_the_groups_thresholds_and_refuses_unknown_groups():
    scores, masks, groups = cohort()
    c = confseg.Calibrator()
    with pytest.warns(UserWarning):
        sets = c.fit(c.statistics(scores, masks), alpha=0.1, mode="max", groups=groups)
    inner, outer = sets.predict(scores[2], "hard")
    i2, o2 = sets.sets("hard").predict(scores[2])
    assert (inner == i2).all() and (outer == o2).all()
    assert not (inner == sets.sets(0).predict(scores[2])[0]).all() or sets.thresholds[0] == sets.thresholds["hard"]
    with pytest.raises(ValueError, match=r"^group 5 was not calibrated \(known groups: 0, 7, hard\)$"):
        sets.predict(scores[0], 5)
    with pytest.raises(TypeError, match="not a group label"):
        sets.predict(scores[0], 1.5)


def test_bad_groups_are_clear_errors():
    scores, masks, groups = cohort()
    c = confseg.Calibrator()
    cal = c.statistics(scores, masks)
    with pytest.raises(ValueError, match="invalid groups = 59 labels: the calibration has 60 images"):
        c.fit(cal, alpha=0.1, groups=groups[1:])
    with pytest.raises(TypeError, match=r"groups\[0\] = 0.5 is not a group label"):
        c.fit(cal, alpha=0.1, groups=[0.5] * 60)
    with pytest.raises(TypeError, match="not a str"):
        c.fit(cal, alpha=0.1, groups="abc")
    with pytest.raises(ValueError, match="pool_small_groups=True needs groups="):
        c.fit(cal, alpha=0.1, pool_small_groups=True)
    # NumPy integer labels are groups too
    with pytest.warns(UserWarning):
        a = c.fit(cal, alpha=0.1, mode="max", groups=np.array([0 if isinstance(g, str) else g for g in groups]))
    assert a.groups == [0, 7]


def test_files_round_trip_and_the_cli_predicts_with_them(tmp_path, cli):
    scores, masks, groups = cohort()
    c = confseg.Calibrator()
    with pytest.warns(UserWarning):
        sets = c.fit(c.statistics(scores, masks), alpha=0.1, mode="max", groups=groups, pool_small_groups=True)
    back = confseg.GroupedSets.from_json(sets.to_json())
    assert back == sets and pickle.loads(pickle.dumps(sets)) == sets
    ints = [{0: 0, 7: 7, "hard": 1}[g] for g in groups]
    np.save(tmp_path / "S.npy", scores)
    np.save(tmp_path / "G.npy", np.array(ints, dtype=np.int64))
    # the file names groups by their labels; the CLI's G.npy holds integers: use an integer fit
    with pytest.warns(UserWarning):
        sets = c.fit(c.statistics(scores, masks), alpha=0.1, mode="max", groups=ints, pool_small_groups=True)
    sets.save(tmp_path / "cal.json")
    cli("predict", "--calibration", tmp_path / "cal.json", "--scores", tmp_path / "S.npy",
        "--groups", tmp_path / "G.npy", "--inner-out", tmp_path / "I.npy", "--outer-out", tmp_path / "O.npy")
    inner, outer = np.load(tmp_path / "I.npy"), np.load(tmp_path / "O.npy")
    for i, g in enumerate(ints):
        a, b = sets.predict(scores[i], g)
        assert (inner[i] == a).all() and (outer[i] == b).all(), i


def test_readme_per_site_example_prints_what_the_readme_shows(tmp_path):
    """The README's "Per-site guarantees" block, run as a script in a fresh
    directory, prints exactly the numbers the README shows after it."""
    import re
    import subprocess
    import sys

    from conftest import REPO

    section = (REPO / "README.md").read_text().split("\n## Per-site guarantees\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    shown = re.findall(r"prints\n\n```text\n(.*?)```", section, re.S)
    assert len(code) == 1 and len(shown) == 1
    (tmp_path / "example.py").write_text(code[0])
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == shown[0]
    assert "site small" not in done.stdout and "group small: only n = 6" in done.stderr
    # the noisy site: the pooled fit under-covers it, the per-site fit does not
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[2:]}
    assert float(rows["noisy"][3]) < 0.85 <= 0.88 <= float(rows["noisy"][4])


def test_strata_files_of_the_cli_recompute_each_images_stratum(tmp_path, cli):
    scores, masks = confseg.synthetic((10, 12), 80, seed=4, noise=2.0)
    np.save(tmp_path / "S.npy", scores)
    np.save(tmp_path / "M.npy", masks)
    cli("calibrate", "--masks", tmp_path / "M.npy", "--scores", tmp_path / "S.npy", "--alpha", "0.2", "--mode", "max",
        "--strata", "predicted-volume=10,20", "-o", tmp_path / "st.json")
    sets = confseg.GroupedSets.from_json((tmp_path / "st.json").read_text())
    assert sets == confseg.GroupedSets.load(tmp_path / "st.json")
    assert sets.strata == "predicted-volume=10,20"
    with pytest.raises(ValueError, match="it holds sets per group: read it with GroupedSets"):
        confseg.ConfidenceSets.load(tmp_path / "st.json")
    cli("predict", "--calibration", tmp_path / "st.json", "--scores", tmp_path / "S.npy",
        "--inner-out", tmp_path / "I.npy", "--outer-out", tmp_path / "O.npy")
    inner, outer = np.load(tmp_path / "I.npy"), np.load(tmp_path / "O.npy")
    names = ["0: predicted volume < 10 vox", "1: predicted volume in [10, 20) vox", "2: predicted volume >= 20 vox"]
    for i in range(80):
        v = int((scores[i] > 0).sum())  # independently
        expected = names[(v >= 10) + (v >= 20)]
        assert sets.stratum(scores[i]) == expected
        a, b = sets.predict(scores[i])
        c, d = sets.predict(scores[i], expected)
        assert (a == c).all() and (b == d).all()
        assert (inner[i] == a).all() and (outer[i] == b).all(), i
    labelled = confseg.Calibrator().fit(confseg.Calibrator().statistics(scores, masks), alpha=0.2, groups=[0] * 80)
    with pytest.raises(ValueError, match="give the image's group"):
        labelled.predict(scores[0])


def test_strata_at_calibration_in_python_equal_the_clis_and_each_stratum_alone(tmp_path, cli):
    """Issue 19: `statistics(..., strata=)` remembers each image's stratum;
    `fit` then fits per stratum, exactly as calibrating each stratum alone,
    and the file is the CLI's `--strata` file."""
    scores, masks = confseg.synthetic((10, 12), 90, seed=4, noise=2.0)
    cal = confseg.Calibrator()
    stats = cal.statistics(scores, masks, strata="predicted-volume=10,20")
    sets = cal.fit(stats, alpha=0.2, mode="max")
    assert isinstance(sets, confseg.GroupedSets) and sets.strata == "predicted-volume=10,20"
    names = ["0: predicted volume < 10 vox", "1: predicted volume in [10, 20) vox", "2: predicted volume >= 20 vox"]
    strata = np.array([(int((s > 0).sum()) >= 10) + (int((s > 0).sum()) >= 20) for s in scores])
    for k, name in enumerate(names):
        alone = cal.fit(cal.statistics(scores[strata == k], masks[strata == k]), alpha=0.2, mode="max")
        assert sets.thresholds[name]["inner"] == alone.lambda_inner, name
        assert sets.thresholds[name]["outer"] == alone.lambda_outer, name
        assert sets.sizes[name] == int((strata == k).sum())
    # the CLI's file for the same data holds the same fit
    np.save(tmp_path / "S.npy", scores)
    np.save(tmp_path / "M.npy", masks)
    cli("calibrate", "--masks", tmp_path / "M.npy", "--scores", tmp_path / "S.npy", "--alpha", "0.2", "--mode", "max",
        "--strata", "predicted-volume=10,20", "-o", tmp_path / "st.json")
    assert confseg.GroupedSets.load(tmp_path / "st.json").thresholds == sets.thresholds
    # strata survive merging and selecting; mixing with a calibration without strata is refused
    half = cal.statistics(scores[:45], masks[:45], strata="predicted-volume=10,20")
    rest = cal.statistics(scores[45:], masks[45:], strata="predicted-volume=10,20")
    assert cal.fit(half + rest, alpha=0.2, mode="max").thresholds == sets.thresholds
    assert cal.fit(stats.select(list(range(90))), alpha=0.2, mode="max").thresholds == sets.thresholds
    with pytest.raises(ValueError, match="strata"):
        half + cal.statistics(scores[45:], masks[45:])
    with pytest.raises(ValueError, match="by strata"):
        cal.fit(stats, alpha=0.2, mode="max", groups=[0] * 90)
    with pytest.raises(ValueError, match="strata"):
        cal.statistics(scores, masks, strata="predicted-volume=20,10")


def test_validate_by_stratum_in_python_is_the_clis(tmp_path, cli):
    """Issue 19 item 4 in Python: validate(by_stratum=True, groups=, strata=)
    gives the CLI's `validate --by-stratum --json` diagnostics."""
    import json

    scores, masks = confseg.synthetic((12, 12), 120, seed=9, noise=1.5)
    groups = np.arange(120) % 3
    np.save(tmp_path / "S.npy", scores)
    np.save(tmp_path / "M.npy", masks)
    np.save(tmp_path / "G.npy", groups.astype(np.int64))
    out = cli("validate", "--masks", tmp_path / "M.npy", "--scores", tmp_path / "S.npy", "--n-cal", "60",
              "--repeats", "50", "--alpha", "0.1", "--mode", "max", "--by-stratum", "--groups", tmp_path / "G.npy",
              "--strata", "predicted-volume=20,40", "--json")
    want = json.loads(out.stdout)["by_stratum"]
    got = confseg.validate(scores, masks, n_cal=60, repeats=50, alphas=[0.1], mode="max", by_stratum=True,
                           groups=groups.tolist(), strata="predicted-volume=20,40")
    assert got["by_stratum"] == want
    assert len(got["reports"]) == 1
    with pytest.raises(ValueError, match="by_stratum=True"):
        confseg.validate(scores, masks, n_cal=60, repeats=50, groups=groups.tolist())
    with pytest.raises(ValueError, match="in voxels"):
        confseg.validate(scores, masks, n_cal=60, repeats=50, by_stratum=True, strata="max-score=0.5")


def test_validate_by_stratum_of_risk_control_is_the_clis(tmp_path, cli):
    """Diagnostics by stratum of risk control's sets (precision by
    Learn-then-Test): the same rows as the CLI's, with the mean false share
    of the inner set per group."""
    import json

    scores, masks = confseg.synthetic((12, 12), 90, seed=4, noise=1.5)
    groups = np.arange(90) % 2
    np.save(tmp_path / "S.npy", scores)
    np.save(tmp_path / "M.npy", masks)
    np.save(tmp_path / "G.npy", groups.astype(np.int64))
    out = cli("validate", "--masks", tmp_path / "M.npy", "--scores", tmp_path / "S.npy", "--n-cal", "60",
              "--repeats", "30", "--alpha", "0.2", "--mode", "risk-control", "--risk", "precision", "--delta",
              "0.2", "--by-stratum", "--groups", tmp_path / "G.npy", "--json")
    want = json.loads(out.stdout)["by_stratum"]
    got = confseg.validate(scores, masks, n_cal=60, repeats=30, alphas=[0.2], mode="risk-control",
                           risk="precision", delta=0.2, by_stratum=True, groups=groups.tolist())
    assert got["by_stratum"] == want
    rows = got["by_stratum"][0]["groups"]
    assert len(rows) == 2 and all(0 < r["mean_false_share"] < 0.5 for r in rows), rows
    assert all(r["inner_coverage"] < 1 for r in rows), rows


@pytest.mark.parametrize(
    "kw",
    [
        dict(alpha=0.1, mode="risk-control"),
        dict(alpha=0.2, mode="risk-control", delta=0.1, bound="wsr"),
        dict(alpha=0.2, mode="risk-control", risk="precision", delta=0.1),
    ],
)
def test_risk_control_per_group_equals_fitting_each_group_alone(kw):
    scores, masks, groups = cohort()
    c = confseg.Calibrator("sigmoid", "sigmoid")
    risk = kw.get("risk", "recall")
    stats = c.risk_statistics(scores, masks, risk=risk)
    with pytest.warns(UserWarning):  # group 7 has too few images
        sets = c.fit(stats, groups=groups, **kw)
    assert isinstance(sets, confseg.GroupedSets)
    assert sets.sizes == {0: 30, 7: 4, "hard": 26}
    finite = []
    for g in sets.groups:
        idx = [i for i, h in enumerate(groups) if h == g]
        with pytest.warns() if g == 7 else _nothing():
            alone = c.fit(c.risk_statistics(scores[idx], masks[idx], risk=risk), **kw)
        assert sets.sets(g) == alone, g
        side = "outer" if risk == "recall" else "inner"
        finite.append(math.isfinite(sets.thresholds[g][side]))
    assert finite[0] and finite[2], sets.thresholds  # not a test of infinities
    assert "conditionally on the group" in sets.guarantee
    # a Calibration cannot be fitted with risk control per group, nor the reverse
    with pytest.raises(ValueError, match="RiskCalibration"):
        c.fit(c.statistics(scores, masks), groups=groups, **kw)
    with pytest.raises(ValueError, match="RiskCalibration"):
        c.fit(stats, groups=groups, alpha=0.1, mode="max")
