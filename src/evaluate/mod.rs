//! Validation over repeated random splits, efficiency measures, baselines
//! and transform selection (METHOD.md §6–7).
//!
//! The paper validates its sets by splitting a pool of labelled images many
//! times into a calibration and a test part and reporting, per nominal
//! level, the share of test images whose sets cover the true mask, averaged
//! over the splits. This module does that for any pair of transforms and
//! any levels ([`Levels`](crate::Levels)), and for the comparators of METHOD.md §7 ([`Method`]).
//!
//! # How it is fast
//!
//! A [`Pool`] transforms every image **once**: it keeps each image's
//! calibration statistics `(tau_i, gamma_i)` and, per side, the transformed
//! scores sorted separately over the object and the background. A split is
//! then a conformal quantile of the calibration part (the crate's one
//! [`conformal_quantile`](crate::quantile::conformal_quantile), via
//! [`Calibration::thresholds`]) and a count over the test part:
//!
//! * **Coverage from the statistics.** With the max combination, for a test
//!   image `j`,
//!   `I_j ⊆ Y_j  ⟺  tau_j <= lambda_I` and `Y_j ⊆ O_j  ⟺  gamma_j <= lambda_O`.
//!   Proof: `I_j ⊆ Y_j` means no background voxel `v` has `f_I(v) > lambda_I`,
//!   i.e. `f_I(v) <= lambda_I` for every background `v`, i.e.
//!   `max_{Y_j = 0} f_I = tau_j <= lambda_I` (an empty background gives
//!   `tau_j = -inf`, and the inclusion holds trivially). Likewise
//!   `Y_j ⊆ O_j` means `-f_O(v) <= lambda_O` for every object voxel, i.e.
//!   `max_{Y_j = 1} -f_O = gamma_j <= lambda_O`. For the max-joint mode both
//!   thresholds are `lambda`, so joint coverage is `max(tau_j, gamma_j) <= lambda`.
//!   (`tests/evaluate.rs` checks this against sets built by
//!   [`ConfidenceSets::predict`](crate::ConfidenceSets::predict).)
//! * **Sizes by table.** The inner set at threshold `a` is `{f_I > a}`,
//!   so `|I ∩ Y|` and `|I \ Y|` are counts of sorted object and background
//!   values above `a`; the same holds for the outer set `{f_O >= -lambda_O}`.
//!   Thresholds are order statistics of the pool (for the conformal method,
//!   of the pool's statistics, at ranks near the level's quantile), so the
//!   splits of a batch meet few distinct values: every image is counted once
//!   at each of them (a binary search), and a split's test images look their
//!   counts up. The conformal thresholds of all modes and levels of a split
//!   come from its calibration statistics sorted once.
//! * **Splits in parallel.** Splits are drawn in order from one seeded
//!   generator, in batches; with `rayon` the batch's thresholds and set
//!   sizes are computed in parallel, each split summing over its test images
//!   in order, and the per-split results are folded into the report in split
//!   order: the reports are the same bit for bit on any number of threads.
//!   The per-split coverages are kept as histograms, so memory does not grow
//!   with the number of splits.
//! * **Geometry memoized.** Diameters and Hausdorff distances need the sets
//!   themselves. Thresholds are order statistics of the pool's statistics,
//!   so with discrete scores each image meets only a few distinct
//!   thresholds across splits: the geometry is computed once per distinct
//!   `(image, set, threshold)` (in parallel with `rayon`) and looked up for
//!   every split, on the splits chosen by [`Geometry`] (default: the first
//!   20; with continuous scores nearly every split brings new thresholds,
//!   and 20 splits of a few hundred test images already average thousands
//!   of sets).
//!
//! Every baseline produces its sets in the same form, `{g_I > a}` and
//! `{g_O >= b}` for per-image fields `g` (see [`baselines`]), so all methods
//! are measured by the same code on the same splits.
//!
//! ```
//! use confseg::evaluate::{Method, Pool, Splits, Validation};
//! use confseg::{synthetic::Synthetic, Alpha, Calibrator, Identity, Levels};
//! use confseg::levels::ModeKind;
//!
//! let (scores, masks) = Synthetic::new([24, 24]).seed(3).stack(0..150);
//! let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0)?;
//! let validation = Validation::new(vec![Alpha::new(0.1)?, Alpha::new(0.2)?], Splits::new(100, 200, 7)?);
//! let max = Levels { mode: ModeKind::Max, ..Levels::default() };
//! let reports = validation.run(&pool, &[Method::Conformal(max)])?;
//! for r in &reports {
//!     println!("{}: alpha {} joint coverage {:.3}", r.method, r.alpha, r.joint_coverage);
//! }
//! # Ok::<(), confseg::Error>(())
//! ```

pub mod baselines;
pub mod diagnostics;
mod interval;
pub mod select;
pub mod structures;

use std::collections::HashMap;

use ndarray::{Array, ArrayRef, Axis, Dimension, RemoveAxis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::calibrate::{Calibrator, Transformed};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::grid;
use crate::image::{check_shape, AsImage};
use crate::mask::MaskValue;
use crate::quantile::{Alpha, Threshold};
use crate::stream::{default_in_flight, for_each_image, map_images, stream, Load};
use crate::tolerance::Tolerances;
use crate::transform::{Spacing, Transform};
use crate::Calibration;

pub use baselines::{Method, MethodKind};
pub use interval::clopper_pearson;

/// The most splits a validation runs (each split is a quantile and a count
/// per method and level; the per-split coverages are kept as histograms, so
/// memory does not grow with the splits, but time does).
pub const MAX_SPLITS: usize = 10_000_000;

/// The most splits whose calibration images a validation records.
pub const MAX_RECORDED_SPLITS: usize = 10_000;

/// The most levels a validation runs at once.
pub const MAX_LEVELS: usize = 1000;

/// Repeated random splits of a pool into a calibration part of `n_cal`
/// images and a test part (the rest, or its first `n_test` images).
///
/// Split `r` is a uniformly random permutation of the pool drawn from a
/// `Pcg64Mcg` seeded with `seed`: the same `(pool size, n_cal, n_test,
/// repeats, seed)` always give the same splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Splits {
    n_cal: usize,
    n_test: Option<usize>,
    repeats: usize,
    seed: u64,
}

