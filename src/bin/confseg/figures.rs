//! `predict --overlay-dir DIR`: one PNG per image with the outer set (blue)
//! and the inner set (red) drawn over the score map (the paper's Figure 1
//! without the truth, which `predict` does not know).

use std::path::PathBuf;

use anyhow::{Context, Result};
use confseg::plot::overlay_sets;
use confseg::Float;
use ndarray::{ArrayD, Axis, Ix2, IxDyn};

/// Overlay option of `predict`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverlayArgs {
    /// Write one PNG per image here: outer (blue) and inner (red) sets over the
    /// score map (inner scores for transformed input). For 3-D images, the
    /// slice along the first image axis with the largest outer set.
    #[arg(long, value_name = "DIR")]
    pub overlay_dir: Option<PathBuf>,
}

/// Where overlays go, and how files are named.
pub struct Overlays {
    dir: PathBuf,
    width: usize,
}

impl Overlays {
    /// The overlay writer, if asked for (the directory is created).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(args: &OverlayArgs, n: usize) -> Result<Option<Overlays>> {
        let Some(dir) = &args.overlay_dir else { return Ok(None) };
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        Ok(Some(Overlays { dir: dir.clone(), width: n.to_string().len() }))
    }

    /// Draw image `i`: the image itself (2-D) or its slice with the largest
    /// outer set (3-D, first image axis); other dimensions are skipped.
    ///
    /// # Errors
    /// The figure cannot be written.
    pub fn draw<A: Float>(
        &self,
        i: usize,
        background: &ArrayD<A>,
        sets: &confseg::Sets<IxDyn>,
    ) -> confseg::Result<()> {
        let (bg, inner, outer, slice) = match background.ndim() {
            2 => (background.view(), sets.inner.view(), sets.outer.view(), None),
            3 => {
                let n = background.shape()[0];
                let count = |k: usize| sets.outer.index_axis(Axis(0), k).iter().filter(|&&b| b).count();
                // the largest outer set; the middle slice if all are equal
                let k = (0..n).max_by_key(|&k| (count(k), usize::from(k == n / 2))).unwrap_or(0);
                (
                    background.index_axis(Axis(0), k),
                    sets.inner.index_axis(Axis(0), k),
                    sets.outer.index_axis(Axis(0), k),
                    Some(k),
                )
            }
            _ => return Ok(()),
        };
        let two_d = |a: ndarray::ArrayViewD<'_, bool>| a.into_dimensionality::<Ix2>().map(|v| v.to_owned());
        let (Ok(bg), Ok(inner), Ok(outer)) = (bg.into_dimensionality::<Ix2>(), two_d(inner), two_d(outer))
        else {
            return Ok(());
        };
        let width = self.width;
        let (name, title) = match slice {
            Some(k) => (format!("image_{i:0width$}_slice_{k}.png"), format!("image {i}, slice {k}")),
            None => (format!("image_{i:0width$}.png"), format!("image {i}")),
        };
        overlay_sets(self.dir.join(name), &bg, &confseg::Sets { inner, outer }, &title)
    }
}
