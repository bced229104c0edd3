"""``set_measures``: volumes and band width of one image's sets, against
SciPy (the band width by its definition: the Euclidean distance transform
to the inner set, read on the outer contour)."""

import numpy as np
import pytest

import confseg

ndimage = pytest.importorskip("scipy.ndimage")


def reference(inner, outer, spacing):
    """Band width from SciPy: contour = outer minus its face erosion (the
    image border is not a contour), distance = EDT of the inner set's
    complement with ``sampling=spacing``."""
    face = ndimage.generate_binary_structure(inner.ndim, 1)
    contour = outer & ~ndimage.binary_erosion(outer, structure=face, border_value=1)
    if not inner.any() or not contour.any():
        return None, None
    d = ndimage.distance_transform_edt(~inner, sampling=spacing)[contour]
    return d.mean(), d.max()


@pytest.mark.parametrize("shape,spacing", [((30, 27), (0.7, 2.5)), ((9, 11, 8), (1.0, 0.8, 3.0))])
def test_band_width_and_volumes_equal_scipy(shape, spacing):
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(12):
        inner = ndimage.binary_opening(rng.random(shape) < 0.35)
        outer = inner | ndimage.binary_dilation(rng.random(shape) < 0.25, iterations=1)
        m = confseg.set_measures(inner, outer.astype(np.uint8), spacing=spacing)
        voxel = float(np.prod(spacing))
        assert m["inner_voxels"] == inner.sum() and m["outer_voxels"] == outer.sum()
        assert m["band_voxels"] == (outer & ~inner).sum()
        assert m["outer_volume"] == pytest.approx(outer.sum() * voxel, rel=1e-12)
        assert m["band_volume"] == pytest.approx((outer & ~inner).sum() * voxel, rel=1e-12)
        mean, mx = reference(inner, outer, spacing)
        if mean is None:
            assert m["band_mean_width"] is None and m["band_max_width"] is None
        else:
            checked += 1
            assert m["band_mean_width"] == pytest.approx(mean, rel=1e-12)
            assert m["band_max_width"] == pytest.approx(mx, rel=1e-12)
    assert checked >= 3


def test_undefined_widths_and_bad_input():
    inner = np.zeros((5, 5), bool)
    outer = np.ones((5, 5), bool)
    m = confseg.set_measures(inner, outer)
    assert m["band_mean_width"] is None and m["outer_volume"] == 25.0
    with pytest.raises(ValueError, match="inner"):
        confseg.set_measures(np.full((5, 5), 2, np.uint8), outer)
    with pytest.raises(ValueError, match="shape"):
        confseg.set_measures(np.zeros((5, 4), bool), outer)