impl Splits {
    /// `repeats` splits with `n_cal` calibration images each.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `n_cal` or `repeats` is 0, or
    /// `repeats` exceeds [`MAX_SPLITS`].
    pub fn new(n_cal: usize, repeats: usize, seed: u64) -> Result<Self> {
        for (name, v) in [("n_cal", n_cal), ("repeats", repeats)] {
            if v == 0 {
                return Err(Error::InvalidParameter {
                    name,
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if repeats > MAX_SPLITS {
            return Err(Error::InvalidParameter {
                name: "repeats",
                value: repeats.to_string(),
                reason: format!("at most {MAX_SPLITS} splits"),
            });
        }
        Ok(Splits { n_cal, n_test: None, repeats, seed })
    }

    /// Use only `n_test` test images per split (default: all the others).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `n_test` is 0.
    pub fn with_n_test(mut self, n_test: usize) -> Result<Self> {
        if n_test == 0 {
            return Err(Error::InvalidParameter {
                name: "n_test",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        self.n_test = Some(n_test);
        Ok(self)
    }

    /// Number of calibration images per split.
    #[must_use]
    pub fn n_cal(&self) -> usize {
        self.n_cal
    }

    /// Number of splits.
    #[must_use]
    pub fn repeats(&self) -> usize {
        self.repeats
    }

    /// The seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of test images per split for a pool of `pool` images.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the pool is too small.
    pub fn n_test_for(&self, pool: usize) -> Result<usize> {
        let rest =
            pool.checked_sub(self.n_cal).filter(|&r| r > 0).ok_or_else(|| Error::InvalidParameter {
                name: "n_cal",
                value: self.n_cal.to_string(),
                reason: format!("the pool has {pool} images; at least one must be left for testing"),
            })?;
        match self.n_test {
            None => Ok(rest),
            Some(t) if t <= rest => Ok(t),
            Some(t) => Err(Error::InvalidParameter {
                name: "n_test",
                value: t.to_string(),
                reason: format!("only {rest} images are left after {} calibration images", self.n_cal),
            }),
        }
    }

    /// The splits of `0..pool` as `(calibration indices, test indices)`,
    /// drawn one after the other (memory for one split at a time).
    ///
    /// # Errors
    /// As [`Splits::n_test_for`].
    pub fn iter(&self, pool: usize) -> Result<impl Iterator<Item = (Vec<usize>, Vec<usize>)>> {
        let n_test = self.n_test_for(pool)?;
        let n_cal = self.n_cal;
        let mut rng = Pcg64Mcg::seed_from_u64(self.seed);
        let mut perm: Vec<usize> = (0..pool).collect();
        Ok((0..self.repeats).map(move |_| {
            perm.shuffle(&mut rng);
            (perm[..n_cal].to_vec(), perm[n_cal..n_cal + n_test].to_vec())
        }))
    }

    /// All the splits of [`Splits::iter`], collected.
    ///
    /// # Errors
    /// As [`Splits::n_test_for`].
    pub fn generate(&self, pool: usize) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
        Ok(self.iter(pool)?.collect())
    }
}

/// On which splits the geometry measures (diameter ratios, Hausdorff
/// distances, band widths) are computed. Coverage and set sizes always use every split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Geometry {
    /// No geometry measures.
    Off,
    /// The first `k` splits (memoized per distinct image and threshold).
    FirstSplits(usize),
    /// Every split (memoized; the cost grows with the number of distinct
    /// thresholds met, not with the number of splits).
    AllSplits,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry::FirstSplits(20)
    }
}

/// One side's transformed scores of one image, flat row-major, with the
/// values sorted separately over the object and the background.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) values: Vec<f64>,
    pub(crate) object: Vec<f64>,
    pub(crate) background: Vec<f64>,
}

impl Field {
    /// The field over `truth`; voxels marked in `ignored` (empty: none)
    /// are in neither sorted list, so that no count sees them.
    pub(crate) fn new(values: Vec<f64>, truth: &[bool], ignored: &[bool]) -> Self {
        let mut object = Vec::new();
        let mut background = Vec::new();
        for (p, (&v, &y)) in values.iter().zip(truth).enumerate() {
            if ignored.get(p).copied().unwrap_or(false) {
                continue;
            }
            if y {
                object.push(v);
            } else {
                background.push(v);
            }
        }
        object.sort_unstable_by(f64::total_cmp);
        background.sort_unstable_by(f64::total_cmp);
        Field { values, object, background }
    }

    /// `max` over the background (`-inf` if none): the inner set `{> a}` is
    /// inside the truth iff this is `<= a`.
    pub(crate) fn background_max(&self) -> f64 {
        self.background.last().copied().unwrap_or(f64::NEG_INFINITY)
    }

    /// `min` over the object (`+inf` if none): the outer set `{>= b}`
    /// contains the truth iff this is `>= b`.
    pub(crate) fn object_min(&self) -> f64 {
        self.object.first().copied().unwrap_or(f64::INFINITY)
    }
}

/// Number of values of a sorted slice strictly above `a`.
pub(crate) fn count_above(sorted: &[f64], a: f64) -> usize {
    sorted.len() - sorted.partition_point(|&x| x <= a)
}

/// Number of values of a sorted slice at or above `b`.
pub(crate) fn count_at_least(sorted: &[f64], b: f64) -> usize {
    sorted.len() - sorted.partition_point(|&x| x < b)
}

/// One labelled image of a [`Pool`].
#[derive(Debug, Clone)]
pub(crate) struct PoolImage {
    pub(crate) shape: Vec<usize>,
    pub(crate) spacing: Vec<f64>,
    pub(crate) truth: Vec<bool>,
    /// Ignored voxels of the truth (empty if none): in no count.
    pub(crate) ignored: Vec<bool>,
    /// Voxels that are not ignored.
    pub(crate) n_voxels: usize,
    pub(crate) n_object: usize,
    pub(crate) inner: Field,
    pub(crate) outer: Field,
    pub(crate) predicted: Vec<bool>,
}

impl PoolImage {
    /// The voxels that count (not ignored).
    pub(crate) fn voxels(&self) -> usize {
        self.n_voxels
    }
}

/// A pool of labelled images prepared for repeated validation: every image
/// is transformed once; see the [module docs](self).
///
/// Images may differ in shape and spacing (per-subject volumes) but share
/// one dimensionality. Memory: two `f64` copies of every voxel per side
/// (the values and their sorted split by the truth), so about `32 |V|`
/// bytes per image; the images are read and transformed as a stream
/// ([`Pool::from_stream`]), so nothing else grows with the pool.
#[derive(Debug, Clone)]
pub struct Pool {
    ndim: usize,
    images: Vec<PoolImage>,
    statistics: Calibration,
}

impl Pool {
    /// Transform a batch-first stack `(N, spatial...)` of score images with
    /// the calibrator's `f_I`, `f_O` and default spacing, and reduce each
    /// image to its calibration statistics (once). `mask_threshold` defines
    /// the segmenter's predicted mask `{s > mask_threshold}` (0 for logits,
    /// 0.5 for probabilities), used only by the morphological baseline.
    ///
    /// # Errors
    /// Shape mismatch of the stacks, NaN scores, non-binary masks or a
    /// transform error, tagged with the image index; [`Error::InvalidParameter`]
    /// for a NaN `mask_threshold`.
    pub fn new<TI, TO, A, D, M>(
        calibrator: &Calibrator<TI, TO>,
        scores: &ArrayRef<A, D>,
        masks: &ArrayRef<M, D>,
        mask_threshold: f64,
    ) -> Result<Pool>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        A: Float,
        D: RemoveAxis,
        M: MaskValue,
    {
        check_threshold(mask_threshold)?;
        check_shape("scores stack vs masks stack", masks, scores)?;
        crate::image::check_stack("scores stack", scores.ndim())?;
        let ndim = scores.ndim().saturating_sub(1);
        let images = for_each_image(scores.len_of(Axis(0)), |i| {
            let s = scores.index_axis(Axis(0), i);
            prepare_raw(calibrator, &s, &masks.index_axis(Axis(0), i), mask_threshold)
        })?;
        Self::from_images(ndim, calibrator, images)
    }

    /// A pool from a stream of labelled images (plain arrays with the
    /// default spacing, or [`Image`](crate::Image)s with their own; any
    /// shapes, one dimensionality), transformed in parallel with a bounded
    /// number of images in flight. Equal to [`Pool::new`] on the same
    /// images.
    ///
    /// # Errors
    /// As [`Pool::new`], for the first failing image, tagged with its
    /// position in the stream; [`Error::DimensionMismatch`] if the images
    /// differ in dimensionality.
    pub fn from_stream<TI, TO, P, I, M, S>(
        calibrator: &Calibrator<TI, TO>,
        pairs: S,
        mask_threshold: f64,
    ) -> Result<Pool>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        I: AsImage + Send,
        M: MaskValue,
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (I, Array<M, I::Dim>)>,
    {
        check_threshold(mask_threshold)?;
        let mut images = Vec::new();
        stream(
            pairs,
            default_in_flight(),
            |i, item: P| {
                let (s, m) = item.load().map_err(|e| e.in_image(i))?;
                prepare_raw(calibrator, &s, &m, mask_threshold).map_err(|e| e.in_image(i))
            },
            |_, img| {
                images.push(img);
                Ok(())
            },
        )?;
        let ndim = images.first().map_or(0, |(img, _): &(PoolImage, _)| img.shape.len());
        Self::from_images(ndim, calibrator, images)
    }

    /// A pool from scores that are already transformed (`f_I(s)` and
    /// `f_O(s)` stacks, e.g. the bounding-box scores of the polyp data):
    /// the calibrator's transforms are not applied (they should be
    /// identities, which the provenance then records); its default spacing
    /// and tolerances are used. The predicted mask of the morphological
    /// baseline is `{f_O > mask_threshold}`.
    ///
    /// # Errors
    /// As [`Pool::new`], and [`Error::InvalidSpacing`] if the default
    /// spacing does not fit the image dimension.
    pub fn from_transformed<TI, TO, A, D, M>(
        calibrator: &Calibrator<TI, TO>,
        inner: &ArrayRef<A, D>,
        outer: &ArrayRef<A, D>,
        masks: &ArrayRef<M, D>,
        mask_threshold: f64,
    ) -> Result<Pool>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        A: Float,
        D: RemoveAxis,
        M: MaskValue,
    {
        check_threshold(mask_threshold)?;
        check_shape("inner scores stack vs masks stack", masks, inner)?;
        check_shape("outer scores stack vs masks stack", masks, outer)?;
        crate::image::check_stack("inner scores stack", inner.ndim())?;
        let ndim = inner.ndim().saturating_sub(1);
        calibrator.spacing().for_ndim(ndim)?;
        let images = for_each_image(inner.len_of(Axis(0)), |i| {
            let fo = outer.index_axis(Axis(0), i);
            prepare_transformed(
                calibrator,
                &inner.index_axis(Axis(0), i),
                &fo,
                &masks.index_axis(Axis(0), i),
                mask_threshold,
            )
        })?;
        Self::from_images(ndim, calibrator, images)
    }

    /// [`Pool::from_transformed`] for a stream of already transformed
    /// scores ([`Transformed`]) and masks.
    ///
    /// # Errors
    /// As [`Pool::from_transformed`], for the first failing image, tagged
    /// with its position in the stream.
    pub fn from_transformed_stream<TI, TO, P, A, D, M, S>(
        calibrator: &Calibrator<TI, TO>,
        items: S,
        mask_threshold: f64,
    ) -> Result<Pool>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        A: Float,
        D: Dimension,
        M: MaskValue,
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (Transformed<A, D>, Array<M, D>)>,
    {
        check_threshold(mask_threshold)?;
        let mut images = Vec::new();
        stream(
            items,
            default_in_flight(),
            |i, item: P| {
                let (t, m) = item.load().map_err(|e| e.in_image(i))?;
                let (fi, fo) = t.sides();
                prepare_transformed(calibrator, fi, fo, &m, mask_threshold).map_err(|e| e.in_image(i))
            },
            |_, img| {
                images.push(img);
                Ok(())
            },
        )?;
        let ndim = images.first().map_or(0, |(img, _): &(PoolImage, _)| img.shape.len());
        Self::from_images(ndim, calibrator, images)
    }

    fn from_images<TI: Transform, TO: Transform>(
        ndim: usize,
        calibrator: &Calibrator<TI, TO>,
        images: Vec<(PoolImage, crate::calibrate::ImageStatistics)>,
    ) -> Result<Pool> {
        let mut statistics = Calibration::new();
        let mut out = Vec::with_capacity(images.len());
        for (i, (img, s)) in images.into_iter().enumerate() {
            if img.shape.len() != ndim {
                return Err(Error::DimensionMismatch {
                    expected: ndim,
                    found: img.shape.len(),
                    image: Some(i),
                });
            }
            statistics.push(s);
            out.push(img);
        }
        let mut with_provenance = Calibration::new();
        if !out.is_empty() {
            calibrator.observe_statistics(&mut with_provenance, &statistics, ndim)?;
        }
        Ok(Pool { ndim, images: out, statistics: with_provenance })
    }

    /// The tolerances the pool's statistics were computed for (the
    /// calibrator's): coverage is then counted as the tolerance events.
    #[must_use]
    pub fn tolerances(&self) -> Tolerances {
        self.statistics.provenance().map_or(Tolerances::NONE, |p| *p.tolerances())
    }

    /// Number of images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the pool is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The image dimensionality.
    #[must_use]
    pub fn ndim(&self) -> usize {
        self.ndim
    }

    /// The spatial shape of image `j`.
    #[must_use]
    pub fn image_shape(&self, j: usize) -> Option<&[usize]> {
        self.images.get(j).map(|i| i.shape.as_slice())
    }

    /// The voxel spacing of image `j` (one entry per axis).
    #[must_use]
    pub fn image_spacing(&self, j: usize) -> Option<&[f64]> {
        self.images.get(j).map(|i| i.spacing.as_slice())
    }

    /// The largest number of voxels of an image.
    #[must_use]
    pub fn max_voxels(&self) -> usize {
        self.images.iter().map(PoolImage::voxels).max().unwrap_or(0)
    }

    /// The calibration statistics `(tau_i, gamma_i)` of every image, in order.
    #[must_use]
    pub fn statistics(&self) -> &Calibration {
        &self.statistics
    }

    /// A pool of the images at `indices` (e.g. without a learning set).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Result<Pool> {
        let statistics = self.statistics.select(indices)?;
        let images = indices.iter().map(|&i| self.images[i].clone()).collect();
        Ok(Pool { ndim: self.ndim, images, statistics })
    }

    pub(crate) fn images(&self) -> &[PoolImage] {
        &self.images
    }
}

/// Transform one raw image (own spacing or the calibrator's default) and
/// prepare it for the pool.
fn prepare_raw<TI, TO, I, M>(
    calibrator: &Calibrator<TI, TO>,
    image: &I,
    mask: &ArrayRef<M, I::Dim>,
    mask_threshold: f64,
) -> Result<(PoolImage, crate::calibrate::ImageStatistics)>
where
    TI: Transform,
    TO: Transform,
    I: AsImage + ?Sized,
    M: MaskValue,
{
    let s = image.scores();
    check_shape("scores vs mask", mask, s)?;
    let (fi, fo) = calibrator.transforms().apply(s, image.spacing())?;
    let predicted: Vec<bool> = s.iter().map(|x| x.to_f64_lossless() > mask_threshold).collect();
    prepare(calibrator, &fi, &fo, mask, predicted, image.spacing())
        .map_err(|e| calibrator.transforms().blame_nan(e, s, &fi, &fo))
}

/// Prepare already transformed scores for the pool (the predicted mask
/// from `f_O`), with the calibrator's default spacing.
fn prepare_transformed<TI: Transform, TO: Transform, A: Float, D: Dimension, M: MaskValue>(
    calibrator: &Calibrator<TI, TO>,
    fi: &ArrayRef<A, D>,
    fo: &ArrayRef<A, D>,
    mask: &ArrayRef<M, D>,
    mask_threshold: f64,
) -> Result<(PoolImage, crate::calibrate::ImageStatistics)> {
    let predicted: Vec<bool> = fo.iter().map(|x| x.to_f64_lossless() > mask_threshold).collect();
    prepare(calibrator, fi, fo, mask, predicted, None)
}

fn check_threshold(t: f64) -> Result<()> {
    if t.is_nan() {
        return Err(Error::InvalidParameter {
            name: "mask threshold",
            value: "NaN".into(),
            reason: "must be a number".into(),
        });
    }
    Ok(())
}

/// One image of the pool and its statistics (with the calibrator's
/// tolerances), with its own spacing or the calibrator's default.
fn prepare<TI: Transform, TO: Transform, A: Float, D: Dimension, M: MaskValue>(
    calibrator: &Calibrator<TI, TO>,
    fi: &ArrayRef<A, D>,
    fo: &ArrayRef<A, D>,
    mask: &ArrayRef<M, D>,
    predicted: Vec<bool>,
    spacing: Option<&Spacing>,
) -> Result<(PoolImage, crate::calibrate::ImageStatistics)> {
    // also validates shapes, NaN and the mask
    let stats = calibrator.transformed_statistics(fi, fo, mask, spacing)?;
    let spacing = spacing.unwrap_or(calibrator.spacing()).for_ndim(fi.ndim())?.into_owned();
    let truth: Vec<bool> = mask.iter().map(|m| m.is_object()).collect();
    let ignored: Vec<bool> = if M::MAY_IGNORE && mask.iter().any(|m| m.is_ignored()) {
        mask.iter().map(|m| m.is_ignored()).collect()
    } else {
        Vec::new()
    };
    let n_voxels = truth.len() - ignored.iter().filter(|&&b| b).count();
    let n_object = truth.iter().filter(|&&b| b).count();
    let inner = Field::new(fi.iter().map(|x| x.to_f64_lossless()).collect(), &truth, &ignored);
    let outer = Field::new(fo.iter().map(|x| x.to_f64_lossless()).collect(), &truth, &ignored);
    let shape = fi.shape().to_vec();
    Ok((PoolImage { shape, spacing, truth, ignored, n_voxels, n_object, inner, outer, predicted }, stats))
}

/// Mean, spread and quantiles of one coverage over the splits.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Spread {
    /// Mean over splits.
    pub mean: f64,
    /// Standard deviation over splits (`n - 1` denominator; 0 for one split).
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// 5% quantile (nearest rank).
    pub q05: f64,
    /// Median (nearest rank).
    pub median: f64,
    /// 95% quantile (nearest rank).
    pub q95: f64,
    /// Largest value.
    pub max: f64,
    /// The level the method promises for this coverage (`None` if it
    /// promises none, e.g. risk control).
    pub nominal: Option<f64>,
    /// Share of splits whose coverage is below `nominal`.
    pub below_nominal: Option<f64>,
}

impl Spread {
    /// Summarize per-split shares `k / m` given as a histogram: `counts[k]`
    /// splits had share `k / m`, `m = counts.len() - 1`. Equal to
    /// [`Spread::of`] on the shares, in memory independent of the number of
    /// splits.
    #[must_use]
    pub fn of_shares(counts: &[u64], nominal: Option<f64>) -> Spread {
        let m = counts.len().saturating_sub(1).max(1) as f64;
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return Spread::of(&[], nominal);
        }
        // ascending values with multiplicity, summed in the same order as `of`
        let values =
            || counts.iter().enumerate().flat_map(|(k, &c)| std::iter::repeat_n(k as f64 / m, c as usize));
        let nf = n as f64;
        let mean = values().sum::<f64>() / nf;
        let sd =
            if n > 1 { (values().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt() } else { 0.0 };
        // nearest-rank quantile: the ceil(p n)-th smallest
        let q = |p: f64| {
            let rank = ((p * nf).ceil() as u64).clamp(1, n);
            let mut seen = 0;
            for (k, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return k as f64 / m;
                }
            }
            1.0
        };
        Spread {
            mean,
            sd,
            min: q(0.0),
            q05: q(0.05),
            median: q(0.5),
            q95: q(0.95),
            max: q(1.0),
            nominal,
            below_nominal: nominal.map(|t| values().filter(|&x| x < t - 1e-12).count() as f64 / nf),
        }
    }

