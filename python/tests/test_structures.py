"""Several structures of a label map with one guarantee (METHOD.md §4.1)."""

import math
import pickle

import numpy as np
import pytest

import confseg

# mode max on structures of different scales, and small n at Bonferroni shares: the library warns, validly
pytestmark = [pytest.mark.filterwarnings("ignore:.*mode max:UserWarning"), pytest.mark.filterwarnings("ignore:.*only n = 80:UserWarning")]

SHAPE = (16, 20)


def two_structures(scores, masks):
    """Channel outputs (N, 2, ...) and label maps: 1 = WT only, 2 = CORE (inside WT)."""
    labels = masks.astype(np.uint8) + (masks & (scores > 2.0)).astype(np.uint8)
    outputs = np.stack([scores, scores - 1.0], axis=1)
    return outputs, labels


def make(**kw):
    return confseg.StructureCalibrator("identity", "identity", {"WT": [1, 2], "CORE": [2]}, structure_axis=0, **kw)


def test_a_label_set_equals_the_single_structure_calibrator_on_its_binarized_map():
    scores, masks = confseg.synthetic(SHAPE, 60, seed=31)
    outputs, labels = two_structures(scores, masks)
    sc = make()
    stats = sc.statistics(outputs[:40], labels[:40])
    assert len(stats) == 40 and stats.names == ["WT", "CORE"]
    sets = sc.fit(stats, 0.2, mode="marginal")
    single = confseg.Calibrator()
    for name, s, m in (("WT", scores, labels >= 1), ("CORE", scores - 1.0, labels == 2)):
        one = single.fit(single.statistics(s[:40], m[:40]), alpha=0.2)
        assert sets.thresholds[name] == one.thresholds, name
        inner, outer = sets.predict(outputs[40:])[name]
        want_i, want_o = one.predict(s[40:])
        np.testing.assert_array_equal(inner, want_i)
        np.testing.assert_array_equal(outer, want_o)
        # one image: arrays of one image's shape
        i0, o0 = sets.predict(outputs[40])[name]
        assert i0.shape == SHAPE
        np.testing.assert_array_equal(o0, want_o[0])
    # lists of images as for a stack
    listed = sc.statistics(list(outputs[:40]), list(labels[:40]))
    assert listed == stats
    per, joint = sets.covers(outputs[40:], labels[40:])
    assert set(per) == {"WT", "CORE"} and joint.shape == (20,)
    np.testing.assert_array_equal(joint, per["WT"][0] & per["WT"][1] & per["CORE"][0] & per["CORE"][1])


M = 50
REPS = 300


def beta_var(k, n):
    a, b = k, n + 1 - k
    return a * b / ((a + b) ** 2 * (a + b + 1))


def test_joint_max_coverage_is_k_over_n_plus_1():
    n, alpha = 19, 0.1
    k = math.ceil((1 - alpha) * (n + 1) - 1e-9)
    p = k / (n + 1)
    tol = 4 * math.sqrt((beta_var(k, n) + p * (1 - p) / M) / REPS)
    assert tol < 0.5 / (n + 1)  # an off-by-one rank would fail
    sc = make()
    hits = 0
    per_chunk = 50
    for start in range(0, REPS, per_chunk):
        scores, masks = confseg.synthetic(SHAPE, range(start * (n + M), (start + per_chunk) * (n + M)), seed=7)
        outputs, labels = two_structures(scores, masks)
        for r in range(per_chunk):
            b = r * (n + M)
            sets = sc.fit(sc.statistics(outputs[b:b + n], labels[b:b + n]), alpha, mode="max")
            _, joint = sets.covers(outputs[b + n:b + n + M], labels[b + n:b + n + M])
            hits += joint.sum()
    got = hits / (REPS * M)
    assert abs(got - p) <= tol, f"joint coverage {got:.4f}, expected {p:.4f} ± {tol:.4f}"


