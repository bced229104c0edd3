//! Tests of the NIfTI reader and writer against files built byte by byte
//! from the specification's offsets (independent of the layouts in
//! `header`), in both versions, byte orders and compressions.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{array, Array, Array3, Array4, IxDyn, ShapeBuilder};

use super::file::{to_file_order, to_row_major};
use super::header::{get_float, get_int};
use super::*;
use crate::image::{Affine, Geometry, Spacing};
use crate::io::Dtype;
use crate::mask::Labels;

/// A NIfTI file built by hand from literal offsets (independent of the
/// layouts in `header`).
#[derive(Clone)]
struct Spec {
    version: u8,
    big: bool,
    code: i16,
    dims: Vec<i64>,
    dim0: Option<i64>,
    pixdim: [f64; 8],
    xyzt: u8,
    slope: f64,
    inter: f64,
    qform_code: i16,
    sform_code: i16,
    quatern: [f64; 6],
    srow: [f64; 12],
    ext: usize,
    vox_offset: Option<f64>,
    magic: Option<Vec<u8>>,
}

fn put_bytes(buf: &mut [u8], at: usize, le: &[u8], big: bool) {
    let mut b = le.to_vec();
    if big {
        b.reverse();
    }
    buf[at..at + b.len()].copy_from_slice(&b);
}

fn size_of_code(code: i16) -> usize {
    match code {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        _ => 8,
    }
}

impl Spec {
    fn new(version: u8, code: i16, dims: &[i64]) -> Spec {
        Spec {
            version,
            big: false,
            code,
            dims: dims.to_vec(),
            dim0: None,
            pixdim: [1.0; 8],
            xyzt: 2,
            slope: 0.0,
            inter: 0.0,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 6],
            srow: [0.0; 12],
            ext: 0,
            vox_offset: None,
            magic: None,
        }
    }

    fn header(&self) -> Vec<u8> {
        let big = self.big;
        let dim0 = self.dim0.unwrap_or(self.dims.len() as i64);
        let dims: Vec<i64> =
            std::iter::once(dim0).chain((0..7).map(|k| self.dims.get(k).copied().unwrap_or(1))).collect();
        let bitpix = (size_of_code(self.code) * 8) as i16;
        if self.version == 1 {
            let mut h = vec![0u8; 348];
            let vox = self.vox_offset.unwrap_or((352 + self.ext) as f64);
            put_bytes(&mut h, 0, &348i32.to_le_bytes(), big);
            for (k, &d) in dims.iter().enumerate() {
                put_bytes(&mut h, 40 + 2 * k, &(d as i16).to_le_bytes(), big);
            }
            put_bytes(&mut h, 70, &self.code.to_le_bytes(), big);
            put_bytes(&mut h, 72, &bitpix.to_le_bytes(), big);
            for (k, &p) in self.pixdim.iter().enumerate() {
                put_bytes(&mut h, 76 + 4 * k, &(p as f32).to_le_bytes(), big);
            }
            put_bytes(&mut h, 108, &(vox as f32).to_le_bytes(), big);
            put_bytes(&mut h, 112, &(self.slope as f32).to_le_bytes(), big);
            put_bytes(&mut h, 116, &(self.inter as f32).to_le_bytes(), big);
            h[123] = self.xyzt;
            put_bytes(&mut h, 252, &self.qform_code.to_le_bytes(), big);
            put_bytes(&mut h, 254, &self.sform_code.to_le_bytes(), big);
            for (i, &q) in self.quatern.iter().enumerate() {
                put_bytes(&mut h, 256 + 4 * i, &(q as f32).to_le_bytes(), big);
            }
            for (i, &s) in self.srow.iter().enumerate() {
                put_bytes(&mut h, 280 + 4 * i, &(s as f32).to_le_bytes(), big);
            }
            h[344..348].copy_from_slice(self.magic.as_deref().unwrap_or(b"n+1\0"));
            h
        } else {
            let mut h = vec![0u8; 540];
            let vox = self.vox_offset.unwrap_or((544 + self.ext) as f64) as i64;
            put_bytes(&mut h, 0, &540i32.to_le_bytes(), big);
            h[4..12].copy_from_slice(self.magic.as_deref().unwrap_or(b"n+2\0\r\n\x1a\n"));
            put_bytes(&mut h, 12, &self.code.to_le_bytes(), big);
            put_bytes(&mut h, 14, &bitpix.to_le_bytes(), big);
            for (k, &d) in dims.iter().enumerate() {
                put_bytes(&mut h, 16 + 8 * k, &d.to_le_bytes(), big);
            }
            for (k, &p) in self.pixdim.iter().enumerate() {
                put_bytes(&mut h, 104 + 8 * k, &p.to_le_bytes(), big);
            }
            put_bytes(&mut h, 168, &vox.to_le_bytes(), big);
            put_bytes(&mut h, 176, &self.slope.to_le_bytes(), big);
            put_bytes(&mut h, 184, &self.inter.to_le_bytes(), big);
            put_bytes(&mut h, 344, &i32::from(self.qform_code).to_le_bytes(), big);
            put_bytes(&mut h, 348, &i32::from(self.sform_code).to_le_bytes(), big);
            for (i, &q) in self.quatern.iter().enumerate() {
                put_bytes(&mut h, 352 + 8 * i, &q.to_le_bytes(), big);
            }
            for (i, &s) in self.srow.iter().enumerate() {
                put_bytes(&mut h, 400 + 8 * i, &s.to_le_bytes(), big);
            }
            put_bytes(&mut h, 500, &i32::from(self.xyzt).to_le_bytes(), big);
            h
        }
    }

    /// Header, extender, extension bytes, then `values` (file order) in the datatype.
    fn file(&self, values: &[f64]) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(if self.ext > 0 { &[1, 0, 0, 0] } else { &[0, 0, 0, 0] });
        out.extend(std::iter::repeat_n(0xAB, self.ext));
        out.extend(encode(values, self.code, self.big));
        out
    }
}