    /// Summarize per-split values.
    #[must_use]
    pub fn of(values: &[f64], nominal: Option<f64>) -> Spread {
        let n = values.len();
        if n == 0 {
            return Spread {
                mean: f64::NAN,
                sd: f64::NAN,
                min: f64::NAN,
                q05: f64::NAN,
                median: f64::NAN,
                q95: f64::NAN,
                max: f64::NAN,
                nominal,
                below_nominal: None,
            };
        }
        let mut v = values.to_vec();
        v.sort_unstable_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        // nearest-rank quantile: the ceil(p n)-th smallest
        let q = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Spread {
            mean,
            sd,
            min: v[0],
            q05: q(0.05),
            median: q(0.5),
            q95: q(0.95),
            max: v[n - 1],
            nominal,
            below_nominal: nominal.map(|t| v.iter().filter(|&&x| x < t - 1e-12).count() as f64 / n as f64),
        }
    }
}

/// Efficiency of the sets, averaged over all (split, test image) pairs
/// where the measure is defined.
///
/// Definitions, for one test image with truth `Y`, sets `I`, `O` and `|V|`
/// voxels:
/// * `inner_size_ratio = |I| / |Y|`, `outer_size_ratio = |O| / |Y|`
///   (images with an empty truth are left out);
/// * `inner_share = |I| / |V|`, `outer_share = |O| / |V|`;
/// * `under_covered = |Y \ I| / |V|`: share of the image that is object but
///   not in the inner set; `over_covered = |O \ Y| / |V|`: share that is
///   background but in the outer set;
/// * `outer_missed_fraction = |Y \ O| / |Y|` (the false-negative rate risk
///   control bounds in expectation; 0 for an empty truth), and
///   `inner_false_fraction = |I \ Y| / |I|` (the false discovery proportion
///   an inner tolerance bounds; 0 for an empty inner set);
/// * diameter of a set: the largest Euclidean distance between the centres
///   of two of its voxels, in physical units (voxel spacing); 0 for one
///   voxel, undefined for an empty set. `inner_diameter_ratio = diam(I) /
///   diam(Y)` with `diam(I) = 0` for an empty inner set; images with
///   `diam(Y)` undefined or 0 are left out, and so are empty outer sets for
///   `outer_diameter_ratio`;
/// * Hausdorff distance `d_H(A, Y) = max(sup_{a in A} d(a, Y), sup_{y in Y} d(y, A))`
///   between voxel centres (physical units): `0` when both sets are empty,
///   infinite when exactly one is. The means are over the finite cases;
///   `*_hausdorff_infinite` is the share of infinite cases;
/// * band width: the distance from each voxel of the outer contour (voxels
///   of `O` with a face neighbour in the image outside `O`) to the nearest
///   voxel of `I`, its mean and maximum per image — how far the outer
///   contour lies from the inner set, the number a reader of the sets sees.
///   Undefined for an empty inner set or an outer set without a contour;
///   the means are over the defined cases.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Efficiency {
    /// Mean `|I| / |Y|`.
    pub inner_size_ratio: Option<f64>,
    /// Mean `|O| / |Y|`.
    pub outer_size_ratio: Option<f64>,
    /// Mean `|I| / |V|`.
    pub inner_share: f64,
    /// Mean `|O| / |V|`.
    pub outer_share: f64,
    /// Mean `|Y \ I| / |V|`.
    pub under_covered: f64,
    /// Mean `|O \ Y| / |V|`.
    pub over_covered: f64,
    /// Mean `|Y \ O| / |Y|`.
    pub outer_missed_fraction: f64,
    /// Mean `|I \ Y| / |I|` (0 for an empty inner set).
    pub inner_false_fraction: f64,
    /// Mean `diam(I) / diam(Y)`.
    pub inner_diameter_ratio: Option<f64>,
    /// Mean `diam(O) / diam(Y)`.
    pub outer_diameter_ratio: Option<f64>,
    /// Mean finite `d_H(I, Y)`.
    pub inner_hausdorff: Option<f64>,
    /// Mean finite `d_H(O, Y)`.
    pub outer_hausdorff: Option<f64>,
    /// Share of infinite `d_H(I, Y)`.
    pub inner_hausdorff_infinite: Option<f64>,
    /// Share of infinite `d_H(O, Y)`.
    pub outer_hausdorff_infinite: Option<f64>,
    /// Mean over test images of the band's mean width: the distance from
    /// the outer contour to the inner set, averaged over the contour, in
    /// the units of the spacing (e.g. mm). Only images where it is defined
    /// (a non-empty inner set, an outer set with a contour in the image).
    pub band_width_mean: Option<f64>,
    /// Mean over test images of the band's largest width (the directed
    /// Hausdorff distance from the outer contour to the inner set).
    pub band_width_max: Option<f64>,
    /// [`Efficiency::band_width_mean`] in voxels (unit spacing).
    pub band_width_mean_voxels: Option<f64>,
    /// [`Efficiency::band_width_max`] in voxels (unit spacing).
    pub band_width_max_voxels: Option<f64>,
    /// Share of test images whose band width is undefined (empty inner set,
    /// or an outer set that is empty or the whole image).
    pub band_width_undefined: Option<f64>,
    /// Number of splits the geometry measures were averaged over.
    pub geometry_splits: usize,
}

