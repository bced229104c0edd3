"""confseg's risk control against MAPIE 1.6's SemanticSegmentationController
on one synthetic data set, in one run: thresholds, realised risk on test
images, and both tools' times.

    pip install . mapie==1.6.0      # from the repository root
    python scripts/compare_mapie.py [--n 500] [--size 352] [--n-test 200] [--seed 0]

The data: `n` calibration and `n_test` test images of `size x size`
pixels. Each image holds one to three elliptic objects; the "network"
outputs the probabilities `sigmoid(a * (signed distance to the object) +
noise)` in float32 with a per-image sharpness `a`, smoothed noise and a
missed or hallucinated object now and then. Every image has an object
(MAPIE refuses images without one).

Rows (alpha = 1 - target level, delta = 1 - confidence level, as MAPIE
computes them):

* recall, on MAPIE's grid `np.arange(0, 1, 0.01)` (confseg `--grid
  0:0.99:0.01`): conformal risk control (CRC) and RCPS with the WSR bound;
  both tools' thresholds must be identical;
* precision, on the same grid: Learn-then-Test (Hoeffding-Bentkus p-values,
  Holm); identical thresholds;
* confseg's exact search (the default; MAPIE has none) for the same three,
  with the threshold it certifies.

Times: MAPIE's `compute_risks` (in batches of `--batch` images; the whole
stack at once needs `n * size^2 * 100` booleans) plus
`compute_best_predict_param`; confseg's `risk_statistics` plus `fit`.
Each tool computes its per-image data once per risk (MAPIE's risk matrix,
confseg's risk state) and every row of that risk reuses it: a row's time
is that shared pass plus its own selection, and the ratio compares the two.
The realised risk is the mean loss of the fitted sets over the test images
(missed share of the object; false share of the inner set, an empty inner
set counting 1 as MAPIE counts it on the grid and 0 for the exact search).
"""

import argparse
import math
import time
import warnings

import numpy as np

import confseg

try:
    import mapie
    from mapie.risk_control import SemanticSegmentationController
except ImportError:  # pragma: no cover
    raise SystemExit("needs MAPIE 1.6: pip install mapie==1.6.0")


def synthetic(n, size, seed):
    """Probabilities (float32) and masks (bool), (n, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    probs = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    # smooth noise: a coarse random field upsampled by repetition and a box blur
    k = 16
    for i in range(n):
        dist = np.full((size, size), -np.inf, np.float32)
        truth = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.04, 0.16, 2) * size
            th = rng.uniform(0, np.pi)
            c, s = np.cos(th), np.sin(th)
            u = ((yy - cy) * c + (xx - cx) * s) / ry
            v = (-(yy - cy) * s + (xx - cx) * c) / rx
            r = np.sqrt(u * u + v * v)
            d = (1.0 - r) * min(ry, rx)  # approximate signed distance, pixels
            truth |= r <= 1.0
            dist = np.maximum(dist, d)
        coarse = rng.normal(size=(size // k + 1, size // k + 1)).astype(np.float32)
        noise = np.kron(coarse, np.ones((k, k), np.float32))[:size, :size]
        sharp = rng.uniform(0.15, 0.6)
        shift = rng.normal(0.0, 2.0)  # over- or under-segmentation, pixels
        logit = sharp * (dist + shift) + 1.2 * noise
        probs[i] = 1.0 / (1.0 + np.exp(-logit))
        masks[i] = truth
    return probs, masks


def recall_loss(probs, masks, rule):
    inside = rule(probs)
    tp = (inside & masks).sum(axis=(1, 2))
    return 1.0 - tp / masks.sum(axis=(1, 2))


def precision_loss(probs, masks, rule, empty):
    inside = rule(probs)
    tp = (inside & masks).sum(axis=(1, 2))
    k = inside.sum(axis=(1, 2))
    return np.where(k > 0, 1.0 - tp / np.maximum(k, 1), empty)


def mapie_pass(controller_kw, probs, masks, batch):
    """MAPIE's risk matrix, computed once in batches (seconds, matrix)."""
    c = SemanticSegmentationController(predict_function=lambda x: x, **controller_kw)
    t0 = time.perf_counter()
    for j in range(0, len(probs), batch):
        c.compute_risks(probs[j : j + batch, None], masks[j : j + batch])
    return time.perf_counter() - t0, c._risks


