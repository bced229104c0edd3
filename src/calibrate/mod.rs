//! Calibration as a streaming reduction (METHOD.md §2, §4).
//!
//! Each calibration pair `(s(X_i), Y_i)` is reduced to two numbers,
//!
//! ```text
//! tau_i   = max { f_I(s(X_i))(v)  : Y_i(v) = 0 }   worst inner false positive
//! gamma_i = max { -f_O(s(X_i))(v) : Y_i(v) = 1 }   worst outer miss
//! ```
//!
//! (the max over an empty region is `-inf`) by one fused pass
//! ([`region_statistics`]). Only these numbers are kept, so memory is O(n)
//! and [`Calibration`]s computed by different workers merge by
//! concatenation. [`Calibrator::fit`] turns them into
//! [`ConfidenceSets`](crate::ConfidenceSets): the thresholds for a
//! [`Mode`](crate::Mode) are conformal quantiles of the statistics.
//! Risk control keeps every object voxel's score instead, and for the
//! precision risk every voxel's ([`RiskCalibration`]).
//!
//! Several structures (a label map with whole tumour, core, ...) are
//! calibrated together by a [`StructureCalibrator`], with a [`JointMode`](crate::levels::JointMode)
//! for one joint guarantee over all of them (METHOD.md §4.1).

mod calibration;
mod fit;
mod kernel;
mod risk;
mod structures;
mod tolerance;

use calibration::Origin;
pub use calibration::{Calibration, Provenance};
pub use kernel::{region_statistics, ImageStatistics, RegionFold};
pub use risk::RiskCalibration;
pub use structures::{StructureCalibration, StructureCalibrator};

use ndarray::{Array, ArrayRef, ArrayView, Axis, Dimension, RemoveAxis};

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::float::Float;
use crate::image::{check_shape, AsImage, Spacing};
use crate::mask::MaskValue;
use crate::stream::{default_in_flight, for_each_image, stream, Load};
use crate::tolerance::{Tolerance, Tolerances};
use crate::transform::{Transform, Transforms};

/// One image's scores already transformed by `f_I` and `f_O` (for example
/// computed by another tool), used as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Transformed<A, D: Dimension> {
    /// `f_I(s) = f_O(s)`: one array (read once, reduced in one pass).
    Shared(Array<A, D>),
    /// Separate arrays of the same shape.
    Separate {
        /// `f_I(s)`.
        inner: Array<A, D>,
        /// `f_O(s)`.
        outer: Array<A, D>,
    },
}

impl<A, D: Dimension> Transformed<A, D> {
    /// `(f_I(s), f_O(s))`; for [`Transformed::Shared`] the same array twice.
    pub fn sides(&self) -> (&Array<A, D>, &Array<A, D>) {
        match self {
            Transformed::Shared(a) => (a, a),
            Transformed::Separate { inner, outer } => (inner, outer),
        }
    }
}

impl<A: Float, D: Dimension, M: MaskValue> Load for (Transformed<A, D>, Array<M, D>) {
    type Output = Self;
    fn load(self) -> Result<Self> {
        Ok(self)
    }
}

/// Calibration parameters: the transforms `f_I`, `f_O` and the default
/// voxel spacing (for images that do not carry their own). Turns
/// `(scores, mask)` pairs into [`ImageStatistics`]; [`Calibrator::fit`]
/// turns a [`Calibration`] into fitted [`ConfidenceSets`](crate::ConfidenceSets).
///
/// ```
/// use confseg::{Alpha, Calibration, Calibrator, Identity, Mode};
/// use confseg::synthetic::Synthetic;
///
/// let data = Synthetic::new([32, 32]).seed(7);
/// let calibrator = Calibrator::new(Identity, Identity);
/// let mut cal = Calibration::new();
/// for (scores, mask) in data.pairs(0..200) {
///     calibrator.observe(&mut cal, &scores, &mask)?;
/// }
/// let sets = calibrator.fit(&cal, Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?)?;
/// let (scores, mask) = data.pair(1000);
/// let pred = sets.predict(&scores)?;
/// let cover = pred.coverage(&mask)?;
/// println!("inner ⊆ truth: {}, truth ⊆ outer: {}", cover.inner, cover.outer);
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// Images of a cohort with a spacing per subject carry it in an
/// [`Image`](crate::Image); every spatial transform then uses the image's
/// own spacing, and the fitted sets record that the spacing was per image:
///
/// ```
/// use confseg::{Calibration, Calibrator, Identity, Image, Metric, SignedDistance, Spacing};
/// use ndarray::Array3;
///
/// let calibrator = Calibrator::new(Identity, SignedDistance::new(Metric::Euclidean));
/// let mut cal = Calibration::new();
/// let scores = Array3::from_shape_fn((8, 8, 4), |(i, j, k)| 2.0 - (i + j + k) as f32 * 0.3);
/// let mask = scores.mapv(|s| u8::from(s > 0.5));
/// for spacing in [[0.8, 0.8, 2.5], [0.7, 0.7, 3.0]] {
///     let image = Image::new(scores.view(), Spacing::new(spacing.to_vec())?)?;
///     calibrator.observe(&mut cal, &image, &mask)?;
/// }
/// assert!(cal.per_image_spacing());
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibrator<TI, TO> {
    transforms: Transforms<TI, TO>,
    tolerances: Tolerances,
}

