"""confseg: conformal confidence sets for image segmentation.

A segmentation network outputs a score per pixel or voxel. confseg
calibrates those scores on labelled images and then, for every new image,
returns an inner set ``I`` (where the object surely is) and an outer set
``O`` (outside which it surely is not), with the finite-sample, model-free
guarantee::

    P(I ⊆ Y ⊆ O) >= 1 - alpha

for a new image exchangeable with the calibration images (split conformal
inference on the per-image maximum of transformed scores).

    >>> import confseg
    >>> scores, masks = confseg.synthetic((32, 32), 300, seed=1)
    >>> cal = confseg.Calibrator(inner="identity", outer="distance")
    >>> stats = cal.statistics(scores[:200], masks[:200])
    >>> sets = cal.fit(stats, alpha=0.1, mode="bonferroni", weights=(1, 4))
    >>> inner, outer = sets.predict(scores[200:])
    >>> inner.shape, inner.dtype
    ((100, 32, 32), dtype('bool'))

Everything computes in the Rust library (the same code as the ``confseg``
command line), in parallel and without the GIL. Optional: ``confseg.dask``
(``pip install confseg[dask]``) calibrates per-subject files as Dask tasks;
``confseg.monai.ConfidenceSetsd`` is a MONAI-style post-processing transform.
"""

from ._confseg import (
    Calibration,
    Calibrator,
    Cohort,
    ConfidenceSets,
    GroupedSets,
    NpyStack,
    RiskCalibration,
    StructureCalibration,
    StructureCalibrator,
    StructureSets,
    __version__,
    read_cohort,
    read_nifti,
    read_nifti_mask,
    read_npy,
    read_npy_mask,
    read_npy_stack,
    set_measures,
    synthetic,
    transform,
    two_class_softmax,
    validate,
    write_nifti,
    write_nifti_label_map,
    write_nifti_mask,
)

__all__ = [
    "Calibration",
    "Calibrator",
    "Cohort",
    "ConfidenceSets",
    "GroupedSets",
    "NpyStack",
    "RiskCalibration",
    "StructureCalibration",
    "StructureCalibrator",
    "StructureSets",
    "__version__",
    "read_cohort",
    "read_nifti",
    "read_nifti_mask",
    "read_npy",
    "read_npy_mask",
    "read_npy_stack",
    "set_measures",
    "synthetic",
    "transform",
    "two_class_softmax",
    "validate",
    "write_nifti",
    "write_nifti_label_map",
    "write_nifti_mask",
]
