"""Every object pickles (for clusters); the library's file readers."""

import json
import math
import pickle

import numpy as np
import pytest

import confseg
from conftest import write_nifti


@pytest.fixture(scope="module")
def fitted():
    s, m = confseg.synthetic((12, 14), 80, seed=9)
    cal = confseg.Calibrator(inner="gaussian:2", outer="distance:chessboard", spacing=(0.5, 2.0))
    stats = cal.statistics(s, m)
    return cal, stats, cal.fit(stats, alpha=0.1, mode="bonferroni", weights=(1, 4)), s


def test_objects_pickle(fitted, tmp_path):
    cal, stats, sets, s = fitted
    for obj in (cal, stats, sets):
        again = pickle.loads(pickle.dumps(obj))
        assert again == obj and type(again) is type(obj)
    assert pickle.loads(pickle.dumps(cal)).spacing == [0.5, 2.0]
    i, o = pickle.loads(pickle.dumps(sets)).predict(s[:3])
    assert np.array_equal(i, sets.predict(s[:3])[0])
    np.save(tmp_path / "s.npy", s.astype(np.float32))
    stack = pickle.loads(pickle.dumps(confseg.read_npy_stack(tmp_path / "s.npy")))
    assert len(stack) == 80


def test_json_round_trips(fitted):
    cal, stats, sets, _ = fitted
    assert confseg.Calibration.from_json(stats.to_json()) == stats
    assert confseg.ConfidenceSets.from_json(sets.to_json()) == sets
    d = json.loads(sets.to_json())
    assert d["inner"]["transform"]["name"] == "gaussian" and d["spacing"] == [0.5, 2.0]
    assert d["n"] == 80 and d["mode"] == "bonferroni"


def test_infinite_thresholds_are_math_inf(fitted):
    cal, stats, _, _ = fitted
    with pytest.warns(UserWarning):
        sets = cal.fit(stats.select(list(range(5))), alpha=0.05)
    assert sets.thresholds["inner"]["value"] == math.inf and sets.thresholds["inner"]["needed"] == 19
    assert json.loads(sets.to_json())["inner"]["threshold"] == "inf"
    assert confseg.ConfidenceSets.from_json(sets.to_json()) == sets
    assert any("only n = 5" in w for w in sets.warnings())


def test_merge_is_concatenation_in_any_order(fitted):
    cal, stats, _, _ = fitted
    parts = [stats.select(list(range(i, 80, 7))) for i in range(7)]
    merged = confseg.Calibration.concat(reversed(parts))
    assert len(merged) == 80
    a = cal.fit(merged, alpha=0.1, mode="max")
    b = cal.fit(stats, alpha=0.1, mode="max")
    assert a.thresholds == b.thresholds
    c = parts[0] + parts[1]
    assert len(c) == len(parts[0]) + len(parts[1])
    assert parts[0].merge(parts[1]) is parts[0] and parts[0] == c


def test_npy_stack_streams_images(tmp_path):
    s, m = confseg.synthetic((6, 7), 5, seed=2)
    np.save(tmp_path / "s.npy", s.astype(np.float32))
    np.save(tmp_path / "m.npy", m)
    stack = confseg.read_npy_stack(tmp_path / "s.npy")
    assert (len(stack), stack.shape, stack.image_shape, stack.dtype, stack.precision) == (
        5, [5, 6, 7], [6, 7], "float32", "float32")
    images = list(stack)
    assert len(images) == 5 and images[2].dtype == np.float32
    assert np.array_equal(stack[-1], s[4].astype(np.float32))
    assert np.array_equal(stack.read(), s.astype(np.float32))
    with pytest.raises(IndexError):
        stack[5]
    assert np.array_equal(confseg.read_npy_stack(tmp_path / "m.npy").mask(1), m[1].astype(np.uint8))
    assert np.array_equal(confseg.read_npy(tmp_path / "s.npy"), s.astype(np.float32))


