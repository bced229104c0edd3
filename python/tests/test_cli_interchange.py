"""Thresholds, ranks and sets equal to the `confseg` command line on the same
`.npy` files (the real polyp data when present, synthetic data otherwise),
and calibration files interchangeable in both directions."""

import json

import numpy as np
import pytest

import confseg


@pytest.fixture(scope="module")
def raw(tmp_path_factory, polyps):
    """(scores.npy, masks.npy, exclude.npy or None, test scores.npy) of raw scores."""
    d = tmp_path_factory.mktemp("raw")
    if polyps is not None:
        # box outer scores as raw scores: integers with +inf where nothing was predicted
        s = np.load(polyps / "box_outer_scores.npy")
        m = np.load(polyps / "masks.npy")
        np.save(d / "learning.npy", np.load(polyps / "learning_idx.npy"))
        exclude = d / "learning.npy"
    else:
        s, m = confseg.synthetic((40, 40), 400, seed=11)
        s, m = s.astype(np.float32), m.astype(np.uint8)
        exclude = None
    np.save(d / "scores.npy", s)
    np.save(d / "masks.npy", m)
    t, _ = confseg.synthetic(s.shape[1:], range(5000, 5040), seed=12)
    np.save(d / "test.npy", t.astype(np.float32))
    return d / "scores.npy", d / "masks.npy", exclude, d / "test.npy"


def selected(n, exclude):
    if exclude is None:
        return np.arange(n)
    return np.setdiff1d(np.arange(n), np.load(exclude))


LEVELS = [
    ({"alpha": 0.1, "mode": "bonferroni", "weights": (1, 4)}, ["--alpha", "0.1", "--mode", "bonferroni", "--weights", "1:4"]),
    ({"alpha": 0.2, "mode": "max"}, ["--alpha", "0.2", "--mode", "max"]),
    ({"alpha_inner": 0.05, "alpha_outer": 0.3}, ["--alpha-inner", "0.05", "--alpha-outer", "0.3"]),
    ({"alpha": 0.1, "mode": "marginal"}, ["--alpha", "0.1"]),
]


@pytest.mark.filterwarnings("ignore:lambda_I = inf")  # box scores are +inf where nothing was predicted
@pytest.mark.parametrize("level", range(len(LEVELS)))
def test_thresholds_and_sets_equal_the_cli(cli, raw, tmp_path, level):
    scores, masks, exclude, test = raw
    py_level, cli_level = LEVELS[level]
    inner, outer = "identity", "distance:chessboard"
    args = ["calibrate", "--scores", scores, "--masks", masks, "--inner", inner, "--outer", outer, *cli_level]
    if exclude is not None:
        args += ["--exclude", exclude]
    cli(*args, "-o", tmp_path / "cal.json")
    file = json.loads((tmp_path / "cal.json").read_text())

    s, m = confseg.read_npy(scores), confseg.read_npy_mask(masks)
    assert s.dtype == np.float32
    idx = selected(len(s), exclude)
    cal = confseg.Calibrator(inner=inner, outer=outer)
    sets = cal.fit(cal.statistics(s[idx], m[idx]), **py_level)

    assert sets.n == file["n"] == len(idx)
    for side in ("inner", "outer"):
        want = file[side]
        got = sets.thresholds[side]
        assert got["rank"] == want["rank"]
        assert got["alpha"] == want["alpha"]
        value = want["threshold"]
        value = float(value) if isinstance(value, str) else value
        assert got["value"] == value, side  # exactly: the same order statistic
    # the CLI's file, read by Python, is the same fitted object
    loaded = confseg.ConfidenceSets.load(tmp_path / "cal.json")
    assert loaded.thresholds == sets.thresholds
    assert loaded.mode == sets.mode and loaded.n == sets.n

    # sets of new images: CLI predict (its file) == Python predict
    cli("predict", "--calibration", tmp_path / "cal.json", "--scores", test,
        "--inner-out", tmp_path / "I.npy", "--outer-out", tmp_path / "O.npy")
    t = confseg.read_npy(test)
    pi, po = sets.predict(t)
    assert np.array_equal(np.load(tmp_path / "I.npy").astype(bool), pi)
    assert np.array_equal(np.load(tmp_path / "O.npy").astype(bool), po)

    # a file written by Python, read by the CLI, gives the same sets
    sets.save(tmp_path / "py.json")
    cli("predict", "--calibration", tmp_path / "py.json", "--scores", test,
        "--inner-out", tmp_path / "I2.npy", "--outer-out", tmp_path / "O2.npy")
    assert np.array_equal(np.load(tmp_path / "I2.npy").astype(bool), pi)
    assert np.array_equal(np.load(tmp_path / "O2.npy").astype(bool), po)


