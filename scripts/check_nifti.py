#!/usr/bin/env python3
"""Check confseg's NIfTI reader and writer against nibabel.

    pip install numpy nibabel
    python3 scripts/check_nifti.py             # builds the example first
    python3 scripts/check_nifti.py --keep DIR  # keep the files in DIR

Not a test dependency: the crate's own tests build their files by hand.
This script builds files with nibabel (several dtypes, scl_slope/scl_inter,
sform, qform-only and pixdim-fallback affines, NIfTI-2, big-endian, gzip,
an extension, a 4-D class axis, units in metres and microns), runs
`examples/nifti_roundtrip.rs` on them, and checks with nibabel that

  * the shape is img.shape without trailing unit axes beyond the third;
  * the spacing is header.get_zooms() of the spatial axes in millimetres
    (1 for later axes);
  * the affine is img.affine;
  * the values are nibabel's: raw values times scl_slope plus scl_inter in
    float64 (sum, and a sum weighted by the row-major index, which catches a
    wrong axis order);
  * the written mask is uint8, equals (values > 0), and has the input's
    affine, zooms, sform/qform codes, NIfTI version and byte order, and no
    scaling; the written scores are float64 and equal the values.

Prints one line per file and 'N passed, N failed'; exits 1 on a mismatch.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rotation(ax, angle):
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != ax]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine(zooms, angles=(0.0, 0.0, 0.0), flip=False, offset=(0.0, 0.0, 0.0)):
    r = rotation(0, angles[0]) @ rotation(1, angles[1]) @ rotation(2, angles[2])
    z = np.diag(zooms).astype(float)
    if flip:
        z[0, 0] *= -1  # a left-handed (radiological) affine: qfac -1
    a = np.eye(4)
    a[:3, :3] = r @ z
    a[:3, 3] = offset
    return a


def build(d):
    """Write the test images into directory d; returns their paths."""
    rng = np.random.default_rng(2024)
    out = []

    def save(img, name):
        p = d / name
        nib.save(img, p)
        out.append(p)

    # uint8, sform (oblique) and a different qform: the sform wins
    data = rng.integers(0, 255, size=(5, 6, 7)).astype(np.uint8)
    img = nib.Nifti1Image(data, affine((0.8, 0.9, 2.5), (0.1, -0.2, 0.3), offset=(-90, 12.5, 40)))
    img.header.set_qform(affine((0.8, 0.9, 2.5)), code=1)
    img.header.set_sform(img.header.get_sform(), code=2)
    save(img, "u8_sform.nii")

    # int16 with scl_slope/scl_inter chosen by nibabel, qform only, gzip
    data = rng.normal(0.5, 2.0, size=(6, 5, 4))
    img = nib.Nifti1Image(data, None, dtype=np.int16)
    img.set_qform(affine((1.2, 1.1, 3.0), (0.0, 0.3, -1.0), flip=True, offset=(5, -7, 11)), code=1)
    img.set_sform(None, code=0)
    save(img, "i16_scaled_qform.nii.gz")

    # float32 class scores (x, y, z, 3), big-endian, gzip
    data = rng.normal(size=(4, 5, 3, 3)).astype(">f4")
    hdr = nib.Nifti1Header(endianness=">")
    img = nib.Nifti1Image(data, affine((2.0, 2.0, 2.0), offset=(1, 2, 3)), header=hdr)
    save(img, "f32_classes_be.nii.gz")

    # float64, NIfTI-2, sform and qform that differ
    data = rng.normal(size=(6, 5, 4))
    img = nib.Nifti2Image(data, affine((0.7, 0.7, 1.5), (0.05, 0.0, 0.2), offset=(3, 4, 5)))
    img.header.set_qform(affine((0.7, 0.7, 1.5), offset=(-1, -2, -3)), code=1)
    save(img, "f64_nifti2.nii")

    # int32, NIfTI-2, no sform nor qform (nibabel's pixdim fallback), metres, gzip
    data = rng.integers(-1000, 1000, size=(7, 4, 3)).astype(np.int32)
    img = nib.Nifti2Image(data, None)
    img.header.set_zooms((0.001, 0.0015, 0.002))
    img.header.set_xyzt_units("meter")
    save(img, "i32_nifti2_fallback.nii.gz")

    # uint16 label map (x, y, z, 1) with an extension
    data = rng.integers(0, 5, size=(7, 3, 5, 1)).astype(np.uint16)
    img = nib.Nifti1Image(data, affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.5)))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"confseg check"))
    save(img, "u16_labels_ext.nii")

    # int8, 2-D, microns
    data = rng.integers(-100, 100, size=(9, 4)).astype(np.int8)
    img = nib.Nifti1Image(data, affine((1.0, 1.0, 1.0)))
    img.header.set_zooms((500.0, 250.0))
    img.header.set_xyzt_units("micron")
    save(img, "i8_2d_micron.nii")

    # uint32 big-endian NIfTI-2 gzip, and int64 with a scaling
    data = rng.integers(0, 2**31, size=(3, 4, 5)).astype(">u4")
    hdr = nib.Nifti2Header(endianness=">")
    hdr.set_data_dtype(">u4")
    img = nib.Nifti2Image(data, affine((1.0, 2.0, 3.0)), header=hdr)
    save(img, "u32_nifti2_be.nii.gz")
    data = rng.integers(-(2**40), 2**40, size=(4, 3, 2)).astype(np.int64)
    img = nib.Nifti1Image(data, affine((1.0, 1.0, 1.0)), dtype=np.int64)
    img.header.set_slope_inter(0.25, 100.0)
    save(img, "i64_scaled.nii")
    return out


def scaling(img):
    """(scl_slope, scl_inter) as nibabel applies them (it moves them from the
    header to the array proxy on load), or None."""
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    return None if (slope, inter) == (1.0, 0.0) else (slope, inter)


def expected_values(img):
    """The values in float64: raw times slope plus intercept (nibabel's
    get_fdata computes NIfTI-1 integer scaling in float32 first)."""
    raw = np.asarray(img.dataobj.get_unscaled(), dtype=np.float64)
    sc = scaling(img)
    return raw if sc is None else raw * sc[0] + sc[1]


def unit_factor(hdr):
    return {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}[hdr.get_xyzt_units()[0]]


def check(path, res):
    problems = []
    img = nib.load(path)
    hdr = img.header
    shape = list(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    if res["shape"] != shape:
        problems.append(f"shape {res['shape']} vs {shape}")
    zooms = list(hdr.get_zooms()[: len(shape)])
    spacing = [z * unit_factor(hdr) if k < 3 else 1.0 for k, z in enumerate(zooms)]
    if not np.allclose(res["spacing"], spacing, rtol=1e-12, atol=0):
        problems.append(f"spacing {res['spacing']} vs {spacing}")
    ours = np.array(res["affine"])
    aff_diff = float(np.max(np.abs(ours - img.affine)))
    if aff_diff > 1e-6:
        problems.append(f"affine differs by {aff_diff:g}:\n{ours}\nvs\n{img.affine}")
    version = 2 if isinstance(img, nib.Nifti2Image) else 1
    if res["version"] != version:
        problems.append(f"version {res['version']} vs {version}")
    if res["big_endian"] != (hdr.endianness == ">"):
        problems.append(f"big_endian {res['big_endian']} vs header endianness {hdr.endianness}")
    sc = scaling(img)
    if (res["scaling"] and tuple(res["scaling"])) != sc:
        problems.append(f"scaling {res['scaling']} vs {sc}")
    exp = expected_values(img).reshape(shape)
    s, ws = exp.sum(), (exp.ravel(order="C") * np.arange(1, exp.size + 1)).sum()
    for name, a, b in [("sum", res["sum"], s), ("weighted sum", res["weighted_sum"], ws)]:
        if not np.isclose(a, b, rtol=1e-12, atol=1e-9):
            problems.append(f"{name} {a!r} vs {b!r}")
    fdata_diff = float(np.max(np.abs(img.get_fdata().reshape(shape) - exp)))

    m = nib.load(res["mask"])
    mh = m.header
    if m.get_data_dtype().newbyteorder("=") != np.uint8:
        problems.append(f"mask dtype {m.get_data_dtype()}")
    mdata = np.asarray(m.dataobj)
    if list(mdata.shape) != shape or not np.array_equal(mdata, (exp > 0).astype(np.uint8)):
        problems.append("mask values differ from (values > 0)")
    if int(mdata.sum()) != res["mask_voxels"]:
        problems.append(f"mask voxels {int(mdata.sum())} vs {res['mask_voxels']}")
    mask_aff_diff = float(np.max(np.abs(m.affine - img.affine)))
    if mask_aff_diff != 0.0:
        problems.append(f"mask affine differs by {mask_aff_diff:g}")
    if type(m) is not type(img):
        problems.append(f"mask is a {type(m).__name__}, input a {type(img).__name__}")
    if mh.endianness != hdr.endianness:
        problems.append(f"mask endianness {mh.endianness} vs {hdr.endianness}")
    for code in ("sform_code", "qform_code", "xyzt_units"):
        if int(mh[code]) != int(hdr[code]):
            problems.append(f"mask {code} {int(mh[code])} vs {int(hdr[code])}")
    if mh.get_zooms()[: min(3, len(shape))] != hdr.get_zooms()[: min(3, len(shape))]:
        problems.append(f"mask zooms {mh.get_zooms()} vs {hdr.get_zooms()}")
    if mh.get_slope_inter() not in ((1.0, 0.0), (None, None)):
        problems.append(f"mask scaling {mh.get_slope_inter()}")

    out = nib.load(res["scores"])
    if out.get_data_dtype().newbyteorder("=") != np.float64:
        problems.append(f"scores dtype {out.get_data_dtype()}")
    if scaling(out) is not None or not np.array_equal(np.asarray(out.dataobj).reshape(shape), exp):
        problems.append("written scores differ from the values")
    if float(np.max(np.abs(out.affine - img.affine))) != 0.0:
        problems.append("scores affine differs")

    summary = (
        f"{path.name:26} v{version} {res['dtype']:7} {'BE' if res['big_endian'] else 'LE'} "
        f"shape {tuple(shape)} spacing {tuple(round(x, 6) for x in res['spacing'])} "
        f"affine {res['affine_source']} (max |diff| {aff_diff:.1e}) "
        f"scaling {res['scaling']} (nibabel get_fdata max |diff| {fdata_diff:.1e}) "
        f"mask {res['mask_voxels']} voxels"
    )
    return problems, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", help="write the files into this directory and keep them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        files = build(d)
        cmd = ["cargo", "run", "--quiet", "--features", "nifti", "--example", "nifti_roundtrip", "--"]
        run = subprocess.run(cmd + [str(p) for p in files], cwd=ROOT, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stderr)
            print(f"0 passed, {len(files)} failed")
            return 1
        results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        passed = failed = 0
        print(f"nibabel {nib.__version__}, numpy {np.__version__}")
        for p, res in zip(files, results):
            problems, summary = check(p, res)
            print(("ok   " if not problems else "FAIL ") + summary)
            for pr in problems:
                print("     " + pr)
            passed += not problems
            failed += bool(problems)
        failed += len(files) - len(results)
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
