//! `predict --overlay-dir DIR`: one PNG per image with the outer set (blue)
//! and the inner set (red) drawn over the score map (the paper's Figure 1
//! without the truth, which `predict` does not know). Volumes are drawn as
//! one slice, across the axis the user chooses (default: the axis of the
//! coarsest spacing, usually axial), with the physical aspect ratio.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use confseg::float::Float;
use confseg::io::cohort::Cohort;
use confseg::io::Publication;
use confseg::plot::overlay_sets_output;
use confseg::Spacing;
use ndarray::{ArrayD, Axis, Ix2, IxDyn};

use confseg::pipeline::ScoreSource;

/// Overlay options of `predict`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverlayArgs {
    /// Write one PNG per image here: outer (blue) and inner (red) sets over the
    /// score map (inner scores for transformed input). For 3-D images, one slice:
    /// the one with the largest outer set.
    #[arg(long, value_name = "DIR")]
    pub overlay_dir: Option<PathBuf>,
    /// For 3-D images, the axis the slice is taken across (0, 1, 2; default: the
    /// axis with the coarsest spacing, usually the axial one).
    #[arg(long, value_name = "K", requires = "overlay_dir")]
    pub overlay_axis: Option<usize>,
}

/// Where overlays go, and how files are named.
pub struct Overlays {
    dir: PathBuf,
    width: usize,
    axis: Option<usize>,
    subjects: Option<Arc<Cohort>>,
}

impl Overlays {
    /// The overlay writer, if asked for (the directory is created).
    ///
    /// # Errors
    /// The directory cannot be created; an axis outside 0..3.
    pub fn new(args: &OverlayArgs, source: &ScoreSource) -> Result<Option<Overlays>> {
        let Some(dir) = &args.overlay_dir else { return Ok(None) };
        if args.overlay_axis.is_some_and(|k| k > 2) {
            crate::cli::report::usage!("--overlay-axis must be 0, 1 or 2");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let subjects = match source {
            ScoreSource::Subjects { cohort, .. } => Some(Arc::clone(cohort)),
            _ => None,
        };
        Ok(Some(Overlays {
            dir: dir.clone(),
            width: source.n_images().to_string().len(),
            axis: args.overlay_axis,
            subjects,
        }))
    }

    /// Draw image `i` (spacing `spacing`, unit if `None`): the image itself
    /// (2-D) or one slice (3-D: across the chosen axis, the slice with the
    /// largest outer set, the middle one if all are equal); other
    /// dimensions are skipped. The figure is staged in `run`, published
    /// with the run's other outputs.
    ///
    /// # Errors
    /// The figure cannot be written.
    pub fn draw<A: Float>(
        &self,
        i: usize,
        background: &ArrayD<A>,
        spacing: Option<&Spacing>,
        sets: &confseg::Sets<IxDyn>,
        run: &mut Publication,
    ) -> confseg::Result<()> {
        let nd = background.ndim();
        let sp = spacing
            .and_then(|s| s.as_slice())
            .filter(|s| s.len() == nd)
            .map_or(vec![1.0; nd], <[f64]>::to_vec);
        let name = match &self.subjects {
            Some(c) => c.subjects().get(i).map_or_else(|| format!("image_{i}"), |s| s.id.clone()),
            None => format!("image_{i:0width$}", width = self.width),
        };
        match nd {
            2 => {
                let (Ok(bg), Ok(inner), Ok(outer)) = (
                    background.view().into_dimensionality::<Ix2>(),
                    sets.inner.view().into_dimensionality::<Ix2>(),
                    sets.outer.view().into_dimensionality::<Ix2>(),
                ) else {
                    return Ok(());
                };
                let two = confseg::Sets { inner: inner.to_owned(), outer: outer.to_owned() };
                run.stage(overlay_sets_output(
                    self.dir.join(format!("{name}.png")),
                    &bg,
                    &two,
                    &name,
                    [sp[0], sp[1]],
                )?)
            }
            3 => {
                // across the coarsest axis by default (ties: the last axis)
                let axis = self
                    .axis
                    .unwrap_or_else(|| (0..3).rev().max_by(|&a, &b| sp[a].total_cmp(&sp[b])).unwrap_or(2));
                let n = background.shape()[axis];
                let count = |k: usize| sets.outer.index_axis(Axis(axis), k).iter().filter(|&&b| b).count();
                let k = (0..n).max_by_key(|&k| (count(k), usize::from(k == n / 2))).unwrap_or(0);
                let pick = |a: &ArrayD<bool>| {
                    a.index_axis(Axis(axis), k).into_dimensionality::<Ix2>().map(|v| v.to_owned())
                };
                let (Ok(bg), Ok(inner), Ok(outer)) = (
                    background.index_axis(Axis(axis), k).into_dimensionality::<Ix2>(),
                    pick(&sets.inner),
                    pick(&sets.outer),
                ) else {
                    return Ok(());
                };
                let rest: Vec<f64> = (0..3).filter(|&a| a != axis).map(|a| sp[a]).collect();
                run.stage(overlay_sets_output(
                    self.dir.join(format!("{name}_axis{axis}_slice{k}.png")),
                    &bg,
                    &confseg::Sets { inner, outer },
                    &format!("{name}, slice {k} across axis {axis}"),
                    [rest[0], rest[1]],
                )?)
            }
            _ => Ok(()),
        }
    }
}
