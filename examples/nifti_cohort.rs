//! A small synthetic cohort of per-subject NIfTI volumes, as a segmentation
//! network would leave them: for each subject `sub-NN_prob.nii.gz` (float32
//! logits) and `sub-NN_seg.nii.gz` (a uint8 label map with two structures:
//! 1 = core, 2 = rim), each with its own shape, anisotropic spacing and
//! affine. 60 calibration subjects go to `DIR/cal`, 6 new ones to `DIR/new`.
//!
//! ```sh
//! cargo run --release --features nifti --example nifti_cohort -- cohort
//! ```
//!
//! then follow the README's "Medical volumes" section (calibrate on the
//! folder, predict per subject, draw a slice).

use confseg::io::nifti::{write_labels, write_scores, NiftiHeader};
use confseg::synthetic::Synthetic;
use confseg::{Geometry, Spacing};
use ndarray::Array3;

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
            write_scores(out.join(format!("{id}_prob.nii.gz")), &scores.mapv(|x| x as f32), &header)?;
            write_labels(out.join(format!("{id}_seg.nii.gz")), &labels, &header)?;
        }
    }
    println!("wrote 60 calibration and 6 new subjects to {}/cal and {}/new", dir.display(), dir.display());
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
