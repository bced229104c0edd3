#!/usr/bin/env python3
"""End-to-end `confseg calibrate` against the NumPy a user would write.

Generates score/mask stacks (float32 scores, uint8 masks), then runs, in
one interleaved loop with repeats,

* the CLI (`target/release/confseg calibrate ...`), and
* an equivalent NumPy script: a per-image loop over `np.load(...,
  mmap_mode="r")` computing the masked maxima (tau over the background,
  gamma = max of -f_O over the object) and the exact conformal order
  statistic k = ceil((1 - alpha)(n + 1)) with `np.partition`,

checks that the thresholds are identical, and prints the time ratios
(min / median / max over repeats) and the peak RSS of both
(`/usr/bin/time -v`, "Maximum resident set size").

Cases (the targets of the streamed-images issue):

1. 300 x 352^2, `--inner-scores S.npy --outer-scores S.npy` (one file named twice);
2. 100 x 128^3, separate inner and outer files;
3. 100 x 128^3, `--inner identity --outer distance` against NumPy + the
   `edt` package's signed distance (`edt.sdf`, the voxel-centre
   convention; confseg's `distance-centre` is run too and its thresholds
   are compared with edt's up to float32 rounding);
4. peak RSS for 100 and 200 volumes of 128^3 (the same files, `--indices`);
6. (--tolerance) 100 x 128^3, separate inner/outer files: containment
   against `--inner-tolerance 5vox --outer-tolerance 0.01` (the
   statistics become the 6th largest f_I over the background and the
   (floor(0.01 |Y|) + 1)-th largest -f_O over the object), interleaved; the
   tolerance thresholds are checked against NumPy (`np.partition`), and the
   ratio tolerance / containment is printed (target: at most 1.5);
5. (--nifti) 100 per-subject `.nii.gz` volumes of 128^3 (float32 scores,
   uint8 labels, each subject with its own spacing in its header), `--inner
   identity --outer distance-centre` on the folder against a Python loop with
   nibabel + NumPy + `edt.sdf` (anisotropic), and peak RSS for 50 and 100
   subjects.

Needs: numpy, edt (`pip install numpy edt`; nibabel for --nifti) and a release build
(`cargo build --release --features cli`). Data go to --dir (default
/tmp/confseg-bench, about 4.5 GB for the full run; --quick uses small
sizes to check the script).
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "target", "release", "confseg")

NUMPY_SCRIPT = r'''
import math, sys, json
import numpy as np
inner, outer, masks, alpha_i, alpha_o, indices, transform = sys.argv[1:8]
I = np.load(inner, mmap_mode="r")
O = I if outer == inner else np.load(outer, mmap_mode="r")
M = np.load(masks, mmap_mode="r")
idx = range(I.shape[0]) if indices == "all" else range(int(indices))
if transform == "edt":
    import edt
tau, gamma = [], []
for i in idx:
    m = np.asarray(M[i]).astype(bool)
    fi = np.asarray(I[i])
    fo = edt.sdf(fi > 0) if transform == "edt" else np.asarray(O[i])
    bg, ob = ~m, m
    tau.append(float(fi[bg].max()) if bg.any() else -math.inf)
    gamma.append(float((-fo[ob]).max()) if ob.any() else -math.inf)
def q(z, a):
    n = len(z); k = math.ceil((1 - a) * (n + 1) - 1e-9)
    return math.inf if k > n else float(np.partition(np.array(z), k - 1)[k - 1])
print(json.dumps({"inner": q(tau, float(alpha_i)), "outer": q(gamma, float(alpha_o))}))
'''


TOLERANCE_SCRIPT = r'''
import math, sys, json
import numpy as np
inner, outer, masks, alpha_i, alpha_o, count = sys.argv[1:7]
I, O, M = (np.load(f, mmap_mode="r") for f in (inner, outer, masks))
def after(v, m):  # the (m+1)-th largest, -inf if there are at most m
    return float(-np.partition(-v, m)[m]) if len(v) > m else -math.inf
tau, gamma = [], []
for i in range(int(count)):
    m = np.asarray(M[i]).astype(bool)
    tau.append(after(np.asarray(I[i])[~m], 5))
    gamma.append(after(-np.asarray(O[i])[m], int(m.sum()) // 100))
def q(z, a):
    n = len(z); k = math.ceil((1 - a) * (n + 1) - 1e-9)
    return math.inf if k > n else float(np.partition(np.array(z), k - 1)[k - 1])
print(json.dumps({"inner": q(tau, float(alpha_i)), "outer": q(gamma, float(alpha_o))}))
'''


NIFTI_SCRIPT = r'''
import glob, math, sys, json
import numpy as np, nibabel as nib, edt
folder, pattern, alpha_i, alpha_o = sys.argv[1:5]
tau, gamma = [], []
for f in sorted(glob.glob(f"{folder}/{pattern}_prob.nii.gz")):
    img = nib.load(f)
    fi = np.asarray(img.dataobj, dtype=np.float32)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    m = np.asarray(nib.load(f.replace("_prob", "_seg")).dataobj) > 0
    fo = edt.sdf(fi > 0, anisotropy=spacing)
    bg, ob = ~m, m
    tau.append(float(fi[bg].max()) if bg.any() else -math.inf)
    gamma.append(float((-fo[ob]).max()) if ob.any() else -math.inf)
def q(z, a):
    n = len(z); k = math.ceil((1 - a) * (n + 1) - 1e-9)
    return math.inf if k > n else float(np.partition(np.array(z), k - 1)[k - 1])
print(json.dumps({"inner": q(tau, float(alpha_i)), "outer": q(gamma, float(alpha_o))}))
'''


def write_cohort(folder, s3, m3, n):
    """Subjects sub-000 .. of the 3-D stacks as .nii.gz, spacings varying by subject."""
    import nibabel as nib

    os.makedirs(folder, exist_ok=True)
    S, M = np.load(s3, mmap_mode="r"), np.load(m3, mmap_mode="r")
    spacings = [(0.8, 0.8, 2.5), (0.7, 0.7, 3.0), (0.9, 0.9, 2.0), (1.0, 1.0, 1.0)]
    for i in range(n):
        affine = np.diag([*spacings[i % len(spacings)], 1.0])
        nib.save(nib.Nifti1Image(np.asarray(S[i]), affine), os.path.join(folder, f"sub-{i:03d}_prob.nii.gz"))
        nib.save(nib.Nifti1Image(np.asarray(M[i]), affine), os.path.join(folder, f"sub-{i:03d}_seg.nii.gz"))


def generate(path_s, path_m, n, shape, seed, path_o=None):
    """Smooth blob logits (float32) with noise, and masks (uint8)."""
    rng = np.random.default_rng(seed)
    s = np.lib.format.open_memmap(path_s, mode="w+", dtype=np.float32, shape=(n, *shape))
    o = None if path_o is None else np.lib.format.open_memmap(path_o, mode="w+", dtype=np.float32, shape=(n, *shape))
    m = np.lib.format.open_memmap(path_m, mode="w+", dtype=np.uint8, shape=(n, *shape))
    grids = np.meshgrid(*[np.arange(k, dtype=np.float32) for k in shape], indexing="ij")
    for i in range(n):
        c = [rng.uniform(0.3, 0.7) * k for k in shape]
        r = rng.uniform(0.1, 0.25) * min(shape)
        d = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grids, c)))
        truth = d < r
        logits = (r - d + rng.normal(0, 2.0, size=shape).astype(np.float32)) / 2.0
        s[i] = logits
        m[i] = truth
        if o is not None:
            o[i] = logits - 0.5 * rng.normal(0, 1.0, size=shape).astype(np.float32)
    s.flush()
    m.flush()
    if o is not None:
        o.flush()


def timed(cmd):
    """(seconds, peak RSS in MiB, stdout) of a command under /usr/bin/time -v."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return dt, rss, r.stdout


