#!/usr/bin/env python3
"""Time confseg's spatial transforms against scipy.ndimage on the same arrays,
in one run, on one core, and print ratios.

    pip install numpy scipy
    python3 scripts/compare_scipy.py            # builds the example first
    python3 scripts/compare_scipy.py --rounds 5 --cpu 1

The Rust side is `examples/bench_transforms.rs`; both sides build the same
deterministic volumes (a union of spheres with integer centres and radii
from a fixed LCG, and integer-phase scores), so the arrays are identical bit
for bit. Rounds alternate between the two sides and the best time of each
is kept, which keeps the ratios meaningful on a busy machine.

Compared:
  * signed distance: confseg's midpoint transform (one call) and its
    voxel-centre transform against scipy's signed EDT, which needs two calls:
    distance_transform_edt(mask) - distance_transform_edt(~mask);
  * Gaussian smoothing: gaussian_filter(x, sigma=2, mode='reflect', truncate=4).
Checksums (sums of finite values) of the voxel-centre distance and of the
smoothed image must agree with scipy's; the script fails if they do not.
Linear scaling: confseg's midpoint distance per voxel at 256^3 vs 64^3.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
from scipy import ndimage

ROOT = pathlib.Path(__file__).resolve().parent.parent


def mask(shape):
    """Same spheres as examples/bench_transforms.rs."""
    state = 12345

    def nxt(m):
        nonlocal state
        state = ((state * 6364136223846793005 + 1442695040888963407) % 2**64) % 2**63
        return (state >> 33) % m

    min_len = min(shape)
    spheres = []
    for _ in range(12):
        c = [nxt(n) for n in shape]
        r = min_len // 16 + nxt(min_len // 6 + 1)
        spheres.append((c, r))
    grids = np.indices(shape, dtype=np.int64)
    out = np.zeros(shape, dtype=bool)
    for c, r in spheres:
        d2 = sum((grids[j] - c[j]) ** 2 for j in range(len(shape)))
        out |= d2 <= r * r
    return out


def scores(shape):
    grids = np.indices(shape, dtype=np.int64)
    v = np.zeros(shape)
    for j in range(len(shape)):
        v += ((grids[j] * (j + 3) % 17) - 8) / 8.0
    return v


def best_time(f, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def finite_sum(a):
    a = np.asarray(a, dtype=np.float64)
    return float(a[np.isfinite(a)].sum())


TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def run_rust(shapes):
    exe = TARGET / "release" / "examples" / "bench_transforms"
    args = [str(exe)] + ["x".join(map(str, s)) for s in shapes]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def run_scipy(shape, repeats):
    m = mask(shape)
    x = scores(shape)
    n = m.size
    res = {}
    t, d = best_time(
        lambda: ndimage.distance_transform_edt(m) - ndimage.distance_transform_edt(~m), repeats
    )
    res["signed_edt_f64"] = (t * 1e9 / n, finite_sum(d))
    t, g = best_time(lambda: ndimage.gaussian_filter(x, 2.0, mode="reflect", truncate=4.0), repeats)
    res["gaussian_sigma2_f64"] = (t * 1e9 / n, finite_sum(g))
    x32 = x.astype(np.float32)
    t, g = best_time(lambda: ndimage.gaussian_filter(x32, 2.0, mode="reflect", truncate=4.0), repeats)
    res["gaussian_sigma2_f32"] = (t * 1e9 / n, finite_sum(g))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (best of all is kept)")
    ap.add_argument("--repeats", type=int, default=3, help="scipy repeats per round")
    ap.add_argument("--cpu", type=int, default=None, help="pin both sides to this core")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "bench_transforms"], cwd=ROOT, check=True)

    compared = [(512, 512), (128, 128, 128)]
    scaling = [(64, 64, 64), (256, 256, 256)]
    rust = {}
    sci = {}
    for r in range(args.rounds):
        for rec in run_rust(compared + (scaling if r == 0 else [])):
            key = (rec["case"], rec["shape"])
            prev = rust.get(key)
            if prev is None or rec["ns_per_voxel"] < prev["ns_per_voxel"]:
                rust[key] = rec
        for shape in compared:
            label = "x".join(map(str, shape))
            for case, (ns, check) in run_scipy(shape, args.repeats).items():
                key = (case, label)
                if key not in sci or ns < sci[key][0]:
                    sci[key] = (ns, check)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    ok = True
    print(f"{'case':<44}{'confseg ns/vox':>16}{'scipy ns/vox':>14}{'speed-up':>10}")
    for shape in compared:
        label = "x".join(map(str, shape))
        edt_ns, edt_check = sci[("signed_edt_f64", label)]
        for case in ["distance_midpoint_f64", "distance_midpoint_f32", "distance_centre_f64"]:
            ours = rust[(case, label)]["ns_per_voxel"]
            print(f"{case + ' ' + label + ' vs 2x EDT':<44}{ours:>16.1f}{edt_ns:>14.1f}{edt_ns / ours:>9.1f}x")
        mine = rust[("distance_centre_f64", label)]["checksum"]
        if abs(mine - edt_check) > 1e-6 * max(1.0, abs(edt_check)):
            print(f"  CHECKSUM MISMATCH voxel-centre distance {label}: {mine} vs scipy {edt_check}")
            ok = False
        for case in ["gaussian_sigma2_f64", "gaussian_sigma2_f32"]:
            ns, check = sci[(case, label)]
            rec = rust[(case, label)]
            print(f"{case + ' ' + label:<44}{rec['ns_per_voxel']:>16.1f}{ns:>14.1f}{ns / rec['ns_per_voxel']:>9.1f}x")
            tol = 1e-9 if case.endswith("f64") else 1e-4
            if abs(rec["checksum"] - check) > tol * max(1.0, abs(check)) + tol * rec_size(label):
                print(f"  CHECKSUM MISMATCH {case} {label}: {rec['checksum']} vs scipy {check}")
                ok = False
    small = rust[("distance_midpoint_f64", "64x64x64")]["ns_per_voxel"]
    large = rust[("distance_midpoint_f64", "256x256x256")]["ns_per_voxel"]
    print(f"midpoint distance per voxel, 256^3 / 64^3: {large:.1f} / {small:.1f} = {large / small:.2f}")
    if not ok:
        sys.exit(1)


def rec_size(label):
    n = 1
    for s in label.split("x"):
        n *= int(s)
    return n


if __name__ == "__main__":
    main()