def test_nifti_and_cohorts(tmp_path):
    s, m = confseg.synthetic((8, 9, 5), 6, seed=3)
    sp = [(0.75, 0.75, 2.5 + 0.25 * i) for i in range(6)]  # exact in the header's float32
    (tmp_path / "scores").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(6):
        write_nifti(tmp_path / "scores" / f"sub-{i:02d}_prob.nii", s[i].astype(np.float32), sp[i])
        write_nifti(tmp_path / "masks" / f"sub-{i:02d}_seg.nii", m[i].astype(np.uint8), sp[i])
    a, spacing, affine = confseg.read_nifti(tmp_path / "scores" / "sub-03_prob.nii")
    assert np.array_equal(a, s[3].astype(np.float32)) and a.dtype == np.float32
    assert spacing == list(sp[3]) and affine.shape == (4, 4) and affine[2, 2] == pytest.approx(sp[3][2])
    mask, _, _ = confseg.read_nifti_mask(tmp_path / "masks" / "sub-03_seg.nii")
    assert np.array_equal(mask, m[3].astype(np.uint8))

    cohort = confseg.read_cohort(str(tmp_path / "scores"), str(tmp_path / "masks"))
    assert len(cohort) == 6 and cohort.ids[0] == "sub-00"
    assert pickle.loads(pickle.dumps(cohort)).ids == cohort.ids
    scores, mask, spacing, affine = cohort.read(2)
    assert spacing == list(sp[2]) and np.array_equal(mask, m[2].astype(np.uint8))
    cal = confseg.Calibrator(outer="distance", ndim=3)
    from_files = cal.statistics_cohort(cohort)
    in_memory = cal.statistics(s.astype(np.float32), m, spacing=sp)
    assert from_files == in_memory and from_files.per_image_spacing


def test_cohort_calibration_warns_as_the_cli_does(tmp_path):
    """Probability maps given to a distance transform that predicts the mask
    as scores > 0: the library's input warning reaches Python (it was silent)."""
    s, m = confseg.synthetic((8, 9, 5), 4, seed=4)
    probs = 1.0 / (1.0 + np.exp(-s))
    (tmp_path / "p").mkdir()
    (tmp_path / "m").mkdir()
    for i in range(4):
        write_nifti(tmp_path / "p" / f"s{i}.nii", probs[i].astype(np.float32), (1.0, 1.0, 2.0))
        write_nifti(tmp_path / "m" / f"s{i}.nii", m[i].astype(np.uint8), (1.0, 1.0, 2.0))
    cohort = confseg.read_cohort(str(tmp_path / "p"), str(tmp_path / "m"))
    with pytest.warns(UserWarning, match=r"lie in \[0, 1\].*threshold 0.5"):
        confseg.Calibrator(outer="distance", ndim=3).statistics_cohort(cohort)
    # with the threshold, no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        confseg.Calibrator(outer="distance:threshold=0.5", ndim=3).statistics_cohort(cohort)


def test_fitted_files_carry_a_typed_record(tmp_path, fitted):
    _, _, sets, _ = fitted
    assert sets.record == {"input": "scores", "class_axis": None, "labels": None, "source": {}}
    text = json.loads(sets.to_json())
    text["class_axis"] = 0
    loaded = confseg.ConfidenceSets.from_json(json.dumps(text))
    assert loaded.record["class_axis"] == 0 and loaded != sets
    # logits recorded along axis 0 of an image: raw prediction says which softmax to apply
    with pytest.raises(ValueError, match="axis 0 of an image, axis 1 of a batch-first stack"):
        loaded.predict(np.zeros((2, 12, 14)))
    text["class_axis"] = "x"
    with pytest.raises(ValueError, match="not a valid confseg calibration file"):
        confseg.ConfidenceSets.from_json(json.dumps(text))
    # load reads regular files only, bounded
    with pytest.raises(OSError, match="not a regular file"):
        confseg.ConfidenceSets.load(tmp_path)