impl<TI, TO> Calibrator<TI, TO> {
    /// Calibrate with transforms `f_I = inner`, `f_O = outer` and unit
    /// default spacing.
    pub fn new(inner: TI, outer: TO) -> Self {
        Calibrator { transforms: Transforms::new(inner, outer), tolerances: Tolerances::NONE }
    }

    /// Use this physical voxel spacing for images that do not carry their
    /// own (plain arrays).
    #[must_use]
    pub fn with_spacing(self, spacing: Spacing) -> Self {
        Calibrator { transforms: self.transforms.with_spacing(spacing), ..self }
    }

    /// Calibrate for tolerance events instead of containment
    /// ([`crate::tolerance`]): each image's statistic is the smallest
    /// threshold at which at most the tolerated part of each side is wrong,
    /// and the fitted sets promise `P(event) >= 1 - alpha` for that event.
    ///
    /// ```
    /// use confseg::tolerance::Tolerances;
    /// use confseg::{Alpha, Calibrator, Identity, Mode};
    /// use confseg::synthetic::Synthetic;
    ///
    /// let data = Synthetic::new([32, 32]).seed(7);
    /// let strict = Calibrator::new(Identity, Identity);
    /// // at most 1% of each object outside the outer set
    /// let tolerant = strict.clone().with_tolerances(Tolerances::new(Default::default(), "0.01".parse()?));
    /// let pairs: Vec<_> = data.pairs(0..100).collect();
    /// let mode = Mode::marginal(Alpha::new(0.1)?);
    /// let fit = |c: &Calibrator<Identity, Identity>| c.fit(&c.calibrate_stream(pairs.clone().into_iter().map(Ok))?, mode);
    /// let (a, b) = (fit(&strict)?, fit(&tolerant)?);
    /// assert!(b.thresholds().outer.value() <= a.thresholds().outer.value()); // a smaller outer set
    /// assert_eq!(a.thresholds().inner, b.thresholds().inner);
    /// assert!(b.guarantee().to_string().contains("|Y \\ O| <= ⌊0.01 |Y|⌋"));
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn with_tolerances(self, tolerances: Tolerances) -> Self {
        // one spelling of containment (`0.0` and `0vox` are `0`), so that
        // provenances and files compare equal
        let canonical = |t: Tolerance| if t.is_none() { Tolerance::NONE } else { t };
        let tolerances = Tolerances::new(canonical(tolerances.inner), canonical(tolerances.outer));
        Calibrator { tolerances, ..self }
    }

    /// A calibrator with other transforms and these settings (default
    /// spacing, tolerances): how candidate transforms are compared under
    /// one setting.
    pub fn with_transforms<UI, UO>(&self, inner: UI, outer: UO) -> Calibrator<UI, UO> {
        Calibrator {
            transforms: Transforms::new(inner, outer).with_spacing(self.spacing().clone()),
            tolerances: self.tolerances,
        }
    }

    /// The tolerance of each side's event (containment unless set).
    pub fn tolerances(&self) -> &Tolerances {
        &self.tolerances
    }

    /// The transforms and the default spacing.
    pub fn transforms(&self) -> &Transforms<TI, TO> {
        &self.transforms
    }

    /// The inner transform `f_I`.
    pub fn inner_transform(&self) -> &TI {
        self.transforms.inner()
    }