/// Validation results of one method at one level.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    /// The method (e.g. `"conformal max"`, `"risk-control"`).
    pub method: String,
    /// The nominal level `alpha`.
    pub alpha: f64,
    /// Mean share of test images with `I ⊆ Y` (or the inner tolerance
    /// event, for a pool calibrated with tolerances: [`Pool::tolerances`]).
    pub inner_coverage: f64,
    /// Mean share of test images with `Y ⊆ O` (or the outer tolerance event).
    pub outer_coverage: f64,
    /// Mean share of test images with `I ⊆ Y ⊆ O` (or both tolerance events).
    pub joint_coverage: f64,
    /// Spread of the inner coverage over splits.
    pub inner: Spread,
    /// Spread of the outer coverage over splits.
    pub outer: Spread,
    /// Spread of the joint coverage over splits.
    pub joint: Spread,
    /// Share of splits whose thresholds were infinite because `n_cal` was too
    /// small for the level (sets then trivial).
    pub too_few_images: f64,
    /// Efficiency measures.
    pub efficiency: Efficiency,
    /// Calibration images per split.
    pub n_cal: usize,
    /// Test images per split.
    pub n_test: usize,
    /// Number of splits.
    pub splits: usize,
    /// The first splits' calibration images and thresholds, as many as
    /// [`Validation::with_recorded_splits`] asks for (none by default).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub recorded: Vec<SplitRecord>,
}

