#!/usr/bin/env python3
"""Time confseg's spatial transforms against the tools a user would pick
instead -- scipy.ndimage, edt (seung-lab) and SimpleITK -- in one
interleaved run, check that the values agree, and print ratios with their
spread.

    pip install numpy scipy edt SimpleITK
    python3 scripts/compare_peers.py                    # builds the example first
    python3 scripts/compare_peers.py --rounds 7 --threads 1 2 --stack 16

The Rust side is `examples/bench_transforms.rs` (built with the `rayon`
feature; its thread count is set with RAYON_NUM_THREADS). Both sides build
the same deterministic volumes (a union of spheres from a fixed LCG and
integer-phase scores), so the inputs are identical bit for bit.

Rounds alternate between confseg and the peers, for each thread count in
turn; each round times every case `--repeats` times and keeps its best.
A ratio is peer time / confseg time (above 1: confseg is faster), one per
round; the table shows min / median / max over the rounds.

What is compared with what (and why):
  * signed distance. confseg's transform is one call; scipy needs two
    (distance_transform_edt(m) - distance_transform_edt(~m)), edt one
    (edt.sdf, float32 output), SimpleITK one (SignedMaurerDistanceMap,
    insideIsPositive, float32 output). scipy, edt and our voxel-centre
    convention measure to the nearest voxel centre on the other side and
    agree to float32 rounding; SimpleITK agrees outside the mask, and inside
    it measures to the mask's own boundary voxels, so its values there are
    1 to sqrt(ndim) smaller (checked). The paper's midpoint convention
    (confseg's default) is computed by none of them: it is timed against
    the same calls (the time a user pays for a signed distance), and its
    values are checked to be within one voxel of the voxel-centre ones.
  * Gaussian smoothing, sigma 2 voxels, truncate 4. scipy.ndimage.gaussian_filter
    (mode 'reflect') is the same filter (values equal to 1e-12 in f64).
    SimpleITK has no sampled-Gaussian FIR: DiscreteGaussian (variance 4,
    ITK's discrete-Gaussian kernel cut where its tail is below 1e-3, zero-flux
    Neumann boundary = scipy's 'nearest') is the like-for-like algorithm (a
    truncated separable kernel, cost growing with the width), so it is the
    one the ratio is reported against; SmoothingRecursiveGaussian (an IIR
    approximation whose cost does not depend on the width) is timed too.
    Both are checked against confseg's mode=nearest output with a tolerance
    for their different kernels.
  * the stack: N images of 128^3 float32, smoothed end to end (confseg:
    every image through apply_checked, NaN checks included, into an output
    stack; scipy: gaussian_filter(stack, sigma=(0, 2, 2, 2)), which skips
    the stack axis; with --stack-sitk, SimpleITK's DiscreteGaussian image by
    image).
scipy is single-threaded; edt takes `parallel=threads`, SimpleITK
SetGlobalDefaultNumberOfThreads(threads).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
sys.path.insert(0, str(ROOT / "scripts"))
from compare_scipy import mask, scores  # noqa: E402  (the same volumes as the example)

try:
    import edt
except ImportError:  # pragma: no cover
    edt = None
try:
    import SimpleITK as sitk
except ImportError:  # pragma: no cover
    sitk = None


def label(shape):
    return "x".join(map(str, shape))


def best_of(f, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_rust(shapes, threads, repeats, dump=None):
    exe = TARGET / "release" / "examples" / "bench_transforms"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), BENCH_REPEATS=str(repeats))
    if dump:
        env["BENCH_DUMP"] = str(dump)
    out = subprocess.run([str(exe)] + [label(s) for s in shapes], check=True, capture_output=True, text=True, env=env)
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    for r in recs:
        if r["threads"] != threads:
            sys.exit(f"the example ran on {r['threads']} threads, not {threads}: build it with --features rayon")
    return {(r["case"], r["shape"]): r for r in recs}


def sitk_threads(t):
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(t)


def peers(shape, threads, repeats, keep):
    """Peer timings (ns per voxel) for one shape and thread count; outputs kept if `keep`."""
    m = mask(shape)
    n = m.size
    res, outs = {}, {}

    def timed(name, f):
        t, o = best_of(f, repeats)
        res[name] = t * 1e9 / n
        if keep:
            outs[name] = o

    if threads == 1:
        timed("scipy_signed_edt", lambda: ndimage.distance_transform_edt(m) - ndimage.distance_transform_edt(~m))
    if edt is not None:
        timed("edt_sdf", lambda: edt.sdf(m, parallel=threads))
    if sitk is not None:
        sitk_threads(threads)
        img = sitk.GetImageFromArray(m.astype(np.uint8))
        timed(
            "sitk_maurer",
            lambda: sitk.GetArrayFromImage(
                sitk.SignedMaurerDistanceMap(img, insideIsPositive=True, squaredDistance=False, useImageSpacing=True)
            ),
        )
    x = scores(shape)
    for dt, suffix in [(np.float64, "f64"), (np.float32, "f32")]:
        xd = x.astype(dt)
        if threads == 1:
            timed(f"scipy_gaussian_{suffix}", lambda: ndimage.gaussian_filter(xd, 2.0, mode="reflect", truncate=4.0))
        if sitk is not None:
            xi = sitk.GetImageFromArray(xd)
            timed(
                f"sitk_discrete_{suffix}",
                lambda: sitk.GetArrayFromImage(
                    sitk.DiscreteGaussian(xi, variance=4.0, maximumKernelWidth=64, maximumError=1e-3)
                ),
            )
            timed(
                f"sitk_recursive_{suffix}",
                lambda: sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(xi, 2.0)),
            )
    return res, outs


def stack_peers(count, threads, repeats, with_sitk):
    shape3 = (128, 128, 128)
    stack = np.stack([(scores(shape3) + i * 0.125).astype(np.float32) for i in range(count)])
    n = stack.size
    res = {}
    if threads == 1:
        t, _ = best_of(lambda: ndimage.gaussian_filter(stack, (0, 2.0, 2.0, 2.0), mode="reflect", truncate=4.0), repeats)
        res["scipy_gaussian_stack"] = t * 1e9 / n
    if sitk is not None and with_sitk:
        sitk_threads(threads)

        def run():
            out = np.empty_like(stack)
            for i in range(count):
                im = sitk.GetImageFromArray(stack[i])
                out[i] = sitk.GetArrayFromImage(
                    sitk.DiscreteGaussian(im, variance=4.0, maximumKernelWidth=64, maximumError=1e-3)
                )
            return out

        t, _ = best_of(run, repeats)
        res["sitk_discrete_stack"] = t * 1e9 / n
    return res


def load(dump, case, shape, dtype):
    return np.fromfile(dump / f"{case}_{label(shape)}.bin", dtype=dtype).reshape(shape)


def check_values(dump, outs, shape):
    """Value agreement, as documented in the module docstring. Returns a list of failures."""
    bad = []
    ndim = len(shape)

    def close(name, got, want, tol):
        err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
        print(f"  {label(shape):>12} {name:<44} max |diff| {err:.2e} (tolerance {tol:.0e})")
        if not err <= tol:
            bad.append(f"{name} {label(shape)}: {err}")

    centre64 = load(dump, "distance_centre_f64", shape, np.float64)
    centre32 = load(dump, "distance_centre_f32", shape, np.float32)
    mid64 = load(dump, "distance_midpoint_f64", shape, np.float64)
    scale = float(np.abs(centre64).max())
    if "scipy_signed_edt" in outs:
        close("voxel-centre f64 vs scipy pair", centre64, outs["scipy_signed_edt"], 1e-9 * scale)
        close("voxel-centre f32 vs scipy pair", centre32, outs["scipy_signed_edt"], 1e-6 * scale)
    if "edt_sdf" in outs:
        close("voxel-centre f64 vs edt.sdf (float32)", centre64, outs["edt_sdf"], 1e-6 * scale)
    if "sitk_maurer" in outs:
        s = outs["sitk_maurer"].astype(np.float64)
        inside = centre64 > 0
        close("voxel-centre f64 vs SITK Maurer, outside", centre64[~inside], s[~inside], 1e-6 * scale)
        gap = centre64[inside] - s[inside]
        ok = gap.size == 0 or (gap.min() >= 1 - 1e-5 and gap.max() <= np.sqrt(ndim) + 1e-5)
        print(f"  {label(shape):>12} {'SITK Maurer inside: ours - SITK in':<44} "
              f"[{gap.min() if gap.size else 0:.4f}, {gap.max() if gap.size else 0:.4f}] (expected [1, sqrt({ndim})])")
        if not ok:
            bad.append(f"SITK inside {label(shape)}")
    # midpoint: same sign as the voxel-centre distance, within one voxel of it
    same_sign = bool(np.all(np.sign(mid64) == np.sign(centre64)))
    gap = np.abs(centre64) - np.abs(mid64)
    print(f"  {label(shape):>12} {'midpoint vs voxel-centre: |centre| - |mid| in':<44} "
          f"[{gap.min():.4f}, {gap.max():.4f}], same sign: {same_sign}")
    if not (same_sign and gap.min() >= -1e-9 and gap.max() <= 1.0 + 1e-9):
        bad.append(f"midpoint vs centre {label(shape)}")
    for suffix, dt, tol in [("f64", np.float64, 1e-12), ("f32", np.float32, 1e-5)]:
        g = load(dump, f"gaussian_sigma2_{suffix}", shape, dt)
        xs = float(np.abs(scores(shape)).max())
        ref = ndimage.gaussian_filter(scores(shape).astype(dt), 2.0, mode="reflect", truncate=4.0)
        close(f"gaussian {suffix} vs scipy", g, ref, tol * xs)
        gn = load(dump, f"gaussian_nearest_{suffix}", shape, dt)
        if f"sitk_discrete_{suffix}" in outs:
            close(f"gaussian nearest {suffix} vs SITK DiscreteGaussian", gn, outs[f"sitk_discrete_{suffix}"], 0.05 * xs)
            close(f"gaussian nearest {suffix} vs SITK Recursive", gn, outs[f"sitk_recursive_{suffix}"], 0.01 * xs)
    return bad


def spread(xs):
    return f"{min(xs):5.2f} / {statistics.median(xs):5.2f} / {max(xs):5.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the spread is over these)")
    ap.add_argument("--repeats", type=int, default=3, help="calls per case per round (the best is kept)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--stack", type=int, default=16, help="images of 128^3 in the stack case (0: skip)")
    ap.add_argument("--stack-sitk", action="store_true", help="also time SimpleITK on the stack (slow)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(
            ["cargo", "build", "-j", "1", "--release", "--features", "rayon", "--example", "bench_transforms"],
            cwd=ROOT,
            check=True,
        )
    shapes = [(512, 512), (128, 128, 128)]
    stack_shape = (args.stack, 128, 128, 128)
    ours, theirs = {}, {}  # (threads, case, shape) -> list of per-round best ns/voxel
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        dump = pathlib.Path(tmp)
        for r in range(args.rounds):
            for t in args.threads:
                first = r == 0 and t == args.threads[0]
                recs = run_rust(shapes, t, args.repeats, dump if first else None)
                for (case, shp), rec in recs.items():
                    ours.setdefault((t, case, shp), []).append(rec["ns_per_voxel"])
                for shape in shapes:
                    res, outs = peers(shape, t, args.repeats, keep=first)
                    for name, ns in res.items():
                        theirs.setdefault((t, name, label(shape)), []).append(ns)
                    if first:
                        print(f"value checks ({'/'.join(sorted(outs))}):")
                        failures += check_values(dump, outs, shape)
                if args.stack:
                    stack_repeats = max(1, args.repeats - 1)
                    recs = run_rust([stack_shape], t, stack_repeats)
                    for (case, shp), rec in recs.items():
                        ours.setdefault((t, case, shp), []).append(rec["ns_per_voxel"])
                    for name, ns in stack_peers(args.stack, t, stack_repeats, args.stack_sitk).items():
                        theirs.setdefault((t, name, label(stack_shape)), []).append(ns)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    pairs = []
    for shape in shapes:
        lab = label(shape)
        for mine in ["distance_midpoint_f64", "distance_midpoint_f32", "distance_centre_f64", "distance_centre_f32"]:
            for peer in ["edt_sdf", "sitk_maurer", "scipy_signed_edt"]:
                pairs.append((mine, peer, lab))
        for suffix in ["f64", "f32"]:
            for peer in [f"scipy_gaussian_{suffix}", f"sitk_discrete_{suffix}", f"sitk_recursive_{suffix}"]:
                pairs.append((f"gaussian_sigma2_{suffix}", peer, lab))
    if args.stack:
        for peer in ["scipy_gaussian_stack", "sitk_discrete_stack"]:
            pairs.append(("gaussian_stack_f32", peer, label(stack_shape)))

    print()
    print("ratio = peer time / confseg time per round (>1: confseg faster); min / median / max over rounds")
    print(f"{'threads':>7} {'shape':>16} {'confseg case':<24} {'peer':<22} {'confseg ns/vox':>14} "
          f"{'peer ns/vox':>12} {'ratio min / med / max':>22}")
    for t in args.threads:
        for mine, peer, lab in pairs:
            a = ours.get((t, mine, lab))
            # scipy runs on one thread: compare every thread count against its 1-thread time
            b = theirs.get((t, peer, lab)) or (theirs.get((1, peer, lab)) if peer.startswith("scipy") else None)
            if not a or not b:
                continue
            ratios = [y / x for x, y in zip(a, b)]
            print(f"{t:>7} {lab:>16} {mine:<24} {peer:<22} {statistics.median(a):>14.2f} "
                  f"{statistics.median(b):>12.2f} {spread(ratios):>22}")
    if failures:
        print("VALUE MISMATCH: " + "; ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
