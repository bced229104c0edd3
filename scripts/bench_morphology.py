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
* confseg: one call, confseg.transform(stack, "morphological:footprint=face:
  threshold=T"), which gives each voxel of Y its dilation count
  max(0, -f); k_i is the ceil(tau |Y_i|)-th smallest of them (np.partition).
  With --tau 1 (whole masks, the crate's own guarantee) k_i = max(0, gamma_i)
  from Calibrator.statistics, without the transformed stack in Python.

Both must give identical k_i and lambda (checked); the script prints both
times and the ratio (best of --repeats for each).

Data: the real polyp masks of ../shared/data/polyps (next to the repository,
or --data DIR) when present: the first n images outside the learning set,
the true masks and PraNet's predicted outer boxes {b_O >= 0} (the only
predictions stored with the data), upsampled by nearest neighbour from
50x50 to size x size. Otherwise (or with --synthetic) confseg.synthetic
logits and masks at that size, predicted mask {logit > 0}.

    python3 scripts/bench_morphology.py [--n 250] [--size 352] [--tau 0.99] [--alpha 0.1]

Needs the confseg package (scripts/test.sh leaves one in
target/python-venv) and scipy.
"""

import argparse
import math
import pathlib
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
    steps = np.maximum(-f[truth], 0.0)  # 0 inside M, k outside
    return float(np.partition(steps, need - 1)[need - 1])


def conformal(ks, alpha):
    n = len(ks)
    k = math.ceil((1 - alpha) * (n + 1))
    return math.inf if k > n else float(np.sort(ks)[k - 1])


def run_scipy(scores, truths, threshold, tau, alpha):
    preds = scores > threshold
    ks = np.array([k_scipy(p, y, tau) for p, y in zip(preds, truths)])
    return ks, conformal(ks, alpha)


def run_confseg(scores, truths, threshold, tau, alpha):
    name = f"morphological:footprint=face:threshold={threshold}"
    if tau == 1:
        # whole masks: the library's own calibration statistic, gamma_i = max over Y of -f
        cal = confseg.Calibrator(outer=name, ndim=2)
        ks = np.maximum(cal.statistics(scores, truths).gamma, 0.0)
    else:
        f = confseg.transform(scores, name, ndim=2)
        ks = np.array([k_confseg(fi, y, tau) for fi, y in zip(f, truths)])
    return ks, conformal(ks, alpha)


def best_of(repeats, fn, *args):
    best, out = math.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=250)
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--tau", type=float, default=0.99)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
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
    print(f"ConSeMa outer set: cross footprint, tau = {args.tau}, alpha = {args.alpha}")

    t_conf, (k_c, lam_c) = best_of(args.repeats, run_confseg, scores, truths, threshold, args.tau, args.alpha)
    t_scipy, (k_s, lam_s) = best_of(args.repeats, run_scipy, scores, truths, threshold, args.tau, args.alpha)
    assert np.array_equal(k_c, k_s), np.flatnonzero(k_c != k_s)[:10]
    assert lam_c == lam_s, (lam_c, lam_s)
    finite = k_s[np.isfinite(k_s)]
    print(f"identical per-image dilation counts (median {np.median(finite):g}, max {finite.max():g}, "
          f"{np.count_nonzero(~np.isfinite(k_s))} infinite) and threshold lambda = {lam_s:g}")
    print(f"scipy iterated binary_dilation: {t_scipy:8.3f} s")
    print(f"confseg morphological:         {t_conf:8.3f} s")
    print(f"ratio: {t_scipy / t_conf:.1f}x (best of {args.repeats} each)")


if __name__ == "__main__":
    main()