def cli_thresholds(out_json):
    with open(out_json) as f:
        j = json.load(f)
    conv = lambda v: math.inf if v == "inf" else (-math.inf if v == "-inf" else float(v))
    return {"inner": conv(j["inner"]["threshold"]), "outer": conv(j["outer"]["threshold"])}


def spread(v):
    return f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}"


def run_case(name, cli_cmd, np_cmd, out_json, repeats, compare=None):
    """Interleave CLI and NumPy runs; check thresholds; report ratios."""
    ratios, t_cli, t_np, rss_cli, rss_np = [], [], [], [], []
    want = got = None
    for _ in range(repeats):
        a, ra, _ = timed(cli_cmd)
        b, rb, out = timed(np_cmd)
        got, want = cli_thresholds(out_json), json.loads(out)
        t_cli.append(a)
        t_np.append(b)
        rss_cli.append(ra)
        rss_np.append(rb)
        ratios.append(b / a)
    ok = compare(got, want) if compare else got == want
    print(f"\n{name}")
    print(f"  thresholds confseg {got}  numpy {want}  -> {'identical' if ok else 'DIFFERENT'}")
    print(f"  time (s, min/median/max)  confseg {spread(t_cli)}  numpy {spread(t_np)}")
    print(f"  speed-up numpy/confseg    {spread(ratios)}")
    print(f"  peak RSS (MiB)            confseg {max(rss_cli):.0f}  numpy {max(rss_np):.0f}")
    if not ok:
        sys.exit("thresholds differ")
    return t_cli, rss_cli


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "confseg-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--skip-distance", action="store_true")
    ap.add_argument("--nifti", action="store_true", help="case 5 only: a per-subject .nii.gz cohort (needs nibabel)")
    ap.add_argument("--tolerance", action="store_true", help="case 6 only: the cost of tolerance events")
    args = ap.parse_args()
    if not os.path.exists(CLI):
        sys.exit(f"{CLI} not found: cargo build --release --features cli")
    os.makedirs(args.dir, exist_ok=True)
    p = lambda n: os.path.join(args.dir, n)
    n2, side2, n3, side3 = (30, 64, 10, 32) if args.quick else (300, 352, 200, 128)
    alpha, (ai, ao) = "0.1", ("0.02", "0.08")
    levels = ["--alpha", alpha, "--mode", "bonferroni", "--weights", "1:4"]
    py = [sys.executable, "-c", NUMPY_SCRIPT]

    if not os.path.exists(p(f"s2_{n2}_{side2}.npy")):
        print("generating 2-D data ...", flush=True)
        generate(p(f"s2_{n2}_{side2}.npy"), p(f"m2_{n2}_{side2}.npy"), n2, (side2, side2), 1)
    if not os.path.exists(p(f"o3_{n3}_{side3}.npy")):
        print("generating 3-D data ...", flush=True)
        generate(p(f"s3_{n3}_{side3}.npy"), p(f"m3_{n3}_{side3}.npy"), n3, (side3,) * 3, 2, p(f"o3_{n3}_{side3}.npy"))
    s2, m2 = p(f"s2_{n2}_{side2}.npy"), p(f"m2_{n2}_{side2}.npy")
    s3, m3, o3 = p(f"s3_{n3}_{side3}.npy"), p(f"m3_{n3}_{side3}.npy"), p(f"o3_{n3}_{side3}.npy")
    half = n3 // 2
    idx = p(f"first_{half}.npy")
    np.save(idx, np.arange(half, dtype=np.int64))
    out = p("cal.json")

    print(f"confseg {CLI}; numpy {np.__version__}; {os.cpu_count()} CPUs; {args.repeats} repeats, interleaved")
    if args.nifti:
        nifti_case(p("cohort"), s3, m3, half, ai, ao, levels, out, args.repeats)
        return
    if args.tolerance:
        tolerance_case(s3, o3, m3, idx, half, ai, ao, levels, out, args.repeats)
        return
    run_case(
        f"1. {n2} x {side2}^2 float32, inner = outer file (one file named twice)",
        [CLI, "calibrate", "--masks", m2, "--inner-scores", s2, "--outer-scores", s2, *levels, "-o", out],
        py + [s2, s2, m2, ai, ao, "all", "none"],
        out,
        args.repeats,
    )
    size3 = os.path.getsize(s3) * half / n3 / 2**20
    t100, rss100 = run_case(
        f"2. {half} x {side3}^3 float32 scores ({size3:.0f} MiB per file), separate inner/outer files, uint8 masks",
        [CLI, "calibrate", "--masks", m3, "--inner-scores", s3, "--outer-scores", o3, "--indices", idx, *levels, "-o", out],
        py + [s3, o3, m3, ai, ao, str(half), "none"],
        out,
        args.repeats,
    )
    _, rss200, _ = timed([CLI, "calibrate", "--masks", m3, "--inner-scores", s3, "--outer-scores", o3, *levels, "-o", out])
    print(
        f"\n4. peak RSS: {half} volumes {max(rss100):.0f} MiB ({max(rss100) / size3:.2f} of one score file); "
        f"{n3} volumes {rss200:.0f} MiB (growth {100 * (rss200 / max(rss100) - 1):+.1f}%)"
    )
    if not args.skip_distance:
        try:
            import edt  # noqa: F401
        except ImportError:
            sys.exit("pip install edt for case 3")
        close = lambda a, b: all(math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-6) for k in a)
        run_case(
            f"3a. {half} x {side3}^3: --inner identity --outer distance-centre vs numpy + edt.sdf (same convention)",
            [CLI, "calibrate", "--masks", m3, "--scores", s3, "--indices", idx, "--inner", "identity",
             "--outer", "distance-centre", *levels, "-o", out],
            py + [s3, s3, m3, ai, ao, str(half), "edt"],
            out,
            args.repeats,
            compare=close,
        )
        t_mid = []
        for _ in range(args.repeats):
            a, _, _ = timed([CLI, "calibrate", "--masks", m3, "--scores", s3, "--indices", idx, "--inner", "identity",
                             "--outer", "distance", *levels, "-o", out])
            b, _, _ = timed(py + [s3, s3, m3, ai, ao, str(half), "edt"])
            t_mid.append(b / a)
        print(f"3b. --outer distance (the paper's midpoint convention) vs numpy + edt.sdf: speed-up {spread(t_mid)}")


