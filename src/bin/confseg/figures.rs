//! `predict --overlay-dir DIR`: one PNG per image with the outer set (blue)
//! and the inner set (red) drawn over the score map (the paper's Figure 1
//! without the truth, which `predict` does not know).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use confseg::plot::overlay_sets;
use ndarray::{ArrayD, ArrayView2, Axis, Ix2, IxDyn};

use crate::cli::inputs::Scores;

/// Overlay option of `predict`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverlayArgs {
    /// Write one PNG per image here: outer (blue) and inner (red) sets over the
    /// score map (inner scores for transformed input). For 3-D images, the
    /// slice along the first image axis with the largest outer set.
    #[arg(long, value_name = "DIR")]
    pub overlay_dir: Option<PathBuf>,
}

/// The 2-D view to draw of image `i` of a stack: the image itself (2-D) or
/// its slice with the largest outer set (3-D, first image axis).
fn plane<'a>(
    a: &'a ArrayD<f64>,
    outer: &ArrayD<bool>,
    i: usize,
) -> Option<(ArrayView2<'a, f64>, Option<usize>)> {
    let img = a.index_axis(Axis(0), i);
    match img.ndim() {
        2 => img.into_dimensionality::<Ix2>().ok().map(|v| (v, None)),
        3 => {
            let o = outer.index_axis(Axis(0), i);
            let n = img.shape()[0];
            let count = |k: usize| o.index_axis(Axis(0), k).iter().filter(|&&b| b).count();
            // the largest outer set; the middle slice if all are equal
            let k = (0..n).max_by_key(|&k| (count(k), usize::from(k == n / 2))).unwrap_or(0);
            img.index_axis_move(Axis(0), k).into_dimensionality::<Ix2>().ok().map(|v| (v, Some(k)))
        }
        _ => None,
    }
}

/// Write the overlays of every image, if asked.
///
/// # Errors
/// The directory cannot be created or a figure cannot be written.
pub fn write_overlays(args: &OverlayArgs, scores: &Scores, sets: &confseg::Sets<IxDyn>) -> Result<()> {
    let Some(dir) = &args.overlay_dir else { return Ok(()) };
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let background = match scores {
        Scores::Raw { scores, .. } => scores,
        Scores::Transformed { inner, .. } => inner,
    };
    let n = background.shape()[0];
    if !(3..=4).contains(&background.ndim()) {
        eprintln!(
            "warning: overlays are drawn for 2-D and 3-D images only; {}-D images skipped",
            background.ndim() - 1
        );
        return Ok(());
    }
    let width = n.to_string().len();
    for i in 0..n {
        let Some((bg, slice)) = plane(background, &sets.outer, i) else { continue };
        let pick = |s: &ArrayD<bool>| -> Result<ndarray::Array2<bool>> {
            let img = s.index_axis(Axis(0), i);
            let img = match slice {
                Some(k) => img.index_axis_move(Axis(0), k),
                None => img,
            };
            Ok(img.into_dimensionality::<Ix2>()?.to_owned())
        };
        let two_d = confseg::Sets { inner: pick(&sets.inner)?, outer: pick(&sets.outer)? };
        let (name, title) = match slice {
            Some(k) => (format!("image_{i:0width$}_slice_{k}.png"), format!("image {i}, slice {k}")),
            None => (format!("image_{i:0width$}.png"), format!("image {i}")),
        };
        let path: PathBuf = Path::new(dir).join(name);
        overlay_sets(&path, &bg, &two_d, &title)?;
    }
    println!("wrote {n} overlays to {}", dir.display());
    Ok(())
}
