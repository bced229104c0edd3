//! The NIfTI reader on arbitrary bytes, as `.nii` and as gzipped
//! `.nii.gz`: header, scores as `f32`/`f64`, masks (binary and a label
//! set). No panic, one-line errors, reads that agree with each other, and
//! what was read writes back and reads again unchanged.
#![no_main]

use std::io::Write;

use arbitrary::Arbitrary;
use confseg::io::nifti;
use confseg::io::Labels;
use confseg_fuzz::{ok, scratch, split};
use libfuzzer_sys::fuzz_target;

/// Parameters, followed in the fuzzer's input by the file's bytes.
#[derive(Debug, Arbitrary)]
struct Params {
    /// 0: the bytes as `.nii`; 1: the bytes gzipped, as `.nii.gz`; 2: the
    /// bytes as `.nii.gz` (a corrupt or hand-made gzip stream).
    how: u8,
    /// Two labels of a label set.
    labels: [i8; 2],
}

/// NaN-aware equality of two decoded values.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fuzz_target!(|data: &[u8]| {
    let (input, file): (Params, _) = split(data);
    let (name, bytes) = match input.how % 3 {
        0 => ("x.nii", file.to_vec()),
        1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(file).expect("gzip in memory");
            ("x.nii.gz", gz.finish().expect("gzip in memory"))
        }
        _ => ("x.nii.gz", file.to_vec()),
    };
    let path = scratch(name);
    std::fs::write(&path, &bytes).expect("scratch file written");
    let labels = Labels::select(input.labels.map(i64::from)).expect("two labels");

    let Some(header) = ok(nifti::read_header(&path)) else {
        // every reader refuses what the header reader refuses
        assert!(ok(nifti::read_scores::<f64>(&path)).is_none());
        assert!(ok(nifti::read_mask(&path, &Labels::Binary)).is_none());
        return;
    };
    let shape = header.shape().to_vec();
    assert!(!shape.is_empty() && shape.len() <= 7 && shape.iter().all(|&n| n > 0));
    assert_eq!(header.spacing().as_slice().map(<[f64]>::len), Some(shape.len()));
    assert!(header.affine().iter().flatten().all(|v| v.is_finite()));
    let _ = header.geometry();

    let s32 = ok(nifti::read_scores::<f32>(&path));
    let s64 = ok(nifti::read_scores::<f64>(&path));
    if let Some((a, h)) = &s32 {
        assert_eq!(a.shape(), &shape[..]);
        assert_eq!(h, &header);
    }
    if let Some((b, h)) = &s64 {
        assert_eq!(b.shape(), &shape[..]);
        assert_eq!(h, &header);
    }
    if let (Some((a, _)), Some((b, _))) = (&s32, &s64) {
        assert!(a.iter().zip(b).all(|(&x, &y)| same(f64::from(x), y)), "f32 and f64 reads differ");
    }
    for l in [&Labels::Binary, &labels] {
        if let Some((m, h)) = ok(nifti::read_mask(&path, l)) {
            assert_eq!(m.shape(), &shape[..]);
            assert_eq!(h, header);
            assert!(m.iter().all(|&v| v <= 1), "a mask read as more than 0/1");
        }
    }

    // What was read writes back with its header and reads again the same.
    if let Some((b, _)) = &s64 {
        let out = scratch(if name.ends_with(".gz") { "back.nii.gz" } else { "back.nii" });
        if ok(nifti::write_scores(&out, b, &header)).is_some() {
            let (again, h) = nifti::read_scores::<f64>(&out).expect("a written image reads back");
            assert_eq!(again.shape(), b.shape());
            assert!(again.iter().zip(b).all(|(&x, &y)| same(x, y)), "scores changed on the way back");
            assert_eq!(h.spacing(), header.spacing());
            assert_eq!(h.affine(), header.affine());
        }
        let mask = b.mapv(|x| x > 0.0);
        if ok(nifti::write_mask(&out, &mask, &header)).is_some() {
            let (again, _) = nifti::read_mask(&out, &Labels::Binary).expect("a written mask reads back");
            assert_eq!(again, mask.mapv(u8::from));
        }
    }
});