def tolerance_case(s3, o3, m3, idx, n, ai, ao, levels, out, repeats):
    base = [CLI, "calibrate", "--masks", m3, "--inner-scores", s3, "--outer-scores", o3, "--indices", idx, *levels]
    tolerant = base + ["--inner-tolerance", "5vox", "--outer-tolerance", "0.01", "-o", out]
    t_cont, _ = run_case(
        f"6. {n} x 128^3: --inner-tolerance 5vox --outer-tolerance 0.01 vs numpy (np.partition per image)",
        tolerant,
        [sys.executable, "-c", TOLERANCE_SCRIPT, s3, o3, m3, ai, ao, str(n)],
        out,
        repeats,
    )
    ratios = []
    for _ in range(repeats):
        a, _, _ = timed(base + ["-o", out])
        b, _, _ = timed(tolerant)
        ratios.append(b / a)
    print(f"   tolerance / containment time (same files, interleaved): {spread(ratios)} (target <= 1.5)")


def nifti_case(folder, s3, m3, n, ai, ao, levels, out, repeats):
    if not os.path.exists(os.path.join(folder, f"sub-{n - 1:03d}_seg.nii.gz")):
        print(f"writing {n} subjects to {folder} ...", flush=True)
        write_cohort(folder, s3, m3, n)
    close = lambda a, b: all(math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-6) for k in a)
    cli = lambda pattern: [CLI, "calibrate", "--scores", f"{folder}/{pattern}_prob.nii.gz",
                           "--masks", f"{folder}/{pattern}_seg.nii.gz", "--scores-suffix", "_prob",
                           "--masks-suffix", "_seg", "--inner", "identity", "--outer", "distance-centre",
                           *levels, "-o", out]
    _, rss = run_case(
        f"5. {n} per-subject .nii.gz of 128^3 (own spacings): identity / distance-centre vs nibabel + numpy + edt.sdf",
        cli("sub-*"),
        [sys.executable, "-c", NIFTI_SCRIPT, folder, "sub-*", ai, ao],
        out,
        repeats,
        compare=close,
    )
    half = f"sub-0[0-{n // 20 - 1}]?" if n % 20 == 0 and n <= 200 else None
    if half:
        _, rss_half, _ = timed(cli(half))
        print(f"   peak RSS: {n // 2} subjects {rss_half:.0f} MiB, {n} subjects {max(rss):.0f} MiB")


if __name__ == "__main__":
    main()
