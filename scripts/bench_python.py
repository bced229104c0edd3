#!/usr/bin/env python3
"""Benchmark of the Python package (not a timed test).

On 300 x 352^2 float32 score images with bool masks already in memory,
`Calibrator.statistics` + `fit` (identity transforms, max mode) from Python
against

* the equivalent NumPy code: masked maxima per image and the exact
  conformal order statistic (np.partition), without NaN checks;
* the Rust library on the same data (examples/bench_stack.rs:
  `calibrate_stack` + `fit` on the arrays in memory).

The three are run interleaved, one after the other in each repeat; the
ratios are reported as min / median / max over the repeats. Targets: at
least 5x faster than NumPy, within 10% of the library.

    python3 scripts/bench_python.py [--repeats 15] [--n 300] [--size 352]

Needs the package installed (scripts/test.sh leaves one in
target/python-venv) and builds the Rust example with cargo.
"""

import argparse
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import confseg

REPO = pathlib.Path(__file__).resolve().parents[1]


def numpy_fit(s, m, alpha):
    """tau_i, gamma_i by masked maxima; lambda = the k-th smallest max(tau, gamma)."""
    n = s.shape[0]
    tau = np.where(m, -np.inf, s).max(axis=(1, 2))
    gamma = np.where(m, -s, -np.inf).max(axis=(1, 2))
    joint = np.maximum(tau, gamma)
    k = math.ceil((1 - alpha) * (n + 1))
    return np.partition(joint, k - 1)[k - 1] if k <= n else math.inf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=352)
    args = ap.parse_args()

    s, m = confseg.synthetic((args.size, args.size), args.n, seed=1)
    s = s.astype(np.float32)
    print(f"data: {s.shape} {s.dtype} scores, bool masks ({s.nbytes / 1e6:.0f} MB + {m.nbytes / 1e6:.0f} MB)")

    subprocess.run(["cargo", "build", "--release", "-q", "--features", "npy,rayon", "--example", "bench_stack"],
                   cwd=REPO, check=True)
    rust = REPO / "target" / "release" / "examples" / "bench_stack"
    tmp = pathlib.Path(tempfile.mkdtemp())
    np.save(tmp / "s.npy", s)
    np.save(tmp / "m.npy", m)

    cal = confseg.Calibrator()
    want = cal.fit(cal.statistics(s, m), alpha=0.1, mode="max").lambda_inner
    assert numpy_fit(s, m, 0.1) == want

    times = {"python": [], "numpy": [], "rust": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        lam = cal.fit(cal.statistics(s, m), alpha=0.1, mode="max").lambda_inner
        times["python"].append(time.perf_counter() - t)
        assert lam == want
        t = time.perf_counter()
        assert numpy_fit(s, m, 0.1) == want
        times["numpy"].append(time.perf_counter() - t)
        # one library run per repeat: a warm-up, then the timed one (in memory)
        out = subprocess.run([str(rust), tmp / "s.npy", tmp / "m.npy", "2"], capture_output=True, text=True,
                             check=True).stdout.split("\n")[1].split()
        assert float(out[1]) == want
        times["rust"].append(float(out[0]))

    def show(name, xs):
        print(f"{name:>8}: min {min(xs) * 1e3:8.1f} ms  median {statistics.median(xs) * 1e3:8.1f} ms  "
              f"max {max(xs) * 1e3:8.1f} ms")

    for k, v in times.items():
        show(k, v)
    vs_numpy = [a / b for a, b in zip(times["numpy"], times["python"])]
    vs_rust = [a / b for a, b in zip(times["python"], times["rust"])]
    print(f"NumPy / Python (speed-up, target >= 5): min {min(vs_numpy):.1f}  median "
          f"{statistics.median(vs_numpy):.1f}  max {max(vs_numpy):.1f}")
    print(f"Python / library (overhead, target <= 1.10): min {min(vs_rust):.3f}  median "
          f"{statistics.median(vs_rust):.3f}  max {max(vs_rust):.3f}")
    print(f"(rayon threads: {os.environ.get('RAYON_NUM_THREADS', os.cpu_count())}; NumPy single-threaded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