def mapie_select(controller_kw, risks):
    """MAPIE's choice from a risk matrix (seconds, threshold)."""
    c = SemanticSegmentationController(predict_function=lambda x: x, **controller_kw)
    c._risks = risks.copy()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c.compute_best_predict_param()
    return time.perf_counter() - t0, float(c.best_predict_param[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--recall-target", type=float, default=0.9)
    ap.add_argument("--precision-target", type=float, default=0.8)
    ap.add_argument("--confidence", type=float, default=0.9)
    args = ap.parse_args()
    if not mapie.__version__.startswith("1.6"):
        print(f"warning: MAPIE {mapie.__version__}; the comparison is written for 1.6")

    t0 = time.perf_counter()
    probs, masks = synthetic(args.n + args.n_test, args.size, args.seed)
    cal_p, cal_m = probs[: args.n], masks[: args.n]
    test_p, test_m = probs[args.n :], masks[args.n :]
    print(
        f"data: {args.n} calibration + {args.n_test} test images of {args.size}x{args.size} (float32 "
        f"probabilities), object share {cal_m.mean():.3f}; made in {time.perf_counter() - t0:.1f} s"
    )
    print(f"MAPIE {mapie.__version__}, confseg {confseg.__version__}, numpy {np.__version__}")
    grid = "0:0.99:0.01"
    ra, pa = 1 - args.recall_target, 1 - args.precision_target
    delta = 1 - args.confidence
    calibrator = confseg.Calibrator()

    # each tool's per-image pass, once per risk
    rec_kw = dict(risk="recall", method="crc", target_level=args.recall_target)
    t_mapie_rec, rec_risks = mapie_pass(rec_kw, cal_p, cal_m, args.batch)
    t0 = time.perf_counter()
    rec_state = calibrator.risk_statistics(cal_p, cal_m)
    t_cs_rec = time.perf_counter() - t0
    pre_kw = dict(risk="precision", target_level=args.precision_target, confidence_level=args.confidence)
    t_mapie_pre, pre_risks = mapie_pass(pre_kw, cal_p, cal_m, args.batch)
    t0 = time.perf_counter()
    pre_state = calibrator.risk_statistics(cal_p, cal_m, risk="precision")
    t_cs_pre = time.perf_counter() - t0

    rows = []

    def confseg_fit(state, alpha, risk, **kw):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = calibrator.fit(state, alpha, mode="risk-control", risk=risk, **kw)
        return time.perf_counter() - t0, sets

    def row(name, risk, alpha, mapie_kw, mapie_risks, t_mapie_pass, state, t_cs_pass, **kw):
        dt, sets = confseg_fit(state, alpha, risk, **kw)
        on_grid = kw.get("grid") is not None
        if risk == "recall":
            t = -sets.lambda_outer
            lam = float(np.nextafter(t, -np.inf)) if on_grid and math.isfinite(t) else t
            rule = (lambda p: p > lam) if on_grid else (lambda p: p >= lam)
            realised = recall_loss(test_p, test_m, rule).mean()
        else:
            lam = sets.lambda_inner
            realised = precision_loss(test_p, test_m, lambda p: p > lam, 1.0 if on_grid else 0.0).mean()
        cs_time = t_cs_pass + dt
        if mapie_kw is None:
            rows.append((name, "-", lam, "-", realised, "-", cs_time, "-"))
            return
        ms, mlam = mapie_select(mapie_kw, mapie_risks)
        same = (math.isnan(mlam) and lam == math.inf) or mlam == lam
        m_time = t_mapie_pass + ms
        rows.append((name, mlam, lam, "yes" if same else "NO", realised, m_time, cs_time, m_time / cs_time))

    row("recall CRC, grid", "recall", ra, rec_kw, rec_risks, t_mapie_rec, rec_state, t_cs_rec, grid=grid)
    wsr_kw = dict(rec_kw, method="rcps", confidence_level=args.confidence, rcps_bound="wsr")
    row("recall RCPS-WSR, grid", "recall", ra, wsr_kw, rec_risks, t_mapie_rec, rec_state, t_cs_rec, delta=delta, bound="wsr", grid=grid)
    row("precision LTT, grid", "precision", pa, pre_kw, pre_risks, t_mapie_pre, pre_state, t_cs_pre, delta=delta, grid=grid)
    row("recall CRC, exact", "recall", ra, None, None, 0, rec_state, t_cs_rec)
    row("recall RCPS-WSR, exact", "recall", ra, None, None, 0, rec_state, t_cs_rec, delta=delta, bound="wsr")
    row("precision LTT, exact", "precision", pa, None, None, 0, pre_state, t_cs_pre, delta=delta)

    def fmt(x, digits=4):
        if isinstance(x, str):
            return x
        if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
            return str(x)
        return f"{x:.{digits}g}"

    print(
        f"\nrecall alpha = {ra:.6g}, precision alpha = {pa:.6g}, delta = {delta:.6g} "
        f"(target levels {args.recall_target}, {args.precision_target}; confidence {args.confidence})"
    )
    head = ("method", "MAPIE l", "confseg l", "same", "test risk", "MAPIE s", "confseg s", "ratio")
    widths = (24, 9, 20, 5, 10, 9, 10, 7)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in rows:
        cells = (r[0], fmt(r[1]), fmt(r[2], 10), r[3], fmt(r[4]), fmt(r[5], 3), fmt(r[6], 3), fmt(r[7], 3))
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    print(
        "\n(l: the threshold, sets {p > l} on the grid; exact recall {p >= l}, exact precision {p > l}.\n"
        f" Per-risk pass, shared by that risk's rows: MAPIE recall {t_mapie_rec:.1f} s, precision {t_mapie_pre:.1f} s;\n"
        f" confseg recall {t_cs_rec:.2f} s, precision {t_cs_pre:.2f} s. Test risk: mean loss on the {args.n_test} test images;\n"
        " an empty inner set counts 1 on the grid (MAPIE's convention), 0 for the exact search.)"
    )


if __name__ == "__main__":
    main()