def test_transformed_scores_equal_the_cli(cli, tmp_path, polyps):
    if polyps is not None:
        a, b = polyps / "box_inner_scores.npy", polyps / "box_outer_scores.npy"
        masks, learning = polyps / "masks.npy", polyps / "learning_idx.npy"
    else:
        s, m = confseg.synthetic((24, 24), 300, seed=5)
        s = s.astype(np.float32)
        np.save(tmp_path / "a.npy", s)
        np.save(tmp_path / "b.npy", confseg.transform(s, "distance", ndim=2))
        np.save(tmp_path / "m.npy", m)
        np.save(tmp_path / "l.npy", np.arange(0, 300, 7))
        a, b, masks, learning = (tmp_path / f for f in ("a.npy", "b.npy", "m.npy", "l.npy"))
    cli("calibrate", "--inner-scores", a, "--outer-scores", b, "--masks", masks, "--exclude", learning,
        "--alpha", "0.1", "--mode", "max", "-o", tmp_path / "cal.json")
    fi, fo, m = confseg.read_npy(a), confseg.read_npy(b), confseg.read_npy_mask(masks)
    idx = selected(len(m), learning)
    cal = confseg.Calibrator()
    stats = cal.statistics_transformed(fi[idx], fo[idx], m[idx])
    sets = cal.fit(stats, alpha=0.1, mode="max")
    loaded = confseg.ConfidenceSets.load(tmp_path / "cal.json")
    assert loaded.thresholds == sets.thresholds
    assert loaded.record["input"] == "transformed"
    # the file's pipeline is kept: raw-score prediction is refused ...
    with pytest.raises(ValueError, match="already transformed scores"):
        loaded.predict(fi[:3])
    # ... and transformed prediction equals the CLI's
    cli("predict", "--calibration", tmp_path / "cal.json", "--inner-scores", a, "--outer-scores", b,
        "--inner-out", tmp_path / "I.npy", "--outer-out", tmp_path / "O.npy")
    pi, po = loaded.predict_transformed(fi, fo)
    assert np.array_equal(np.load(tmp_path / "I.npy").astype(bool), pi)
    assert np.array_equal(np.load(tmp_path / "O.npy").astype(bool), po)
    # the extra keys survive a round trip through Python
    again = confseg.ConfidenceSets.from_json(loaded.to_json())
    assert again == loaded
    assert json.loads(loaded.to_json())["source"] == json.loads((tmp_path / "cal.json").read_text())["source"]
    # ... the calibration statistics the report draws among them
    loaded.save(tmp_path / "again.json")
    kept = json.loads((tmp_path / "again.json").read_text())["statistics"]
    assert kept == json.loads((tmp_path / "cal.json").read_text())["statistics"]
    assert len(kept["tau"]) == len(idx)


def test_validate_equals_the_cli(cli, raw):
    scores, masks, exclude, _ = raw
    s, m = confseg.read_npy(scores), confseg.read_npy_mask(masks)
    idx = selected(len(s), exclude)
    n_cal = len(idx) // 2
    args = ["validate", "--scores", scores, "--masks", masks, "--inner", "identity", "--outer", "distance",
            "--n-cal", n_cal, "--repeats", 50, "--alpha", "0.1,0.2", "--mode", "bonferroni", "--weights", "1:4",
            "--method", "conformal,risk-control", "--geometry-splits", 2, "--json"]
    if exclude is not None:
        args += ["--exclude", exclude]
    want = json.loads(cli(*args).stdout)
    got = confseg.validate(s[idx], m[idx], n_cal=n_cal, repeats=50, alphas=[0.1, 0.2], inner="identity",
                           outer="distance", mode="bonferroni", weights=(1, 4),
                           methods=["conformal", "risk-control"], geometry_splits=2)
    want = want["reports"] if isinstance(want, dict) else want
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        for key in ("method", "alpha", "inner_coverage", "outer_coverage", "joint_coverage", "n_cal", "n_test"):
            assert g[key] == w[key], key


def test_cli_structures_file_loads_and_predicts_like_the_cli(cli, tmp_path):
    s, m = confseg.synthetic((16, 20), 60, seed=1)
    labels = m.astype(np.uint8) + (m & (s > 2)).astype(np.uint8)
    out = np.stack([s, s - 1], axis=1).astype(np.float32)
    np.save(tmp_path / "out.npy", out)
    np.save(tmp_path / "lab.npy", labels)
    cli("calibrate", "--scores", tmp_path / "out.npy", "--masks", tmp_path / "lab.npy",
        "--structure", "WT=1,2", "--structure", "CORE=2", "--structure-axis", "0",
        "--alpha", "0.2", "--mode", "max", "-o", tmp_path / "cal.json")
    loaded = confseg.StructureSets.load(tmp_path / "cal.json")
    sc = confseg.StructureCalibrator("identity", "identity", {"WT": [1, 2], "CORE": [2]}, structure_axis=0)
    ours = sc.fit(sc.statistics(out, labels), 0.2, mode="max")
    assert loaded.thresholds == ours.thresholds and loaded.mode == "max"
    assert "source" in json.loads(loaded.to_json())  # the CLI's keys are kept
    for name in ("WT", "CORE"):
        for x, y in zip(loaded.predict(out[:5])[name], ours.predict(out[:5])[name]):
            np.testing.assert_array_equal(x, y)
