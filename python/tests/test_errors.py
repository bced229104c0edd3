"""Every error class of the library arrives as the right Python exception
(ValueError; OSError and its subclasses for files), with the library's
one-line message and its variant name in `kind`."""

import re

import numpy as np
import pytest

import confseg


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("errors")
    (d / "text.npy").write_text("not numpy\n")
    np.save(d / "mask2.npy", np.array([[0, 2], [1, 0]], np.uint8))
    np.save(d / "labels.npy", np.array([[0, 0.5], [1, 0]], np.float32))
    (d / "empty").mkdir()
    (d / "unpaired").mkdir()
    np.save(d / "unpaired" / "a.npy", np.zeros((2, 2), np.float32))
    (d / "unpaired_m").mkdir()
    np.save(d / "unpaired_m" / "b.npy", np.zeros((2, 2), np.uint8))
    (d / "dup.csv").write_text("id,scores,mask\ns1,a.npy,b.npy\ns1,c.npy,d.npy\n")
    (d / "nocol.csv").write_text("name,file\ns1,a.npy\n")
    return d


def fitted():
    s, m = confseg.synthetic((8, 8), 30, seed=1)
    cal = confseg.Calibrator()
    return cal, cal.statistics(s, m), s, m


CASES = {
    "InvalidAlpha": (ValueError, r"^alpha = 1\.5 is outside \(0, 1\)$",
                     lambda f: fitted()[0].fit(fitted()[1], alpha=1.5)),
    "SplitExceedsAlpha": (ValueError, r"^alpha_inner \+ alpha_outer = 0\.05 \+ 0\.06 exceeds the joint alpha 0\.1$",
                          lambda f: fitted()[0].fit(fitted()[1], alpha=0.1, mode="bonferroni",
                                                    alpha_inner=0.05, alpha_outer=0.06)),
    "NanScore": (ValueError, r"^NaN in scores of image 1 at voxel \[2, 3\]$",
                 lambda f: confseg.Calibrator().statistics(
                     np.where(np.arange(3 * 4 * 5).reshape(3, 4, 5) == 33, np.nan, 0.0), np.zeros((3, 4, 5), bool))),
    "NonBinaryMask": (ValueError, r"^mask holds 2 at voxel \[0, 1\]; masks must be 0/1 \(a label map",
                      lambda f: confseg.Calibrator().statistics(np.zeros((2, 2)), np.array([[0, 2], [1, 0]]))),
    "EmptyImage": (ValueError, r"^image of shape \[0, 4\] has no voxels$",
                   lambda f: confseg.Calibrator().statistics(np.zeros((0, 4)), np.zeros((0, 4), bool))),
    "ShapeMismatch": (ValueError, r"^shape mismatch: scores stack vs masks stack has shape \[3, 4, 4\], expected \[3, 4, 5\]$",
                      lambda f: confseg.Calibrator().statistics(np.zeros((3, 4, 4)), np.zeros((3, 4, 5), bool))),
    "DimensionMismatch": (ValueError, r"^dimension mismatch: the calibration is for 2-D images, this image is 4-D$",
                          lambda f: fitted()[0].fit(fitted()[1], alpha=0.2).predict(np.zeros((2, 3, 4, 5)))),
    "SpacingRequired": (ValueError, r"these sets were calibrated with each image's own spacing .* give this image's spacing$",
                        lambda f: confseg.Calibrator(outer="distance").fit(
                            confseg.Calibrator(outer="distance").statistics(
                                *confseg.synthetic((6, 6), 20, seed=2), spacing=(1.0, 2.0)), alpha=0.2)
                        .predict(np.zeros((6, 6)))),
    "IncompatibleCalibration": (ValueError, r"^incompatible calibrations: inner transform identity here, sigmoid there$",
                                lambda f: confseg.Calibrator().statistics(np.zeros((2, 2)), np.zeros((2, 2), bool)).merge(
                                    confseg.Calibrator(inner="sigmoid").statistics(np.zeros((2, 2)), np.zeros((2, 2), bool)))),
    "NoCalibrationData": (ValueError, r"^no calibration data: observe at least one \(scores, mask\) pair before fitting$",
                          lambda f: confseg.Calibrator().fit(confseg.Calibration(), alpha=0.1)),
    "InvalidSpacing": (ValueError, r"^invalid voxel spacing \[1\.0, -1\.0\] for a 2-D image: every entry must be positive and finite$",
                       lambda f: confseg.Calibrator(spacing=(1, -1))),
    "InvalidParameter": (ValueError, r"^invalid transform = nope: unknown transform; known: identity, sigmoid, ",
                         lambda f: confseg.Calibrator(inner="nope")),
    "UnpairedSubjects": (ValueError, r"a",
                         lambda f: confseg.read_cohort(str(f / "unpaired"), str(f / "unpaired_m"))),
    "DuplicateSubject": (ValueError, r"^subject s1 is given twice",
                         lambda f: confseg.read_cohort(manifest=f / "dup.csv")),
    "NoSubjects": (FileNotFoundError, r"^no image files \(\.npy, \.nii, \.nii\.gz\) in ",
                   lambda f: confseg.read_cohort(str(f / "empty"))),
    "Manifest": (OSError, r"nocol\.csv: line 1: the header must name the columns id and scores",
                 lambda f: confseg.read_cohort(manifest=f / "nocol.csv")),
    "File": (OSError, r"text\.npy: not a NumPy \.npy file",
             lambda f: confseg.read_npy(f / "text.npy")),
    "InFile": (ValueError, r"mask2\.npy: mask holds 2 at voxel \[0, 1\]; masks must be 0/1 \(a label map",
               lambda f: confseg.read_npy_mask(f / "mask2.npy")),
}


