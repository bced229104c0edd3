//! Hostile input to the library: arbitrary and mutated bytes to the `.npy`
//! reader (feature `npy`), the NIfTI reader (feature `nifti`) and the
//! calibration-file readers (feature `serde`); arbitrary shapes, values,
//! masks, spacings, transforms, levels and modes to the public
//! calibrate / predict / validate API and the transform names.
//!
//! Every property asserts: no panic, every error one line, no NaN out of
//! a transform for NaN-free input, and reads or sets that succeed agree
//! with each other. The stable counterpart of the cargo-fuzz targets in
//! `fuzz/` (CLI-level hostile input is in `tests/hardening.rs`).

mod common;

use std::fmt::Display;

use confseg::calibrate::region_statistics;
use confseg::evaluate::{Geometry, Method, Pool, Splits, Validation};
use confseg::float::Float;
use confseg::levels::ModeKind;
use confseg::quantile::Rank;
use confseg::Levels;
use confseg::{Alpha, Calibration, Calibrator, Image, Mode, ScoreTransform, Spacing, Transform};
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;

/// Panic unless `e` displays as exactly one non-empty line.
fn assert_one_line(e: &dyn Display) {
    let s = e.to_string();
    assert!(!s.is_empty(), "empty error message");
    assert!(!s.contains(['\n', '\r']), "error message of more than one line: {s:?}");
}

/// The value, or `None` after checking that the error is one line.
fn ok<T, E: Display>(r: Result<T, E>) -> Option<T> {
    r.map_err(|e| assert_one_line(&e)).ok()
}

/// NaN-aware equality.
#[cfg(feature = "npy")]
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Byte edits of a valid file: overwrite bytes, then maybe truncate or
/// append. Positions are biased towards the first `head` bytes (the header).
#[cfg(any(feature = "npy", feature = "serde"))]
fn mutated(file: Vec<u8>, head: usize) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 0..6);
    let cut = prop_oneof![6 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)];
    let tail = prop_oneof![6 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..9)];
    (edits, cut, tail).prop_map(move |(edits, cut, tail)| {
        let mut f = file.clone();
        for (in_head, at, byte) in edits {
            let span = if in_head { head.min(f.len()) } else { f.len() };
            if span > 0 {
                f[at.index(span)] = byte;
            }
        }
        if let Some(c) = cut {
            f.truncate(c.index(f.len() + 1));
        }
        f.extend(tail);
        f
    })
}

/// Interesting numbers for header fields and parameters.
fn special() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(-1.0),
        Just(0.5),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(1e300),
        Just(1e-300),
        Just(f64::from(f32::MAX)),
        Just(1e-45),
        -1e6..1e6f64,
        any::<f64>(),
    ]
}

#[cfg(feature = "npy")]
mod npy {
    use super::*;
    use confseg::io::{self, write_array, write_masks, write_npy, Labels, NpyStack};
    use confseg::synthetic::Synthetic;
    use ndarray::{Array1, Array3};

