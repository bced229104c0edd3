"""nnU-Net and MONAI in the loop (issue 20 item 12): NIfTI writers, a cohort
predict that writes them, nnU-Net's ``.npz`` probabilities, the MONAI-style
dictionary transform, and DLPack objects where arrays are taken."""

import json
import os

import numpy as np
import pytest

import confseg
from confseg.monai import ConfidenceSetsd

SHAPE = (12, 10, 5)
SPACING = [0.8, 0.8, 2.5]
AFFINE = [[0.8, 0, 0, -10.0], [0, 0.8, 0, 4.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]]


def _cohort(tmp_path, n=24, seed=0):
    """n subjects: float32 logits (x, y, z) and 0/1 masks, NIfTI with one header."""
    rng = np.random.default_rng(seed)
    (tmp_path / "scores").mkdir()
    (tmp_path / "masks").mkdir()
    x, y, z = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    for i in range(n):
        r = 3.0 + rng.uniform(-1, 1)
        d = np.sqrt(((x - 6) * 0.8) ** 2 + ((y - 5) * 0.8) ** 2 + ((z - 2) * 2.5) ** 2)
        mask = (d < r).astype(np.uint8)
        logits = (r - d + rng.normal(0, 0.8, SHAPE)).astype(np.float32)
        confseg.write_nifti(tmp_path / f"scores/s{i:02}.nii.gz", logits, spacing=SPACING, affine=AFFINE)
        confseg.write_nifti_mask(tmp_path / f"masks/s{i:02}.nii.gz", mask, like=tmp_path / f"scores/s{i:02}.nii.gz")
    return confseg.read_cohort(str(tmp_path / "scores"), str(tmp_path / "masks"))


