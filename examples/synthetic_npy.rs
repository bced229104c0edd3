//! Write synthetic calibration and test stacks as batch-first `.npy` files,
//! for trying the `confseg` command line on files (README, "Worked example").
//!
//! ```text
//! cargo run --release --features npy --example synthetic_npy -- data
//! ```
//!
//! writes `data/cal_scores.npy` (f32 logits, shape (1000, 64, 64)),
//! `data/cal_masks.npy` (u8 0/1), and `data/test_scores.npy`,
//! `data/test_masks.npy` (500 images), all from `confseg::synthetic`.

use std::path::PathBuf;

use confseg::synthetic::Synthetic;

fn main() -> Result<(), confseg::Error> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "data".into()));
    std::fs::create_dir_all(&dir).map_err(|e| confseg::Error::InvalidParameter {
        name: "output directory",
        value: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let data = Synthetic::new([64, 64]).seed(2024);
    for (name, range) in [("cal", 0..1000), ("test", 1000..1500)] {
        let (scores, masks) = data.stack(range);
        confseg::io::write_array(dir.join(format!("{name}_scores.npy")), &scores.mapv(|x| x as f32))?;
        confseg::io::write_masks(dir.join(format!("{name}_masks.npy")), &masks)?;
        println!(
            "wrote {}/{name}_scores.npy and {name}_masks.npy: shape {:?}",
            dir.display(),
            scores.shape()
        );
    }
    Ok(())
}
