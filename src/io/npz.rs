//! nnU-Net's probability files (feature `nifti`).
//!
//! `nnUNetv2_predict --save_probabilities` writes, for each case, `case.npz`
//! holding one array, `probabilities`, of shape `(C, z, y, x)` (`(C, 1, y,
//! x)` for 2-D data): the softmax probability of each of the `C` classes,
//! with the spatial axes in SimpleITK's reversed order. Beside it,
//! `case.nii.gz` holds the predicted segmentation and, in its header, the
//! case's geometry.
//!
//! [`read_probabilities`] reads the array with every axis reversed, so that
//! it is in the image's own axis order with the class axis last,
//! `(x, y, z, C)` — the axes of the NIfTI header beside it and the layout
//! of MONAI's channel-last files. [`geometry_file`] names that NIfTI file.
//! The archive is read with the `zip` crate; the `.npy` member inside it is
//! parsed and bounded by the same reader as a `.npy` file.

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;

use super::npy::{decode_image, read_header_from};
use super::{file_error, os_error, NpyInfo, ReadFloat};
use crate::error::{FileProblem, Result};

/// The array nnU-Net stores in its `.npz` files.
pub const KEY: &str = "probabilities";

fn bad(path: &Path, reason: impl Into<String>) -> crate::Error {
    file_error(path, FileProblem::BadData { reason: reason.into() })
}

/// Open the member `probabilities.npy` of the archive at `path` and read
/// its header (shape as stored, `(C, z, y, x)`).
fn open(path: &Path) -> Result<(zip::ZipArchive<File>, NpyInfo)> {
    let file = File::open(path).map_err(|e| os_error(path, &e))?;
    if !file.metadata().map_err(|e| os_error(path, &e))?.is_file() {
        return Err(file_error(path, FileProblem::NotRegular));
    }
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(path, format!("not a NumPy .npz archive ({e})")))?;
    let info = {
        let mut member = member(&mut archive, path)?;
        let len = member.size();
        read_header_from(path, &mut member, len, "scores")?.info
    };
    check_shape(path, &info.shape)?;
    Ok((archive, info))
}

/// The member holding [`KEY`], or an error naming what the archive holds.
fn member<'a>(archive: &'a mut zip::ZipArchive<File>, path: &Path) -> Result<zip::read::ZipFile<'a, File>> {
    let name = format!("{KEY}.npy");
    if archive.index_for_name(&name).is_none() {
        let held: Vec<String> = archive
            .file_names()
            .take(8)
            .filter_map(|n| Some(n.ok()?.trim_end_matches(".npy").to_owned()))
            .collect();
        return Err(bad(
            path,
            format!(
                "holds no array '{KEY}' (it holds {held:?}); nnU-Net writes it with \
                 nnUNetv2_predict --save_probabilities"
            ),
        ));
    }
    archive.by_name(&name).map_err(|e| bad(path, format!("cannot read '{name}': {e}")))
}

/// nnU-Net's layout: a class axis and two or three spatial axes, none empty.
fn check_shape(path: &Path, shape: &[usize]) -> Result<()> {
    if !(3..=4).contains(&shape.len()) || shape.contains(&0) {
        return Err(bad(
            path,
            format!(
                "'{KEY}' has shape {shape:?}; nnU-Net's is (classes, z, y, x) or (classes, y, x), none empty"
            ),
        ));
    }
    if shape[0] < 2 {
        return Err(bad(
            path,
            format!("'{KEY}' has shape {shape:?}: fewer than two classes on its first axis"),
        ));
    }
    Ok(())
}

/// The shape of the probabilities in the image's own axis order
/// (`(x, y, z, C)`, the stored shape reversed) and their dtype, from the
/// headers only.
///
/// # Errors
/// Not a readable `.npz` archive, no `probabilities` array, or a header
/// the `.npy` reader refuses.
pub fn info(path: impl AsRef<Path>) -> Result<NpyInfo> {
    let (_, mut info) = open(path.as_ref())?;
    info.shape.reverse();
    Ok(info)
}