    /// The outer transform `f_O`.
    pub fn outer_transform(&self) -> &TO {
        self.transforms.outer()
    }

    /// The default voxel spacing (for images without their own).
    pub fn spacing(&self) -> &Spacing {
        self.transforms.spacing()
    }
}

impl Calibrator<crate::transform::ScoreTransform, crate::transform::ScoreTransform> {
    /// The threshold of the predicted mask `{scores > t}` that the
    /// transforms use (the outer transform's, else the inner one's), for
    /// what else is computed from the predicted mask (strata, baselines).
    #[must_use]
    pub fn mask_threshold(&self) -> Option<f64> {
        self.outer_transform().mask_threshold().or_else(|| self.inner_transform().mask_threshold())
    }
}

impl<TI: Transform, TO: Transform> Calibrator<TI, TO> {
    /// What statistics of `ndim`-dimensional images computed by this
    /// calibrator are recorded with.
    #[must_use]
    pub fn provenance(&self, ndim: usize) -> Provenance {
        Provenance::new(
            self.inner_transform().describe(),
            self.outer_transform().describe(),
            self.tolerances,
            self.spacing().clone(),
            ndim,
        )
    }

    /// [`Calibrator::provenance`], checked before anything is recorded
    /// with it: images of at least one axis, and a default spacing (if
    /// explicit) of one entry per axis, even when no transform uses it.
    pub(crate) fn checked_provenance(&self, ndim: usize) -> Result<Provenance> {
        let p = self.provenance(ndim);
        p.validate()?;
        Ok(p)
    }

    /// `(tau, gamma)` of one labelled image: transforms (with the image's
    /// own spacing if it carries one, else the default), then the fused
    /// kernel.
    ///
    /// # Errors
    /// Shape mismatch between scores and mask, NaN in the scores
    /// ([`Error::NanScore`]) or made by a transform ([`Error::TransformNan`]),
    /// non-binary mask values, or a transform error.
    pub fn statistics<I, M>(&self, scores: &I, mask: &ArrayRef<M, I::Dim>) -> Result<ImageStatistics>
    where
        I: AsImage + ?Sized,
        M: MaskValue,
    {
        let s = scores.scores();
        check_shape("scores vs mask", mask, s)?;
        if let Some(st) = self.outer_shortcut(s, mask, scores.spacing())? {
            return Ok(st);
        }
        let (fi, fo) = self.transforms.apply(s, scores.spacing())?;
        self.transformed_statistics(&fi, &fo, mask, scores.spacing())
            .map_err(|e| self.transforms.blame_nan(e, s, &fi, &fo))
    }

    /// `(tau, gamma)` of one labelled image when the outer side has a
    /// tolerance and its transform computes that statistic itself
    /// ([`Transform::outer_tolerance_statistic`]): the inner side through
    /// the fused kernel on `f_I` alone, the outer side from the transform,
    /// with the numbers [`Calibrator::statistics`] gives otherwise. `None`
    /// when there is no such shortcut.
    fn outer_shortcut<A: Float, D: Dimension, M: MaskValue>(
        &self,
        s: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        own: Option<&Spacing>,
    ) -> Result<Option<ImageStatistics>> {
        if self.tolerances.outer.is_none() {
            return Ok(None);
        }
        crate::image::check_nonempty(s.shape())?;
        let spacing = own.unwrap_or(self.spacing());
        let (outer, vv) = (self.tolerances.outer, self.voxel_volume(s.ndim(), own)?);
        let allowed = |n: u64| outer.allowed(n, vv);
        let Some(gamma) = self.outer_transform().outer_tolerance_statistic(s, mask, spacing, &allowed) else {
            return Ok(None);
        };
        // first, as the outer transform's errors (NaN in the scores) come first otherwise
        let gamma = gamma?;
        let fi = self.inner_transform().apply(s, spacing)?;
        let inner_only = Tolerances::new(self.tolerances.inner, Tolerance::NONE);
        let mut fold = RegionFold::new(mask.shape()).with_tolerances(&inner_only, vv);
        let (f, m) = (fi.as_standard_layout(), mask.as_standard_layout());
        // `as_standard_layout` returns contiguous row-major arrays, so these are `Some`
        if let (Some(f), Some(m)) = (f.as_slice(), m.as_slice()) {
            fold.push(f, None, m).map_err(|e| self.transforms.blame_nan(e, s, &fi, &fi))?;
        }
        Ok(Some(ImageStatistics { tau: fold.finish()?.tau, gamma }))
    }