# Not reachable from Python: TransformNan (the built-in transforms never
# return NaN for NaN-free input; Gaussian smoothing refuses infinite scores
# with an InvalidParameter). It maps to ValueError like every variant
# that is not about a file.


@pytest.mark.parametrize("kind", sorted(CASES))
def test_library_errors_arrive_as_python_exceptions(kind, files):
    cls, pattern, call = CASES[kind]
    with pytest.raises(cls) as info:
        call(files)
    e = info.value
    assert e.kind == kind
    message = str(e)
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_missing_files_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        confseg.read_npy(tmp_path / "missing.npy")
    assert info.value.kind == "File" and "missing.npy" in str(info.value)
    with pytest.raises(FileNotFoundError):
        confseg.ConfidenceSets.load(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        confseg.read_nifti(tmp_path / "missing.nii.gz")


def test_label_maps_choose_the_object(files):
    with pytest.raises(ValueError) as info:
        confseg.read_npy_mask(files / "labels.npy", labels=[1])
    assert info.value.kind == "InFile" and "labels must be integers" in str(info.value)


def test_argument_errors():
    cal, stats, _, _ = fitted()
    with pytest.raises(ValueError, match='unknown mode "best"'):
        cal.fit(stats, alpha=0.1, mode="best")
    with pytest.raises(ValueError, match="weights apply"):
        cal.fit(stats, alpha=0.1, weights=(1, 4))
    with pytest.raises(ValueError, match="needs the level alpha"):
        cal.fit(stats, mode="max")
    with pytest.raises(TypeError, match="spacing"):
        cal.statistics(np.zeros((2, 2)), np.zeros((2, 2)), spacing="1,1")
    with pytest.raises(ValueError, match="not a valid confseg calibration file"):
        confseg.ConfidenceSets.from_json('{"n": 3}')
    sets = cal.fit(stats, alpha=0.2)
    bad = sets.to_json().replace('"rank": ', '"rank": 1 + ', 1)
    with pytest.raises(ValueError):
        confseg.ConfidenceSets.from_json(bad)


def test_bool_masks_are_read_as_their_bytes():
    """A uint8 mask viewed as bool holds bytes other than 0/1: reading them
    as Rust bool was undefined behaviour and gave wrong statistics. They are
    refused by the one mask rule; genuine bool masks give the uint8 result."""
    s, m = confseg.synthetic((10, 12), 30, seed=5)
    cal = confseg.Calibrator()
    want = cal.statistics(s, m.astype(np.uint8))
    assert cal.statistics(s, m) == want
    assert cal.statistics(list(s[:3]), list(m[:3])) == cal.statistics(s[:3], m[:3].astype(np.uint8))
    hostile = (m.astype(np.uint8) * 255).view(bool)
    with pytest.raises(ValueError, match="255"):
        cal.statistics(s, hostile)
    with pytest.raises(ValueError, match="255"):
        cal.risk_statistics(s, hostile)