def test_nifti_writers_keep_the_header_and_the_values(tmp_path):
    a = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) / 7
    p = tmp_path / "a.nii.gz"
    confseg.write_nifti(p, a, spacing=SPACING, affine=AFFINE)
    back, spacing, affine = confseg.read_nifti(p)
    np.testing.assert_array_equal(back, a)
    np.testing.assert_allclose(spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(affine, AFFINE, rtol=1e-6)

    inner = np.zeros(SHAPE, bool)
    inner[5:7, 4:6, 2] = True
    outer = np.zeros(SHAPE, bool)
    outer[3:9, 2:8, 1:4] = True
    confseg.write_nifti_mask(tmp_path / "o.nii.gz", outer, like=p)
    m, spacing_m, affine_m = confseg.read_nifti_mask(tmp_path / "o.nii.gz")
    np.testing.assert_array_equal(m, outer.astype(np.uint8))
    np.testing.assert_allclose(affine_m, affine)

    (tmp_path / "viewer").mkdir()
    confseg.write_nifti_label_map(tmp_path / "viewer/s_sets.nii.gz", inner, outer, like=p)
    labels, _, affine_l = confseg.read_nifti(tmp_path / "viewer/s_sets.nii.gz")
    want = np.where(inner, 2, np.where(outer, 1, 0))
    np.testing.assert_array_equal(labels, want)
    np.testing.assert_allclose(affine_l, affine)
    assert sorted(os.listdir(tmp_path / "viewer")) == ["confseg_sets.ctbl", "confseg_sets.itksnap.txt", "s_sets.nii.gz"]

    # the mask rule, and a shape the header does not have
    bad = outer.astype(np.uint8) * 255
    with pytest.raises(ValueError, match="255"):
        confseg.write_nifti_mask(tmp_path / "bad.nii.gz", bad, like=p)
    with pytest.raises(ValueError, match="0.5"):
        confseg.write_nifti_mask(tmp_path / "bad.nii.gz", outer * 0.5, like=p)
    with pytest.raises(ValueError):
        confseg.write_nifti_mask(tmp_path / "bad.nii.gz", outer[:, :, :2], like=p)
    assert not (tmp_path / "bad.nii.gz").exists()
    with pytest.raises(ValueError, match="not both"):
        confseg.write_nifti(tmp_path / "x.nii", a, like=p, spacing=SPACING)


def test_predict_cohort_writes_what_predict_gives(tmp_path):
    cohort = _cohort(tmp_path)
    cal = confseg.Calibrator(inner="identity", outer="distance")
    sets = cal.fit(cal.statistics_cohort(cohort), alpha=0.2, mode="max")
    assert np.isfinite(sets.lambda_outer)
    out, viewer = tmp_path / "sets", tmp_path / "viewer"
    summary = sets.predict_cohort(cohort, out_dir=out, label_map_dir=viewer)
    assert summary["images"] == len(cohort)
    total_outer = 0
    for i, sid in enumerate(cohort.ids):
        scores, spacing, affine = confseg.read_nifti(tmp_path / f"scores/{sid}.nii.gz")
        inner, outer = sets.predict(scores, spacing=spacing)
        got_i, _, affine_i = confseg.read_nifti_mask(out / f"{sid}_inner.nii.gz")
        got_o, _, _ = confseg.read_nifti_mask(out / f"{sid}_outer.nii.gz")
        np.testing.assert_array_equal(got_i, inner.astype(np.uint8))
        np.testing.assert_array_equal(got_o, outer.astype(np.uint8))
        np.testing.assert_allclose(affine_i, affine)
        labels, _, _ = confseg.read_nifti(viewer / f"{sid}_sets.nii.gz")
        np.testing.assert_array_equal(labels, np.where(inner, 2, np.where(outer, 1, 0)))
        total_outer += int(outer.sum())
    assert summary["outer_voxels"] == total_outer
    assert (viewer / "confseg_sets.itksnap.txt").exists()
    with pytest.raises(ValueError, match="out_dir"):
        sets.predict_cohort(cohort)
    # the input folder is not an output folder
    with pytest.raises(ValueError, match="holds input files"):
        sets.predict_cohort(cohort, out_dir=tmp_path / "scores")


def _nnunet(tmp_path, cohort_dir, n):
    """nnU-Net's --save_probabilities folder from the cohort's logits."""
    d = tmp_path / "nnunet"
    d.mkdir()
    for i in range(n):
        logits, _, _ = confseg.read_nifti(cohort_dir / f"s{i:02}.nii.gz")
        p = (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        # (x, y, z) -> nnU-Net's (C, z, y, x)
        probs = np.stack([1 - p, p]).transpose(0, 3, 2, 1)
        np.savez_compressed(d / f"s{i:02}.npz", probabilities=probs)
        confseg.write_nifti_mask(d / f"s{i:02}.nii.gz", (p > 0.5).astype(np.uint8), like=cohort_dir / f"s{i:02}.nii.gz")
        (d / f"s{i:02}.pkl").write_bytes(b"\x80\x04N.")
    return d


def test_nnunet_probabilities_are_their_foreground_channel(tmp_path):
    n = 24
    cohort = _cohort(tmp_path, n)
    d = _nnunet(tmp_path, tmp_path / "scores", n)
    nn = confseg.read_cohort(str(d), str(tmp_path / "masks"))
    assert nn.ids == cohort.ids
    cal = confseg.Calibrator(inner="identity", outer="distance:threshold=0.5")
    stats = cal.statistics_cohort(nn)
    # the same probabilities given as arrays, read independently with numpy
    probs, masks, spacings = [], [], []
    for i, sid in enumerate(nn.ids):
        with np.load(d / f"{sid}.npz") as z:
            probs.append(z["probabilities"][1].transpose(2, 1, 0))
        m, sp, _ = confseg.read_nifti_mask(tmp_path / f"masks/{sid}.nii.gz")
        masks.append(m)
        spacings.append(sp)
    direct = cal.statistics(probs, masks, spacing=spacings)
    np.testing.assert_array_equal(stats.tau, direct.tau)
    np.testing.assert_array_equal(stats.gamma, direct.gamma)
    sets = cal.fit(stats, alpha=0.2, mode="max")
    assert sets.record["input"] == "probabilities" and sets.record["class_axis"] == 3
    # sets fitted on arrays (or logits) refuse nnU-Net probabilities, and the other way round
    with pytest.raises(ValueError, match="same kind of files"):
        cal.fit(direct, alpha=0.2, mode="max").predict_cohort(nn, out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="same kind of files"):
        sets.predict_cohort(cohort, out_dir=tmp_path / "y")
    out = tmp_path / "out"
    sets.predict_cohort(nn, out_dir=out)
    assert len(os.listdir(out)) == 2 * n  # NIfTI sets, nothing for the .nii.gz beside each .npz
    got, _, _ = confseg.read_nifti_mask(out / "s03_outer.nii.gz")
    np.testing.assert_array_equal(got, sets.predict(probs[3], spacing=spacings[3], prepared=True)[1].astype(np.uint8))


def test_monai_transform_matches_predict(tmp_path):
    scores, masks = confseg.synthetic((20, 20), 150, seed=3)
    cal = confseg.Calibrator(inner="identity", outer="distance")
    sets = cal.fit(cal.statistics(scores[:120], masks[:120]), alpha=0.1, mode="max")
    t = ConfidenceSetsd(keys=["pred", "other"], calibration=sets, allow_missing_keys=True)
    x = scores[130][None].astype(np.float32)
    out = t({"pred": x, "image": "kept"})
    inner, outer = sets.predict(x[0])
    assert out["image"] == "kept" and "other_inner" not in out
    np.testing.assert_array_equal(out["pred_inner"], inner[None])
    np.testing.assert_array_equal(out["pred_outer"], outer[None])
    assert out["pred_inner"].shape == (1, 20, 20)

    # a calibration file by path, other key names, and missing keys refused
    path = tmp_path / "cal.json"
    sets.save(path)
    t2 = ConfidenceSetsd("pred", calibration=str(path), inner_postfix="I", outer_postfix="O")
    np.testing.assert_array_equal(t2({"pred": x})["pred_O"], outer[None])
    with pytest.raises(KeyError, match="pred"):
        t2({"label": x})
    with pytest.raises(ValueError, match="one channel first"):
        t2({"pred": np.stack([x[0], x[0]])})
    with pytest.raises(TypeError, match="calibration"):
        ConfidenceSetsd("pred", calibration=3)


class _DLPackOnly:
    """An array that speaks only DLPack (like a tensor NumPy does not know)."""

    def __init__(self, a):
        self._a = np.ascontiguousarray(a)

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_objects_are_arrays():
    scores, masks = confseg.synthetic((16, 16), 60, seed=5)
    cal = confseg.Calibrator(inner="identity", outer="distance")
    plain = cal.statistics(scores, masks)
    via = cal.statistics(_DLPackOnly(scores), _DLPackOnly(masks))
    np.testing.assert_array_equal(via.tau, plain.tau)
    np.testing.assert_array_equal(via.gamma, plain.gamma)
    sets = cal.fit(plain, alpha=0.2, mode="max")
    for a, b in zip(sets.predict(_DLPackOnly(scores[:3])), sets.predict(scores[:3])):
        np.testing.assert_array_equal(a, b)
    t = ConfidenceSetsd("pred", calibration=sets)
    np.testing.assert_array_equal(t({"pred": _DLPackOnly(scores[4][None])})["pred_outer"][0], sets.predict(scores[4])[1])


def test_torch_tensors_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    scores, masks = confseg.synthetic((16, 16), 60, seed=6)
    cal = confseg.Calibrator(inner="identity", outer="distance")
    sets = cal.fit(cal.statistics(torch.from_numpy(scores), torch.from_numpy(masks)), alpha=0.2, mode="max")
    out = ConfidenceSetsd("pred", calibration=sets)({"pred": torch.from_numpy(scores[7][None])})
    assert isinstance(out["pred_outer"], torch.Tensor)
    np.testing.assert_array_equal(out["pred_outer"].numpy()[0], sets.predict(scores[7])[1])


def test_two_class_outputs_reduce_as_calibrated(tmp_path, cli):
    """A file calibrated by the CLI on channel-first two-class logits: the
    transform reduces MONAI's (2, H, W) output as the calibration did."""
    scores, masks = confseg.synthetic((18, 18), 120, seed=8)
    logits = np.stack([np.zeros_like(scores), scores], axis=1).astype(np.float32)  # (N, 2, H, W)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "masks.npy", masks.astype(np.uint8))
    cli(
        "calibrate", "--scores", tmp_path / "logits.npy", "--masks", tmp_path / "masks.npy",
        "--class-axis", "0", "--outer", "distance:threshold=0.5", "--alpha", "0.2", "--mode", "max",
        "-o", tmp_path / "cal.json",
    )
    sets = confseg.ConfidenceSets.load(tmp_path / "cal.json")
    assert sets.record["class_axis"] == 0
    out = ConfidenceSetsd("pred", calibration=sets)({"pred": logits[5]})
    p = confseg.two_class_softmax(logits[5], axis=0)
    np.testing.assert_array_equal(out["pred_outer"][0], sets.predict(p, prepared=True)[1])
    with pytest.raises(ValueError, match="two-class logits"):
        sets.predict(p)  # without prepared=True such a file refuses raw scores
    assert json.loads((tmp_path / "cal.json").read_text())["input"] == "scores"


def test_progress_callbacks_count_subjects_and_splits(tmp_path):
    """Issue 20 item 13: long calls report progress (done, total)."""
    cohort = _cohort(tmp_path, n=12)
    cal = confseg.Calibrator(inner="identity", outer="distance")
    seen = []
    stats = cal.statistics_cohort(cohort, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (12, 12), seen
    assert all(t == 12 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert stats == cal.statistics_cohort(cohort)  # progress changes nothing

    scores, masks = confseg.synthetic((16, 16), 120, seed=4)
    splits = []
    confseg.validate(
        scores, masks, n_cal=60, repeats=300, alphas=[0.1], geometry_splits=0,
        progress=lambda d, t: splits.append((d, t)),
    )
    assert splits and splits[-1] == (300, 300), splits[-3:]

    # a callback that raises stops the call, and its exception is raised
    def stop(done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        cal.statistics_cohort(cohort, progress=stop)
    with pytest.raises(TypeError, match="progress"):
        cal.statistics_cohort(cohort, progress=3)
