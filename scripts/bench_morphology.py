#!/usr/bin/env python3
"""Benchmark (not a timed test): calibrating a ConSeMa-style outer set with
confseg's morphological transform against scipy's iterated binary_dilation.

ConSeMa (Mossina & Friedrich 2025) scores each calibration image by the
fewest dilations of the predicted mask M, by the cross footprint, after
which the dilated mask covers at least a share tau of the true mask Y:

    k_i = min { k >= 0 : |dilate^k(M_i) ∩ Y_i| >= ceil(tau |Y_i|) }

(0 for an empty Y, +inf when M is empty and Y is not), and the outer set of
a new image is M dilated lambda times, lambda the conformal quantile of the
k_i: the ceil((1 - alpha)(n + 1))-th smallest (+inf if beyond n).

* scipy: per image, binary_dilation(D, cross, border_value=0) until the
  coverage is reached (the reference implementation's loop);
* confseg: one call, Calibrator(outer="morphological:footprint=face:
  threshold=T", outer_tolerance=1 - tau).statistics(stack, truths): the
  tolerance statistic gamma_i is the (floor((1 - tau) |Y_i|) + 1)-th
  largest -f over Y_i, f the signed steps, i.e. minus the ceil(tau |Y_i|)-th
  smallest dilation count (k_i = max(0, gamma_i)). With a tolerance the
  calibrator does not transform the image: a wavefront from M stops at the
  level where enough of Y is covered (or, when M already covers enough, at
  the erosion that uncovers too much), so its cost is the band visited.
  tau = 1 is the crate's containment statistic, which needs every voxel's
  count (the full transform). No transformed stack reaches Python.

Both must give identical k_i and lambda (checked, every round); the two are
run interleaved, one after the other in each round, and the script prints
their median times and the ratio (min / median / max over the rounds), for
each tau asked (default 0.99 and 1).

Data: the real polyp masks of ../shared/data/polyps (next to the repository,
or --data DIR) when present: the first n images outside the learning set,
the true masks and PraNet's predicted outer boxes {b_O >= 0} (the only
predictions stored with the data), upsampled by nearest neighbour from
50x50 to size x size. Otherwise (or with --synthetic) confseg.synthetic
logits and masks at that size, predicted mask {logit > 0}.

    python3 scripts/bench_morphology.py [--n 250] [--size 352] [--tau 0.99 1] [--alpha 0.1] [--rounds 5]

Needs the confseg package (scripts/test.sh leaves one in
target/python-venv) and scipy.
"""

import argparse
import math
import pathlib
import statistics
import time

import numpy as np
from scipy import ndimage

import confseg

REPO = pathlib.Path(__file__).resolve().parents[1]
CROSS = ndimage.generate_binary_structure(2, 1)


def polyps(path, n, size):
    """(scores, truths, threshold): the upsampled outer box scores and masks."""
    masks = np.load(path / "masks.npy")
    outer = np.load(path / "box_outer_scores.npy")
    learning = set(np.load(path / "learning_idx.npy").tolist())
    keep = [i for i in range(masks.shape[0]) if i not in learning][:n]
    rows = np.arange(size) * masks.shape[1] // size
    cols = np.arange(size) * masks.shape[2] // size
    up = np.ix_(keep, rows, cols)
    # b_O is an integer chessboard distance, +inf where nothing was predicted:
    # the predicted boxes are {b_O >= 0} = {b_O > -0.5}
    return outer[up].astype(np.float32), masks[up].astype(bool), -0.5


def synthetic(n, size):
    s, m = confseg.synthetic((size, size), n, seed=7)
    return s.astype(np.float32), m.astype(bool), 0.0


def needed(truth, tau):
    """Voxels of Y to cover, the same integer for both methods."""
    return math.ceil(tau * int(truth.sum()))


def k_scipy(pred, truth, tau):
    need = needed(truth, tau)
    if need == 0:
        return 0.0
    if not pred.any():
        return math.inf
    d, k = pred, 0
    while np.count_nonzero(d & truth) < need:
        d = ndimage.binary_dilation(d, CROSS, border_value=0)
        k += 1
    return float(k)