/// One split's calibration images and the thresholds a method fitted on
/// them, in the convention of fitted sets: `I = {g_I > lambda_inner}`,
/// `O = {-g_O <= lambda_outer}` (for the conformal method exactly the
/// thresholds [`Calibrator::fit`](crate::Calibrator::fit) gives on these
/// images; `lambda_inner = +inf` for methods without an inner set).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SplitRecord {
    /// The calibration images (positions in the pool), in draw order.
    pub calibration: Vec<usize>,
    /// `lambda_I`.
    #[cfg_attr(feature = "serde", serde(with = "crate::json::inf_as_string"))]
    pub lambda_inner: f64,
    /// `lambda_O`.
    #[cfg_attr(feature = "serde", serde(with = "crate::json::inf_as_string"))]
    pub lambda_outer: f64,
}

/// Thresholds of one split for a method: inner set `{g_I > inner}`, outer
/// set `{g_O >= outer}`, over the method's fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SplitSets {
    pub(crate) inner: f64,
    pub(crate) outer: f64,
    /// A threshold was infinite for lack of calibration images.
    pub(crate) too_few: bool,
}

impl SplitSets {
    /// The sets `{f_I > lambda_I}`, `{f_O >= -lambda_O}` of conformal thresholds.
    pub(crate) fn conformal(inner: Threshold, outer: Threshold) -> SplitSets {
        let too_few = matches!(inner, Threshold::TooFewImages { .. })
            || matches!(outer, Threshold::TooFewImages { .. });
        SplitSets { inner: inner.value(), outer: -outer.value(), too_few }
    }
}

/// Nominal coverages a method promises at one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Nominal {
    pub(crate) inner: Option<f64>,
    pub(crate) outer: Option<f64>,
    pub(crate) joint: Option<f64>,
}

/// Which field of a pool image a set is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FieldId {
    Inner,
    Outer,
    /// The morphological transform of the predicted mask, for the
    /// morphological baseline that is the `usize`-th method.
    Steps(usize),
}

/// Validation settings: levels, splits, geometry and recorded splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    alphas: Vec<Alpha>,
    splits: Splits,
    geometry: Geometry,
    recorded: usize,
}

/// Progress of a validation run: `done` of `total` units of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is being done (`"splits"` or `"geometry"`).
    pub stage: &'static str,
    /// What `done` and `total` count (`"splits"`, or `"sets"` measured).
    pub unit: &'static str,
    /// Units done.
    pub done: usize,
    /// Units in total.
    pub total: usize,
}

#[derive(Default, Clone, Copy)]
struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    fn merge(&mut self, other: &Mean) {
        self.sum += other.sum;
        self.n += other.n;
    }
    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

#[derive(Default, Clone, Copy)]
struct Geom {
    diameter: Option<f64>,
    hausdorff: Option<f64>,
}

/// Per-image truth geometry, computed once per run.
struct TruthGeometry {
    diameter: Option<f64>,
    to_truth: Vec<f64>,
}

impl Validation {
    /// Validate at each of `alphas` over `splits`, with the default
    /// [`Geometry`] (first 20 splits).
    #[must_use]
    pub fn new(alphas: Vec<Alpha>, splits: Splits) -> Self {
        Validation { alphas, splits, geometry: Geometry::default(), recorded: 0 }
    }

    /// Record the calibration images and thresholds of the first `k`
    /// splits in every report ([`Report::recorded`]), e.g. to refit a
    /// split with [`Calibrator::fit`](crate::Calibrator::fit) and compare.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for more than [`MAX_RECORDED_SPLITS`].
    pub fn with_recorded_splits(mut self, k: usize) -> Result<Self> {
        if k > MAX_RECORDED_SPLITS {
            return Err(Error::InvalidParameter {
                name: "recorded splits",
                value: k.to_string(),
                reason: format!("at most {MAX_RECORDED_SPLITS}"),
            });
        }
        self.recorded = k;
        Ok(self)
    }

    /// Choose on which splits geometry measures are computed.
    #[must_use]
    pub fn with_geometry(mut self, geometry: Geometry) -> Self {
        self.geometry = geometry;
        self
    }

    /// The levels.
    #[must_use]
    pub fn alphas(&self) -> &[Alpha] {
        &self.alphas
    }

    /// The splits.
    #[must_use]
    pub fn splits(&self) -> &Splits {
        &self.splits
    }

    /// Run every method on the same splits; one [`Report`] per method and
    /// level, methods in the order given, levels in the order given.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the pool is too small for the splits,
    /// no level is given, or a method does not fit the pool (see [`Method`]).
    pub fn run(&self, pool: &Pool, methods: &[Method]) -> Result<Vec<Report>> {
        self.run_with_progress(pool, methods, |_| {})
    }