fn encode(values: &[f64], code: i16, big: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        let le: Vec<u8> = match code {
            2 => vec![v as u8],
            256 => (v as i8).to_le_bytes().to_vec(),
            4 => (v as i16).to_le_bytes().to_vec(),
            512 => (v as u16).to_le_bytes().to_vec(),
            8 => (v as i32).to_le_bytes().to_vec(),
            768 => (v as u32).to_le_bytes().to_vec(),
            1024 => (v as i64).to_le_bytes().to_vec(),
            1280 => (v as u64).to_le_bytes().to_vec(),
            16 => (v as f32).to_le_bytes().to_vec(),
            64 => v.to_le_bytes().to_vec(),
            _ => vec![0; 8],
        };
        let mut b = le;
        if big {
            b.reverse();
        }
        out.extend(b);
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Values of `a` in file order (first axis fastest).
fn file_order(a: &ArrayD<f64>) -> Vec<f64> {
    a.t().iter().copied().collect()
}

fn problem(e: Error) -> FileProblem {
    match e {
        Error::File { problem, .. } => problem,
        other => panic!("expected a file error, got {other:?}"),
    }
}

/// Every error message is one line and names the file.
fn one_line_naming(e: &Error, p: &Path) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    msg
}

const CODES: [(i16, Dtype); 10] = [
    (2, Dtype::U8),
    (4, Dtype::I16),
    (8, Dtype::I32),
    (16, Dtype::F32),
    (64, Dtype::F64),
    (256, Dtype::I8),
    (512, Dtype::U16),
    (768, Dtype::U32),
    (1024, Dtype::I64),
    (1280, Dtype::U64),
];