    /// Valid `.npy` files written by the crate, and variants of them.
    fn valid_files() -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        let (scores, masks) = Synthetic::new([3, 4]).seed(1).stack(0..2);
        let mut out = Vec::new();
        write_array(&p, &scores.mapv(|x| x as f32)).unwrap();
        out.push(std::fs::read(&p).unwrap());
        write_array(&p, &scores).unwrap();
        out.push(std::fs::read(&p).unwrap());
        write_masks(&p, &masks).unwrap();
        out.push(std::fs::read(&p).unwrap());
        write_npy(&p, &Array3::from_shape_fn((2, 2, 3), |(i, j, k)| ((i + j + k) % 5) as u8)).unwrap();
        out.push(std::fs::read(&p).unwrap());
        write_npy(&p, &Array1::from(vec![1u8, 0, 3])).unwrap();
        out.push(std::fs::read(&p).unwrap());
        let fortran = String::from_utf8_lossy(&out[0]).replace("False", "True ").into_bytes();
        let f32_len = out[0].len();
        out.push(if fortran.len() == f32_len { fortran } else { out[0].clone() });
        out
    }

    /// A header dictionary from parts, padded as numpy pads it, and data.
    fn handmade(
        version: u8,
        descr: &str,
        fortran: &str,
        shape: &[u64],
        data_len: usize,
        fill: u8,
    ) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        let tuple =
            if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let mut h =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple}, }}").into_bytes();
        let pre = if version == 1 { 10 } else { 12 };
        while (pre + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&u16::try_from(h.len()).unwrap().to_le_bytes());
        } else {
            out.extend_from_slice(&u32::try_from(h.len()).unwrap().to_le_bytes());
        }
        out.extend_from_slice(&h);
        out.extend(std::iter::repeat_n(fill, data_len));
        out
    }

    fn handmade_files() -> impl Strategy<Value = Vec<u8>> {
        let descr = prop::sample::select(vec![
            "<f4", ">f4", "<f8", ">f8", "<f2", "|u1", "|b1", "|i1", "<i2", ">u2", "<i4", ">u4", "<i8", "<u8",
            "f4", "?", "float64", "<c16", "|V8", "", "<f4'", "O",
        ]);
        let fortran = prop::sample::select(vec!["False", "True", "0", "None"]);
        let dim = prop_oneof![8 => 0u64..5, 1 => Just(u64::from(u32::MAX) + 1), 1 => Just(u64::MAX), 1 => any::<u64>()];
        let shape = prop::collection::vec(dim, 0..5);
        (1u8..=3, descr, fortran, shape, 0usize..200, any::<u8>())
            .prop_map(|(v, d, f, s, n, fill)| handmade(v, d, f, &s, n, fill))
    }

    fn files() -> impl Strategy<Value = Vec<u8>> {
        let valid = valid_files();
        let mutants = prop::sample::select(valid).prop_flat_map(|f| mutated(f, 128));
        prop_oneof![
            4 => mutants,
            3 => handmade_files(),
            1 => prop::collection::vec(any::<u8>(), 0..300),
        ]
    }

    fn check_stack(stack: &NpyStack, labels: &Labels, start: usize, len: usize) {
        let image_len: usize = stack.image_shape().iter().product();
        assert!(image_len > 0);
        for i in (0..stack.len().min(8)).chain([stack.len()]) {
            let s32 = ok(stack.read_scores::<f32>(i));
            let s64 = ok(stack.read_scores::<f64>(i));
            if i >= stack.len() {
                assert!(s32.is_none() && s64.is_none());
            }
            if let (Some(a), Some(b)) = (&s32, &s64) {
                assert!(a.iter().zip(b).all(|(&x, &y)| same(f64::from(x), y)));
            }
            for l in [&Labels::Binary, labels] {
                if let Some(m) = ok(stack.read_mask(i, l)) {
                    assert_eq!(m.shape(), stack.image_shape());
                    if *l != Labels::Binary {
                        assert!(m.iter().all(|&v| v <= 1));
                    }
                    let mut part = Vec::new();
                    if ok(stack.read_mask_range(i, start, len, l, &mut part)).is_some() {
                        assert_eq!(part, m.iter().skip(start).take(len).copied().collect::<Vec<_>>());
                    }
                }
            }
            let (mut r64, mut scratch) = (Vec::new(), Vec::new());
            if ok(stack.read_scores_range::<f64>(i, start, len, &mut r64, &mut scratch)).is_some() {
                assert!(start + len <= image_len && r64.len() == len);
                if let Some(whole) = &s64 {
                    assert!(whole.iter().skip(start).zip(&r64).all(|(&x, &y)| same(x, y)));
                }
            }
            let mut r32 = Vec::new();
            ok(stack.read_scores_range::<f32>(i, start, len, &mut r32, &mut scratch));
        }
        if !stack.is_empty() {
            ok(confseg::pipeline::chunked::transformed_statistics::<f64>(
                stack,
                None,
                stack,
                labels,
                0,
                |s| Ok(confseg::calibrate::RegionFold::new(s)),
            ));
            ok(confseg::pipeline::chunked::transformed_statistics::<f32>(
                stack,
                Some(stack),
                stack,
                &Labels::Binary,
                0,
                |s| Ok(confseg::calibrate::RegionFold::new(s)),
            ));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn npy_reader_survives_any_bytes(
            file in files(),
            labels in prop::collection::vec(-3i64..6, 1..3),
            n_images in 0usize..10,
            max_len in 0usize..64,
            start in 0usize..30,
            len in 0usize..30,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.npy");
            std::fs::write(&path, &file).unwrap();
            let labels = Labels::select(labels).unwrap();
            if let Some(info) = ok(io::inspect(&path)) {
                let n = info.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).unwrap();
                prop_assert!(n as u128 * info.dtype.size() as u128 <= file.len() as u128);
            }
            if let Some(a) = ok(io::read_array(&path, max_len)) {
                prop_assert!(a.len() <= max_len);
            }
            if let Some(idx) = ok(io::read_indices(&path, n_images)) {
                let mut seen = vec![false; n_images];
                for &i in &idx {
                    prop_assert!(i < n_images && !seen[i]);
                    seen[i] = true;
                }
            }
            for what in ["scores", "masks"] {
                if let Some(stack) = ok(NpyStack::open(&path, what)) {
                    check_stack(&stack, &labels, start, len);
                }
            }
            let a = ok(io::read_scores::<f32>(&path));
            let b = ok(io::read_scores::<f64>(&path));
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!(a.iter().zip(&b).all(|(&x, &y)| same(f64::from(x), y)));
            }
            ok(io::read_masks(&path));
        }
    }
}

#[cfg(feature = "nifti")]
mod nifti {
    use super::*;
    use confseg::io::nifti::{self, NiftiHeader};
    use confseg::io::Labels;
    use std::io::Write;

