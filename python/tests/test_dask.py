"""Calibration as Dask tasks on a distributed LocalCluster (2 worker
processes) equals one process exactly."""

import numpy as np
import pytest

import confseg

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import confseg.dask  # noqa: E402


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    d = tmp_path_factory.mktemp("subjects")
    s, m = confseg.synthetic((20, 24), 200, seed=21)
    s = s.astype(np.float32)
    for i in range(200):
        np.save(d / f"sub-{i:03d}_prob.npy", s[i])
        np.save(d / f"sub-{i:03d}_seg.npy", m[i].astype(np.uint8))
    pairs = [(d / f"sub-{i:03d}_prob.npy", d / f"sub-{i:03d}_seg.npy") for i in range(200)]
    return d, pairs, s, m


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_two_workers_give_the_single_process_thresholds(client, subjects):
    d, pairs, s, m = subjects
    cal = confseg.Calibrator(inner="identity", outer="distance")
    single = cal.statistics(s, m)
    # file pairs, a few subjects per task
    stats = confseg.dask.statistics(cal, pairs, batch_size=7, client=client)
    assert len(stats) == 200
    assert np.array_equal(stats.tau, single.tau) and np.array_equal(stats.gamma, single.gamma)
    for levels in ({"alpha": 0.1, "mode": "bonferroni", "weights": (1, 4)}, {"alpha": 0.05, "mode": "max"}):
        assert cal.fit(stats, **levels).thresholds == cal.fit(single, **levels).thresholds
    # a cohort found in the folder, one subject per task, on the active client
    cohort = confseg.read_cohort(str(d / "*_prob.npy"), str(d / "*_seg.npy"))
    sets = confseg.dask.fit(cal, cohort, alpha=0.1, mode="bonferroni", weights=(1, 4))
    assert sets.thresholds == cal.fit(single, alpha=0.1, mode="bonferroni", weights=(1, 4)).thresholds
    # arrays in memory, merged in a shuffled order: the same thresholds
    parts = [confseg.dask.statistics(cal, list(zip(s[i::4], m[i::4])), batch_size=10) for i in range(4)]
    merged = confseg.Calibration.concat(parts[::-1])
    assert cal.fit(merged, alpha=0.1).thresholds == cal.fit(single, alpha=0.1).thresholds


def test_progress_counts_subjects_on_a_client_and_without_one(client, subjects):
    """Issue 20 item 13: Dask calibrations report the subjects done."""
    d, pairs, s, m = subjects
    cal = confseg.Calibrator(inner="identity", outer="distance")
    seen = []
    stats = confseg.dask.statistics(cal, pairs[:40], batch_size=7, client=client, progress=lambda k, n: seen.append((k, n)))
    assert len(stats) == 40 and seen[-1] == (40, 40) and len(seen) == 6  # one call per task of 7, 7, ..., 5
    assert [k for k, _ in seen] == sorted(k for k, _ in seen)
    local = []
    with dask.config.set(scheduler="threads"):
        stats2 = confseg.dask.statistics(cal, list(zip(s[:30], m[:30])), batch_size=4,
                                         progress=lambda k, n: local.append((k, n)))
    assert np.array_equal(stats2.tau, cal.statistics(s[:30], m[:30]).tau)
    assert sorted(local)[-1] == (30, 30) and len(local) == 8
