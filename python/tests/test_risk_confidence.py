"""Risk control with confidence (METHOD.md §4.5) from Python, against plain
NumPy/SciPy implementations written from the papers and from MAPIE 1.6's
source, and against MAPIE itself when ``mapie==1.6.*`` is installed:

* exact search: RCPS (Hoeffding, empirical Bernstein, and the
  Waudby-Smith–Ramdas recursion written out plainly) for the recall risk,
  Learn-then-Test with Hoeffding–Bentkus p-values (SciPy's binomial) by
  fixed-sequence testing for the precision risk, each evaluated at every
  candidate threshold;
* grid search: MAPIE's ``SemanticSegmentationController`` choice (CRC, the
  three RCPS bounds, LTT with Holm), step for step.
"""

import math

import numpy as np
import pytest
from scipy.stats import binom

import confseg


def probabilities(n, shape=(8, 9), seed=0):
    """Probability maps correlated with random non-empty masks."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n, *shape)) < rng.uniform(0.1, 0.6, size=(n, 1, 1))
    masks[:, 0, 0] = True  # no empty masks (MAPIE refuses them)
    logits = rng.normal(size=(n, *shape)) * rng.uniform(0.5, 2.0, size=(n, 1, 1)) + 2.0 * (masks - 0.5)
    return 1.0 / (1.0 + np.exp(-logits)), masks


# --- the bounds, plainly ------------------------------------------------------


def seq_mean(x):
    """Sum in order, over n (confseg's and MAPIE's arithmetic)."""
    s = 0.0
    for v in x:
        s += v
    return s / len(x)


def hoeffding(losses, delta):
    n = len(losses)
    return seq_mean(losses) + math.sqrt(1 / (2 * n) * math.log(1 / delta))


def bernstein(losses, delta):
    n = len(losses)
    m = seq_mean(losses)
    var = sum((x - m) ** 2 for x in losses) / (n - 1)
    return m + math.sqrt(var * 2 * math.log(2 / delta) / n) + 7 * math.log(2 / delta) / (3 * (n - 1))


def wsr_certifies(losses, delta, r):
    """Bates et al. (2021): UCB < r iff max_i K_i(r) > 1/delta, with
    mu_i = (1/2 + sum_{j<=i} L_j)/(i+1), s2_i = (1/4 + sum_{j<=i}(L_j - mu_j)^2)/(i+1),
    s2_0 = 1/4, nu_i = min(1, sqrt(2 ln(1/delta)/(n s2_{i-1}))), K_i = prod (1 - nu_j (L_j - r))."""
    n = len(losses)
    s = sq = 0.0
    s2_prev = 0.25
    log_k, best = 0.0, -math.inf
    for i, x in enumerate(losses, start=1):
        nu = min(1.0, math.sqrt(2 * math.log(1 / delta) / (n * s2_prev)))
        log_k += math.log(1 - nu * (x - r))
        best = max(best, log_k)
        s += x
        mu = (0.5 + s) / (i + 1)
        sq += (x - mu) ** 2
        s2_prev = (0.25 + sq) / (i + 1)
    return best > math.log(1 / delta)


def hb_p_value(total, n, alpha, snap=True):
    """Hoeffding–Bentkus p-value of H: E[loss] > alpha for losses summing to total."""
    r_hat = total / n
    r = min(r_hat, alpha)
    h1 = (r * math.log(r / alpha) if r else 0.0) + (1 - r) * math.log((1 - r) / (1 - alpha))
    k = math.ceil(n * r_hat)
    if snap and abs(total - round(total)) <= 1e-9 * max(1.0, abs(total)):
        k = round(total)
    return min(math.exp(-n * h1), math.e * binom.cdf(k, n, alpha))


# --- exact search, by definition ----------------------------------------------


def recall_losses(probs, masks, t, strict=False):
    """Missed share of {p >= t} (strict: {p > t}) per image, 1 - TP/|Y|."""
    inside = probs > t if strict else probs >= t
    tp = (inside & masks).sum(axis=(1, 2))
    return [1 - k / y for k, y in zip(tp, masks.sum(axis=(1, 2)))]


def precision_losses(probs, masks, l, mapie=False):
    """False share of {p > l} per image, 1 - TP/(TP+FP); an empty set 0 (mapie: 1)."""
    inside = probs > l
    tp = (inside & masks).sum(axis=(1, 2))
    k = inside.sum(axis=(1, 2))
    return [1 - a / b if b else (1.0 if mapie else 0.0) for a, b in zip(tp, k)]


def exact_recall(probs, masks, alpha, delta, bound):
    """The largest t with every outer set {p >= t'}, t' <= t, certified."""
    n = len(probs)
    cands = np.unique(probs[masks])

    def certified(losses):
        if bound is None:
            return seq_mean(losses) <= (alpha * (n + 1) - 1) / n
        if bound == "hoeffding":
            return hoeffding(losses, delta) < alpha
        if bound == "bernstein":
            return bernstein(losses, delta) < alpha
        return wsr_certifies(losses, delta, alpha)

    best = -math.inf
    for t in [-math.inf, *cands, math.inf]:
        if not certified(recall_losses(probs, masks, t)):
            return best
        best = t
    return best


def exact_precision(probs, masks, alpha, delta):
    """Fixed-sequence LTT from the empty inner set down: the smallest l with
    every {p > l'}, l' >= l, certified (an empty set has loss 0)."""
    n = len(probs)
    best = math.inf
    for l in [*np.unique(probs)[::-1], -math.inf]:
        if hb_p_value(sum(precision_losses(probs, masks, l)), n, alpha) > delta:
            return best
        best = l
    return best


# --- MAPIE 1.6's grid choice, step for step -----------------------------------


def mapie_wsr(risks, delta, lambdas):
    """MAPIE 1.6 ``get_r_hat_plus`` (rcps_bound="wsr"), per grid value."""
    n, m = risks.shape
    mu = (0.5 + np.cumsum(risks, axis=0)) / (np.arange(1, n + 1)[:, None] + 1)
    s2 = (0.25 + np.cumsum((risks - mu) ** 2, axis=0)) / (np.arange(1, n + 1)[:, None] + 1)
    s2 = np.concatenate([np.full((1, m), 0.25), s2[:-1]])
    nu = np.minimum(1, np.sqrt((2 * np.log(1 / delta)) / (n * s2)))
    total = np.zeros((m, m))
    for batch in [range(n // 2), range(n - n // 2, n)]:
        b = list(batch)
        k = np.cumsum(np.log((1 - nu[b][:, :, None] * (risks[b][:, :, None] - lambdas)) + np.finfo(np.float64).eps), axis=0)
        total += np.max(k, axis=0)
    out = np.ones(m)
    for j in range(m):
        hit = np.flatnonzero(total[j] > -np.log(delta))
        if hit.size:
            out[j] = lambdas[hit[0]]
    return out


def mapie_grid(probs, masks, alpha, delta, bound, risk, lambdas):
    """MAPIE's threshold (NaN: none certified for precision; None: none for recall)."""
    n = len(probs)
    if risk == "precision":
        risks = np.array([precision_losses(probs, masks, l, mapie=True) for l in lambdas]).T
        r_hat = risks.mean(axis=0)
        p = np.array([hb_p_value(n * r, n, alpha, snap=False) for r in r_hat])
        # Holm: ascending p-values, each at delta / (number left)
        rejected = []
        for j, i in enumerate(np.argsort(p, kind="stable")):
            if p[i] <= delta / (len(p) - j):
                rejected.append(i)
            else:
                break
        return lambdas[min(rejected)] if rejected else math.nan
    risks = np.array([recall_losses(probs, masks, l, strict=True) for l in lambdas]).T
    r_hat = risks.mean(axis=0)
    if bound is None:
        ucb = (n / (n + 1)) * r_hat + (1 / (n + 1))
    elif bound == "hoeffding":
        ucb = r_hat + np.sqrt((1 / (2 * n)) * np.log(1 / delta))
    elif bound == "bernstein":
        v = np.var(risks, axis=0, ddof=1)
        ucb = r_hat + np.sqrt((v * 2 * np.log(2 / delta)) / n) + (7 * np.log(2 / delta)) / (3 * (n - 1))
    else:
        ucb = mapie_wsr(risks, delta, lambdas)
    ok = ucb < alpha
    k = len(ok) if ok.all() else int(np.argmin(ok))
    return lambdas[k - 1] if k else None


# --- confseg ------------------------------------------------------------------


def confseg_threshold(state, alpha, risk, delta=None, bound=None, grid=None):
    sets = confseg.Calibrator().fit(state, alpha, mode="risk-control", risk=risk, delta=delta, bound=bound, grid=grid)
    if risk == "precision":
        assert sets.lambda_outer == math.inf
        return sets.lambda_inner
    assert sets.lambda_inner == math.inf
    t = -sets.lambda_outer
    # a grid value l gives {p > l} = {p >= next_up(l)}
    return np.nextafter(t, -math.inf) if grid is not None and math.isfinite(t) else t


RECALL_BOUNDS = [None, "hoeffding", "bernstein", "wsr"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.15, 0.3])
def test_exact_search_equals_the_bounds_written_plainly(seed, alpha):
    probs, masks = probabilities(60, seed=seed)
    cal = confseg.Calibrator()
    recall = cal.risk_statistics(probs, masks)
    precision = cal.risk_statistics(probs, masks, risk="precision")
    assert recall.risk == "recall" and precision.risk == "precision" and len(precision) == 60
    delta = 0.2
    informative = 0
    for bound in RECALL_BOUNDS:
        want = exact_recall(probs, masks, alpha, delta, bound)
        got = confseg_threshold(recall, alpha, "recall", None if bound is None else delta, bound)
        assert got == want, (bound, got, want)
        informative += math.isfinite(want)
    want = exact_precision(probs, masks, alpha, delta)
    assert confseg_threshold(precision, alpha, "precision", delta) == want
    assert informative + math.isfinite(want) >= 3


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("grid", ["0:0.99:0.01", "0.05:0.95:0.05"])
def test_grid_search_is_mapies_choice_written_plainly(seed, grid):
    probs, masks = probabilities(80, seed=seed)
    start, stop, step = map(float, grid.split(":"))
    lambdas = np.arange(start, stop + step / 2, step)
    cal = confseg.Calibrator()
    recall = cal.risk_statistics(probs, masks)
    precision = cal.risk_statistics(probs, masks, risk="precision")
    # MAPIE's levels: alpha = 1 - target_level, delta = 1 - confidence_level
    alpha, delta = 1 - 0.85, 1 - 0.9
    for bound in RECALL_BOUNDS:
        want = mapie_grid(probs, masks, alpha, delta, bound, "recall", lambdas)
        got = confseg_threshold(recall, alpha, "recall", None if bound is None else delta, bound, grid)
        assert got == (-math.inf if want is None else want), (bound, got, want)
    for a in (alpha, 1 - 0.7):
        want = mapie_grid(probs, masks, a, delta, None, "precision", lambdas)
        got = confseg_threshold(precision, a, "precision", delta, grid=grid)
        assert got == (math.inf if math.isnan(want) else want), (a, got, want)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", [6, 7])
def test_grid_search_reproduces_mapie_1_6(seed):
    risk_control = pytest.importorskip("mapie.risk_control")
    import mapie as mapie_pkg

    if not mapie_pkg.__version__.startswith("1.6"):
        pytest.skip(f"MAPIE {mapie_pkg.__version__} installed; the comparison is with 1.6")
    probs, masks = probabilities(120, shape=(12, 10), seed=seed)
    X = probs[:, None]  # (n, 1, H, W) probabilities: MAPIE applies no sigmoid

    def controller(**kw):
        c = risk_control.SemanticSegmentationController(predict_function=lambda x: x, **kw)
        c.calibrate(X, masks)
        return float(c.best_predict_param[0])

    cal = confseg.Calibrator()
    recall = cal.risk_statistics(probs, masks)
    precision = cal.risk_statistics(probs, masks, risk="precision")
    target, confidence = 0.9, 0.9
    alpha, delta = 1 - target, 1 - confidence
    grid = "0:0.99:0.01"
    assert controller(risk="recall", method="crc", target_level=target) == confseg_threshold(
        recall, alpha, "recall", grid=grid
    )
    for bound in ("hoeffding", "bernstein", "wsr"):
        want = controller(risk="recall", method="rcps", target_level=target, confidence_level=confidence, rcps_bound=bound)
        assert confseg_threshold(recall, alpha, "recall", delta, bound, grid) == want, bound
    for target in (0.8, 0.7):
        want = controller(risk="precision", target_level=target, confidence_level=confidence)
        got = confseg_threshold(precision, 1 - target, "precision", delta, grid=grid)
        assert got == (math.inf if math.isnan(want) else want), (target, got, want)


def test_requests_and_states():
    probs, masks = probabilities(100, seed=9)
    cal = confseg.Calibrator()
    recall = cal.risk_statistics(probs, masks)
    precision = cal.risk_statistics(probs, masks, risk="precision")
    sets = cal.fit(precision, 0.3, mode="risk-control", risk="precision", delta=0.1, grid=(0.0, 0.99, 0.01))
    assert (sets.risk, sets.bound, sets.grid, sets.delta) == ("precision", "hoeffding-bentkus", "0:0.99:0.01", 0.1)
    assert sets.set_rule.startswith("I = {f_I > ")
    assert "false share of the inner set" in sets.guarantee and "probability >= 0.9" in sets.guarantee
    inner, outer = sets.predict(probs)
    assert outer.all()
    np.testing.assert_array_equal(inner, probs > sets.lambda_inner)
    with pytest.raises(ValueError, match="precision risk calibration, not of a recall one"):
        cal.fit(recall, 0.3, mode="risk-control", risk="precision", delta=0.1)
    with pytest.raises(ValueError, match="cannot take"):
        recall.merge(precision)
    with pytest.raises(TypeError, match="grid"):
        cal.fit(precision, 0.3, mode="risk-control", risk="precision", delta=0.1, grid=[1])
    back = confseg.RiskCalibration.from_json(precision.to_json())
    assert back == precision and back.risk == "precision"
    assert confseg.RiskCalibration("precision").risk == "precision"
    # the fitted file round-trips the guarantee
    again = confseg.ConfidenceSets.from_json(sets.to_json())
    assert again == sets and again.grid == "0:0.99:0.01"


def test_validate_honours_the_risk_options():
    probs, masks = probabilities(160, seed=10)
    logits = np.log(probs / (1 - probs))
    common = dict(n_cal=120, alphas=[0.3], repeats=20, geometry_splits=0, inner="sigmoid", outer="sigmoid")
    precision = confseg.validate(logits, masks, mode="risk-control", risk="precision", delta=0.1, **common)
    recall = confseg.validate(logits, masks, mode="risk-control", delta=0.1, bound="bernstein", grid="0:0.99:0.01", **common)
    (p,), (r,) = precision, recall
    assert p["method"] == "risk-control delta=0.1 risk=precision"
    assert r["method"] == "risk-control delta=0.1 bound=bernstein grid=0:0.99:0.01"
    assert p["outer_coverage"] == 1.0 and p["efficiency"]["inner_share"] > 0
    assert r["inner_coverage"] == 1.0 and r["efficiency"]["outer_missed_fraction"] < 0.3
    assert p["efficiency"]["inner_false_fraction"] < 0.3
    with pytest.raises(ValueError, match="give delta"):
        confseg.validate(logits, masks, mode="risk-control", risk="precision", **common)