    /// Valid NIfTI-1 files written by the crate (uncompressed), of a few
    /// shapes and datatypes.
    fn valid_files() -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.nii");
        let like = NiftiHeader::new(
            &[3, 2, 2],
            &confseg::image::Geometry::new(Spacing::new(vec![0.5, 1.0, 2.0]).unwrap()),
        )
        .unwrap();
        let s = ArrayD::from_shape_fn(IxDyn(&[3, 2, 2]), |i| {
            i[0] as f32 - 1.5 * i[1] as f32 + 0.25 * i[2] as f32
        });
        let mut out = Vec::new();
        nifti::write_scores(&p, &s, &like).unwrap();
        out.push(std::fs::read(&p).unwrap());
        nifti::write_scores(&p, &s.mapv(f64::from), &like).unwrap();
        out.push(std::fs::read(&p).unwrap());
        nifti::write_mask(&p, &s.mapv(|v| v > 0.0), &like).unwrap();
        out.push(std::fs::read(&p).unwrap());
        let one = NiftiHeader::new(&[4], &confseg::image::Geometry::default()).unwrap();
        nifti::write_scores(&p, &ndarray::arr1(&[0.0f32, 1.0, f32::INFINITY, -2.0]), &one).unwrap();
        out.push(std::fs::read(&p).unwrap());
        out
    }

    /// Header fields (NIfTI-1 offsets) worth setting to odd values.
    fn field_edits() -> impl Strategy<Value = Vec<(usize, u8, f64)>> {
        // (offset, kind: 0 i16, 1 f32, 2 u8, value)
        let field = prop::sample::select(vec![
            (0usize, 3u8),
            (40, 0),
            (42, 0),
            (44, 0),
            (46, 0),
            (48, 0),
            (50, 0),
            (52, 0),
            (70, 0),
            (72, 0),
            (76, 1),
            (80, 1),
            (84, 1),
            (88, 1),
            (92, 1),
            (108, 1),
            (112, 1),
            (116, 1),
            (123, 2),
            (252, 0),
            (254, 0),
            (256, 1),
            (260, 1),
            (264, 1),
            (268, 1),
            (280, 1),
            (300, 1),
            (316, 1),
        ]);
        let v = prop_oneof![
            3 => prop::sample::select(vec![
                0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 8.0, -1.0, 16.0, 64.0, 256.0, 512.0, 768.0, 1024.0, 1280.0, 32.0,
                128.0, 1536.0, 352.0, 348.0, 540.0, 32767.0, -32768.0,
            ]),
            1 => special(),
        ];
        prop::collection::vec((field, v), 1..5)
            .prop_map(|edits| edits.into_iter().map(|((at, kind), v)| (at, kind, v)).collect())
    }

    fn edit(file: &[u8], edits: &[(usize, u8, f64)]) -> Vec<u8> {
        let mut f = file.to_vec();
        for &(at, kind, v) in edits {
            let bytes = match kind {
                0 => (v as i16).to_le_bytes().to_vec(),
                1 => (v as f32).to_le_bytes().to_vec(),
                2 => vec![v as u8],
                _ => (v as i32).to_le_bytes().to_vec(),
            };
            f[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        f
    }

    fn files() -> impl Strategy<Value = Vec<u8>> {
        let valid = valid_files();
        prop_oneof![
            3 => prop::sample::select(valid.clone()).prop_flat_map(|f| mutated(f, 352)),
            3 => (prop::sample::select(valid), field_edits()).prop_map(|(f, e)| edit(&f, &e)),
            1 => prop::collection::vec(any::<u8>(), 0..400),
        ]
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn nifti_reader_survives_any_bytes(
            file in files(),
            how in 0u8..3,
            labels in prop::collection::vec(-3i64..6, 1..3),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (name, bytes) = match how {
                0 => ("x.nii", file),
                1 => ("x.nii.gz", gzip(&file)),
                // a gzip stream cut or damaged
                _ => {
                    let mut g = gzip(&file);
                    let n = g.len();
                    if file.len() % 2 == 0 { g.truncate(n * 2 / 3) } else { g[n / 2] ^= 0x55 }
                    ("x.nii.gz", g)
                }
            };
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let labels = Labels::select(labels).unwrap();
            let Some(header) = ok(nifti::read_header(&path)) else {
                prop_assert!(ok(nifti::read_scores::<f64>(&path)).is_none());
                return Ok(());
            };
            let shape = header.shape().to_vec();
            prop_assert!(!shape.is_empty() && shape.iter().all(|&n| n > 0));
            prop_assert_eq!(header.spacing().as_slice().map(<[f64]>::len), Some(shape.len()));
            prop_assert!(header.affine().iter().flatten().all(|v| v.is_finite()));
            let s32 = ok(nifti::read_scores::<f32>(&path));
            let s64 = ok(nifti::read_scores::<f64>(&path));
            if let (Some((a, _)), Some((b, _))) = (&s32, &s64) {
                prop_assert!(a.iter().zip(b).all(|(&x, &y)| same(f64::from(x), y)));
            }
            for l in [&Labels::Binary, &labels] {
                if let Some((m, _)) = ok(nifti::read_mask(&path, l)) {
                    prop_assert_eq!(m.shape(), &shape[..]);
                    prop_assert!(m.iter().all(|&v| v <= 1));
                }
            }
            if let Some((b, _)) = &s64 {
                let out = dir.path().join(if name.ends_with(".gz") { "back.nii.gz" } else { "back.nii" });
                if ok(nifti::write_scores(&out, b, &header)).is_some() {
                    let (again, h) = nifti::read_scores::<f64>(&out).unwrap();
                    prop_assert!(again.iter().zip(b).all(|(&x, &y)| same(x, y)));
                    prop_assert_eq!(h.spacing(), header.spacing());
                    prop_assert_eq!(h.affine(), header.affine());
                }
            }
        }
    }
}

#[cfg(feature = "serde")]
mod calibration_files {
    use super::*;
    use confseg::synthetic::Synthetic;
    use confseg::ConfidenceSets;
    use serde_json::Value;

    /// JSON of fitted sets and calibrations, written by serde.
    fn valid_json() -> Vec<Value> {
        let data = Synthetic::new([6, 6]).seed(2);
        let a = Alpha::new(0.1).unwrap();
        let mut out = Vec::new();
        for (ti, to, mode, n, per_image) in [
            ("identity", "identity", Mode::max(a), 20, false),
            ("sigmoid", "distance:chessboard", Mode::bonferroni(a, 1.0, 4.0).unwrap(), 25, false),
            ("gaussian:2", "box-outer:threshold=0.5", Mode::marginal(a), 4, true),
        ] {
            let c =
                Calibrator::new(ti.parse::<ScoreTransform>().unwrap(), to.parse::<ScoreTransform>().unwrap())
                    .with_spacing(Spacing::new(vec![1.0, 2.0]).unwrap());
            let mut cal = Calibration::new();
            for (s, m) in data.pairs(0..n) {
                if per_image {
                    let img = Image::new(s.view(), Spacing::new(vec![0.5, 0.5]).unwrap()).unwrap();
                    c.observe(&mut cal, &img, &m).unwrap();
                } else {
                    c.observe(&mut cal, &s, &m).unwrap();
                }
            }
            out.push(serde_json::to_value(c.fit(&cal, mode).unwrap()).unwrap());
            out.push(serde_json::to_value(&cal).unwrap());
        }
        out
    }

    /// Paths (JSON pointers) of every node of `v`.
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m.iter().for_each(|(k, x)| pointers(x, format!("{at}/{k}"), out)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
            _ => {}
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            special().prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
            prop::sample::select(vec![
                "inf",
                "-inf",
                "nan",
                "per-image",
                "max",
                "marginal",
                "bonferroni",
                "euclidean",
                "box",
                "distance",
                "gaussian",
                "identity",
                "outer",
                "inner",
                "face",
                "full",
                "midpoint",
                "reflect",
                "0.1.0",
                "99.0.0",
                "9.9.9\n",
                "a\nb",
                "\u{1b}[31m",
                "",
                "x\r\ny",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(("[a-z_\n]{1,8}", inner), 0..3)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Valid JSON with one to three nodes replaced, removed or given an extra key.
    fn mutated_json() -> impl Strategy<Value = Vec<u8>> {
        let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, json_value()), 1..4);
        (prop::sample::select(valid_json()), edits).prop_map(|(mut v, edits)| {
            for (at, how, new) in edits {
                let mut all = Vec::new();
                pointers(&v, String::new(), &mut all);
                let p = all[at.index(all.len())].clone();
                let (parent, key) = p.rsplit_once('/').unwrap_or(("", ""));
                match how {
                    0 | 1 => {
                        if p.is_empty() {
                            v = new;
                        } else if let Some(x) = v.pointer_mut(&p) {
                            *x = new;
                        }
                    }
                    2 => match v.pointer_mut(parent) {
                        Some(Value::Object(m)) => {
                            m.remove(key);
                        }
                        Some(Value::Array(a)) if !a.is_empty() => {
                            a.pop();
                        }
                        _ => {}
                    },
                    _ => {
                        if let Some(Value::Object(m)) = v.pointer_mut(&p) {
                            m.insert("extra\nkey".to_owned(), new);
                        }
                    }
                }
            }
            serde_json::to_vec(&v).unwrap()
        })
    }

    fn inputs() -> impl Strategy<Value = Vec<u8>> {
        let valid: Vec<Vec<u8>> = valid_json().iter().map(|v| serde_json::to_vec(v).unwrap()).collect();
        prop_oneof![
            4 => mutated_json(),
            2 => prop::sample::select(valid).prop_flat_map(|f| mutated(f, usize::MAX)),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    fn predict_some(sets: &ConfidenceSets) {
        for nd in [sets.ndim().unwrap_or(2), 1, 3] {
            let shape: Vec<usize> = [3, 2, 2][..nd.min(3)].to_vec();
            let finite = ArrayD::from_shape_fn(IxDyn(&shape), |i| i[0] as f64 - 1.0);
            ok(sets.predict(&finite));
            ok(sets.predict(&finite.mapv(|x| x as f32)));
            ok(sets.predict(&Image::new(finite.view(), Spacing::unit()).unwrap()));
            let mut nan = finite.clone();
            nan[IxDyn(&vec![0; nd.min(3)])] = f64::NAN;
            assert!(ok(sets.predict(&nan)).is_none());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn calibration_files_are_read_or_refused_in_one_line(json in inputs()) {
            if let Some(sets) = ok(serde_json::from_slice::<ConfidenceSets>(&json)) {
                let _ = sets.warnings();
                predict_some(&sets);
                let text = serde_json::to_string(&sets).unwrap();
                let back: ConfidenceSets = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
            }
            if let Some(cal) = ok(serde_json::from_slice::<Calibration>(&json)) {
                let back: Calibration = serde_json::from_str(&serde_json::to_string(&cal).unwrap()).unwrap();
                prop_assert_eq!(&back, &cal);
                let a = Alpha::new(0.2).unwrap();
                let c = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity);
                for mode in [Mode::max(a), Mode::marginal(a)] {
                    ok(cal.thresholds(&mode));
                    if let Some(sets) = ok(c.fit(&cal, mode)) {
                        predict_some(&sets);
                    }
                }
            }
        }
    }

    #[test]
    fn names_with_line_breaks_in_json_give_one_line_errors() {
        let sets = valid_json().remove(0);
        let text = serde_json::to_string(&sets).unwrap();
        for (from, to) in [
            (r#""mode":"max""#, r#""mode":"m\nax""#),
            (r#""name":"identity""#, r#""name":"iden\r\ntity""#),
            (r#""confseg_version":"0.1.0""#, r#""confseg_version":"99.0.0\nx""#),
            (r#""ndim":2"#, r#""ndim":2,"ndim":3,"n\nx":1"#),
        ] {
            assert!(text.contains(from), "{from} in {text}");
            let bad = text.replacen(from, to, 1);
            let e = serde_json::from_str::<ConfidenceSets>(&bad).unwrap_err();
            assert_one_line(&e);
        }
        // unknown keys are ignored in fitted sets
        let extra = text.replacen(r#""n":20"#, r#""n":20,"odd\nkey":1"#, 1);
        assert!(serde_json::from_str::<ConfidenceSets>(&extra).is_ok());
        let cal = serde_json::to_string(&valid_json()[1]).unwrap();
        let bad = cal.replacen(r#""tau""#, r#""t\nau""#, 1);
        let e = serde_json::from_str::<Calibration>(&bad).unwrap_err();
        assert_one_line(&e);
        assert!(e.to_string().contains(r"t\nau"), "{e}");
    }
}

/// A transform name: documented forms, with parameters at their edges,
/// and strings made of their pieces.
fn transform_name() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "identity",
        "sigmoid",
        "distance",
        "distance:chessboard",
        "distance-centre:cityblock:threshold=0.5",
        "gaussian:2",
        "gaussian-sigma:0.7:units=physical:mode=constant:cval=-3:truncate=2.5",
        "gaussian:1.5:mode=wrap",
        "gaussian:3:mode=mirror:truncate=0.5",
        "box-outer",
        "box-inner:connectivity=full:threshold=0.5",
    ])
    .prop_map(str::to_owned);
    let number = prop_oneof![
        special().prop_map(|x| x.to_string()),
        prop::sample::select(vec!["1e-320", "-0", "1e400", "nan", "inf", "0x10", " 2 ", "", "1e16777216"])
            .prop_map(str::to_owned),
    ];
    let name = prop::sample::select(vec![
        "identity",
        "sigmoid",
        "distance",
        "distance-centre",
        "distance-center",
        "gaussian",
        "gaussian-sigma",
        "box-outer",
        "box-inner",
        "box",
    ]);
    let key = prop::sample::select(vec![
        "threshold",
        "units",
        "mode",
        "cval",
        "truncate",
        "connectivity",
        "metric",
        "",
    ]);
    let word = prop::sample::select(vec![
        "physical",
        "voxels",
        "constant",
        "reflect",
        "nearest",
        "wrap",
        "mirror",
        "face",
        "full",
        "euclidean",
        "chessboard",
        "cityblock",
        "\n",
        "=",
        ":",
    ]);
    let option = prop_oneof![
        (key.clone(), number.clone()).prop_map(|(k, v)| format!("{k}={v}")),
        (key, word.clone()).prop_map(|(k, v)| format!("{k}={v}")),
        word.prop_map(str::to_owned),
    ];
    let built =
        (name, prop::option::of(number), prop::collection::vec(option, 0..4)).prop_map(|(n, main, opts)| {
            let mut s = n.to_owned();
            if let Some(m) = main {
                s.push(':');
                s.push_str(&m);
            }
            for o in opts {
                s.push(':');
                s.push_str(&o);
            }
            s
        });
    prop_oneof![2 => known, 4 => built, 1 => "\\PC{0,20}"]
}

/// A spacing for `ndim` axes: unit, ordinary values, or extremes.
fn spacing_for(ndim: usize) -> impl Strategy<Value = Option<Vec<f64>>> {
    let entry = prop_oneof![20 => prop::sample::select(vec![1.0, 0.5, 2.0, 0.75, 3.0, 1e-3]), 1 => special()];
    prop_oneof![
        2 => Just(None),
        4 => prop::collection::vec(entry.clone(), ndim..=ndim).prop_map(Some),
        1 => prop::collection::vec(entry, 0..5).prop_map(Some),
    ]
}

/// Arbitrary small values: mostly finite, with NaN, infinities, subnormals
/// and extremes.
fn voxel() -> impl Strategy<Value = f64> {
    prop_oneof![6 => common::score(), 2 => special()]
}

fn image_of(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<f64>> {
    let n = shape.iter().product::<usize>();
    prop::collection::vec(voxel(), n).prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
}

/// Whether `t` is a Gaussian whose kernel radius exceeds 10^4 voxels: its
/// taps are folded onto the axis in O(radius) time (radii up to 2^24 are
/// accepted whatever the image's size; memory stays O(axis length)), which
/// is too slow for thousands of cases; see
/// `huge_kernels_fold_exactly_onto_small_images`.
fn huge_kernel(t: &ScoreTransform, ndim: usize, spacing: &Spacing) -> bool {
    match t {
        ScoreTransform::Gaussian(g) => g
            .sigmas(spacing, ndim)
            .is_ok_and(|s| s.iter().any(|&s| (g.truncate() * s).is_nan() || g.truncate() * s > 1e4)),
        _ => false,
    }
}

/// Apply `t` in the float type of `scores`: same shape, and no NaN for NaN-free input.
fn check_transform<A: Float>(t: &ScoreTransform, scores: &ArrayD<A>, spacing: &Spacing) {
    if huge_kernel(t, scores.ndim(), spacing) {
        return;
    }
    let nan_free = scores.iter().all(|x| !x.is_nan());
    if let Some(out) = ok(t.apply(scores, spacing)) {
        assert_eq!(out.shape(), scores.shape());
        if nan_free {
            let p = out.iter().position(|x| x.is_nan());
            assert!(p.is_none(), "{t} made NaN at {p:?} from NaN-free {scores:?} with spacing {spacing}");
        }
    }
    ok(confseg::transform::apply_checked(t, scores, spacing));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn transform_names_parse_print_and_apply(
        name in transform_name(),
        (scores, spacing) in common::shape(4, 4)
            .prop_flat_map(|s| { let nd = s.len(); (image_of(s), spacing_for(nd)) }),
    ) {
        let Some(t) = ok(name.parse::<ScoreTransform>()) else { return Ok(()) };
        let printed = t.to_string();
        prop_assert_eq!(printed.parse::<ScoreTransform>().ok(), Some(t.clone()), "{:?} printed as {:?}", name, printed);
        let spacing = match spacing {
            None => Spacing::unit(),
            Some(v) => match ok(Spacing::new(v)) {
                Some(s) => s,
                None => return Ok(()),
            },
        };
        check_transform(&t, &scores, &spacing);
        check_transform(&t, &scores.mapv(|x| x as f32), &spacing);
    }
}

/// Found by `transform_names_parse_print_and_apply` (fixed):
///
/// * the signed distance of the one-voxel image `[0.0]` in `f32` with
///   spacing `[2.2250738585072014e-308]` (or any spacing that is 0 in
///   `f32`) is NaN where it should be `-inf` (or an error):
///   `src/transform/distance.rs`, and `boxes.rs`, which measures distances
///   the same way. The shared check [`Spacing::for_image`] refuses such
///   spacings; the transforms do not call it yet.
/// * `gaussian-sigma:0.7:units=physical:...` on `[0.0]` with spacing
///   `[1.7976931348623157e308]` is NaN: sigma in voxels is subnormal, its
///   square is 0, and the kernel's centre weight is `exp(-inf * 0)`
///   (`src/transform/smooth.rs`, `kernel`); so is `gaussian-sigma:1e-300`
///   with unit spacing.
///
/// * found by the `transform_names` fuzz target
///   (`fuzz/artifacts/transform_names/gaussian-mirror-finite-extremes-make-nan`):
///   `gaussian:3:mode=mirror` on `[-2.5, f64::MIN, f64::MAX]` is NaN. The
///   filter computes `w * (a + b)` for the two scores at each pair of
///   symmetric taps (`src/transform/smooth.rs`, `correlate_axis`), and
///   `MAX + MAX` overflows to `inf` before it is weighted (then
///   `inf - inf`); any scores beyond `MAX / 2` in magnitude can do this.
#[test]
fn transforms_with_extreme_inputs_make_no_nan() {
    let extremes = ndarray::arr1(&[-2.5, f64::MIN, f64::MAX]).into_dyn();
    for name in ["gaussian:3:mode=mirror", "gaussian:3", "gaussian:1:mode=wrap"] {
        let t: ScoreTransform = name.parse().unwrap();
        if let Ok(out) = t.apply(&extremes, &Spacing::unit()) {
            assert!(out.iter().all(|x| !x.is_nan()), "{name} on {extremes}: {out:?}");
        }
    }
    let scores = ndarray::arr1(&[0.0_f64]).into_dyn();
    let cases: [(&str, &[f64]); 3] = [
        ("gaussian-sigma:0.7:units=physical:mode=constant:cval=-3:truncate=2.5", &[f64::MAX, 1e300]),
        ("gaussian:2:units=physical", &[f64::MAX]),
        ("gaussian-sigma:1e-300", &[1.0]),
    ];
    for (name, spacings) in cases {
        let t: ScoreTransform = name.parse().unwrap();
        for &s in spacings {
            let spacing = Spacing::new(vec![s]).unwrap();
            if let Ok(out) = t.apply(&scores, &spacing) {
                assert!(out.iter().all(|x| !x.is_nan()), "{name} with spacing {s}: {out:?}");
            }
        }
    }
    for name in ["distance", "distance-centre:chessboard", "box-outer", "box-inner"] {
        let t: ScoreTransform = name.parse().unwrap();
        for s in [f64::MIN_POSITIVE, 5e-324, 1e-160] {
            let spacing = Spacing::new(vec![s]).unwrap();
            if let Ok(out) = t.apply(&scores, &spacing) {
                assert!(out.iter().all(|x| !x.is_nan()), "{name} with spacing {s}: {out:?}");
            }
            if let Ok(out) = t.apply(&scores.mapv(|x| x as f32), &spacing) {
                assert!(out.iter().all(|x| !x.is_nan()), "{name} with spacing {s} in f32: {out:?}");
            }
        }
    }
}

/// Found by the `transform_names` fuzz target (a timeout,
/// `fuzz/artifacts/transform_names/gaussian-huge-truncate-takes-seconds`):
/// `gaussian:33:truncate=333300` has a kernel radius of 4.7 million voxels.
/// Such kernels are folded onto the axis (O(axis) memory; the taps are
/// summed once), and the result is exact: in the reflecting modes a
/// constant image stays constant and one voxel is unchanged; in the
/// constant mode the voxel keeps its own tap's weight.
#[test]
fn huge_kernels_fold_exactly_onto_small_images() {
    let one = ArrayD::<f64>::from_elem(IxDyn(&[1, 1, 1, 1]), 3.5);
    for name in ["gaussian:33:truncate=333300", "gaussian:7000000", "gaussian:7000000:mode=wrap"] {
        let t: ScoreTransform = name.parse().unwrap();
        let out = t.apply(&one, &Spacing::unit()).unwrap();
        assert!(out.iter().all(|&x| (x - 3.5).abs() <= 1e-12), "{name}: {out:?}");
    }
    let flat = ArrayD::<f32>::from_elem(IxDyn(&[3, 5]), -2.0);
    let t: ScoreTransform = "gaussian:5000000:mode=mirror".parse().unwrap();
    let out = t.apply(&flat, &Spacing::unit()).unwrap();
    assert!(out.iter().all(|&x| (x + 2.0).abs() <= 1e-5), "{out:?}");
    // constant mode, cval 0: the voxel keeps the weight of the taps it covers
    let t: ScoreTransform = "gaussian-sigma:1000:mode=constant".parse().unwrap();
    let voxel = ArrayD::<f64>::from_elem(IxDyn(&[1]), 1.0);
    let out = t.apply(&voxel, &Spacing::unit()).unwrap();
    let taps: f64 = (-4000..=4000).map(|x: i32| (-0.5 * f64::from(x).powi(2) / 1e6).exp()).sum();
    assert!((out[[0]] - 1.0 / taps).abs() <= 1e-15, "{out:?} vs {}", 1.0 / taps);
}

/// Everything the API target varies.
#[derive(Debug, Clone)]
struct Case {
    scores: ArrayD<f64>,
    masks: ArrayD<u8>,
    inner: &'static str,
    outer: &'static str,
    default_spacing: Option<Vec<f64>>,
    own_spacing: Option<Option<Vec<f64>>>,
    alpha: f64,
    mode: (u8, f64, f64),
    single: bool,
    threshold: f64,
    validation: (usize, usize, u64, u8),
}

const TRANSFORMS: [&str; 12] = [
    "identity",
    "sigmoid",
    "distance",
    "distance:chessboard:threshold=0.5",
    "distance-centre:cityblock",
    "gaussian:2",
    "gaussian-sigma:0.5:units=physical:mode=constant:cval=-1",
    "gaussian:1.5:mode=wrap",
    "box-outer",
    "box-inner:connectivity=full",
    "box-outer:threshold=1e308",
    "gaussian-sigma:1e-300",
];

fn case() -> impl Strategy<Value = Case> {
    // Most stacks are clean (no NaN, 0/1 masks), so that calibration, the
    // pool and the validation run; the others carry NaN and any mask bytes.
    let stack = (1usize..5, common::shape(3, 4), any::<bool>(), any::<bool>()).prop_flat_map(
        |(n, s, nan, bad_masks)| {
            let mut full = vec![n];
            full.extend(&s);
            let len = full.iter().product::<usize>();
            let mask = if bad_masks {
                prop_oneof![8 => 0u8..=1, 1 => any::<u8>()].boxed()
            } else {
                (0u8..=1).boxed()
            };
            let scores = if nan {
                image_of(full.clone()).boxed()
            } else {
                // no NaN, and infinities only when masks may be bad too
                let finite = !bad_masks;
                image_of(full.clone())
                    .prop_map(move |a| {
                        a.mapv(|x| match x {
                            x if x.is_nan() => 0.0,
                            x if finite && x.is_infinite() => x.signum() * 1e3,
                            x => x,
                        })
                    })
                    .boxed()
            };
            (scores, prop::collection::vec(mask, len), Just(full), Just(s.len()))
        },
    );
    let alpha = prop_oneof![
        12 => prop::sample::select(vec![0.1, 0.2, 0.5, 0.05, 0.9, 0.3, 0.999_999]),
        1 => special(),
    ];
    let weight = prop_oneof![4 => prop::sample::select(vec![1.0, 4.0, 0.25]), 1 => special()];
    (
        stack,
        prop::sample::select(TRANSFORMS.to_vec()),
        prop::sample::select(TRANSFORMS.to_vec()),
        alpha,
        (0u8..4, weight.clone(), weight),
        any::<bool>(),
        prop_oneof![3 => Just(0.0), 1 => special()],
        (0usize..6, 1usize..3, any::<u64>(), any::<u8>()),
    )
        .prop_flat_map(
            |((scores, masks, full, nd), inner, outer, alpha, mode, single, threshold, validation)| {
                (spacing_for(nd), prop::option::of(spacing_for(nd))).prop_map(
                    move |(default_spacing, own_spacing)| Case {
                        scores: scores.clone(),
                        masks: ArrayD::from_shape_vec(IxDyn(&full), masks.clone()).unwrap(),
                        inner,
                        outer,
                        default_spacing,
                        own_spacing,
                        alpha,
                        mode,
                        single,
                        threshold,
                        validation,
                    },
                )
            },
        )
}

fn spacing_of(v: &Option<Vec<f64>>) -> Option<Spacing> {
    match v {
        None => Some(Spacing::unit()),
        Some(v) => ok(Spacing::new(v.clone())),
    }
}

fn mode_of(c: &Case) -> Option<Mode> {
    let a = ok(Alpha::new(c.alpha))?;
    let (kind, w1, w2) = c.mode;
    match kind {
        0 => Some(Mode::max(a)),
        1 => Some(Mode::marginal(a)),
        2 => ok(Mode::bonferroni(a, w1, w2)),
        // levels as shares of alpha (weights of 1 and 4 overshoot it)
        _ => ok(Mode::bonferroni_split(
            a,
            ok(Alpha::named("alpha_inner", c.alpha * w1 / 4.0))?,
            ok(Alpha::named("alpha_outer", c.alpha * w2 / 4.0))?,
        )),
    }
}

fn run_case<A: Float>(c: &Case, scores: &ArrayD<A>) {
    let masks = &c.masks;
    let n = scores.len_of(Axis(0));
    let calibrator = Calibrator::new(
        c.inner.parse::<ScoreTransform>().unwrap(),
        c.outer.parse::<ScoreTransform>().unwrap(),
    );
    let Some(default) = spacing_of(&c.default_spacing) else { return };
    let calibrator = calibrator.with_spacing(default);
    let own = match &c.own_spacing {
        None => None,
        Some(v) => match spacing_of(v) {
            Some(s) => Some(s),
            None => return,
        },
    };
    let mut cal = Calibration::new();
    let mut stats = Vec::new();
    for i in 0..n {
        let (s, m) = (scores.index_axis(Axis(0), i), masks.index_axis(Axis(0), i));
        ok(region_statistics(&s, &s, &m));
        let r = match &own {
            Some(sp) => {
                Image::new(s.view(), sp.clone()).and_then(|img| calibrator.observe(&mut cal, &img, &m))
            }
            None => calibrator.observe(&mut cal, &s, &m),
        };
        stats.push(ok(r).and_then(|()| cal.get(cal.len() - 1)));
    }
    let Some(mode) = mode_of(c) else { return };
    if let Some(sets) = ok(calibrator.fit(&cal, mode)) {
        let _ = cal.warnings(&sets);
        let (li, lo) = (sets.thresholds().inner.value(), sets.thresholds().outer.value());
        for (i, st) in stats.iter().enumerate() {
            let (s, m) = (scores.index_axis(Axis(0), i), masks.index_axis(Axis(0), i));
            let p = match &own {
                Some(sp) => ok(Image::new(s.view(), sp.clone()).and_then(|img| sets.predict(&img))),
                None => ok(sets.predict(&s)),
            };
            if let (Some(p), Some(st)) = (p, st) {
                let cov = p.coverage(&m).unwrap();
                assert_eq!(cov.inner, st.tau <= li, "image {i}");
                assert_eq!(cov.outer, st.gamma <= lo, "image {i}");
            }
        }
        ok(sets.predict_stack(scores));
        #[cfg(feature = "serde")]
        {
            let text = serde_json::to_string(&sets).unwrap();
            let back: confseg::ConfidenceSets = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }
    // validation on a pool of the same images
    let Some(pool) = ok(Pool::new(&calibrator, scores, masks, c.threshold)) else { return };
    let (n_cal, repeats, seed, pick) = c.validation;
    // mostly a calibration part that leaves test images; sometimes none or all
    let n_cal = match n_cal {
        0 => 0,
        5 => pool.len(),
        k => 1 + k % pool.len().saturating_sub(1).max(1),
    };
    let Some(splits) = ok(Splits::new(n_cal, repeats, seed)) else { return };
    let spec = match mode.kind() {
        ModeKind::Bonferroni => Levels::bonferroni(c.mode.1, c.mode.2),
        kind => Levels::new(kind),
    };
    let all = [
        Method::Conformal(spec),
        Method::RiskControl,
        Method::PixelwiseBonferroni(spec),
        Method::Morphological(confseg::transform::Footprint::Full, Rank::Marginal),
        Method::Morphological(confseg::transform::Footprint::Face, Rank::Marginal),
    ];
    let methods: Vec<Method> =
        all.iter().enumerate().filter(|(k, _)| pick >> k & 1 == 1).map(|(_, m)| m.clone()).collect();
    let geometry = [Geometry::Off, Geometry::FirstSplits(1), Geometry::AllSplits][usize::from(pick >> 5) % 3];
    let alphas = vec![mode.joint_alpha().unwrap_or(mode.inner_alpha())];
    if let Some(reports) = ok(Validation::new(alphas, splits).with_geometry(geometry).run(&pool, &methods)) {
        for r in reports {
            for x in [r.inner_coverage, r.outer_coverage, r.joint_coverage, r.too_few_images] {
                assert!((0.0..=1.0).contains(&x), "{}: {x}", r.method);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn calibrate_predict_validate_survive_any_input(c in case()) {
        if c.single {
            run_case(&c, &c.scores.mapv(|x| x as f32));
        } else {
            run_case(&c, &c.scores);
        }
    }
}