#[test]
fn every_datatype_version_byte_order_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    for (code, dtype) in CODES {
        let signed = !matches!(dtype, Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64);
        // distinct values per voxel: reading them back checks the axis order
        let want = Array3::from_shape_fn((3, 4, 2), |(x, y, z)| {
            (x + 3 * y + 12 * z) as f64 - if signed { 5.0 } else { 0.0 }
        })
        .into_dyn();
        for version in [1, 2] {
            for big in [false, true] {
                for gz in [false, true] {
                    let mut spec = Spec::new(version, code, &[3, 4, 2]);
                    spec.big = big;
                    let bytes = spec.file(&file_order(&want));
                    let p = dir.path().join(if gz { "t.nii.gz" } else { "t.nii" });
                    std::fs::write(&p, if gz { gzip(&bytes) } else { bytes }).unwrap();
                    let what = format!("{dtype} v{version} big={big} gz={gz}");
                    let (a, h) = read_scores::<f64>(&p).unwrap();
                    assert_eq!(a, want, "{what}");
                    assert!(a.is_standard_layout());
                    assert_eq!(
                        (h.dtype(), h.version(), h.is_big_endian(), h.shape()),
                        (dtype, version, big, &[3, 4, 2][..]),
                        "{what}"
                    );
                    assert_eq!(read_header(&p).unwrap(), h, "{what}");
                    if Precision::of(dtype) == Precision::F32 {
                        assert_eq!(read_scores::<f32>(&p).unwrap().0, want.mapv(|v| v as f32), "{what}");
                    } else {
                        let e = read_scores::<f32>(&p).unwrap_err();
                        assert_eq!(
                            problem(e),
                            FileProblem::NeedsFloat64 { values: dtype.name().into() },
                            "{what}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn extreme_values_and_inexact_integers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.nii");
    // float32 bits survive, infinities included
    let f = [0.1_f32, -1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -0.0];
    let spec = Spec::new(1, 16, &[6]);
    let mut bytes = spec.header();
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend(f.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(&p, &bytes).unwrap();
    let (a, _) = read_scores::<f32>(&p).unwrap();
    assert!(a.iter().zip(&f).all(|(x, y)| x.to_bits() == y.to_bits()));
    // an int64 beyond 2^53 is refused, with its voxel (x, y)
    let spec = Spec::new(2, 1024, &[2, 2]);
    let mut bytes = spec.header();
    bytes.extend_from_slice(&[0; 4]);
    for v in [0_i64, 1, 9_007_199_254_740_993, 3] {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(
        problem(read_scores::<f64>(&p).unwrap_err()),
        FileProblem::InexactValue { value: "9007199254740993".into(), index: vec![0, 1] }
    );
}

#[test]
fn shapes_drop_trailing_unit_axes_beyond_the_third() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.nii");
    for (dims, shape) in [
        (vec![4, 3, 2, 1], vec![4, 3, 2]),
        (vec![4, 3, 2, 1, 1, 1, 1], vec![4, 3, 2]),
        (vec![4, 3, 1], vec![4, 3, 1]),
        (vec![4, 1, 1, 1], vec![4, 1, 1]),
        (vec![4, 3], vec![4, 3]),
        (vec![5], vec![5]),
        (vec![2, 3, 2, 3], vec![2, 3, 2, 3]),
        (vec![2, 3, 2, 1, 2], vec![2, 3, 2, 1, 2]),
    ] {
        let mut spec = Spec::new(1, 16, &dims);
        spec.pixdim = [1.0, 0.5, 0.6, 0.7, 2.5, 1.0, 1.0, 1.0];
        let n: i64 = dims.iter().product();
        let want = Array::from_shape_vec(IxDyn(&shape).f(), (0..n).map(|v| v as f64).collect())
            .unwrap()
            .as_standard_layout()
            .into_owned();
        std::fs::write(&p, spec.file(&file_order(&want))).unwrap();
        let (a, h) = read_scores::<f64>(&p).unwrap();
        assert_eq!(a, want, "{dims:?}");
        assert_eq!(h.shape(), &shape[..]);
        let sp: Vec<f64> = [0.5, 0.6, 0.7, 1.0, 1.0]
            .iter()
            .copied()
            .take(shape.len())
            .map(|s| f64::from(s as f32))
            .collect();
        assert_eq!(h.spacing().as_slice(), Some(&sp[..]), "{dims:?}");
    }
}

#[test]
fn transposition_matches_ndarray() {
    for shape in [
        vec![70, 3, 40],
        vec![33, 1, 65, 2],
        vec![1, 5, 1],
        vec![40, 37],
        vec![2, 3, 4, 5, 6],
        vec![7],
        vec![64, 64, 1],
    ] {
        let n: usize = shape.iter().product();
        let src: Vec<u32> = (0..n as u32).collect();
        let want = Array::from_shape_vec(IxDyn(&shape).f(), src.clone()).unwrap();
        let got = to_row_major(&src, &shape, |v| v);
        assert_eq!(got, want.as_standard_layout().iter().copied().collect::<Vec<_>>(), "{shape:?}");
        assert_eq!(to_file_order(&got, &shape, |v| v), src, "{shape:?}");
    }
}

#[test]
fn scaling_as_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.nii.gz");
    let raw = Array3::from_shape_fn((2, 3, 2), |(x, y, z)| (x + 2 * y + 6 * z) as f64 - 4.0).into_dyn();
    let write = |spec: &Spec| std::fs::write(&p, gzip(&spec.file(&file_order(&raw)))).unwrap();
    for version in [1, 2] {
        let mut spec = Spec::new(version, 4, &[2, 3, 2]);
        spec.slope = 0.5;
        spec.inter = -3.0;
        write(&spec);
        let (a, h) = read_scores::<f64>(&p).unwrap();
        assert_eq!(a, raw.mapv(|v| v * 0.5 - 3.0));
        assert_eq!((h.scaling(), h.precision()), (Some((0.5, -3.0)), Precision::F64));
        let e = read_scores::<f32>(&p).unwrap_err();
        let msg = one_line_naming(&e, &p);
        assert!(msg.contains("int16 scaled by scl_slope 0.5, scl_inter -3"), "{msg}");
        // masks are read unscaled
        let (m, _) = read_mask(&p, Labels::select([-4, 0]).unwrap()).unwrap();
        assert_eq!(m, raw.mapv(|v| u8::from(v == -4.0 || v == 0.0)));
        // slope 0 or NaN: no scaling; 1 and 0: none either
        for (slope, inter, scaled) in [
            (0.0, 5.0, false),
            (f64::NAN, 5.0, false),
            (1.0, 0.0, false),
            (1.0, 2.0, true),
            (-2.0, 0.0, true),
        ] {
            spec.slope = slope;
            spec.inter = inter;
            write(&spec);
            let (a, h) = read_scores::<f64>(&p).unwrap();
            let want = if scaled { raw.mapv(|v| v * slope + inter) } else { raw.clone() };
            assert_eq!(a, want, "{slope} {inter}");
            assert_eq!(h.precision(), if scaled { Precision::F64 } else { Precision::F32 });
        }
        spec.slope = 2.0;
        spec.inter = f64::INFINITY;
        write(&spec);
        let e = read_header(&p).unwrap_err();
        assert!(one_line_naming(&e, &p).contains("scl_inter = inf"), "{e}");
    }
}

#[test]
fn spacing_in_millimetres() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.nii");
    let f32s = |v: [f64; 3]| v.map(|x| f64::from(x as f32) * 1.0);
    for (xyzt, pixdim, scale) in [
        (1u8, [0.001, 0.002, 0.0005], 1000.0),
        (2, [0.8, 0.8, 2.5], 1.0),
        (2 | 8, [0.8, 0.8, 2.5], 1.0), // mm, seconds
        (0, [1.5, 2.0, 3.0], 1.0),
        (3, [500.0, 250.0, 1000.0], 0.001),
    ] {
        for version in [1, 2] {
            let mut spec = Spec::new(version, 2, &[2, 2, 2, 3]);
            spec.xyzt = xyzt;
            spec.pixdim = [1.0, pixdim[0], pixdim[1], pixdim[2], 2.0, 1.0, 1.0, 1.0];
            std::fs::write(&p, spec.file(&[0.0; 24])).unwrap();
            let h = read_header(&p).unwrap();
            let stored = if version == 1 { f32s(pixdim) } else { pixdim };
            let want: Vec<f64> = stored.iter().map(|v| v * scale).chain([1.0]).collect();
            assert_eq!(h.spacing().as_slice(), Some(&want[..]), "{xyzt} v{version}");
        }
    }
    let mut spec = Spec::new(1, 2, &[2, 2]);
    spec.xyzt = 5;
    std::fs::write(&p, spec.file(&[0.0; 4])).unwrap();
    assert!(read_header(&p).unwrap_err().to_string().contains("space unit code 5"));
    for (k, bad) in [(1, 0.0), (2, -1.0), (3, f64::NAN), (2, f64::INFINITY)] {
        let mut spec = Spec::new(2, 2, &[2, 2, 2]);
        spec.pixdim[k] = bad;
        std::fs::write(&p, spec.file(&[0.0; 8])).unwrap();
        let e = read_header(&p).unwrap_err();
        let msg = one_line_naming(&e, &p);
        let axis = ["x", "y", "z"][k - 1];
        assert!(msg.contains(&format!("pixdim[{k}] = ")) && msg.contains(&format!("along {axis}")), "{msg}");
    }
    // pixdim of axes that are not spatial does not matter
    let mut spec = Spec::new(1, 2, &[2, 2]);
    spec.pixdim[3] = 0.0;
    spec.pixdim[4] = -1.0;
    std::fs::write(&p, spec.file(&[0.0; 4])).unwrap();
    assert_eq!(read_header(&p).unwrap().spacing().as_slice(), Some(&[1.0, 1.0][..]));
}

fn assert_close(a: &Affine, b: &Affine, tol: f64) {
    for (ra, rb) in a.iter().zip(b) {
        for (x, y) in ra.iter().zip(rb) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn affines_as_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.nii");
    let read = |spec: &Spec| {
        std::fs::write(&p, spec.file(&[0.0; 105])).unwrap();
        read_header(&p).unwrap()
    };
    for version in [1, 2] {
        // fallback: nibabel's doctest for shape_zoom_affine((3, 5, 7), (3, 2, 1))
        let mut spec = Spec::new(version, 2, &[3, 5, 7]);
        spec.pixdim = [1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let h = read(&spec);
        assert_eq!(h.affine_source(), AffineSource::Pixdim);
        assert_eq!(
            h.affine(),
            &[[-3.0, 0.0, 0.0, 3.0], [0.0, 2.0, 0.0, -4.0], [0.0, 0.0, 1.0, -3.0], [0.0, 0.0, 0.0, 1.0]]
        );
        spec.sform_code = 7; // not a valid code: ignored, as nibabel does
        assert_eq!(read(&spec).affine_source(), AffineSource::Pixdim);
        // qform: 90 degrees about z, qfac -1, pixdim (2, 3, 4)
        spec.sform_code = 0;
        spec.qform_code = 1;
        spec.pixdim = [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0];
        let h45 = std::f64::consts::FRAC_1_SQRT_2;
        spec.quatern = [0.0, 0.0, h45, 10.0, 20.0, 30.0];
        let h = read(&spec);
        assert_eq!(h.affine_source(), AffineSource::Qform);
        let want =
            [[0.0, -3.0, 0.0, 10.0], [2.0, 0.0, 0.0, 20.0], [0.0, 0.0, -4.0, 30.0], [0.0, 0.0, 0.0, 1.0]];
        assert_close(h.affine(), &want, if version == 1 { 1e-6 } else { 1e-14 });
        // 180 degrees about x: b = 1, a = 0 exactly
        spec.pixdim = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        spec.quatern = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(
            read(&spec).affine(),
            &[[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
        );
        spec.quatern = [0.9, 0.5, 0.0, 0.0, 0.0, 0.0];
        std::fs::write(&p, spec.file(&[0.0; 105])).unwrap();
        assert!(read_header(&p).unwrap_err().to_string().contains("norm above 1"));
        // sform wins over qform
        spec.quatern = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        spec.sform_code = 2;
        spec.srow = [0.5, 0.1, 0.0, -10.0, 0.0, 0.75, 0.2, 5.5, 0.0, 0.0, 2.5, 100.0];
        let h = read(&spec);
        assert_eq!(h.affine_source(), AffineSource::Sform);
        let r = |i: usize| -> [f64; 4] { std::array::from_fn(|j| f64::from(spec.srow[4 * i + j] as f32)) };
        let want = [r(0), r(1), r(2), [0.0, 0.0, 0.0, 1.0]];
        if version == 1 {
            assert_eq!(h.affine(), &want);
        } else {
            for (row, want) in h.affine().iter().zip(spec.srow.chunks(4)) {
                assert_eq!(&row[..], want);
            }
        }
        assert_eq!(h.geometry().affine(), Some(h.affine()));
        spec.srow[3] = f64::NAN;
        std::fs::write(&p, spec.file(&[0.0; 105])).unwrap();
        assert!(read_header(&p).unwrap_err().to_string().contains("sform affine has an entry"));
    }
}

#[test]
fn label_maps_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seg.nii.gz");
    let labels =
        Array3::from_shape_fn((3, 2, 2), |(x, y, z)| [0.0, 1.0, 2.0, 4.0][(x + y + 2 * z) % 4]).into_dyn();
    for code in [512, 16, 64, 2, 256] {
        let spec = Spec::new(1, code, &[3, 2, 2]);
        std::fs::write(&p, gzip(&spec.file(&file_order(&labels)))).unwrap();
        for sel in [vec![1, 4], vec![2], vec![0, 1, 2, 4], vec![7]] {
            let l = Labels::select(sel.clone()).unwrap();
            let (m, h) = read_mask(&p, &l).unwrap();
            assert_eq!(m, l.binarize(&labels).unwrap(), "{code} {sel:?}");
            assert_eq!(h.shape(), &[3, 2, 2]);
        }
        // as a binary mask, the first 2 (at (2, 0, 0) in file order) is named
        let e = read_mask(&p, &Labels::Binary).unwrap_err();
        one_line_naming(&e, &p);
        assert_eq!(
            e,
            in_file(&p, Error::NonBinaryMask { image: None, index: vec![2, 0, 0], value: 2.0 }),
            "{code}"
        );
    }
    // a non-integer label, with its voxel (x, y, z)
    let mut bad = labels.clone();
    bad[[1, 1, 0]] = 1.5;
    let spec = Spec::new(2, 16, &[3, 2, 2]);
    std::fs::write(&p, gzip(&spec.file(&file_order(&bad)))).unwrap();
    let e = read_mask(&p, Labels::select([1]).unwrap()).unwrap_err();
    assert_eq!(e, in_file(&p, Error::InvalidLabel { image: None, index: vec![1, 1, 0], value: 1.5 }));
    assert!(one_line_naming(&e, &p).contains("holds 1.5 at voxel [1, 1, 0]"));
    // a 0/1 float mask
    let spec = Spec::new(1, 16, &[3, 2, 2]);
    std::fs::write(&p, gzip(&spec.file(&file_order(&labels.mapv(|v| f64::from(v == 1.0)))))).unwrap();
    assert_eq!(read_mask(&p, &Labels::Binary).unwrap().0, labels.mapv(|v| u8::from(v == 1.0)));
}

#[test]
fn extensions_and_trailing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let want = Array3::from_shape_fn((2, 2, 3), |(x, y, z)| (x * 100 + y * 10 + z) as f64).into_dyn();
    for version in [1, 2] {
        let mut spec = Spec::new(version, 4, &[2, 2, 3]);
        spec.ext = 48;
        let mut bytes = spec.file(&file_order(&want));
        bytes.extend_from_slice(b"trailing bytes after the data are allowed");
        for gz in [false, true] {
            let p = dir.path().join(if gz { "e.nii.gz" } else { "e.nii" });
            std::fs::write(&p, if gz { gzip(&bytes) } else { bytes.clone() }).unwrap();
            assert_eq!(read_scores::<f32>(&p).unwrap().0, want.mapv(|v| v as f32));
        }
    }
    // a .nii that is gzip inside is read too
    let spec = Spec::new(1, 4, &[2, 2, 3]);
    let p = dir.path().join("misnamed.nii");
    std::fs::write(&p, gzip(&spec.file(&file_order(&want)))).unwrap();
    assert_eq!(read_scores::<f64>(&p).unwrap().0, want);
}

#[test]
fn hostile_headers_are_one_line_errors_and_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.nii");
    let pg = dir.path().join("h.nii.gz");
    let check = |path: &Path, bytes: &[u8], want: &str| {
        std::fs::write(path, bytes).unwrap();
        let e = read_scores::<f64>(path).unwrap_err();
        let msg = one_line_naming(&e, path);
        assert!(msg.contains(want), "{msg} (wanted {want:?})");
        let e2 = read_mask(path, &Labels::Binary).unwrap_err();
        assert_eq!(e2.to_string(), msg);
        e
    };
    // huge dims: 2.8e14 bytes declared in a file of a few hundred
    let huge = Spec::new(1, 64, &[32767, 32767, 32767]);
    let e = check(
        &p,
        &huge.file(&[1.0; 8]),
        "truncated NIfTI file: the data needs 281449207693304 bytes, the file holds 64",
    );
    assert!(matches!(problem(e), FileProblem::NiftiTruncated { part: "data", .. }));
    check(&pg, &gzip(&huge.file(&[1.0; 8])), "gzip file can hold");
    let huge2 = Spec::new(2, 64, &[1 << 40, 1 << 40, 1 << 40]);
    check(&p, &huge2.file(&[]), "more bytes than this machine can address");
    let bigish = Spec::new(2, 64, &[1 << 20, 1 << 20]);
    check(&pg, &gzip(&bigish.file(&[])), "gzip file can hold");
    // negative and zero dims; dim[0] out of range
    check(&p, &Spec::new(1, 2, &[4, -3, 2]).file(&[]), "dim[2] = -3 is negative");
    check(&p, &Spec::new(2, 2, &[4, 3, 0]).file(&[]), "dim[3] = 0: the image has no voxels");
    for d0 in [0, 8, -1] {
        let mut s = Spec::new(1, 2, &[2, 2]);
        s.dim0 = Some(d0);
        check(&p, &s.file(&[0.0; 4]), &format!("dim[0] = {d0}: the number of dimensions must be 1 to 7"));
    }
    // vox_offset past the end, inside the header, not whole
    let mut s = Spec::new(1, 2, &[2, 2]);
    s.vox_offset = Some(1e9);
    check(&p, &s.file(&[0.0; 4]), "vox_offset = 1000000000 is past the end of the file (356 bytes)");
    s.vox_offset = Some(100.0);
    check(&p, &s.file(&[0.0; 4]), "vox_offset = 100 points inside the 348-byte header");
    s.vox_offset = Some(352.5);
    check(&p, &s.file(&[0.0; 4]), "vox_offset = 352.5 is not a whole number");
    s.vox_offset = Some(-352.0); // NIfTI-1 stores it as a float
    check(&p, &s.file(&[0.0; 4]), "vox_offset = -352 is negative");
    let mut s = Spec::new(2, 2, &[2, 2]);
    s.vox_offset = Some(-8.0);
    check(&p, &s.file(&[0.0; 4]), "vox_offset = -8 is negative");
    s.vox_offset = Some(1e15);
    check(&pg, &gzip(&s.file(&[0.0; 4])), "gzip file can hold");
    // truncated data and header
    let good = Spec::new(1, 16, &[4, 4, 4]).file(&[0.5; 64]);
    let e = check(&p, &good[..good.len() - 10], "truncated NIfTI file");
    assert_eq!(
        problem(e),
        FileProblem::NiftiTruncated { part: "data", expected_bytes: 256, found_bytes: 246 }
    );
    check(&p, &good[..200], "the header needs 348 bytes, the file holds 200");
    check(&pg, &gzip(&good[..good.len() - 10]), "the data needs 256 bytes, the file holds 246");
    let z = gzip(&good);
    // a cut gzip file, wherever it is cut
    for cut in [5, 12, z.len() / 2, z.len() - 9, z.len() - 1] {
        let e = check(&pg, &z[..cut], "h.nii.gz");
        assert!(
            matches!(problem(e.clone()), FileProblem::NiftiTruncated { .. } | FileProblem::BadData { .. }),
            "{cut}: {e}"
        );
    }
    // a corrupt gzip stream (its CRC) is an error, not wrong data
    let mut z2 = z.clone();
    let n = z2.len();
    z2[n - 8] ^= 0xFF;
    check(&pg, &z2, "the gzip stream is corrupt");
    // not NIfTI
    check(&p, b"", "not a single-file NIfTI-1 or NIfTI-2 image (.nii, .nii.gz): the file holds 0 bytes");
    check(&p, b"\x93NUMPY\x01\x00 some npy", "sizeof_hdr is");
    let mut s = Spec::new(1, 2, &[2, 2]);
    s.magic = Some(b"ni1\0".to_vec());
    check(&p, &s.file(&[0.0; 4]), ".hdr/.img pair");
    s.magic = Some(b"xyz\0".to_vec());
    check(&p, &s.file(&[0.0; 4]), "magic string is 'xyz\\x00'");
    let mut s = Spec::new(2, 2, &[2, 2]);
    s.magic = Some(b"n+2\0\n\n\x1a\n".to_vec());
    check(&p, &s.file(&[0.0; 4]), "transferred as text");
    s.magic = Some(b"n+2\0\0\0\0\0".to_vec());
    std::fs::write(&p, s.file(&[0.0; 4])).unwrap();
    assert!(read_header(&p).is_ok());
    // unsupported datatypes, by name and code
    for (code, name) in [(32, "complex64"), (128, "RGB"), (1536, "float128"), (0, "none"), (77, "unknown")] {
        let e = check(
            &p,
            &Spec::new(1, code, &[2, 2]).file(&[]),
            &format!("unsupported datatype {name} (code {code})"),
        );
        assert_eq!(problem(e), FileProblem::UnsupportedNiftiDatatype { name, code });
    }
    // a missing file
    let e = read_header(dir.path().join("none.nii")).unwrap_err();
    assert!(matches!(problem(e), FileProblem::Io { kind: std::io::ErrorKind::NotFound, .. }));
}

#[test]
fn writes_keep_the_geometry_version_and_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.nii");
    let scores = Array4::from_shape_fn((3, 4, 2, 2), |(x, y, z, c)| {
        (x as f64) - 2.0 * y as f64 + 0.25 * z as f64 + 10.0 * c as f64
    });
    for (version, big) in [(1, false), (1, true), (2, false), (2, true)] {
        let mut spec = Spec::new(version, 64, &[3, 4, 2, 2]);
        spec.big = big;
        spec.pixdim = [-1.0, 0.8, 0.9, 2.5, 3.0, 1.0, 1.0, 1.0];
        spec.qform_code = 1;
        spec.quatern = [0.0, 0.0, std::f64::consts::FRAC_1_SQRT_2, 1.0, 2.0, 3.0];
        spec.slope = 2.0;
        spec.inter = 1.0;
        spec.ext = 16;
        std::fs::write(&src, spec.file(&file_order(&scores.clone().into_dyn()))).unwrap();
        let (s, like) = read_scores::<f64>(&src).unwrap();
        assert_eq!(s, scores.mapv(|v| v * 2.0 + 1.0).into_dyn());
        let mask = s.index_axis(ndarray::Axis(3), 1).mapv(|v| v > 20.0);
        for name in ["m.nii", "m.nii.gz"] {
            let out = dir.path().join(name);
            let _ = std::fs::remove_file(&out);
            let o = mask_output(&out, &mask, &like).unwrap();
            assert!(!out.exists());
            o.commit().unwrap();
            let (m, h) = read_mask(&out, &Labels::Binary).unwrap();
            assert_eq!(m, mask.mapv(u8::from).into_dyn());
            assert_eq!((h.version(), h.is_big_endian(), h.dtype()), (version, big, Dtype::U8));
            assert_eq!(
                (h.shape(), h.affine(), h.affine_source()),
                (&[3, 4, 2][..], like.affine(), AffineSource::Qform)
            );
            assert_eq!(h.spacing().as_slice(), Some(&like.spacing().as_slice().unwrap()[..3]));
            assert_eq!(h.scaling(), None);
            let l = h.layout();
            assert_eq!(get_float(&h.raw, big, l.cal_max, 0), 1.0);
            assert_eq!(get_float(&h.raw, big, l.scl_slope, 0), 1.0);
            assert_eq!(get_int(&h.raw, big, l.bitpix, 0), 8);
            assert_eq!(h.vox_offset, l.size as u64 + 4);
            let bytes = if name.ends_with(".gz") { 0 } else { std::fs::metadata(&out).unwrap().len() };
            assert!(bytes == 0 || bytes == h.vox_offset + 24);
        }
        // scores: float32 and float64, exact, 4-D
        let out = dir.path().join("s.nii.gz");
        let mut s32 = s.mapv(|v| v as f32);
        s32[[0, 0, 0, 0]] = f32::NEG_INFINITY;
        write_scores(&out, &s32, &like).unwrap();
        let (back, h) = read_scores::<f32>(&out).unwrap();
        assert_eq!((back, h.dtype(), h.shape()), (s32.clone(), Dtype::F32, &[3, 4, 2, 2][..]));
        write_scores(&out, &s, &like).unwrap();
        let (back, h) = read_scores::<f64>(&out).unwrap();
        assert_eq!((back, h.dtype(), h.affine()), (s.clone(), Dtype::F64, like.affine()));
    }
}

#[test]
fn writes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let like = NiftiHeader::new(&[3, 2, 2], &Geometry::default()).unwrap();
    let out = dir.path().join("m.nii");
    let e = write_mask(&out, &Array3::<u8>::zeros((2, 3, 2)), &like).unwrap_err();
    assert!(matches!(&e, Error::InFile { error, .. } if matches!(**error, Error::ShapeMismatch { .. })));
    one_line_naming(&e, &out);
    let mut m = Array3::<u8>::zeros((3, 2, 2));
    m[[2, 1, 0]] = 2;
    let e = write_mask(&out, &m, &like).unwrap_err();
    assert_eq!(e, in_file(&out, Error::NonBinaryMask { image: None, index: vec![2, 1, 0], value: 2.0 }));
    let e = write_scores(&out, &Array4::<f32>::zeros((3, 2, 2, 0)), &like).unwrap_err();
    assert!(matches!(problem(e), FileProblem::Write { .. }));
    assert!(!out.exists());
    // a transposed view is written in its logical order
    let a = Array3::from_shape_fn((2, 2, 3), |(x, y, z)| (x * 9 + y * 3 + z) as f32);
    write_scores(&out, &a.t(), &like).unwrap();
    assert_eq!(read_scores::<f32>(&out).unwrap().0, a.t().to_owned().into_dyn());
    // a mask of floats and one written from a 4-D source's first three axes
    write_mask(
        &out,
        &array![[[0.0_f64, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]],
        &like,
    )
    .unwrap();
    assert_eq!(read_mask(&out, &Labels::Binary).unwrap().0.sum(), 5);
}

#[test]
fn new_headers() {
    let dir = tempfile::tempdir().unwrap();
    let sp = Spacing::new(vec![0.5, 0.75, 2.0]).unwrap();
    let h = NiftiHeader::new(&[4, 3, 2], &Geometry::new(sp.clone())).unwrap();
    assert_eq!((h.version(), h.shape(), h.spacing()), (1, &[4, 3, 2][..], &sp));
    assert_eq!(h.affine_source(), AffineSource::Sform);
    assert_eq!(h.affine()[1], [0.0, 0.75, 0.0, 0.0]);
    let aff = [[0.0, -1.0, 0.0, 5.0], [2.0, 0.0, 0.0, -3.0], [0.0, 0.0, 1.5, 7.25], [0.0, 0.0, 0.0, 1.0]];
    let h = NiftiHeader::new(&[4, 3, 2, 5], &Geometry::default().with_affine(aff).unwrap()).unwrap();
    assert_eq!(h.affine(), &aff);
    assert_eq!(h.spacing().as_slice(), Some(&[1.0; 4][..]));
    let p = dir.path().join("n.nii");
    write_mask(&p, &ndarray::Array4::from_elem((4, 3, 2, 5), true), &h).unwrap();
    let back = read_header(&p).unwrap();
    assert_eq!((back.affine(), back.shape()), (&aff, &[4, 3, 2, 5][..]));
    assert!(NiftiHeader::new(&[], &Geometry::default()).is_err());
    assert!(NiftiHeader::new(&[40000], &Geometry::default()).is_err());
    assert!(NiftiHeader::new(&[4, 0], &Geometry::default()).is_err());
    assert!(NiftiHeader::new(&[4, 4], &Geometry::new(sp)).is_err());
}
