"""The minor cases of issue 21: each was accepted silently, misleading or
unreadable before."""

import os
import pickle
import sys

import numpy as np
import pytest

import confseg


@pytest.fixture(scope="module")
def labelled():
    s, m = confseg.synthetic((12, 12), 40, seed=5)
    return s, m


def test_int64_scores_beyond_2_53_are_refused_not_rounded(labelled):
    s, m = labelled
    cal = confseg.Calibrator(inner="identity", outer="identity")
    x = np.zeros(s.shape, np.int64)
    x[3, 1, 2] = 2**53 + 1
    with pytest.raises(ValueError, match=r"value 9007199254740993 at index \[3, 1, 2\] cannot be represented"):
        cal.statistics(x, m)
    for dtype in (">i8", "<u8"):
        y = x.astype(dtype)
        with pytest.raises(ValueError, match="cannot be represented exactly as float64"):
            confseg.transform(y, "identity")
    # exact ones, however large, are the numbers they are
    x[3, 1, 2] = 2**60
    assert cal.statistics(x, m).tau[3] == float(2**60)


def test_select_refuses_a_repeated_index(labelled):
    s, m = labelled
    stats = confseg.Calibrator(inner="identity", outer="identity").statistics(s, m)
    with pytest.raises(ValueError, match="invalid image index = 1: given twice"):
        stats.select([1, 1, 2])
    assert len(stats.select([2, 1])) == 2


def test_json_errors_are_whole_sentences(labelled):
    s, m = labelled
    stats = confseg.Calibrator(inner="identity", outer="identity").statistics(s, m)
    with pytest.raises(ValueError) as e:
        confseg.Calibration.from_json(stats.to_json().replace('"tau"', '"taux"'))
    msg = str(e.value)
    assert "..." not in msg and "expected one of `tau`, `gamma`" in msg and msg.count("`") % 2 == 0, msg
    # a tampered pickle is the library's error too
    with pytest.raises(ValueError, match="unknown field `tax`"):
        pickle.loads(pickle.dumps(stats).replace(b'"tau"', b'"tax"'))


def test_huge_numbers_are_short_in_messages(labelled):
    s, m = labelled
    cal = confseg.Calibrator(inner="identity", outer="identity")
    with pytest.raises(ValueError) as e:
        cal.fit(cal.statistics(s, m), alpha=1e300)
    assert "1e300" in str(e.value) and "000000" not in str(e.value), str(e.value)


def test_a_repeated_transform_option_is_refused():
    with pytest.raises(ValueError, match="option radius is given twice"):
        confseg.Calibrator(inner="morphological:footprint=ball:radius=2:radius=3", outer="identity")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_not_called_empty():
    with pytest.raises(OSError) as e:
        confseg.read_npy("/dev/zero")
    assert "not a regular file" in str(e.value) and "empty" not in str(e.value), str(e.value)


def test_structures_refuse_unknown_and_repeated_class_labels():
    with pytest.raises(ValueError, match="structure A names label 7, which no class has"):
        confseg.StructureCalibrator("identity", "identity", {"A": [7]}, class_axis=0, class_labels=[0, 1, 2])
    with pytest.raises(ValueError, match="label 1 is given twice"):
        confseg.StructureCalibrator("identity", "identity", {"A": [1]}, class_axis=0, class_labels=[0, 1, 1])


def test_dask_names_the_subject_and_takes_delta(tmp_path, labelled):
    pytest.importorskip("dask")
    import dask

    import confseg.dask as cd

    s, m = labelled
    s = s.copy()
    s[7, 2, 2] = np.nan
    cal = confseg.Calibrator(inner="identity", outer="identity")
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(ValueError, match=r"^subject 7: NaN in scores at voxel \[2, 2\]"):
            cd.statistics(cal, list(zip(s, m)), batch_size=5)
        paths = []
        for i in range(10):
            np.save(tmp_path / f"s{i}.npy", s[i])
            np.save(tmp_path / f"m{i}.npy", m[i])
            paths.append((tmp_path / f"s{i}.npy", tmp_path / f"m{i}.npy"))
        with pytest.raises(ValueError, match=r"s7\.npy: NaN in scores"):
            cd.statistics(cal, paths, batch_size=5)
        s[7, 2, 2] = 0.0
        sets = cd.fit(cal, list(zip(s, m)), alpha=0.2, delta=0.2, mode="max")
        assert sets == cal.fit(cal.statistics(s, m), alpha=0.2, delta=0.2, mode="max")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="byte file names")
def test_a_cohort_file_with_a_non_utf8_name_is_an_error_not_dropped(tmp_path, labelled):
    s, m = labelled
    for d in ("s", "m"):
        (tmp_path / d).mkdir()
        for i in range(3):
            np.save(tmp_path / d / f"id{i}.npy", (s if d == "s" else m)[i])
    with open(os.path.join(os.fsencode(tmp_path / "s"), b"id\xff.npy"), "wb") as f:
        np.save(f, s[3])
    with pytest.raises(ValueError, match=r"the file name is not UTF-8, so it has no subject ID") as e:
        confseg.read_cohort(str(tmp_path / "s"), str(tmp_path / "m"))
    assert "\n" not in str(e.value)
