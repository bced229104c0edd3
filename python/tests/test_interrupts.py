"""Ctrl-C during a long native call raises KeyboardInterrupt promptly
(issue 21, item 8): the library checks a cancellation token between
images and splits while the calling thread polls for signals."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import confseg

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself")


@pytest.fixture(scope="module")
def data():
    scores, masks = confseg.synthetic((48, 48), 600, seed=3)
    return scores.astype(np.float32), masks


def interrupted_after(delay, call):
    """Send SIGINT after `delay` s; the seconds until KeyboardInterrupt arrives."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
            # the call finished before the signal: wait for it
            time.sleep(5)
    finally:
        timer.cancel()
    return time.perf_counter() - start - delay


def test_ctrl_c_interrupts_validate_promptly(data):
    scores, masks = data

    def run():
        return confseg.validate(
            scores, masks, n_cal=300, outer="distance", repeats=100000, geometry_splits=50, seed=1
        )

    start = time.perf_counter()
    run()
    full = time.perf_counter() - start
    latency = interrupted_after(0.15, run)
    print(f"validate: uninterrupted {full:.2f} s, KeyboardInterrupt {latency:.3f} s after SIGINT")
    assert full >= 5 * (0.15 + latency), (full, latency)
    assert latency < 0.5


def test_ctrl_c_interrupts_cohort_statistics_and_leaves_no_file(tmp_path):
    scores, masks = confseg.synthetic((40, 40, 40), 12, seed=3)
    (tmp_path / "scores").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(360):
        np.save(tmp_path / "scores" / f"s{i:03d}.npy", scores[i % 12].astype(np.float32))
        np.save(tmp_path / "masks" / f"s{i:03d}.npy", masks[i % 12])
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    cohort = confseg.read_cohort(str(tmp_path / "scores"), str(tmp_path / "masks"))
    cal = confseg.Calibrator(inner="gaussian:12", outer="morphological:footprint=ball:radius=6")
    start = time.perf_counter()
    cal.statistics_cohort(cohort)
    full = time.perf_counter() - start
    latency = interrupted_after(0.1, lambda: cal.statistics_cohort(cohort))
    print(f"cohort: uninterrupted {full:.2f} s, KeyboardInterrupt {latency:.3f} s after SIGINT")
    assert full >= 5 * (0.1 + latency), (full, latency)
    assert latency < 0.5
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_calls_after_an_interrupt_work(data):
    scores, masks = data
    interrupted_after(0.2, lambda: confseg.validate(scores, masks, n_cal=300, repeats=20000, seed=1))
    r = confseg.validate(scores[:100], masks[:100], n_cal=50, repeats=10, seed=1)
    assert r[0]["splits"] == 10
