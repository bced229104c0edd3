"""The level vocabulary through Python: every request of
``tests/data/levels.json`` (the table the library and the command line are
checked against) as keywords of ``Calibrator.fit``, giving the table's
levels and threshold ranks, or a ``ValueError`` with the table's message."""

import json
import re

import pytest

import confseg
from conftest import REPO

TABLE = json.loads((REPO / "tests" / "data" / "levels.json").read_text())


@pytest.fixture(scope="module")
def fitted():
    scores, masks = confseg.synthetic((16, 16), TABLE["n"], seed=42)
    cal = confseg.Calibrator()
    risk = {r: cal.risk_statistics(scores, masks, risk=r) for r in ("recall", "precision")}
    return cal, cal.statistics(scores, masks), risk


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: json.dumps(c["request"]))
def test_fit_keywords_validate_as_the_shared_table_says(fitted, case):
    cal, stats, risk = fitted
    request = dict(case["request"])
    if "weights" in request:
        request["weights"] = tuple(request["weights"])
    state = risk["precision" if request.get("risk") == "precision" else "recall"]
    calibration = state if request.get("mode") == "risk-control" else stats
    if "error" in case:
        with pytest.raises(ValueError, match=re.escape(case["error"])):
            cal.fit(calibration, **request)
        return
    want = case["want"]
    sets = cal.fit(calibration, **request)
    assert sets.mode == want["mode"]
    assert sets.alpha == want["alpha"]
    assert sets.delta == want["delta"]
    assert sets.alpha_inner == pytest.approx(want["alpha_inner"], abs=1e-12)
    assert sets.alpha_outer == pytest.approx(want["alpha_outer"], abs=1e-12)
    assert sets.thresholds["inner"]["rank"] == want["rank_inner"]
    assert sets.thresholds["outer"]["rank"] == want["rank_outer"]
    if want["mode"] == "risk-control":
        assert (sets.risk, sets.bound, sets.grid) == (want["risk"], want.get("bound"), want.get("grid"))