    /// As [`Validation::run`], calling `progress` as the work advances.
    ///
    /// # Errors
    /// As [`Validation::run`].
    pub fn run_with_progress(
        &self,
        pool: &Pool,
        methods: &[Method],
        mut progress: impl FnMut(Progress),
    ) -> Result<Vec<Report>> {
        if self.alphas.is_empty() || self.alphas.len() > MAX_LEVELS {
            return Err(Error::InvalidParameter {
                name: "alphas",
                value: format!("{} levels", self.alphas.len()),
                reason: format!("give 1 to {MAX_LEVELS} levels"),
            });
        }
        let n_test = self.splits.n_test_for(pool.len())?;
        let total = self.splits.repeats;
        let geometry_splits = match self.geometry {
            Geometry::Off => 0,
            Geometry::FirstSplits(k) => k.min(total),
            Geometry::AllSplits => total,
        };
        // test images of the geometry splits
        let mut geometry_tests: Vec<Vec<usize>> = Vec::with_capacity(geometry_splits);
        let prepared: Vec<baselines::Prepared> =
            methods.iter().map(|m| m.prepare(pool)).collect::<Result<_>>()?;
        let n_alpha = self.alphas.len();
        let cells = methods.len() * n_alpha;

        // Per-split coverages are shares k / n_test: kept as histograms of
        // k, so memory does not grow with the number of splits.
        struct Cell {
            inner: Vec<u64>,
            outer: Vec<u64>,
            joint: Vec<u64>,
            too_few: usize,
            m: [Mean; 8],
            nominal: Nominal,
            /// thresholds of the geometry splits
            geo: Vec<SplitSets>,
            /// the recorded splits
            recorded: Vec<SplitRecord>,
        }
        let mut acc: Vec<Cell> = Vec::with_capacity(cells);
        for p in &prepared {
            for &alpha in &self.alphas {
                acc.push(Cell {
                    inner: vec![0; n_test + 1],
                    outer: vec![0; n_test + 1],
                    joint: vec![0; n_test + 1],
                    too_few: 0,
                    m: [Mean::default(); 8],
                    nominal: p.nominal(alpha)?,
                    geo: Vec::new(),
                    recorded: Vec::new(),
                });
            }
        }

        // The splits run in batches: the batch's splits are drawn in order
        // from the one seeded generator, their thresholds and set sizes are
        // computed in parallel (per split, in the order of its test images),
        // and the per-split results are folded into the cells in split order,
        // so the reports do not depend on the number of threads.
        let mut draws = self.splits.iter(pool.len())?;
        let mut done = 0;
        let cancel = crate::cancel::Current::get();
        while done < total {
            cancel.check()?;
            let batch: Vec<(Vec<usize>, Vec<usize>)> = draws.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let any_conformal = prepared.iter().any(baselines::Prepared::is_conformal);
            let thresholds = map_images(batch.len(), |r| {
                cancel.check()?;
                let cal = &batch[r].0;
                let sorted = if any_conformal { baselines::SortedStatistics::new(pool, cal) } else { None };
                (0..cells)
                    .map(|c| {
                        prepared[c / n_alpha].thresholds_with(
                            pool,
                            cal,
                            self.alphas[c % n_alpha],
                            sorted.as_ref(),
                        )
                    })
                    .collect::<Result<Vec<SplitSets>>>()
            });
            let mut flat = Vec::with_capacity(batch.len() * cells);
            for t in thresholds {
                flat.extend(t?);
            }
            let thresholds = flat;
            for (mi, p) in prepared.iter().enumerate() {
                for ai in 0..n_alpha {
                    let c = mi * n_alpha + ai;
                    let t_of = |r: usize| thresholds[r * cells + c];
                    let sizes = SetSizes::new(pool, p, &batch, &t_of);
                    let per_split =
                        map_images(batch.len(), |r| split_cell(pool, p, &batch[r].1, t_of(r), &sizes));
                    let cell = &mut acc[c];
                    for (r, s) in per_split.iter().enumerate() {
                        cell.inner[s.covered[0]] += 1;
                        cell.outer[s.covered[1]] += 1;
                        cell.joint[s.covered[2]] += 1;
                        cell.too_few += usize::from(t_of(r).too_few);
                        for (m, x) in cell.m.iter_mut().zip(&s.m) {
                            m.merge(x);
                        }
                        if done + r < geometry_splits {
                            cell.geo.push(t_of(r));
                        }
                        if done + r < self.recorded {
                            let t = t_of(r);
                            cell.recorded.push(SplitRecord {
                                calibration: batch[r].0.clone(),
                                lambda_inner: t.inner,
                                lambda_outer: -t.outer,
                            });
                        }
                    }
                }
            }
            for (r, (_, test)) in batch.into_iter().enumerate() {
                if done + r < geometry_splits {
                    geometry_tests.push(test);
                }
            }
            done = (done + BATCH).min(total);
            progress(Progress { stage: "splits", unit: "splits", done, total });
        }

        // Geometry: distinct (image, field, op, threshold) over the geometry splits.
        let mut results: Vec<[Mean; GEOMETRY_MEANS]> = vec![[Mean::default(); GEOMETRY_MEANS]; cells];
        if geometry_splits > 0 {
            let mut keys: HashMap<(usize, FieldId, bool, u64), usize> = HashMap::new();
            let mut key_list: Vec<(usize, FieldId, bool, f64)> = Vec::new();
            let mut intern = |j: usize, f: FieldId, strict: bool, t: f64| -> usize {
                let n = key_list.len();
                *keys.entry((j, f, strict, t.to_bits())).or_insert_with(|| {
                    key_list.push((j, f, strict, t));
                    n
                })
            };
            // per cell, per geometry split, per test image: (inner key, outer key)
            let mut lookups: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); cells];
            for (mi, p) in prepared.iter().enumerate() {
                let (fid_i, fid_o) = p.field_ids(mi);
                for ai in 0..n_alpha {
                    let c = mi * n_alpha + ai;
                    for (r, t) in acc[c].geo.iter().enumerate() {
                        for &j in &geometry_tests[r] {
                            let ki = intern(j, fid_i, true, t.inner);
                            let ko = intern(j, fid_o, false, t.outer);
                            lookups[c].push((j, ki, ko));
                        }
                    }
                }
            }
            let images_needed: Vec<usize> = {
                let mut v: Vec<usize> = key_list.iter().map(|k| k.0).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            progress(Progress { stage: "geometry", unit: "sets", done: 0, total: key_list.len() });
            let truth_geo: HashMap<usize, TruthGeometry> = images_needed
                .iter()
                .map(|&j| {
                    let img = &pool.images[j];
                    (
                        j,
                        TruthGeometry {
                            diameter: grid::diameter(&img.truth, &img.shape, &img.spacing),
                            to_truth: grid::edt::distance_to_set(&img.truth, &img.shape, &img.spacing),
                        },
                    )
                })
                .collect();
            let geoms: Vec<Geom> = for_each_image(key_list.len(), |k| {
                let (j, f, strict, t) = key_list[k];
                let field = prepared_field(&prepared, pool, j, f);
                let set: Vec<bool> = field.iter().map(|&x| if strict { x > t } else { x >= t }).collect();
                let tg = &truth_geo[&j];
                let img = &pool.images[j];
                let to_set = grid::edt::distance_to_set(&set, &img.shape, &img.spacing);
                Ok(Geom {
                    diameter: grid::diameter(&set, &img.shape, &img.spacing),
                    hausdorff: grid::hausdorff(&set, &to_set, &pool.images[j].truth, &tg.to_truth),
                })
            })?;
            // band widths: distinct (inner key, outer key) pairs
            let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
            let mut pair_list: Vec<(usize, usize, usize)> = Vec::new();
            for look in &lookups {
                for &(j, ki, ko) in look {
                    let n = pair_list.len();
                    pairs.entry((ki, ko)).or_insert_with(|| {
                        pair_list.push((j, ki, ko));
                        n
                    });
                }
            }
            let set_of = |k: usize| -> Vec<bool> {
                let (j, f, strict, t) = key_list[k];
                let field = prepared_field(&prepared, pool, j, f);
                field.iter().map(|&x| if strict { x > t } else { x >= t }).collect()
            };
            let bands: Vec<[Option<grid::BandWidth>; 2]> = for_each_image(pair_list.len(), |k| {
                let (j, ki, ko) = pair_list[k];
                let (inner, outer) = (set_of(ki), set_of(ko));
                let img = &pool.images[j];
                let physical = grid::band_width(&inner, &outer, &img.shape, &img.spacing);
                let voxels = if img.spacing.iter().all(|&s| s == 1.0) {
                    physical
                } else {
                    grid::band_width(&inner, &outer, &img.shape, &vec![1.0; img.shape.len()])
                };
                Ok([physical, voxels])
            })?;
            progress(Progress {
                stage: "geometry",
                unit: "sets",
                done: key_list.len(),
                total: key_list.len(),
            });
            for (c, look) in lookups.iter().enumerate() {
                let m = &mut results[c];
                for &(j, ki, ko) in look {
                    let [physical, voxels] = bands[pairs[&(ki, ko)]];
                    m[10].add(f64::from(u8::from(physical.is_none())));
                    if let (Some(p), Some(v)) = (physical, voxels) {
                        m[6].add(p.mean);
                        m[7].add(p.max);
                        m[8].add(v.mean);
                        m[9].add(v.max);
                    }
                    let tg = &truth_geo[&j];
                    let (gi, go) = (geoms[ki], geoms[ko]);
                    if let Some(dy) = tg.diameter.filter(|&d| d > 0.0) {
                        m[0].add(gi.diameter.unwrap_or(0.0) / dy);
                        if let Some(d) = go.diameter {
                            m[1].add(d / dy);
                        }
                    }
                    match gi.hausdorff {
                        Some(h) => {
                            m[2].add(h);
                            m[4].add(0.0);
                        }
                        None => m[4].add(1.0),
                    }
                    match go.hausdorff {
                        Some(h) => {
                            m[3].add(h);
                            m[5].add(0.0);
                        }
                        None => m[5].add(1.0),
                    }
                }
            }
        }

