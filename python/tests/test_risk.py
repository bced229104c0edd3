"""Conformal risk control of the missed fraction (METHOD.md §4.3) from
Python: the threshold against a direct NumPy evaluation of its definition,
the sets it gives, and the RiskCalibration state (merge, JSON, pickle)."""

import math
import pickle

import numpy as np
import pytest

import confseg


def random_data(n, seed, shape=(6, 7)):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, *shape))
    masks = rng.random((n, *shape)) < rng.uniform(0.0, 0.5, size=(n, 1, 1))
    masks[::7] = False  # some empty masks (FNR 0)
    return scores, masks


def direct_threshold(scores, masks, alpha):
    """The largest t with n/(n+1) * mean_i FNR_i(t) + 1/(n+1) <= alpha,
    FNR_i(t) = |{v in Y_i : s(v) < t}| / |Y_i| (0 for an empty mask)."""
    n = len(scores)
    objects = [s[m] for s, m in zip(scores, masks)]

    def fnr(t):
        return np.mean([np.mean(o < t) if o.size else 0.0 for o in objects])

    def ok(t):
        return n / (n + 1) * fnr(t) + 1 / (n + 1) <= alpha

    # FNR is a left-continuous step function jumping just above each score:
    # the valid t form (-inf, t*] with t* an object score, or +inf.
    candidates = np.unique(np.concatenate(objects + [np.array([np.inf])]))
    valid = [t for t in candidates if ok(t)]
    return max(valid) if valid else -math.inf, fnr


@pytest.mark.filterwarnings("ignore:only n = 30")  # alpha = 0.02 < 1/(n+1): the whole image
@pytest.mark.parametrize("alpha", [0.02, 0.05, 0.1, 0.25, 0.5, 0.95])
@pytest.mark.parametrize("seed", [1, 2])
def test_threshold_equals_the_definition(alpha, seed):
    scores, masks = random_data(30, seed)
    cal = confseg.Calibrator()
    risk = cal.risk_statistics(scores, masks)
    assert len(risk) == 30
    want, fnr = direct_threshold(scores, masks, alpha)
    assert risk.threshold(alpha) == want
    for t in (-1.0, 0.0, 0.3, want):
        assert risk.missed_fraction(t) == pytest.approx(fnr(t), abs=1e-12)
    sets = cal.fit(risk, alpha, mode="risk-control")
    assert sets.mode == "risk-control" and sets.alpha == alpha and sets.delta is None
    assert sets.lambda_outer == -want and sets.lambda_inner == math.inf
    inner, outer = sets.predict(scores)
    assert not inner.any()
    np.testing.assert_array_equal(outer, scores >= want)
    assert "expected missed fraction" in sets.guarantee


def test_too_few_images_give_the_whole_image():
    scores, masks = random_data(10, 3)
    cal = confseg.Calibrator()
    risk = cal.risk_statistics(scores, masks)
    assert risk.threshold(0.05) == -math.inf  # 1/(n+1) > alpha
    with pytest.warns(UserWarning):
        sets = cal.fit(risk, 0.05, mode="risk-control")
    assert sets.predict(scores)[1].all()


def test_inputs_as_for_statistics():
    scores, masks = random_data(12, 4)
    cal = confseg.Calibrator()
    whole = cal.risk_statistics(scores, masks)
    listed = cal.risk_statistics(list(scores), list(masks.astype(np.uint8)))
    assert listed == whole
    one = cal.risk_statistics(scores[0], masks[0])
    assert len(one) == 1 and one.provenance["ndim"] == 2
    per = cal.risk_statistics(scores, masks, spacing=[[1.0, 2.0]] * 12)
    assert per.per_image_spacing and not whole.per_image_spacing
    with pytest.raises(ValueError, match="shape"):
        cal.risk_statistics(scores, masks[:, :3])


def test_merge_json_pickle():
    scores, masks = random_data(40, 5)
    scores[3, 0, 0] = np.inf
    masks[3, 0, 0] = True
    cal = confseg.Calibrator(outer="sigmoid")
    whole = cal.risk_statistics(scores, masks)
    a, b = cal.risk_statistics(scores[:25], masks[:25]), cal.risk_statistics(scores[25:], masks[25:])
    assert (a + b) == whole
    assert a.merge(b) is a and a == whole
    assert confseg.RiskCalibration.concat([cal.risk_statistics(scores[:1], masks[:1]), cal.risk_statistics(scores[1:], masks[1:])]) == whole
    back = confseg.RiskCalibration.from_json(whole.to_json())
    assert back == whole and back.provenance == whole.provenance and len(back) == 40
    assert pickle.loads(pickle.dumps(whole)) == whole
    for alpha in (0.1, 0.3):
        assert back.threshold(alpha) == whole.threshold(alpha)
        assert cal.fit(back, alpha, mode="risk-control") == cal.fit(whole, alpha, mode="risk-control")
    per = cal.risk_statistics(scores, masks, spacing=[1.0, 1.0])
    assert confseg.RiskCalibration.from_json(per.to_json()) == per
    own = cal.risk_statistics(list(scores), list(masks), spacing=[[1.0, 1.0]] * 40)
    back = pickle.loads(pickle.dumps(own))
    assert back == own and back.per_image_spacing
    empty = confseg.RiskCalibration()
    assert len(empty) == 0 and empty.provenance is None
    assert confseg.RiskCalibration.from_json(empty.to_json()) == empty
    assert (empty + whole) == whole


def test_sets_round_trip_through_the_calibration_file(tmp_path):
    scores, masks = random_data(30, 6)
    cal = confseg.Calibrator(outer="distance")
    sets = cal.fit(cal.risk_statistics(scores, masks), 0.2, mode="risk-control")
    sets.save(tmp_path / "risk.json")
    back = confseg.ConfidenceSets.load(tmp_path / "risk.json")
    assert back == sets and back.mode == "risk-control"
    np.testing.assert_array_equal(back.predict(scores)[1], sets.predict(scores)[1])
    assert pickle.loads(pickle.dumps(sets)) == sets


def test_errors():
    scores, masks = random_data(20, 7)
    cal = confseg.Calibrator()
    risk = cal.risk_statistics(scores, masks)
    stats = cal.statistics(scores, masks)
    with pytest.raises(ValueError, match='mode="risk-control"'):
        cal.fit(risk, 0.1, mode="max")
    with pytest.raises(ValueError, match="RiskCalibration"):
        cal.fit(stats, 0.1, mode="risk-control")
    with pytest.raises(ValueError, match="give delta"):
        cal.fit(risk, 0.1, mode="risk-control", risk="precision")
    with pytest.raises(ValueError, match="unknown bound"):
        cal.fit(risk, 0.1, mode="risk-control", delta=0.1, bound="chernoff")
    with pytest.raises(ValueError, match="alpha"):
        cal.fit(risk, mode="risk-control")
    with pytest.raises(ValueError, match="alpha"):
        risk.threshold(1.5)
    with pytest.raises(ValueError, match="outer transform"):
        risk.merge(confseg.Calibrator(outer="sigmoid").risk_statistics(scores, masks))
    with pytest.raises(ValueError, match="outer transform"):
        confseg.Calibrator(outer="sigmoid").fit(risk, 0.1, mode="risk-control")
    with pytest.raises(ValueError, match="risk calibration"):
        confseg.RiskCalibration.from_json('{"kind": "something else"}')
    with pytest.raises(TypeError, match="RiskCalibration"):
        cal.fit([1, 2, 3], 0.1)