def k_confseg(f, truth, tau):
    need = needed(truth, tau)
    if need == 0:
        return 0.0
    # the dilations voxel v needs are max(0, -f(v)) (0 inside M): k_i is the
    # need-th smallest over Y, i.e. minus the need-th largest f, at least 0
    vals = f[truth]
    m = vals.size - need
    return max(0.0, -float(np.partition(vals, m)[m]))


def conformal(ks, alpha):
    n = len(ks)
    k = math.ceil((1 - alpha) * (n + 1))
    return math.inf if k > n else float(np.sort(ks)[k - 1])


def run_scipy(scores, truths, threshold, tau, alpha):
    preds = scores > threshold
    ks = np.array([k_scipy(p, y, tau) for p, y in zip(preds, truths)])
    return ks, conformal(ks, alpha)


def run_confseg(scores, truths, threshold, tau, alpha, transformed=False):
    name = f"morphological:footprint=face:threshold={threshold}"
    if tau == 1:
        # whole masks: the library's own calibration statistic, gamma_i = max over Y of -f
        cal = confseg.Calibrator(outer=name, ndim=2)
        ks = np.maximum(cal.statistics(scores, truths).gamma, 0.0)
    elif transformed:
        f = confseg.transform(scores, name, ndim=2)
        ks = np.array([k_confseg(fi, y, tau) for fi, y in zip(f, truths)])
    else:
        # the tolerance statistic in the same pass: the (floor(eps |Y|) + 1)-th
        # largest dilation count over Y, eps = 1 - tau as written (0.01)
        cal = confseg.Calibrator(outer=name, ndim=2, outer_tolerance=f"{1 - tau:.12g}")
        ks = np.maximum(cal.statistics(scores, truths).gamma, 0.0)
    return ks, conformal(ks, alpha)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=250)
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--tau", type=float, nargs="+", default=[0.99, 1.0])
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "polyps")
    ap.add_argument("--synthetic", action="store_true", help="synthetic data even if the polyps are present")
    args = ap.parse_args()

    if not args.synthetic and (args.data / "masks.npy").exists():
        scores, truths, threshold = polyps(args.data, args.n, args.size)
        source = f"polyp masks and predicted outer boxes from {args.data}, upsampled"
    else:
        scores, truths, threshold = synthetic(args.n, args.size)
        source = "confseg.synthetic"
    print(f"data: {scores.shape[0]} images of {scores.shape[1]}x{scores.shape[2]} ({source})")
    print(f"ConSeMa outer set: cross footprint, alpha = {args.alpha}; {args.rounds} interleaved rounds")
    print("times: median over rounds; ratio scipy / confseg: min / median / max over rounds")

    for tau in args.tau:
        times = {"scipy": [], "confseg": []}
        ratios = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            k_c, lam_c = run_confseg(scores, truths, threshold, tau, args.alpha)
            times["confseg"].append(time.perf_counter() - t)
            t = time.perf_counter()
            k_s, lam_s = run_scipy(scores, truths, threshold, tau, args.alpha)
            times["scipy"].append(time.perf_counter() - t)
            ratios.append(times["scipy"][-1] / times["confseg"][-1])
            assert np.array_equal(k_c, k_s), np.flatnonzero(k_c != k_s)[:10]
            assert lam_c == lam_s, (lam_c, lam_s)
        finite = k_s[np.isfinite(k_s)]
        print(f"tau = {tau}: identical per-image dilation counts (median {np.median(finite):g}, "
              f"max {finite.max():g}, {np.count_nonzero(~np.isfinite(k_s))} infinite), lambda = {lam_s:g}")
        print(f"  scipy iterated binary_dilation: {statistics.median(times['scipy']):7.3f} s")
        print(f"  confseg morphological:         {statistics.median(times['confseg']):7.3f} s")
        print(f"  ratio: {min(ratios):.1f} / {statistics.median(ratios):.1f} / {max(ratios):.1f}")


if __name__ == "__main__":
    main()
