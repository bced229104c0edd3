"""The morphological transform from Python against scipy.ndimage: the steps
are those of iterated binary_dilation (border_value=0, outside the predicted
mask) and binary_erosion (border_value=1, inside it) with the footprint as
the structuring element; a footprint file is stored in the fitted sets by
value."""

import numpy as np
import pytest

import confseg

ndimage = pytest.importorskip("scipy.ndimage")


def scipy_steps(mask, structure):
    """-k where k dilations first reach a voxel, +k where k erosions remove it."""
    out = np.where(mask, np.inf, -np.inf)
    cur, k = mask, 0
    while True:
        k += 1
        nxt = ndimage.binary_dilation(cur, structure, border_value=0)
        if np.array_equal(nxt, cur):
            break
        out[nxt & ~cur] = -k
        cur = nxt
    cur, k = mask, 0
    while True:
        k += 1
        nxt = ndimage.binary_erosion(cur, structure, border_value=1)
        if np.array_equal(nxt, cur):
            break
        out[cur & ~nxt] = k
        cur = nxt
    return out


def ellipsoid(radius, units):
    """Offsets o with sum((o_j u_j)^2) <= radius^2, as a boolean array."""
    half = [int(radius / u) + 1 for u in units]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * u for h, u in zip(half, units)], indexing="ij")
    return sum(g * g for g in grids) <= radius * radius


def images():
    s2, _ = confseg.synthetic((40, 70), 1, seed=3)
    s3, _ = confseg.synthetic((12, 14, 70), 1, seed=4)
    return [(s2[0], (1.0, 0.7)), (s3[0], (2.0, 1.0, 0.8))]


@pytest.mark.parametrize("name", ["face", "edge", "full", "ball:radius=2", "ball:radius=2.2:units=physical"])
def test_footprints_count_the_steps_of_scipys_iterated_dilation_and_erosion(name):
    for scores, spacing in images():
        nd = scores.ndim
        structure = {
            "face": ndimage.generate_binary_structure(nd, 1),
            "edge": ndimage.generate_binary_structure(nd, 2),
            "full": ndimage.generate_binary_structure(nd, nd),
            "ball:radius=2": ellipsoid(2.0, (1.0,) * nd),
            "ball:radius=2.2:units=physical": ellipsoid(2.2, spacing),
        }[name]
        got = confseg.transform(scores, f"morphological:footprint={name}", spacing=spacing)
        want = scipy_steps(scores > 0, structure)
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {scores.shape}")
        # the threshold moves the predicted mask
        got = confseg.transform(scores, f"morphological:footprint={name}:threshold=1", spacing=spacing)
        np.testing.assert_array_equal(got, scipy_steps(scores > 1, structure))


def test_a_footprint_file_is_stored_in_the_fitted_sets(tmp_path):
    # a symmetric footprint that skips the face neighbours along the last axis
    cells = np.array([[0, 1, 0, 1, 0], [1, 0, 1, 0, 1], [0, 1, 0, 1, 0]], dtype=np.uint8)
    cells[1, 2] = 1
    path = tmp_path / "fp.npy"
    np.save(path, cells)
    name = f"morphological:footprint={path}"
    scores, _ = images()[0]
    np.testing.assert_array_equal(
        confseg.transform(scores, name), scipy_steps(scores > 0, cells.astype(bool))
    )

    s, m = confseg.synthetic((32, 32), 60, seed=8)
    cal = confseg.Calibrator(inner="morphological:footprint=edge", outer=name)
    sets = cal.fit(cal.statistics(s, m), alpha=0.1, mode="marginal")
    assert sets.outer_transform == "morphological:footprint=[01010,10101,01010]"
    sets.save(tmp_path / "c.json")
    path.unlink()
    assert "fp.npy" not in (tmp_path / "c.json").read_text()
    back = confseg.ConfidenceSets.load(tmp_path / "c.json")
    assert back == sets
    new, _ = confseg.synthetic((32, 32), range(100, 104), seed=8)
    for a, b in zip(back.predict(new), sets.predict(new)):
        np.testing.assert_array_equal(a, b)


def test_bad_footprints_are_value_errors(tmp_path):
    np.save(tmp_path / "lopsided.npy", np.array([[1, 1, 0]], dtype=np.uint8))
    for bad, says in [
        ("morphological:footprint=ball", "radius"),
        ("morphological:footprint=hex", "footprint"),
        (f"morphological:footprint={tmp_path / 'lopsided.npy'}", "symmetric"),
        ("morphological:footprint=[110,111,010]", "symmetric"),
    ]:
        with pytest.raises(ValueError, match=says):
            confseg.Calibrator(outer=bad)
