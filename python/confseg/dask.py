"""Calibration on Dask clusters (``pip install confseg[dask]``).

Each subject's calibration statistics are computed as a Dask task (or a
few subjects per task), on whatever scheduler is active: a
``distributed.Client`` (a ``LocalCluster`` or a real cluster), threads or
processes. The per-task ``Calibration`` states hold two numbers per subject
and are merged on the client by concatenation, so the thresholds equal the
single-process ones exactly: the conformal quantile depends only on the
statistics, not on how the subjects were split across workers or in which
order the results arrived.

    >>> from distributed import Client, LocalCluster
    >>> import confseg, confseg.dask
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> cohort = confseg.read_cohort("scores/", "masks/")                 # doctest: +SKIP
    >>> cal = confseg.Calibrator(inner="identity", outer="distance")
    >>> stats = confseg.dask.statistics(cal, cohort)                      # doctest: +SKIP
    >>> sets = cal.fit(stats, alpha=0.1, mode="bonferroni", weights=(1, 4))  # doctest: +SKIP

On a real cluster, connect with ``Client("tcp://scheduler:8786")`` and keep
the files on storage that every worker mounts at the same path; the tasks
carry only the calibrator and the file names (or the arrays, if given in
memory) and send back the statistics.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import dask

from . import Calibration, Calibrator, Cohort, ConfidenceSets
from ._confseg import read_nifti, read_nifti_mask, read_npy, read_npy_mask
from ._progress import resolve as resolve_progress

__all__ = ["statistics", "fit", "read_subject"]

PathLike = Union[str, "os.PathLike[str]"]


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _is_nifti(path: PathLike) -> bool:
    name = os.fspath(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_subject(
    scores: PathLike, mask: Optional[PathLike] = None, labels: Optional[Sequence[int]] = None
) -> Tuple[Any, Any, Optional[Tuple[float, ...]]]:
    """One subject's files with the library's readers: ``(scores, mask, spacing)``.

    ``scores`` and ``mask`` are ``.npy`` files holding one image (``spacing``
    is then ``None``: the calibrator's default applies) or NIfTI volumes
    (``.nii``, ``.nii.gz``; the spacing of the score file's header).
    """
    if _is_nifti(scores):
        s, spacing, _ = read_nifti(scores)
    else:
        s, spacing = read_npy(scores), None
    m = None
    if mask is not None:
        m = read_nifti_mask(mask, labels)[0] if _is_nifti(mask) else read_npy_mask(mask, labels)
    return s, m, (tuple(spacing) if spacing is not None else None)


def _pairs_statistics(
    calibrator: Calibrator,
    pairs: Sequence[Tuple[Any, Any]],
    spacing: Any,
    labels: Optional[Sequence[int]],
    start: int = 0,
) -> Calibration:
    """The statistics of a few subjects, in order (one Dask task); an error
    names the subject's score file, or its position among all subjects."""
    out = Calibration()
    for k, (scores, mask) in enumerate(pairs):
        own = spacing[k] if spacing is not None else None
        try:
            if _is_path(scores):
                s, m, file_spacing = read_subject(scores, mask, labels)
                own = own if own is not None else file_spacing
            else:
                s, m = scores, mask
            out.merge(calibrator.statistics(s, m, spacing=own))
        except (ValueError, OSError) as e:
            raise _named(e, scores, start + k) from None
    return out


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _named(e: Exception, scores: Any, position: int) -> Exception:
    """`e` with the subject named: its score file, else its position."""
    where = _one_line(os.fspath(scores)) if _is_path(scores) else f"subject {position}"
    message = str(e)
    if _is_path(scores) and message.startswith(where):
        return e  # the library named the file already
    out = type(e)(f"{where}: {message}")
    if hasattr(e, "kind"):
        out.kind = e.kind
    return out


def _cohort_statistics(
    calibrator: Calibrator,
    cohort: Cohort,
    indices: List[int],
    labels: Optional[Sequence[int]],
    precision: str,
) -> Calibration:
    return calibrator.statistics_cohort(cohort, indices=indices, labels=labels, precision=precision)


def _batches(n: int, batch_size: int) -> List[range]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def statistics(
    calibrator: Calibrator,
    subjects: Union[Cohort, Iterable[Tuple[Any, Any]]],
    *,
    spacing: Optional[Sequence[Optional[Sequence[float]]]] = None,
    labels: Optional[Sequence[int]] = None,
    batch_size: int = 1,
    client: Any = None,
    progress: Any = None,
) -> Calibration:
    """Calibration statistics of many subjects, computed as Dask tasks and merged.

    ``subjects``: a ``Cohort`` (``confseg.read_cohort``), or ``(scores, mask)``
    pairs of file paths (``.npy`` images, NIfTI volumes) or of arrays.
    ``spacing``: one spacing per subject (``None`` entries: the file's or the
    calibrator's); ``labels``: label values that are the object in label maps;
    ``batch_size``: subjects per task; ``client``: a ``distributed.Client``
    (default: the active scheduler, e.g. the last ``Client`` created);
    ``progress``: ``True`` for a tqdm bar of the subjects done, or a callable
    ``progress(done, total)`` (called as tasks finish, on the calling thread
    with a ``Client``, on the scheduler's threads without one).

    Returns the merged ``Calibration``, in subject order. Its thresholds
    (``calibrator.fit``) equal those of one process on the same subjects, and
    keep the guarantee ``P(inner ⊆ truth ⊆ outer) >= 1 - alpha`` for a new
    subject exchangeable with them.
    """
    delayed = dask.delayed
    if isinstance(subjects, Cohort):
        if spacing is not None:
            raise ValueError("a Cohort carries its spacings (file headers, manifest): give no spacing")
        # One float type for all subjects, as one process (and the CLI) would use.
        precision = subjects.precision
        tasks = [
            delayed(_cohort_statistics, pure=False)(calibrator, subjects, list(b), labels, precision)
            for b in _batches(len(subjects), batch_size)
        ]
    else:
        pairs = list(subjects)
        if spacing is not None and len(spacing) != len(pairs):
            raise ValueError(f"{len(spacing)} spacings for {len(pairs)} subjects: give one per subject")
        tasks = [
            delayed(_pairs_statistics, pure=False)(
                calibrator,
                [pairs[i] for i in b],
                None if spacing is None else [spacing[i] for i in b],
                labels,
                b.start,
            )
            for b in _batches(len(pairs), batch_size)
        ]
    n = len(subjects) if isinstance(subjects, Cohort) else len(pairs)
    sizes = [len(b) for b in _batches(n, batch_size)]
    return Calibration.concat(_compute(tasks, sizes, client, progress))


def _compute(tasks: List[Any], sizes: List[int], client: Any, progress: Any) -> Sequence[Calibration]:
    """The tasks' results in order, showing the subjects done (``sizes``: per task)."""
    show = resolve_progress(progress)
    total = sum(sizes)
    if client is None and show is not None and dask.config.get("scheduler", None) is None:
        try:  # the active distributed scheduler, which dask.compute would use
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None
    try:
        if client is not None:
            futures = client.compute(tasks)
            if show is not None:
                from distributed import as_completed

                size = {f.key: k for f, k in zip(futures, sizes)}
                done = 0
                for f in as_completed(futures):
                    done += size[f.key]
                    show(done, total)
            return client.gather(futures)
        if show is None:
            return dask.compute(*tasks)
        from dask.callbacks import Callback

        size = {t.key: k for t, k in zip(tasks, sizes)}
        done = [0]

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if key in size:
                done[0] += size[key]
                show(done[0], total)

        with Callback(posttask=posttask):
            return dask.compute(*tasks)
    finally:
        if show is not None and hasattr(show, "close"):
            show.close()


def fit(
    calibrator: Calibrator,
    subjects: Union[Cohort, Iterable[Tuple[Any, Any]]],
    *,
    alpha: Optional[float] = None,
    mode: str = "marginal",
    weights: Optional[Tuple[float, float]] = None,
    alpha_inner: Optional[float] = None,
    alpha_outer: Optional[float] = None,
    delta: Optional[float] = None,
    **kwargs: Any,
) -> ConfidenceSets:
    """``statistics`` on Dask, then ``calibrator.fit`` with the levels given
    (``delta``: the training-conditional guarantee, as ``Calibrator.fit``)."""
    stats = statistics(calibrator, subjects, **kwargs)
    return calibrator.fit(
        stats,
        alpha=alpha,
        mode=mode,
        weights=weights,
        alpha_inner=alpha_inner,
        alpha_outer=alpha_outer,
        delta=delta,
    )
