"""``progress=`` of confseg's long calls (``statistics_cohort``, ``validate``).

``progress=True`` shows a tqdm bar (``pip install tqdm``); a callable is
called as ``progress(done, total)`` from the calling thread, every 50 ms
while the count moves and once at the end (an exception it raises stops the
call and is raised).
"""

from __future__ import annotations

from typing import Any, Callable, Optional


class _Tqdm:
    """A tqdm bar driven by ``(done, total)``."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=None)

    def __call__(self, done: int, total: int) -> None:
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def resolve(progress: Any) -> Optional[Callable[[int, int], None]]:
    """The callable that shows ``progress``: ``None``/``False`` none,
    ``True`` a tqdm bar, else the callable itself."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            return _Tqdm()
        except ImportError:
            raise ImportError("progress=True shows a tqdm bar: pip install tqdm (or pass a callable)") from None
    if not callable(progress):
        raise TypeError(f"progress must be True, False, None or a callable(done, total), not {type(progress).__name__}")
    return progress