        let mut out = Vec::with_capacity(cells);
        for (mi, p) in prepared.iter().enumerate() {
            for (ai, &alpha) in self.alphas.iter().enumerate() {
                let c = &acc[mi * n_alpha + ai];
                let g = &results[mi * n_alpha + ai];
                let inner = Spread::of_shares(&c.inner, c.nominal.inner);
                let outer = Spread::of_shares(&c.outer, c.nominal.outer);
                let joint = Spread::of_shares(&c.joint, c.nominal.joint);
                out.push(Report {
                    method: p.name(),
                    alpha: alpha.get(),
                    inner_coverage: inner.mean,
                    outer_coverage: outer.mean,
                    joint_coverage: joint.mean,
                    inner,
                    outer,
                    joint,
                    too_few_images: c.too_few as f64 / total as f64,
                    efficiency: Efficiency {
                        inner_size_ratio: c.m[0].get(),
                        outer_size_ratio: c.m[1].get(),
                        inner_share: c.m[2].get().unwrap_or(f64::NAN),
                        outer_share: c.m[3].get().unwrap_or(f64::NAN),
                        under_covered: c.m[4].get().unwrap_or(f64::NAN),
                        over_covered: c.m[5].get().unwrap_or(f64::NAN),
                        outer_missed_fraction: c.m[6].get().unwrap_or(f64::NAN),
                        inner_false_fraction: c.m[7].get().unwrap_or(f64::NAN),
                        inner_diameter_ratio: g[0].get(),
                        outer_diameter_ratio: g[1].get(),
                        inner_hausdorff: g[2].get(),
                        outer_hausdorff: g[3].get(),
                        inner_hausdorff_infinite: g[4].get(),
                        outer_hausdorff_infinite: g[5].get(),
                        band_width_mean: g[6].get(),
                        band_width_max: g[7].get(),
                        band_width_mean_voxels: g[8].get(),
                        band_width_max_voxels: g[9].get(),
                        band_width_undefined: g[10].get(),
                        geometry_splits,
                    },
                    n_cal: self.splits.n_cal,
                    n_test,
                    splits: total,
                    recorded: c.recorded.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Geometry means per cell: diameter ratios (2), Hausdorff distances and
/// their infinite shares (4), band widths in physical units and voxels (4)
/// and their undefined share (1).
const GEOMETRY_MEANS: usize = 11;

/// Splits per batch of [`Validation::run`]: drawn in order, computed in
/// parallel, folded in order.
const BATCH: usize = 1024;

/// One split's results for one method and level.
struct SplitCell {
    /// test images with `I ⊆ Y`, `Y ⊆ O`, both
    covered: [usize; 3],
    /// the efficiency sums over the split's test images, in their order
    m: [Mean; 8],
}

/// Set sizes `|I ∩ Y|`, `|I \ Y|`, `|O ∩ Y|`, `|O \ Y|` of the pool's images at
/// the thresholds of a batch of splits for one method and level.
///
/// Thresholds are order statistics of the pool (for the conformal method,
/// of its images' statistics), so a batch of splits meets few distinct
/// values; counting every image at each distinct threshold once (a table)
/// replaces a binary search per split and test image by a lookup. When the
/// thresholds are too many for a table to pay (more entries than half the
/// (split, test image) pairs), each count is a binary search.
struct SetSizes {
    /// distinct inner and outer thresholds, sorted (`total_cmp`)
    inner: Vec<f64>,
    outer: Vec<f64>,
    /// per image: `(|I ∩ Y|, |I \ Y|)` at each inner threshold, then
    /// `(|O ∩ Y|, |O \ Y|)` at each outer threshold; empty when not tabled
    table: Vec<Vec<[u32; 2]>>,
}

impl SetSizes {
    fn new(
        pool: &Pool,
        p: &baselines::Prepared,
        batch: &[(Vec<usize>, Vec<usize>)],
        t_of: &(impl Fn(usize) -> SplitSets + Sync),
    ) -> SetSizes {
        let distinct = |f: &dyn Fn(SplitSets) -> f64| {
            let mut v: Vec<f64> = (0..batch.len()).map(|r| f(t_of(r))).collect();
            v.sort_unstable_by(f64::total_cmp);
            v.dedup_by(|a, b| a.total_cmp(b).is_eq());
            v
        };
        let (inner, outer) = (distinct(&|t| t.inner), distinct(&|t| t.outer));
        let lookups: usize = batch.iter().map(|(_, test)| test.len()).sum();
        let entries = (inner.len() + outer.len()).saturating_mul(pool.len());
        // counts fit the table's u32 if the images do
        let fits = u32::try_from(pool.max_voxels()).is_ok();
        let table = if fits && entries <= lookups {
            map_images(pool.len(), |j| {
                let (fi, fo) = p.fields(pool, j);
                let mut row = Vec::with_capacity(inner.len() + outer.len());
                row.extend(
                    inner.iter().map(|&a| [count_above(&fi.object, a), count_above(&fi.background, a)]),
                );
                row.extend(
                    outer.iter().map(|&b| [count_at_least(&fo.object, b), count_at_least(&fo.background, b)]),
                );
                row.into_iter().map(|c| c.map(|x| x as u32)).collect()
            })
        } else {
            Vec::new()
        };
        SetSizes { inner, outer, table }
    }

    /// Where split thresholds `t` are in the table (`None` if not tabled).
    fn position(&self, t: SplitSets) -> Option<(usize, usize)> {
        if self.table.is_empty() {
            return None;
        }
        let find = |v: &[f64], x: f64| v.binary_search_by(|y| y.total_cmp(&x)).ok();
        Some((find(&self.inner, t.inner)?, self.inner.len() + find(&self.outer, t.outer)?))
    }

    /// `(|I ∩ Y|, |I \ Y|, |O ∩ Y|, |O \ Y|)` of image `j` at thresholds `t`.
    fn counts(
        &self,
        fi: &Field,
        fo: &Field,
        j: usize,
        t: SplitSets,
        at: Option<(usize, usize)>,
    ) -> [usize; 4] {
        match at {
            Some((di, d_o)) => {
                let row = &self.table[j];
                let ([a, b], [c, d]) = (row[di], row[d_o]);
                [a as usize, b as usize, c as usize, d as usize]
            }
            _ => [
                count_above(&fi.object, t.inner),
                count_above(&fi.background, t.inner),
                count_at_least(&fo.object, t.outer),
                count_at_least(&fo.background, t.outer),
            ],
        }
    }
}

/// Whether `wrong` voxels of a region of `n` (the inner set, or the
/// object) meet a side's tolerance, with voxels of volume `vv`.
/// Coverage and efficiency sums of one split (test images in order).
fn split_cell(
    pool: &Pool,
    p: &baselines::Prepared,
    test: &[usize],
    t: SplitSets,
    sizes: &SetSizes,
) -> SplitCell {
    let at = sizes.position(t);
    let tolerances = pool.tolerances();
    let mut out = SplitCell { covered: [0; 3], m: [Mean::default(); 8] };
    for &j in test {
        let img = &pool.images[j];
        let voxels = img.voxels() as f64;
        let (fi, fo) = p.fields(pool, j);
        let [i_obj, i_bg, o_obj, o_bg] = sizes.counts(fi, fo, j, t, at);
        let (inner_ok, outer_ok) = if tolerances.is_none() {
            p.covers(pool, j, t)
        } else {
            // the tolerance events, counted on the sets of every method alike
            let vv: f64 = img.spacing.iter().product();
            let missed = (img.n_object - o_obj) as u64;
            (
                tolerances.inner.holds(i_bg as u64, (i_obj + i_bg) as u64, vv),
                tolerances.outer.holds(missed, img.n_object as u64, vv),
            )
        };
        out.covered[0] += usize::from(inner_ok);
        out.covered[1] += usize::from(outer_ok);
        out.covered[2] += usize::from(inner_ok && outer_ok);
        let y = img.n_object as f64;
        let m = &mut out.m;
        if img.n_object > 0 {
            m[0].add((i_obj + i_bg) as f64 / y);
            m[1].add((o_obj + o_bg) as f64 / y);
            m[6].add((img.n_object - o_obj) as f64 / y);
        } else {
            m[6].add(0.0);
        }
        m[2].add((i_obj + i_bg) as f64 / voxels);
        m[3].add((o_obj + o_bg) as f64 / voxels);
        m[4].add((img.n_object - i_obj) as f64 / voxels);
        m[5].add(o_bg as f64 / voxels);
        // the false discovery proportion of the inner set (0 when empty)
        let inner = i_obj + i_bg;
        m[7].add(if inner > 0 { i_bg as f64 / inner as f64 } else { 0.0 });
    }
    out
}

fn prepared_field<'a>(
    prepared: &'a [baselines::Prepared],
    pool: &'a Pool,
    j: usize,
    f: FieldId,
) -> &'a [f64] {
    match f {
        FieldId::Inner => &pool.images[j].inner.values,
        FieldId::Outer => &pool.images[j].outer.values,
        FieldId::Steps(mi) => prepared
            .get(mi)
            .and_then(|p| p.steps_field(j))
            .map_or(&pool.images[j].outer.values, |f| &f.values),
    }
}

/// A human-readable table of reports (one line per method and level;
/// `band` is the mean band width [`Efficiency::band_width_mean`]).
#[must_use]
pub fn table(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>6} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "method",
        "alpha",
        "inner",
        "outer",
        "joint",
        "sd",
        "<nom",
        "|I|/|Y|",
        "|O|/|Y|",
        "dI/dY",
        "dO/dY",
        "H(I,Y)",
        "H(O,Y)",
        "band"
    );
    let f = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    for r in reports {
        let _ = writeln!(
            s,
            "{:<28} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>6.4} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7}",
            r.method,
            r.alpha,
            r.inner_coverage,
            r.outer_coverage,
            r.joint_coverage,
            r.joint.sd,
            f(r.joint.below_nominal),
            f(r.efficiency.inner_size_ratio),
            f(r.efficiency.outer_size_ratio),
            f(r.efficiency.inner_diameter_ratio),
            f(r.efficiency.outer_diameter_ratio),
            f(r.efficiency.inner_hausdorff),
            f(r.efficiency.outer_hausdorff),
            f(r.efficiency.band_width_mean),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_disjoint_seeded_and_complete() {
        let s = Splits::new(6, 5, 3).unwrap().with_n_test(3).unwrap();
        let a = s.generate(10).unwrap();
        assert_eq!(a, s.generate(10).unwrap());
        assert_ne!(a, Splits::new(6, 5, 4).unwrap().with_n_test(3).unwrap().generate(10).unwrap());
        for (cal, test) in &a {
            assert_eq!(cal.len(), 6);
            assert_eq!(test.len(), 3);
            let mut all: Vec<usize> = cal.iter().chain(test).copied().collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 9);
        }
        assert!(s.generate(6).is_err());
        assert!(Splits::new(5, 1, 0).unwrap().with_n_test(6).unwrap().generate(10).is_err());
        assert!(Splits::new(0, 1, 0).is_err());
        // bounded before anything is allocated per split
        assert!(Splits::new(5, MAX_SPLITS + 1, 0).is_err());
        assert!(Splits::new(5, usize::MAX, 0).is_err());
    }

    #[test]
    fn spreads_of_share_histograms_equal_spreads_of_values() {
        use rand::Rng;
        let mut rng = Pcg64Mcg::seed_from_u64(4);
        for m in [1usize, 7, 50] {
            for n in [1usize, 2, 19, 300] {
                let ks: Vec<usize> = (0..n).map(|_| rng.random_range(0..=m)).collect();
                let mut counts = vec![0u64; m + 1];
                for &k in &ks {
                    counts[k] += 1;
                }
                let values: Vec<f64> = ks.iter().map(|&k| k as f64 / m as f64).collect();
                for nominal in [None, Some(0.5)] {
                    assert_eq!(
                        Spread::of_shares(&counts, nominal),
                        Spread::of(&values, nominal),
                        "m={m} n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn spread_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Spread::of(&v, Some(3.5));
        assert_eq!(s.q05, 1.0);
        assert_eq!(s.median, 10.0);
        assert_eq!(s.q95, 19.0);
        assert_eq!(s.below_nominal, Some(0.15));
        assert!((s.sd - (35.0f64).sqrt()).abs() < 1e-12);
    }

    use crate::levels::{Levels, ModeKind};
    use crate::quantile::Rank;

    fn small_pool() -> Pool {
        use crate::synthetic::Synthetic;
        use crate::{Identity, Metric, SignedDistance};
        let (scores, masks) = Synthetic::new([20, 24]).seed(5).stack(0..120);
        let c = Calibrator::new(Identity, SignedDistance::new(Metric::Euclidean));
        Pool::new(&c, &scores, &masks, 0.0).unwrap()
    }

    fn all_methods() -> Vec<Method> {
        vec![
            Method::Conformal(Levels::new(ModeKind::Marginal)),
            Method::Conformal(Levels::new(ModeKind::Max)),
            Method::Conformal(Levels::bonferroni(1.0, 4.0)),
            Method::RiskControl,
            Method::Risk(Levels { delta: Some(0.1), ..Levels::new(ModeKind::RiskControl) }),
            Method::Risk(Levels {
                delta: Some(0.1),
                risk: Some(crate::risk::Risk::Precision),
                ..Levels::new(ModeKind::RiskControl)
            }),
            Method::PixelwiseBonferroni(Levels::bonferroni(1.0, 4.0)),
            Method::Morphological(crate::transform::Footprint::Full, Rank::Marginal),
        ]
    }

    #[test]
    fn set_size_tables_equal_binary_searches() {
        let pool = small_pool();
        let splits = Splits::new(70, 300, 2).unwrap().generate(pool.len()).unwrap();
        for method in all_methods() {
            let p = method.prepare(&pool).unwrap();
            for alpha in [0.05, 0.2] {
                let alpha = Alpha::new(alpha).unwrap();
                let t: Vec<SplitSets> =
                    splits.iter().map(|(cal, _)| p.thresholds(&pool, cal, alpha).unwrap()).collect();
                let t_of = |r: usize| t[r];
                let tabled = SetSizes::new(&pool, &p, &splits, &t_of);
                assert!(!p.is_conformal() || !tabled.table.is_empty(), "conformal thresholds are few");
                let direct = SetSizes { inner: Vec::new(), outer: Vec::new(), table: Vec::new() };
                for (r, (_, test)) in splits.iter().enumerate() {
                    let (a, b) = (
                        split_cell(&pool, &p, test, t[r], &tabled),
                        split_cell(&pool, &p, test, t[r], &direct),
                    );
                    assert_eq!(a.covered, b.covered);
                    for (x, y) in a.m.iter().zip(&b.m) {
                        assert_eq!((x.sum.to_bits(), x.n), (y.sum.to_bits(), y.n));
                    }
                }
                // the conformal thresholds from sorted statistics equal `Calibration::thresholds`
                for (cal, _) in &splits {
                    let sorted = baselines::SortedStatistics::new(&pool, cal);
                    let a = p.thresholds_with(&pool, cal, alpha, sorted.as_ref()).unwrap();
                    let b = p.thresholds(&pool, cal, alpha).unwrap();
                    assert_eq!(
                        (a.inner.to_bits(), a.outer.to_bits(), a.too_few),
                        (b.inner.to_bits(), b.outer.to_bits(), b.too_few)
                    );
                }
            }
        }
    }

    #[cfg(feature = "rayon")]
    #[test]
    fn parallel_reports_equal_one_thread_bit_for_bit() {
        let pool = small_pool();
        // more splits than a batch, the last batch partial; geometry on a few
        let alphas = [0.05, 0.1, 0.3].map(|a| Alpha::new(a).unwrap()).to_vec();
        let v = Validation::new(alphas, Splits::new(60, 2 * BATCH + 37, 9).unwrap().with_n_test(50).unwrap())
            .with_geometry(Geometry::FirstSplits(3));
        let run = |threads: usize| {
            let tp = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut calls = Vec::new();
            let r = tp.install(|| v.run_with_progress(&pool, &all_methods(), |p| calls.push(p))).unwrap();
            // Debug shows every f64 exactly (shortest round trip, NaN and -0 included)
            (format!("{r:?}"), calls)
        };
        let (one, calls) = run(1);
        assert_eq!(run(3), (one.clone(), calls.clone()));
        assert_eq!(run(2).0, one);
        assert_eq!(calls.iter().rfind(|p| p.stage == "splits").map(|p| p.done), Some(2 * BATCH + 37));
    }

    #[test]
    fn counts() {
        let v = [1.0, 2.0, 2.0, 3.0];
        assert_eq!(count_above(&v, 2.0), 1);
        assert_eq!(count_at_least(&v, 2.0), 3);
        assert_eq!(count_above(&v, f64::INFINITY), 0);
        assert_eq!(count_at_least(&v, f64::NEG_INFINITY), 4);
    }
}
