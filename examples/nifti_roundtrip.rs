//! Read NIfTI images and write a mask and the scores back, for
//! `scripts/check_nifti.py` (which compares everything with nibabel).
//!
//! ```text
//! cargo run --features nifti --example nifti_roundtrip -- a.nii b.nii.gz ...
//! ```
//!
//! For each input prints one JSON line: version, dtype, shape, spacing,
//! affine (and where it comes from), precision, scaling, and two checksums
//! of the scores as read in `f64`: their sum, and the sum of
//! `value * (1 + i)` with `i` the row-major index in `(x, y, z, ...)` order
//! (which catches a wrong axis order). Next to each input it writes
//! `<name>_mask.nii[.gz]` (the voxels whose score is > 0, as `uint8`) and
//! `<name>_scores.nii[.gz]` (the scores as `float64`), with the input's
//! geometry.

use std::path::{Path, PathBuf};

use confseg::io::nifti;

fn json_list(v: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", v.into_iter().collect::<Vec<_>>().join(", "))
}

fn num(x: f64) -> String {
    format!("{x:?}")
}

/// `dir/a.nii.gz` -> `dir/a_<suffix>.nii.gz`.
fn sibling(p: &Path, suffix: &str) -> PathBuf {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = match name.strip_suffix(".nii.gz") {
        Some(s) => (s.to_owned(), ".nii.gz"),
        None => (name.strip_suffix(".nii").unwrap_or(&name).to_owned(), ".nii"),
    };
    p.with_file_name(format!("{stem}_{suffix}{ext}"))
}

fn main() -> Result<(), confseg::Error> {
    for arg in std::env::args().skip(1) {
        let path = PathBuf::from(&arg);
        let (scores, h) = nifti::read_scores::<f64>(&path)?;
        let sum: f64 = scores.iter().sum();
        let weighted: f64 = scores.iter().enumerate().map(|(i, &v)| v * (i as f64 + 1.0)).sum();
        let mask = scores.mapv(|v| v > 0.0);
        let (mask_path, scores_path) = (sibling(&path, "mask"), sibling(&path, "scores"));
        nifti::write_mask(&mask_path, &mask, &h)?;
        nifti::write_scores(&scores_path, &scores, &h)?;
        let spacing = h.spacing().as_slice().unwrap_or(&[]).iter().map(|&s| num(s));
        let affine = h.affine().iter().map(|row| json_list(row.iter().map(|&v| num(v))));
        let scaling = match h.scaling() {
            Some((s, i)) => format!("[{}, {}]", num(s), num(i)),
            None => "null".into(),
        };
        println!(
            "{{\"file\": {:?}, \"version\": {}, \"dtype\": \"{}\", \"big_endian\": {}, \"shape\": {}, \
             \"spacing\": {}, \"affine\": {}, \"affine_source\": \"{:?}\", \"precision\": \"{}\", \
             \"scaling\": {scaling}, \"sum\": {}, \"weighted_sum\": {}, \"mask\": {:?}, \"mask_voxels\": {}, \
             \"scores\": {:?}}}",
            arg,
            h.version(),
            h.dtype(),
            h.is_big_endian(),
            json_list(h.shape().iter().map(usize::to_string)),
            json_list(spacing),
            json_list(affine),
            h.affine_source(),
            h.precision().name(),
            num(sum),
            num(weighted),
            mask_path.display().to_string(),
            mask.iter().filter(|&&m| m).count(),
            scores_path.display().to_string(),
        );
    }
    Ok(())
}