    /// `(tau, gamma)` of one labelled image from scores already
    /// transformed (by this calibrator's transforms, or by another tool
    /// when they are identities): the fused kernel, then each side's
    /// tolerance statistic ([`Calibrator::with_tolerances`]). `spacing` is
    /// the image's own (else the default): it turns volume tolerances into
    /// voxel counts.
    ///
    /// # Errors
    /// As [`region_statistics`]; [`Error::InvalidSpacing`] for a spacing
    /// of another dimensionality when a volume tolerance needs it.
    pub fn transformed_statistics<A: Float, D: Dimension, M: MaskValue>(
        &self,
        inner: &ArrayRef<A, D>,
        outer: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        spacing: Option<&Spacing>,
    ) -> Result<ImageStatistics> {
        if self.tolerances.is_none() {
            return region_statistics(inner, outer, mask);
        }
        check_shape("inner scores vs mask", mask, inner)?;
        check_shape("outer scores vs mask", mask, outer)?;
        let mut fold = self.fold(mask.shape(), spacing)?;
        let (fi, fo, m) = (inner.as_standard_layout(), outer.as_standard_layout(), mask.as_standard_layout());
        // `as_standard_layout` returns contiguous row-major arrays, so these are `Some`
        if let (Some(fi), Some(fo), Some(m)) = (fi.as_slice(), fo.as_slice(), m.as_slice()) {
            fold.push(fi, Some(fo), m)?;
        }
        fold.finish()
    }