/// Read the probabilities of `path` in the float type `A`, every axis
/// reversed: `(x, y, z, C)` for nnU-Net's `(C, z, y, x)`.
///
/// # Errors
/// As [`info`]; a truncated or corrupt member; a value `A` cannot hold
/// exactly; [`crate::Error::OutOfMemory`].
pub fn read_probabilities<A: ReadFloat>(path: impl AsRef<Path>) -> Result<ArrayD<A>> {
    let path = path.as_ref();
    let (mut archive, _) = open(path)?;
    let mut member = member(&mut archive, path)?;
    let len = member.size();
    let header = read_header_from(path, &mut member, len, "scores")?;
    let a = decode_image::<A>(path, &mut member, &header)?.reversed_axes();
    crate::alloc::ensure_room(a.len() as u128 * std::mem::size_of::<A>() as u128, "probabilities")?;
    Ok(a.as_standard_layout().into_owned())
}

/// The NIfTI file beside an nnU-Net `case.npz` that carries its geometry
/// (`case.nii.gz`, else `case.nii`).
///
/// # Errors
/// Neither exists: the error says nnU-Net writes it next to the `.npz`.
pub fn geometry_file(npz: &Path) -> Result<PathBuf> {
    let name = npz.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let stem = &name[..name.len().saturating_sub(4)];
    let candidates = [".nii.gz", ".nii"].map(|ext| npz.with_file_name(format!("{stem}{ext}")));
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        bad(
            npz,
            format!(
                "no {stem}.nii.gz beside it: nnU-Net's probabilities take their geometry from the \
                 segmentation it writes next to them; keep the prediction folder as nnUNetv2_predict left it"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A `.npy` member of `shape` holding `0, 1, 2, ...` as little-endian f32.
    fn npy_bytes(shape: &[usize]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        let mut dict =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
        while (10 + dict.len() + 1) % 64 != 0 {
            dict.push(' ');
        }
        dict.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&u16::try_from(dict.len()).unwrap().to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        let n: usize = shape.iter().product();
        for v in 0..n {
            #[allow(clippy::cast_precision_loss)]
            out.extend_from_slice(&(v as f32).to_le_bytes());
        }
        out
    }

    fn write_npz(path: &Path, members: &[(&str, Vec<u8>)]) {
        let mut z = zip::ZipWriter::new(File::create(path).unwrap());
        let options =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            z.start_file(*name, options).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn axes_are_reversed_to_the_images_own_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("case.npz");
        write_npz(&p, &[("probabilities.npy", npy_bytes(&[2, 3, 4, 5]))]);
        assert_eq!(info(&p).unwrap().shape, vec![5, 4, 3, 2]);
        let a = read_probabilities::<f32>(&p).unwrap();
        assert_eq!(a.shape(), &[5, 4, 3, 2]);
        assert!(a.is_standard_layout());
        // stored element (c, z, y, x) = ((c*3 + z)*4 + y)*5 + x
        for (c, z, y, x) in [(0, 0, 0, 0), (1, 2, 3, 4), (1, 0, 2, 1), (0, 2, 0, 3)] {
            let stored = ((c * 3 + z) * 4 + y) * 5 + x;
            #[allow(clippy::cast_precision_loss)]
            let want = stored as f32;
            assert_eq!(a[[x, y, z, c]], want);
        }
    }

    #[test]
    fn wrong_archives_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("case.npz");
        write_npz(&p, &[("logits.npy", npy_bytes(&[2, 3, 4]))]);
        let e = info(&p).unwrap_err().to_string();
        assert!(e.contains("no array 'probabilities'") && e.contains("logits"), "{e}");
        write_npz(&p, &[("probabilities.npy", npy_bytes(&[1, 3, 4]))]);
        assert!(info(&p).unwrap_err().to_string().contains("fewer than two classes"));
        write_npz(&p, &[("probabilities.npy", npy_bytes(&[2, 3]))]);
        assert!(info(&p).unwrap_err().to_string().contains("(classes, z, y, x)"));
        std::fs::write(&p, b"not a zip").unwrap();
        assert!(info(&p).unwrap_err().to_string().contains("not a NumPy .npz archive"));
        // a member cut short
        let mut short = npy_bytes(&[2, 3, 4]);
        short.truncate(short.len() - 8);
        write_npz(&p, &[("probabilities.npy", short)]);
        assert!(read_probabilities::<f32>(&p).is_err());
        let e = geometry_file(&p).unwrap_err().to_string();
        assert!(e.contains("case.nii.gz beside it"), "{e}");
        std::fs::write(dir.path().join("case.nii.gz"), b"").unwrap();
        assert_eq!(geometry_file(&p).unwrap(), dir.path().join("case.nii.gz"));
    }
}
