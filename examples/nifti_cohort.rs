//! A small synthetic cohort of per-subject NIfTI volumes, as a segmentation
//! network would leave them: for each subject `sub-NN_prob.nii.gz` (float32
//! logits) and `sub-NN_seg.nii.gz` (a uint8 label map with two structures:
//! 1 = core, 2 = rim), each with its own shape, anisotropic spacing and
//! affine. 60 calibration subjects go to `DIR/cal`, 6 new ones to `DIR/new`.
//! The same subjects' network outputs are also written as the tools write
//! them: MONAI's `SaveImage` layout, `(X, Y, Z, 2)` two-class logits, in
//! `DIR/monai/{cal,new}/sub-NN.nii.gz`; and nnU-Net's `--save_probabilities`
//! folder, `sub-NN.npz` (`probabilities`, `(2, Z, Y, X)`) beside the
//! predicted segmentation `sub-NN.nii.gz`, in `DIR/nnunet/{cal,new}`.
//!
//! ```sh
//! cargo run --release --features nifti --example nifti_cohort -- cohort
//! ```
//!
//! then follow the README's "Medical volumes" section (calibrate on the
//! folder, predict per subject, draw a slice).

use std::io::Write;
use std::path::Path;

use confseg::image::Geometry;
use confseg::io::nifti::{write_labels, write_scores, NiftiHeader};
use confseg::synthetic::Synthetic;
use confseg::{Spacing, TwoClassSoftmax};
use ndarray::{Array3, Axis, Ix3};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "cohort".into()));
    let shapes = [[40, 36, 16], [36, 40, 14], [44, 40, 12], [40, 40, 18], [38, 42, 15], [42, 36, 13]];
    let spacings = [[0.8, 0.8, 2.5], [0.7, 0.7, 3.0], [0.9, 0.9, 2.0], [0.8, 0.8, 2.2]];
    for (part, range) in [("cal", 0..60), ("new", 1000..1006)] {
        let out = dir.join(part);
        std::fs::create_dir_all(&out)?;
        for i in range {
            let shape = shapes[i % shapes.len()];
            let spacing = spacings[i % spacings.len()];
            let (scores, mask) = Synthetic::new(shape).seed(11).pair(i);
            // two structures: the rim of the object (2) around its core (1)
            let core = eroded(&mask);
            let labels = Array3::from_shape_fn(mask.dim(), |v| match (mask[v], core[v]) {
                (true, true) => 1u8,
                (true, false) => 2,
                _ => 0,
            });
            let mut affine = [[0.0; 4]; 4];
            for (k, &s) in spacing.iter().enumerate() {
                affine[k][k] = s;
                affine[k][3] = -(shape[k] as f64) * s / 2.0;
            }
            affine[3][3] = 1.0;
            let geometry = Geometry::new(Spacing::new(spacing.to_vec())?).with_affine(affine)?;
            let header = NiftiHeader::new(&shape, &geometry)?;
            let id = format!("sub-{i:04}");
            let logits = scores.mapv(|x| x as f32);
            write_scores(out.join(format!("{id}_prob.nii.gz")), &logits, &header)?;
            write_labels(out.join(format!("{id}_seg.nii.gz")), &labels, &header)?;

            // MONAI: (X, Y, Z, 2) logits (background 0, object the logit); the
            // header's 4th spacing entry belongs to the class axis
            let two = ndarray::stack(Axis(3), &[logits.mapv(|_| 0.0).view(), logits.view()])?;
            let mut g4 = spacing.to_vec();
            g4.push(1.0);
            let h4 = NiftiHeader::new(two.shape(), &Geometry::new(Spacing::new(g4)?).with_affine(affine)?)?;
            let monai = dir.join("monai").join(part);
            std::fs::create_dir_all(&monai)?;
            write_scores(monai.join(format!("{id}.nii.gz")), &two, &h4)?;

            // nnU-Net: the softmax probabilities, (C, z, y, x), beside the
            // predicted segmentation that carries the header
            let p =
                TwoClassSoftmax::new(Axis(3)).apply(&two.clone().into_dyn())?.into_dimensionality::<Ix3>()?;
            let probabilities = ndarray::stack(Axis(3), &[p.mapv(|v| 1.0 - v).view(), p.view()])?;
            let nnunet = dir.join("nnunet").join(part);
            std::fs::create_dir_all(&nnunet)?;
            write_npz(&nnunet.join(format!("{id}.npz")), &probabilities.into_dyn().reversed_axes())?;
            write_labels(nnunet.join(format!("{id}.nii.gz")), &p.mapv(|v| u8::from(v > 0.5)), &header)?;
        }
    }
    println!(
        "wrote 60 calibration and 6 new subjects to {0}/cal and {0}/new, as MONAI writes them to {0}/monai \
         and as nnU-Net writes them to {0}/nnunet",
        dir.display()
    );
    Ok(())
}

/// `np.savez_compressed(path, probabilities=a)`: one deflated `.npy` member.
fn write_npz(path: &Path, a: &ndarray::ArrayD<f32>) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::NamedTempFile::new()?;
    confseg::io::write_npy(tmp.path(), &a.as_standard_layout())?;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path)?);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    z.start_file("probabilities.npy", options)?;
    z.write_all(&std::fs::read(tmp.path())?)?;
    z.finish()?;
    Ok(())
}

/// The mask minus its boundary voxels (face neighbours outside the mask).
fn eroded(mask: &Array3<bool>) -> Array3<bool> {
    let (a, b, c) = mask.dim();
    let inside = |x: isize, y: isize, z: isize| {
        x >= 0
            && y >= 0
            && z >= 0
            && (x as usize) < a
            && (y as usize) < b
            && (z as usize) < c
            && mask[[x as usize, y as usize, z as usize]]
    };
    Array3::from_shape_fn((a, b, c), |(i, j, k)| {
        let (x, y, z) = (i as isize, j as isize, k as isize);
        inside(x, y, z)
            && inside(x + 1, y, z)
            && inside(x - 1, y, z)
            && inside(x, y + 1, z)
            && inside(x, y - 1, z)
            && inside(x, y, z + 1)
            && inside(x, y, z - 1)
    })
}