    /// The fold of one image of this `shape` for this calibrator's
    /// tolerances ([`RegionFold::with_tolerances`]), with the image's own
    /// `spacing` (else the default) for volume tolerances: for readers that
    /// fold an image chunk by chunk (equal to
    /// [`Calibrator::transformed_statistics`] on the whole image).
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] for a spacing of another dimensionality
    /// when a volume tolerance needs it.
    pub fn fold<A: Float>(&self, shape: &[usize], spacing: Option<&Spacing>) -> Result<RegionFold<A>> {
        let voxel_volume = self.voxel_volume(shape.len(), spacing)?;
        Ok(RegionFold::new(shape).with_tolerances(&self.tolerances, voxel_volume))
    }

    /// The volume of one voxel of an `ndim`-dimensional image with its own
    /// `spacing` (else the default), when a volume tolerance needs it
    /// (else 1).
    fn voxel_volume(&self, ndim: usize, spacing: Option<&Spacing>) -> Result<f64> {
        let needs_volume =
            [self.tolerances.inner, self.tolerances.outer].iter().any(|t| matches!(t, Tolerance::Volume(_)));
        if !needs_volume {
            return Ok(1.0);
        }
        Ok(spacing.unwrap_or(self.spacing()).for_ndim(ndim)?.iter().product())
    }

    /// Add one labelled image to `calibration`. Errors name the image by its
    /// position in `calibration` (`calibration.len()` before the call).
    ///
    /// # Errors
    /// As [`Calibrator::statistics`]; [`Error::DimensionMismatch`] if the
    /// image's dimensionality differs from the calibration's;
    /// [`Error::IncompatibleCalibration`] if `calibration` was filled with
    /// other transforms or default spacing;
    /// [`Error::InvalidSpacing`] if the calibrator's default spacing does
    /// not have one entry per image axis (even when no transform uses it),
    /// [`Error::InvalidParameter`] for an image of no axes.
    pub fn observe<I, M>(
        &self,
        calibration: &mut Calibration,
        scores: &I,
        mask: &ArrayRef<M, I::Dim>,
    ) -> Result<()>
    where
        I: AsImage + ?Sized,
        M: MaskValue,
    {
        let n = calibration.len();
        self.admit(calibration.origin_mut(), scores.scores().ndim()).map_err(|e| e.in_image(n))?;
        let s = self.statistics(scores, mask).map_err(|e| e.in_image(n))?;
        if scores.spacing().is_some() {
            calibration.origin_mut().per_image_spacing = true;
        }
        calibration.push(s);
        Ok(())
    }

    /// Admit images of `ndim` axes computed by this calibrator into a
    /// calibration state (conformal or risk control): see [`Origin::admit`].
    pub(crate) fn admit(&self, origin: &mut Origin, ndim: usize) -> Result<()> {
        origin.admit(ndim, || self.checked_provenance(ndim))
    }

    /// Add statistics computed elsewhere from this calibrator's transforms
    /// (e.g. by a validation pool) to `calibration`, with the provenance of
    /// `ndim`-dimensional images.
    pub(crate) fn observe_statistics(
        &self,
        calibration: &mut Calibration,
        stats: &Calibration,
        ndim: usize,
    ) -> Result<()> {
        self.admit(calibration.origin_mut(), ndim)?;
        calibration.extend(stats.iter());
        Ok(())
    }

    /// Calibration statistics of a batch-first stack `(N, spatial...)` of
    /// score images and masks, all with the default spacing. With the
    /// `rayon` feature, images are processed in parallel; the result is the
    /// same either way (in image order).
    ///
    /// # Errors
    /// As [`Calibrator::statistics`], for the first failing image (by index).
    /// [`Error::ShapeMismatch`] if the stacks differ in shape; as
    /// [`Calibrator::observe`] for the default spacing and a stack of
    /// images of no axes.
    pub fn calibrate_stack<A: Float, D: RemoveAxis, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        masks: &ArrayRef<M, D>,
    ) -> Result<Calibration>
    where
        TI: Sync,
        TO: Sync,
    {
        check_shape("scores stack vs masks stack", masks, scores)?;
        crate::image::check_stack("scores stack", scores.ndim())?;
        let mut cal = Calibration::new();
        self.admit(cal.origin_mut(), scores.ndim().saturating_sub(1))?;
        let stats = for_each_image(scores.len_of(Axis(0)), |i| {
            self.statistics(&scores.index_axis(Axis(0), i), &masks.index_axis(Axis(0), i))
        })?;
        cal.extend(stats);
        Ok(cal)
    }

    /// Calibration statistics of labelled images held in memory and
    /// borrowed: plain arrays (the default spacing) or
    /// [`Image`](crate::Image)s with their own spacing, of any shapes, one
    /// dimensionality, with mask views (no copies). Parallel with the
    /// `rayon` feature; the result is in slice order and equals observing
    /// the images one by one with [`Calibrator::observe`] (used by the
    /// Python bindings for lists of images and per-image spacings).
    ///
    /// ```
    /// use confseg::{Calibrator, Identity, Image, Spacing};
    /// use confseg::synthetic::Synthetic;
    /// let data = Synthetic::new([16, 16]).seed(2);
    /// let owned: Vec<_> = data.pairs(0..4).collect();
    /// let pairs: Vec<_> = owned
    ///     .iter()
    ///     .map(|(s, m)| Ok((Image::new(s.view(), Spacing::new(vec![1.0, 2.0])?)?, m.view())))
    ///     .collect::<confseg::Result<_>>()?;
    /// let cal = Calibrator::new(Identity, Identity).calibrate_images(&pairs)?;
    /// assert_eq!(cal.len(), 4);
    /// assert!(cal.per_image_spacing());
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Calibrator::observe`] for the first failing image (by index).
    pub fn calibrate_images<I, M>(&self, pairs: &[(I, ArrayView<'_, M, I::Dim>)]) -> Result<Calibration>
    where
        I: AsImage + Sync,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let stats = for_each_image(pairs.len(), |i| {
            let (image, mask) = &pairs[i];
            let s = self.statistics(image, mask)?;
            Ok((s, image.scores().ndim(), image.spacing().is_some()))
        })?;
        let mut cal = Calibration::new();
        for (i, (s, ndim, own_spacing)) in stats.into_iter().enumerate() {
            self.admit(cal.origin_mut(), ndim).map_err(|e| e.in_image(i))?;
            if own_spacing {
                cal.origin_mut().per_image_spacing = true;
            }
            cal.push(s);
        }
        Ok(cal)
    }

    /// Calibration statistics of a stream of labelled images (for example
    /// [`io::NpyStack`](crate::io) readers, or per-subject files), computed
    /// in parallel with at most [`default_in_flight`] images in memory.
    /// Images may differ in shape and carry their own spacing
    /// ([`Image`](crate::Image)); they must share one dimensionality.
    /// The result is in stream order and equals observing the images one by one.
    ///
    /// ```
    /// use confseg::{Calibrator, Identity};
    /// use confseg::synthetic::Synthetic;
    /// let data = Synthetic::new([16, 16]).seed(2);
    /// let cal = Calibrator::new(Identity, Identity).calibrate_stream(data.pairs(0..50).map(Ok))?;
    /// assert_eq!(cal.len(), 50);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// The source's first error, or as [`Calibrator::observe`] for the first
    /// failing image, tagged with its position in the stream.
    pub fn calibrate_stream<P, I, M, S>(&self, pairs: S) -> Result<Calibration>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (I, Array<M, I::Dim>)>,
        I: AsImage + Send,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let mut cal = Calibration::new();
        self.extend_from_stream(&mut cal, pairs, default_in_flight())?;
        Ok(cal)
    }

    /// Calibration statistics of a stream of already transformed scores
    /// ([`Transformed`]) and masks: the fused kernel only (the calibrator's
    /// own transforms are not applied, and should be [`Identity`](crate::Identity),
    /// which the provenance then records). In parallel, with at most
    /// [`default_in_flight`] images in memory.
    ///
    /// # Errors
    /// The source's first error, or as [`region_statistics`] for the first
    /// failing image, tagged with its position in the stream.
    pub fn calibrate_transformed_stream<P, A, D, M, S>(&self, items: S) -> Result<Calibration>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (Transformed<A, D>, Array<M, D>)>,
        A: Float,
        D: Dimension,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let mut cal = Calibration::new();
        stream(
            items,
            default_in_flight(),
            |i, item: P| {
                let (t, mask) = item.load().map_err(|e| e.in_image(i))?;
                let (fi, fo) = t.sides();
                let s = self.transformed_statistics(fi, fo, &mask, None).map_err(|e| e.in_image(i))?;
                Ok((s, fi.ndim()))
            },
            |i, (s, ndim)| {
                self.admit(cal.origin_mut(), ndim).map_err(|e| e.in_image(i))?;
                cal.push(s);
                Ok(())
            },
        )?;
        Ok(cal)
    }

    /// Calibration from per-image statistics computed by the stream's items
    /// as they load (on the worker threads), for example by a chunked
    /// reader that folds already transformed scores through a
    /// [`RegionFold`] without holding whole images. The statistics must
    /// have been computed with this calibrator's transforms
    /// on `ndim`-dimensional images: the calibration records that
    /// provenance.
    ///
    /// # Errors
    /// The first error of an item, tagged with its position in the stream.
    pub fn calibrate_statistics_stream<P, S>(&self, items: S, ndim: usize) -> Result<Calibration>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = ImageStatistics>,
    {
        let mut cal = Calibration::new();
        self.admit(cal.origin_mut(), ndim)?;
        stream(
            items,
            default_in_flight(),
            |i, item: P| item.load().map_err(|e| e.in_image(i)),
            |_, s| {
                cal.push(s);
                Ok(())
            },
        )?;
        Ok(cal)
    }

    /// [`Calibrator::calibrate_stream`] into an existing calibration, with
    /// at most `in_flight` images read and not yet reduced.
    ///
    /// # Errors
    /// As [`Calibrator::calibrate_stream`]; image positions count from
    /// `calibration.len()`.
    pub fn extend_from_stream<P, I, M, S>(
        &self,
        calibration: &mut Calibration,
        pairs: S,
        in_flight: usize,
    ) -> Result<()>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = (I, Array<M, I::Dim>)>,
        I: AsImage + Send,
        M: MaskValue,
        TI: Sync,
        TO: Sync,
    {
        let offset = calibration.len();
        stream(
            pairs,
            in_flight,
            |i, item: P| {
                let (image, mask) = item.load().map_err(|e| e.in_image(offset + i))?;
                let s = self.statistics(&image, &mask).map_err(|e| e.in_image(offset + i))?;
                Ok((s, image.scores().ndim(), image.spacing().is_some()))
            },
            |i, (s, ndim, own_spacing)| {
                self.admit(calibration.origin_mut(), ndim).map_err(|e| e.in_image(offset + i))?;
                if own_spacing {
                    calibration.origin_mut().per_image_spacing = true;
                }
                calibration.push(s);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::levels::Mode;
    use crate::quantile::{Alpha, Threshold};
    use ndarray::Array2;

    /// Found by the `api` fuzz target (`fuzz/artifacts/api/default-spacing-of-another-length`):
    /// a default spacing of 4 entries with transforms that never use it
    /// calibrated 2-D images, and the fitted sets were written to JSON that
    /// could not be read back ("spacing has 4 entries for 2-D images").
    /// Likewise images of no axes ("ndim = 0"). Both are refused when the
    /// provenance is recorded.
    #[test]
    fn provenance_that_no_sets_file_could_hold_is_refused() {
        use crate::{ScoreTransform, Spacing};
        let id = || ScoreTransform::Identity;
        let c = Calibrator::new(id(), id()).with_spacing(Spacing::new(vec![1.0; 4]).unwrap());
        let (s, m) = (Array2::<f64>::zeros((2, 2)), Array2::<u8>::zeros((2, 2)));
        let mut cal = Calibration::new();
        let e = c.observe(&mut cal, &s, &m).unwrap_err();
        assert!(matches!(e, Error::InvalidSpacing { ndim: 2, .. }), "{e}");
        assert!(e.to_string().contains("default spacing needs one entry per image axis"), "{e}");
        assert!(cal.is_empty() && cal.provenance().is_none());
        let stack = Array2::<f64>::zeros((3, 2)).insert_axis(ndarray::Axis(2));
        assert!(matches!(
            c.calibrate_stack(&stack, &stack.mapv(|_| 0u8)),
            Err(Error::InvalidSpacing { ndim: 2, .. })
        ));
        let plain = Calibrator::new(id(), id());
        let e = plain.observe(&mut cal, &ndarray::arr0(1.0), &ndarray::arr0(1u8)).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { name: "image dimensionality", .. }), "{e}");
        let e = plain.calibrate_stack(&ndarray::arr1(&[1.0, 2.0]), &ndarray::arr1(&[0u8, 1])).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
        // a calibration recorded with a fitting spacing fits, and its sets read back
        let c = c.with_spacing(Spacing::new(vec![1.0, 2.0]).unwrap());
        c.observe(&mut cal, &s, &m).unwrap();
        let sets = c.fit(&cal, Mode::max(Alpha::new(0.5).unwrap())).unwrap();
        assert_eq!(sets.spacing().as_slice(), Some(&[1.0, 2.0][..]));
        #[cfg(feature = "serde")]
        {
            let text = serde_json::to_string(&sets).unwrap();
            assert_eq!(serde_json::from_str::<crate::ConfidenceSets>(&text).unwrap(), sets);
            // a calibration file whose provenance no sets file could hold
            let bad = serde_json::to_string(&cal).unwrap().replace("[1.0,2.0]", "[1.0,2.0,3.0]");
            let e = serde_json::from_str::<Calibration>(&bad).unwrap_err().to_string();
            assert!(e.contains("\"provenance\"") && e.contains("2-D"), "{e}");
        }
    }

    #[test]
    fn observe_names_the_image() {
        let cal_ = Calibrator::new(crate::Identity, crate::Identity);
        let mut cal = Calibration::new();
        let ok = Array2::<f64>::zeros((2, 2));
        cal_.observe(&mut cal, &ok, &Array2::<u8>::zeros((2, 2))).unwrap();
        let mut bad = ok.clone();
        bad[[1, 0]] = f64::NAN;
        let e = cal_.observe(&mut cal, &bad, &Array2::<u8>::zeros((2, 2))).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "scores", image: Some(1), index: vec![1, 0] });
        assert_eq!(cal.len(), 1);
    }

    #[test]
    fn max_mode_uses_the_joint_statistic() {
        let cal: Calibration =
            (0..9).map(|i| ImageStatistics { tau: f64::from(i), gamma: f64::from(8 - i) * 0.5 }).collect();
        // joint = max(i, (8 - i)/2): [4, 3.5, 3, 3, 4, 5, 6, 7, 8]; n = 9, alpha = 0.5 -> k = 5 -> 4
        let t = cal.thresholds(&Mode::max(Alpha::new(0.5).unwrap())).unwrap();
        assert_eq!(t.inner, Threshold::OrderStatistic { k: 5, value: 4.0 });
        assert_eq!(t.inner, t.outer);
    }
}