def test_modes_delta_and_round_trips(tmp_path):
    scores, masks = confseg.synthetic(SHAPE, 80, seed=32)
    outputs, labels = two_structures(scores, masks)
    sc = make()
    stats = sc.statistics(outputs, labels)
    a, b = sc.statistics(outputs[:30], labels[:30]), sc.statistics(outputs[30:], labels[30:])
    assert a + b == stats
    assert a.merge(b) is a and a == stats
    assert confseg.StructureCalibration.from_json(stats.to_json()) == stats
    assert pickle.loads(pickle.dumps(stats)) == stats
    assert set(stats.calibrations) == {"WT", "CORE"}
    mx = sc.fit(stats, 0.1, mode="max")
    assert mx.thresholds["WT"]["inner"]["value"] == mx.thresholds["CORE"]["outer"]["value"]
    z = np.maximum.reduce([stats.calibrations[k].tau for k in ("WT", "CORE")] + [stats.calibrations[k].gamma for k in ("WT", "CORE")])
    kk = math.ceil(0.9 * 81 - 1e-9)
    assert mx.thresholds["WT"]["inner"]["value"] == np.sort(z)[kk - 1]
    assert "for every structure" in mx.guarantee
    bf = sc.fit(stats, 0.1, mode="bonferroni", weights=[(1, 4), (1, 4)], delta=0.2)
    assert bf.delta == 0.2 and bf.mode == "bonferroni"
    total = sum(t[s]["alpha"] for t in bf.thresholds.values() for s in ("inner", "outer"))
    assert total <= 0.1 + 1e-15
    for sets in (mx, bf):
        back = confseg.StructureSets.from_json(sets.to_json())
        assert back == sets
        assert pickle.loads(pickle.dumps(sets)) == sets
        sets.save(tmp_path / "s.json")
        loaded = confseg.StructureSets.load(tmp_path / "s.json")
        assert loaded == sets
        for name in ("WT", "CORE"):
            for x, y in zip(loaded.predict(outputs[:5])[name], sets.predict(outputs[:5])[name]):
                np.testing.assert_array_equal(x, y)


def test_softmax_over_classes():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 3, 8, 9)).astype(np.float32)
    labels = logits.argmax(axis=1).astype(np.uint8)
    labels[labels == 2] = 4
    sc = confseg.StructureCalibrator("identity", "identity", ["ANY=1,4", "ET=4"], class_axis=0, class_labels=[0, 1, 4])
    sets = sc.fit(sc.statistics(logits[:30], labels[:30]), 0.2, mode="max")
    out = sets.predict(logits[30:])
    assert out["ANY"][0].shape == (10, 8, 9)
    assert sets.structures == {"ANY": [1, 4], "ET": [4]}


def test_errors():
    scores, masks = confseg.synthetic(SHAPE, 20, seed=33)
    outputs, labels = two_structures(scores, masks)
    sc = make()
    stats = sc.statistics(outputs, labels)
    with pytest.raises(ValueError, match='unknown mode "best"'):
        sc.fit(stats, 0.1, mode="best")
    with pytest.raises(ValueError, match="not both"):
        confseg.StructureCalibrator("identity", "identity", {"A": [1]}, class_axis=0, class_labels=[0, 1], structure_axis=0)
    with pytest.raises(ValueError, match="class_axis"):
        confseg.StructureCalibrator("identity", "identity", {"A": [1]})
    with pytest.raises(ValueError, match="class_labels"):
        confseg.StructureCalibrator("identity", "identity", {"A": [1]}, class_axis=0)
    with pytest.raises(ValueError, match="labels must be a list of integers"):
        confseg.StructureCalibrator("identity", "identity", {"A": ["x"]}, structure_axis=0)
    with pytest.raises(ValueError, match="labels must be integers"):
        confseg.StructureCalibrator("identity", "identity", ["A=1,x"], structure_axis=0)
    with pytest.raises(ValueError, match="structure name"):
        confseg.StructureCalibrator("identity", "identity", {"has space": [1]}, structure_axis=0)
    with pytest.raises(ValueError, match="weights"):
        sc.fit(stats, 0.1, mode="max", weights=(1, 4))
    with pytest.raises(ValueError, match="channels"):
        sc.statistics(np.stack([scores] * 3, axis=1), labels)
    other = confseg.StructureCalibrator("identity", "identity", {"WT": [1, 2]}, structure_axis=0)
    with pytest.raises(ValueError, match="structures"):
        stats.merge(other.statistics(outputs[:, :1], labels))
