//! The pool: labelled images prepared once for many splits. Each image
//! is transformed once; per side, its transformed scores are kept with
//! their values sorted separately over the object and the background
//! ([`Field`]), so that a set size at any threshold is a binary search
//! ([`count_above`], [`count_at_least`]); its calibration statistics are
//! kept for the conformal quantiles.

use ndarray::{Array, ArrayRef, Axis, Dimension, RemoveAxis};

use crate::calibrate::{Calibrator, Transformed};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::{check_shape, AsImage};
use crate::mask::MaskValue;
use crate::stream::{default_in_flight, for_each_image, stream, Load};
use crate::tolerance::Tolerances;
use crate::transform::{Spacing, Transform};
use crate::Calibration;

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
/// is transformed once; see the [module docs](super).
///
/// Images may differ in shape and spacing (per-subject volumes) but share
/// one dimensionality. Memory: two `f64` copies of every voxel per side
/// (the values and their sorted split by the truth), so about `32 |V|`
/// bytes per image; the images are read and transformed as a stream
/// ([`Pool::from_stream`]), so nothing else grows with the pool.
#[derive(Debug, Clone)]
pub struct Pool {
    ndim: usize,
    pub(super) images: Vec<PoolImage>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let v = [1.0, 2.0, 2.0, 3.0];
        assert_eq!(count_above(&v, 2.0), 1);
        assert_eq!(count_at_least(&v, 2.0), 3);
        assert_eq!(count_above(&v, f64::INFINITY), 0);
        assert_eq!(count_at_least(&v, f64::NEG_INFINITY), 4);
    }
}
