"""Chained transforms (`gaussian:2|distance`) and the empty-prediction
option from Python: the same parser as the library and the CLI, so a chain
equals its steps applied in turn, and the name survives saving."""

import numpy as np
import pytest

import confseg


def test_a_chain_equals_its_steps_in_turn():
    s, _ = confseg.synthetic((32, 28), 3, seed=5)
    for image in s:
        smoothed = confseg.transform(image, "gaussian:2")
        want = confseg.transform(smoothed, "distance:chessboard")
        got = confseg.transform(image, "gaussian:2|distance:chessboard")
        np.testing.assert_array_equal(got, want)


def test_chained_sets_save_and_load(tmp_path):
    s, m = confseg.synthetic((32, 32), 60, seed=6)
    cal = confseg.Calibrator(inner="identity", outer="gaussian:2 | distance:empty=argmax")
    sets = cal.fit(cal.statistics(s, m), alpha=0.1, mode="marginal")
    assert sets.outer_transform == "gaussian:2|distance:euclidean:empty=argmax"
    assert cal.outer == sets.outer_transform
    sets.save(tmp_path / "c.json")
    back = confseg.ConfidenceSets.load(tmp_path / "c.json")
    assert back == sets
    new, _ = confseg.synthetic((32, 32), range(100, 104), seed=6)
    for a, b in zip(back.predict(new), sets.predict(new)):
        np.testing.assert_array_equal(a, b)


def test_bad_chains_are_value_errors():
    for bad in ["gaussian:2|", "|distance", "gaussian:2|nope"]:
        with pytest.raises(ValueError, match="transform"):
            confseg.Calibrator(outer=bad)
