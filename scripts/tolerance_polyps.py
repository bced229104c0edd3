#!/usr/bin/env python3
"""Outer tolerance events on the real polyp data (../shared/data/polyps):
the outer threshold and the mean |O|/|Y| at alpha = 0.1 for the coverage
ratios tau = 1 (containment), 0.999, 0.99 and 0.9 (`--outer-tolerance
1 - tau`), with the bounding-box scores b_O of the paper as f_O.

* the threshold: `confseg calibrate` on the 1500 images outside the
  learning set;
* coverage and |O|/|Y|: `confseg validate` over repeated splits of the same
  images (n_cal = 1000), counting the tolerance event on each test image.

Needs a release build (`cargo build --release --features cli`).

    python3 scripts/tolerance_polyps.py [--data ../shared/data/polyps] [--repeats 500]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "target", "release", "confseg")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "polyps"))
    ap.add_argument("--repeats", type=int, default=500)
    args = ap.parse_args()
    d = lambda n: os.path.join(args.data, n)
    if not os.path.exists(d("masks.npy")):
        sys.exit(f"no polyp data in {args.data}")
    if not os.path.exists(CLI):
        sys.exit(f"{CLI} not found: cargo build --release --features cli")
    files = ["--inner-scores", d("box_inner_scores.npy"), "--outer-scores", d("box_outer_scores.npy"),
             "--masks", d("masks.npy"), "--exclude", d("learning_idx.npy"), "--alpha", "0.1"]
    out = os.path.join(tempfile.mkdtemp(), "cal.json")
    print(f"{'tau':>6} {'outer tolerance':>16} {'lambda_O':>9} {'mean |O|/|Y|':>13} {'event held':>11}")
    for tau, eps in [("1", "0"), ("0.999", "0.001"), ("0.99", "0.01"), ("0.9", "0.1")]:
        subprocess.run([CLI, "calibrate", *files, "--outer-tolerance", eps, "-o", out], check=True,
                       capture_output=True)
        with open(out) as f:
            lam = json.load(f)["outer"]["threshold"]
        v = subprocess.run([CLI, "validate", *files, "--outer-tolerance", eps, "--n-cal", "1000", "--repeats",
                            str(args.repeats), "--geometry-splits", "0", "--json"], check=True,
                           capture_output=True, text=True)
        r = json.loads(v.stdout)[0]
        print(f"{tau:>6} {eps:>16} {lam:>9} {r['efficiency']['outer_size_ratio']:>13.3f} "
              f"{r['outer_coverage']:>11.3f}")


if __name__ == "__main__":
    main()
