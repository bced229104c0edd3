"""Confidence sets as a MONAI post-processing transform.

``ConfidenceSetsd`` is a dictionary transform in MONAI's style: put it after
the network's output in a ``monai.transforms.Compose`` of post transforms
(or call it on any ``dict``), and every key it names gains an inner and an
outer set::

    from confseg.monai import ConfidenceSetsd
    post = ConfidenceSetsd(keys="pred", calibration="cal.json")
    out = post({"pred": logits})          # logits: (C, H, W[, D]), channel first
    out["pred_inner"], out["pred_outer"]  # (1, H, W[, D]) bool, channel first

The guarantee is the calibration file's (``sets.guarantee``), for images
exchangeable with the calibration images and prepared the same way.

Arrays follow MONAI's layout, channel first. A single channel ``(1, ...)``
is the score map; with a class axis recorded in the calibration file
(``confseg calibrate --class-axis``, or nnU-Net probabilities) the whole
output is reduced as it was at calibration (``ConfidenceSets.prepare``).
NumPy arrays, CPU torch tensors, MONAI ``MetaTensor``\\ s and objects with
``__dlpack__`` are accepted; the sets come back as the input's kind (torch
tensors for tensors, with the ``MetaTensor``'s metadata). When the sets were
calibrated with each image's own spacing, the spacing is read from the
``MetaTensor``'s affine (or from ``spacing=``).

When MONAI is installed the class subclasses ``monai.transforms.MapTransform``;
without it, it is a plain callable on dictionaries.
"""

from __future__ import annotations

import os
from typing import Any, Hashable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ._confseg import ConfidenceSets

try:  # MONAI's base class when MONAI is there; the transform works without it
    from monai.transforms import MapTransform as _Base  # type: ignore[import-not-found]

    _HAVE_MONAI = True
except ImportError:  # pragma: no cover - depends on the environment
    _HAVE_MONAI = False

    class _Base:  # type: ignore[no-redef]
        def __init__(self, keys: Any, allow_missing_keys: bool = False) -> None:
            if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
                keys = (keys,)
            self.keys = tuple(keys)
            self.allow_missing_keys = allow_missing_keys


__all__ = ["ConfidenceSetsd"]


def _numpy(x: Any) -> np.ndarray:
    """A CPU array of ``x`` (a NumPy array, a torch tensor, a DLPack object)."""
    if hasattr(x, "detach"):  # torch: leave autograd, come to the CPU
        x = x.detach()
        if getattr(x, "device", None) is not None and str(x.device) != "cpu":
            x = x.cpu()
        if hasattr(x, "as_tensor"):  # MetaTensor: its plain tensor
            x = x.as_tensor()
        return x.numpy()
    if not hasattr(x, "__array__") and hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)
    return np.asarray(x)


def _affine_spacing(x: Any, ndim: int) -> Optional[Sequence[float]]:
    """Voxel spacing from a ``MetaTensor``'s affine (column norms), if any."""
    affine = getattr(x, "affine", None)
    if affine is None:
        meta = getattr(x, "meta", None)
        affine = meta.get("affine") if isinstance(meta, Mapping) else None
    if affine is None:
        return None
    a = _numpy(affine).astype(np.float64)
    if a.ndim != 2 or a.shape[0] < ndim + 1 or a.shape[1] < ndim:
        return None
    return [float(v) for v in np.sqrt((a[:ndim, :ndim] ** 2).sum(axis=0))]


def _like(x: Any, a: np.ndarray) -> Any:
    """``a`` in the kind of ``x``: a torch tensor (with ``x``'s metadata for a
    ``MetaTensor``) when ``x`` is one, else the array."""
    if not hasattr(x, "detach"):
        return a
    import torch  # present: x is a tensor

    t = torch.from_numpy(np.ascontiguousarray(a))
    if hasattr(x, "meta") and hasattr(x, "as_tensor"):
        return type(x)(t, meta=dict(x.meta))
    return t


class ConfidenceSetsd(_Base):
    """Add ``KEY_inner`` and ``KEY_outer`` (channel first, ``bool``) to a
    dictionary for each of ``keys``, from the calibrated sets.

    ``calibration``: a ``ConfidenceSets`` or the path of a calibration file.
    ``inner_postfix`` / ``outer_postfix``: the names of the new keys
    (``KEY_inner``, ``KEY_outer``). ``spacing``: the voxel spacing of every
    image, when it is not in the data (used only by sets calibrated with
    each image's own spacing; else the calibration file's applies).
    """

    def __init__(
        self,
        keys: Union[Hashable, Sequence[Hashable]],
        calibration: Union[ConfidenceSets, str, "os.PathLike[str]"],
        inner_postfix: str = "inner",
        outer_postfix: str = "outer",
        spacing: Optional[Sequence[float]] = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if isinstance(calibration, ConfidenceSets):
            self.sets = calibration
        elif isinstance(calibration, (str, os.PathLike)):
            self.sets = ConfidenceSets.load(calibration)
        else:
            raise TypeError(
                f"calibration must be a ConfidenceSets or the path of a calibration file, "
                f"not {type(calibration).__name__}"
            )
        if not inner_postfix or not outer_postfix or inner_postfix == outer_postfix:
            raise ValueError("inner_postfix and outer_postfix must be two different, non-empty names")
        self.inner_postfix = inner_postfix
        self.outer_postfix = outer_postfix
        self.spacing = None if spacing is None else [float(v) for v in spacing]

    def _scores(self, key: Hashable, x: np.ndarray) -> np.ndarray:
        if self.sets.record.get("class_axis") is not None:
            return self.sets.prepare(x)
        if x.ndim < 2 or x.shape[0] != 1:
            raise ValueError(
                f"{key!r}: shape {x.shape}: expected one channel first, (1, spatial...); for two-class "
                f"outputs calibrate with the class axis (confseg calibrate --class-axis 0)"
            )
        return x[0]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.keys:
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(f"key {key!r} is not in the data (keys: {list(d)}); or allow_missing_keys=True")
            x = d[key]
            scores = self._scores(key, _numpy(x))
            spacing = None
            if self.sets.per_image_spacing:
                spacing = self.spacing or _affine_spacing(x, scores.ndim)
            inner, outer = self.sets.predict(scores, spacing=spacing, prepared=True)
            d[f"{key}_{self.inner_postfix}"] = _like(x, inner[None])
            d[f"{key}_{self.outer_postfix}"] = _like(x, outer[None])
        return d
