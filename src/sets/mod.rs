//! Fitted confidence sets and the inner/outer masks they produce (METHOD.md §4).

use ndarray::{Array, ArrayRef, Axis, Dimension, RemoveAxis, Zip};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::{check_nan, check_shape, AsImage, Spacing};
use crate::levels::Guarantee;
use crate::mask::check_mask;
use crate::mask::MaskValue;
use crate::quantile::{Alpha, Threshold};
use crate::quantile::{Side, Thresholds};
use crate::stream::{default_in_flight, for_each_image, stream, Load};
use crate::tolerance::Tolerances;
use crate::transform::{ScoreTransform, Transform, Transforms};

/// Fitted conformal confidence sets: transforms, thresholds and provenance.
///
/// For a new image exchangeable with the calibration images, the sets
/// returned by [`ConfidenceSets::predict`] satisfy, depending on the
/// [`Guarantee`],
///
/// * marginal: `P(I ⊆ Y) >= 1 - alpha_I` and `P(Y ⊆ O) >= 1 - alpha_O`;
/// * joint (Bonferroni or max): `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
///
/// Built by [`Calibrator::fit`](crate::Calibrator::fit); with the `serde` feature it round-trips
/// through JSON (the file the CLI writes), and a file whose fields do not
/// agree with each other (a rank that `n` and `alpha` do not give,
/// thresholds that contradict the mode, a newer format) is refused.
///
/// The fitted sets record the image dimensionality and the spacing the
/// calibration used: one default spacing, or each image's own. New images
/// must have the same dimensionality; after a per-image calibration, images
/// seen by spatial transforms must carry their spacing
/// ([`Image`](crate::Image)).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidenceSets<TI = ScoreTransform, TO = ScoreTransform> {
    transforms: Transforms<TI, TO>,
    per_image_spacing: bool,
    ndim: Option<usize>,
    guarantee: Guarantee,
    n: usize,
    thresholds: Thresholds,
    version: String,
}

/// Inner and outer sets of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sets<D: Dimension> {
    /// `I(X) = {v : f_I(v) > lambda_I}`: where the object surely is.
    pub inner: Array<bool, D>,
    /// `O(X) = {v : -f_O(v) <= lambda_O}`: outside it the object surely is not.
    pub outer: Array<bool, D>,
}

/// Whether a pair of sets covers a true mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// `I ⊆ Y`.
    pub inner: bool,
    /// `Y ⊆ O`.
    pub outer: bool,
}

impl Coverage {
    /// `I ⊆ Y ⊆ O`.
    #[must_use]
    pub fn joint(&self) -> bool {
        self.inner && self.outer
    }
}

impl<D: Dimension> Sets<D> {
    /// The sets as one label map for a viewer: 0 outside the outer set, 1
    /// in the band `O \ I` (where the object may or may not be), 2 in the
    /// inner set (where it surely is). [`crate::io::viewer`] writes the
    /// colour tables that name these labels.
    ///
    /// ```
    /// use confseg::Sets;
    /// use ndarray::array;
    /// let s = Sets { inner: array![false, true, false], outer: array![false, true, true] };
    /// assert_eq!(s.label_map(), array![0u8, 2, 1]);
    /// ```
    #[must_use]
    pub fn label_map(&self) -> Array<u8, D> {
        Zip::from(&self.inner).and(&self.outer).map_collect(|&i, &o| if i { 2 } else { u8::from(o) })
    }

    /// Sets from two 0/1 masks of one shape (e.g. read back from files or
    /// handed over from Python), with the library's mask rule.
    ///
    /// ```
    /// use confseg::Sets;
    /// use ndarray::array;
    /// let s = Sets::from_masks(&array![0u8, 1, 0], &array![0u8, 1, 1])?;
    /// assert_eq!(s.label_map(), array![0u8, 2, 1]);
    /// assert!(Sets::from_masks(&array![0u8, 255, 0], &array![0u8, 1, 1]).is_err());
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::NonBinaryMask`].
    pub fn from_masks<M: MaskValue>(inner: &ArrayRef<M, D>, outer: &ArrayRef<M, D>) -> Result<Sets<D>> {
        check_shape("outer set vs inner set", inner, outer)?;
        check_mask(inner)?;
        check_mask(outer)?;
        Ok(Sets { inner: inner.mapv(|v| v.is_object()), outer: outer.mapv(|v| v.is_object()) })
    }

    /// Check `I ⊆ Y` and `Y ⊆ O` against a true mask, over its voxels
    /// that are not ignored ([`Voxel::Ignored`](crate::mask::Voxel)).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] or
    /// [`Error::NonBinaryMask`].
    pub fn coverage<M: MaskValue>(&self, truth: &ArrayRef<M, D>) -> Result<Coverage> {
        check_shape("mask vs sets", &self.inner, truth)?;
        check_mask(truth)?;
        let (inner, outer) =
            Zip::from(&self.inner).and(&self.outer).and(truth).fold((true, true), |(ci, co), &i, &o, &y| {
                if y.is_ignored() {
                    return (ci, co);
                }
                let y = y.is_object();
                (ci && (!i || y), co && (!y || o))
            });
        Ok(Coverage { inner, outer })
    }

    /// Whether the sets meet the events `tolerances` bound against a true
    /// mask: `|I \ Y|` within the inner tolerance (of `|I|` for a share)
    /// and `|Y \ O|` within the outer one (of `|Y|`), for voxels of volume
    /// `voxel_volume`. With no tolerance this is [`Sets::coverage`].
    /// Ignored voxels of the truth count nowhere (not in `|I|` either).
    ///
    /// ```
    /// use confseg::tolerance::{Tolerance, Tolerances};
    /// use confseg::Sets;
    /// use ndarray::array;
    /// let s = Sets { inner: array![true, true, false], outer: array![true, true, false] };
    /// let truth = array![true, false, true];
    /// assert!(!s.coverage(&truth)?.inner);
    /// let one = Tolerances::new(Tolerance::Voxels(1), Tolerance::Voxels(1));
    /// assert!(s.events(&truth, &one, 1.0)?.joint());
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sets::coverage`].
    pub fn events<M: MaskValue>(
        &self,
        truth: &ArrayRef<M, D>,
        tolerances: &Tolerances,
        voxel_volume: f64,
    ) -> Result<Coverage> {
        check_shape("mask vs sets", &self.inner, truth)?;
        check_mask(truth)?;
        let (mut inner, mut false_inner, mut object, mut missed) = (0u64, 0u64, 0u64, 0u64);
        Zip::from(&self.inner).and(&self.outer).and(truth).for_each(|&i, &o, &y| {
            if y.is_ignored() {
                return;
            }
            let y = y.is_object();
            inner += u64::from(i);
            false_inner += u64::from(i && !y);
            object += u64::from(y);
            missed += u64::from(y && !o);
        });
        Ok(Coverage {
            inner: tolerances.inner.holds(false_inner, inner, voxel_volume),
            outer: tolerances.outer.holds(missed, object, voxel_volume),
        })
    }
}

impl<TI, TO> ConfidenceSets<TI, TO> {
    /// Fitted sets from their parts (the fits of [`crate::calibrate`]).
    pub(crate) fn from_parts(
        transforms: Transforms<TI, TO>,
        guarantee: Guarantee,
        thresholds: Thresholds,
        calibration: (usize, Option<usize>, bool),
    ) -> Self {
        let (n, ndim, per_image_spacing) = calibration;
        ConfidenceSets {
            transforms,
            per_image_spacing,
            ndim,
            guarantee,
            n,
            thresholds,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The guarantee these sets were calibrated for.
    pub fn guarantee(&self) -> &Guarantee {
        &self.guarantee
    }

    /// The tolerances of the guaranteed events (none for containment and
    /// for risk control).
    #[must_use]
    pub fn tolerances(&self) -> Tolerances {
        self.guarantee.mode().map_or(Tolerances::NONE, |m| *m.tolerances())
    }

    /// Number of calibration images.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `lambda_I` and `lambda_O`.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The transforms and the default spacing.
    pub fn transforms(&self) -> &Transforms<TI, TO> {
        &self.transforms
    }

    /// The dimensionality of the calibration images (`None` if the
    /// calibration was filled by hand, without a calibrator).
    pub fn ndim(&self) -> Option<usize> {
        self.ndim
    }

    /// Whether the calibration used each image's own spacing.
    pub fn per_image_spacing(&self) -> bool {
        self.per_image_spacing
    }

    /// Version of confseg that fitted these sets.
    pub fn crate_version(&self) -> &str {
        &self.version
    }

    /// The inner transform `f_I`.
    pub fn inner_transform(&self) -> &TI {
        self.transforms.inner()
    }

    /// The outer transform `f_O`.
    pub fn outer_transform(&self) -> &TO {
        self.transforms.outer()
    }

    /// The default voxel spacing given to the transforms for images without
    /// their own.
    pub fn spacing(&self) -> &Spacing {
        self.transforms.spacing()
    }

    /// Warnings about the fitted thresholds: infinite for lack of images
    /// (with the number needed) or from an infinite statistic. With the
    /// calibration at hand, [`Calibration::warnings`](crate::Calibration::warnings)
    /// adds what the statistics show.
    ///
    /// ```
    /// use confseg::{Alpha, Calibration, Calibrator, Identity, Mode, Warning};
    /// use confseg::calibrate::ImageStatistics;
    /// let cal: Calibration = (0..5).map(|i| ImageStatistics { tau: i as f64, gamma: 0.0 }).collect();
    /// let sets = Calibrator::new(Identity, Identity).fit(&cal, Mode::marginal(Alpha::new(0.1)?))?;
    /// assert!(matches!(sets.warnings()[..], [Warning::TooFewImages { side: "inner and outer", .. }]));
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn warnings(&self) -> Vec<crate::Warning> {
        use crate::Warning;
        let t = self.thresholds;
        let g = self.guarantee;
        let mut out = Vec::new();
        let smallest_alpha = g.mode().and_then(|m| m.rank().smallest_alpha(self.n));

        for side in Side::BOTH {
            let (name, alpha) = (side.name(), g.alpha(side).get());
            match t.side(side) {
                Threshold::TooFewImages { n, needed } => {
                    out.push(Warning::TooFewImages { side: name, alpha, n, needed, smallest_alpha });
                }
                Threshold::OrderStatistic { k, value } if value == f64::INFINITY => {
                    out.push(Warning::InfiniteStatistic { side: name, k });
                }
                // the set risk control fitted is trivial: nothing certified
                Threshold::RiskControl { value }
                    if value == f64::INFINITY
                        && matches!(g, Guarantee::RiskControl(r) if r.risk().side() == side) =>
                {
                    let needed = g.min_calibration_size_for(side);
                    out.push(if self.n < needed {
                        Warning::TooFewImages { side: name, alpha, n: self.n, needed, smallest_alpha: None }
                    } else {
                        Warning::RiskNotCertified { side: name, alpha, n: self.n }
                    });
                }
                Threshold::OrderStatistic { .. } | Threshold::RiskControl { .. } => {}
            }
        }
        // one line when both sides lack images at the same level
        if let [Warning::TooFewImages { alpha: a, n, needed, smallest_alpha, .. }, Warning::TooFewImages { alpha: b, .. }] =
            out[..]
        {
            if a == b {
                out = vec![Warning::TooFewImages {
                    side: "inner and outer",
                    alpha: a,
                    n,
                    needed,
                    smallest_alpha,
                }];
            }
        }
        // (risk control bounds an expected share, not a coverage: any level may be meant)
        let largest = g
            .overall_alpha()
            .map_or_else(|| g.alpha(Side::Inner).get().max(g.alpha(Side::Outer).get()), Alpha::get);
        if g.mode().is_some() && largest > 0.5 {
            out.push(Warning::LargeAlpha { alpha: largest });
        }
        out
    }
}

impl<TI: Transform, TO: Transform> ConfidenceSets<TI, TO> {
    /// [`Error::DimensionMismatch`] unless `ndim` is the calibration's.
    fn check_ndim(&self, ndim: usize) -> Result<()> {
        match self.ndim {
            Some(expected) if expected != ndim => {
                Err(Error::DimensionMismatch { expected, found: ndim, image: None })
            }
            _ => Ok(()),
        }
    }

    /// The spacing for an image: its own, or the default unless the
    /// calibration was per image and a transform depends on the spacing.
    fn spacing_for<'s>(&'s self, own: Option<&'s Spacing>) -> Result<Option<&'s Spacing>> {
        match own {
            None if self.per_image_spacing && self.transforms.uses_spacing() => {
                Err(Error::SpacingRequired { transforms: self.transforms.describe(), image: None })
            }
            _ => Ok(own),
        }
    }

    /// Inner and outer sets for a new score image: a plain array (default
    /// spacing) or an [`Image`](crate::Image) with its own spacing.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for an image of another dimensionality
    /// than the calibration's; [`Error::SpacingRequired`] for a plain array
    /// after a per-image calibration with spatial transforms; NaN in the
    /// scores or made by a transform; a transform error.
    pub fn predict<I: AsImage + ?Sized>(&self, scores: &I) -> Result<Sets<I::Dim>> {
        let s = scores.scores();
        self.check_ndim(s.ndim())?;
        let spacing = self.spacing_for(scores.spacing())?;
        let (fi, fo) = self.transforms.apply(s, spacing)?;
        self.threshold(&fi, &fo).map_err(|e| self.transforms.blame_nan(e, s, &fi, &fo))
    }

    /// Sets for a batch-first stack `(N, spatial...)` of score images, all
    /// with the default spacing; the result holds stacks of the same shape.
    /// Parallel with the `rayon` feature.
    ///
    /// # Errors
    /// As [`ConfidenceSets::predict`], for the first failing image, tagged
    /// with its index; [`Error::DimensionMismatch`] if the stack does not
    /// hold images of the calibration's dimensionality.
    pub fn predict_stack<A: Float, D: RemoveAxis>(&self, scores: &ArrayRef<A, D>) -> Result<Sets<D>>
    where
        TI: Sync,
        TO: Sync,
    {
        crate::image::check_stack("scores stack", scores.ndim())?;
        self.check_ndim(scores.ndim().saturating_sub(1))?;
        let n = scores.len_of(Axis(0));
        let per_image = for_each_image(n, |i| self.predict(&scores.index_axis(Axis(0), i)))?;
        let mut inner = crate::alloc::try_array(scores.raw_dim(), "inner sets")?;
        let mut outer = crate::alloc::try_array(scores.raw_dim(), "outer sets")?;
        for (i, s) in per_image.into_iter().enumerate() {
            inner.index_axis_mut(Axis(0), i).assign(&s.inner);
            outer.index_axis_mut(Axis(0), i).assign(&s.outer);
        }
        Ok(Sets { inner, outer })
    }

    /// Sets for a stream of images (plain arrays or [`Image`](crate::Image)s,
    /// of any shapes), computed in parallel with at most
    /// [`default_in_flight`] images in memory; `sink` receives each image's
    /// position in the stream and its sets, in stream order (e.g. to write
    /// them as they come).
    ///
    /// ```
    /// use confseg::{Calibration, Calibrator, Identity, Mode, Alpha};
    /// use confseg::synthetic::Synthetic;
    /// let data = Synthetic::new([16, 16]).seed(3);
    /// let c = Calibrator::new(Identity, Identity);
    /// let sets = c.fit(&c.calibrate_stream(data.pairs(0..40).map(Ok))?, Mode::max(Alpha::new(0.1)?))?;
    /// let mut covered = 0;
    /// let truths: Vec<_> = data.pairs(100..120).map(|(_, m)| m).collect();
    /// sets.predict_stream(data.pairs(100..120).map(|(s, _)| Ok(s)), |i, p| {
    ///     covered += usize::from(p.coverage(&truths[i])?.joint());
    ///     Ok(())
    /// })?;
    /// assert!(covered <= 20);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// The source's or the sink's first error, or as
    /// [`ConfidenceSets::predict`] for the first failing image, tagged with
    /// its position in the stream.
    pub fn predict_stream<P, I, S, K>(&self, images: S, sink: K) -> Result<()>
    where
        S: Iterator<Item = Result<P>> + Send,
        P: Load<Output = I>,
        I: AsImage + Send,
        K: FnMut(usize, Sets<I::Dim>) -> Result<()>,
        TI: Sync,
        TO: Sync,
    {
        stream(
            images,
            default_in_flight(),
            |i, item: P| item.load().and_then(|image| self.predict(&image)).map_err(|e| e.in_image(i)),
            sink,
        )
    }

    /// Inner and outer sets from scores that are already transformed
    /// (`f_I(s(X))` and `f_O(s(X))`; the stored transforms are not applied).
    ///
    /// # Errors
    /// Shape mismatch between the two inputs, or NaN in either;
    /// [`Error::DimensionMismatch`] as for [`ConfidenceSets::predict`].
    pub fn predict_transformed<A: Float, D: Dimension>(
        &self,
        inner_scores: &ArrayRef<A, D>,
        outer_scores: &ArrayRef<A, D>,
    ) -> Result<Sets<D>> {
        self.check_ndim(inner_scores.ndim())?;
        self.threshold(inner_scores, outer_scores)
    }

    /// `{f_I > lambda_I}` and `{-f_O <= lambda_O}`. Thresholds are compared
    /// in `f64`, exactly: every `f32` is an `f64`.
    fn threshold<A: Float, D: Dimension>(&self, fi: &ArrayRef<A, D>, fo: &ArrayRef<A, D>) -> Result<Sets<D>> {
        check_shape("outer scores vs inner scores", fi, fo)?;
        crate::image::check_nonempty(fi.shape())?;
        check_nan("inner scores", fi)?;
        check_nan("outer scores", fo)?;
        let li = self.thresholds.inner.value();
        let lo = self.thresholds.outer.value();
        Ok(Sets {
            inner: fi.mapv(|x| x.to_f64_lossless() > li),
            outer: fo.mapv(|x| (-x).to_f64_lossless() <= lo),
        })
    }
}

mod measures;
mod structures;
pub use measures::{BandWidth, SetMeasures};
pub use structures::StructureSets;

#[cfg(feature = "serde")]
mod serde_impl {
    //! The JSON shape of fitted sets:
    //! `{confseg_version, n, ndim, mode, alpha, combination, spacing,
    //!   inner: {alpha, threshold, rank, transform[, tolerance]}, outer: {...}}`,
    //! with infinite thresholds written as the strings `"inf"` / `"-inf"`
    //! and `spacing` the default spacing (`null` for unit) or `"per-image"`;
    //! `delta` when given, and for mode risk-control `risk` (absent:
    //! recall), `bound` and `grid` (absent: exact search) when given.
    //! Reading checks that the fields agree with each other and names the
    //! first field that does not.

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{ConfidenceSets, Guarantee, Side, Spacing, Thresholds, Transforms};
    use crate::json::inf_as_string;
    use crate::levels::{Mode, ModeKind};
    use crate::quantile::{Alpha, Delta, Rank, Threshold};
    use crate::risk::RiskControl;
    use crate::risk::{Bound, Grid, Risk, Search};
    use crate::tolerance::{Tolerance, Tolerances};

    #[derive(Serialize, Deserialize)]
    struct SideRepr<T> {
        alpha: Alpha,
        #[serde(with = "inf_as_string")]
        threshold: f64,
        rank: Option<usize>,
        transform: T,
        /// The side's tolerance (absent: containment).
        #[serde(default, skip_serializing_if = "Tolerance::is_none")]
        tolerance: Tolerance,
    }

    /// `null`, `[s1, s2, ...]` or `"per-image"`.
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum SpacingRepr {
        PerImage(PerImage),
        Default(Spacing),
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum PerImage {
        PerImage,
    }

    /// The combination function: always the maximum (the field is kept
    /// so that files say what the statistics are).
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Combination {
        Max,
    }

    #[derive(Serialize, Deserialize)]
    struct Repr<TI, TO> {
        confseg_version: String,
        n: usize,
        #[serde(default)]
        ndim: Option<usize>,
        mode: ModeKind,
        alpha: Option<Alpha>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<Delta>,
        /// Risk control: the risk (absent: recall).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        risk: Option<Risk>,
        /// Risk control: the bound of a high-probability guarantee.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bound: Option<Bound>,
        /// Risk control: the grid searched (absent: exact search).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid: Option<Grid>,
        combination: Combination,
        spacing: SpacingRepr,
        inner: SideRepr<TI>,
        outer: SideRepr<TO>,
    }

    impl<TI: Serialize + Clone, TO: Serialize + Clone> Serialize for ConfidenceSets<TI, TO> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let c = &self.transforms;
            let g = &self.guarantee;
            let tolerances = g.mode().map_or(Tolerances::NONE, |m| *m.tolerances());
            Repr {
                confseg_version: self.version.clone(),
                n: self.n,
                ndim: self.ndim,
                mode: g.kind(),
                alpha: g.overall_alpha(),
                delta: g.delta(),
                risk: match g {
                    Guarantee::RiskControl(r) => Some(r.risk()),
                    Guarantee::Conformal(_) => None,
                },
                bound: match g {
                    Guarantee::RiskControl(r) => r.bound(),
                    Guarantee::Conformal(_) => None,
                },
                grid: match g {
                    Guarantee::RiskControl(r) => match r.search() {
                        Search::Grid(grid) => Some(grid),
                        Search::Exact => None,
                    },
                    Guarantee::Conformal(_) => None,
                },
                combination: Combination::Max,
                spacing: if self.per_image_spacing {
                    SpacingRepr::PerImage(PerImage::PerImage)
                } else {
                    SpacingRepr::Default(c.spacing().clone())
                },
                inner: SideRepr {
                    alpha: g.alpha(Side::Inner),
                    threshold: self.thresholds.inner.value(),
                    rank: self.thresholds.inner.rank(),
                    transform: c.inner().clone(),
                    tolerance: tolerances.inner,
                },
                outer: SideRepr {
                    alpha: g.alpha(Side::Outer),
                    threshold: self.thresholds.outer.value(),
                    rank: self.thresholds.outer.rank(),
                    transform: c.outer().clone(),
                    tolerance: tolerances.outer,
                },
            }
            .serialize(s)
        }
    }

    /// `(major, minor)` of a version string `"MAJOR.MINOR.PATCH[-pre]"`.
    fn major_minor(v: &str) -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// The fitted threshold of one side, checked against `n` and `alpha`.
    fn threshold(
        side: &str,
        n: usize,
        strategy: Rank,
        r: (Alpha, f64, Option<usize>),
    ) -> Result<Threshold, String> {
        let (alpha, value, rank) = r;
        let k = strategy.of(alpha, n);
        if value.is_nan() {
            return Err(format!("{side}.threshold is NaN"));
        }
        match rank {
            Some(got) if k <= n && got == k => Ok(Threshold::OrderStatistic { k, value }),
            Some(got) if k <= n => Err(format!(
                "{side}.rank = {got} does not match n = {n} and {side}.alpha = {alpha} (the conformal rank is {k})"
            )),
            Some(got) => Err(format!(
                "{side}.rank = {got}, but n = {n} is too small for {side}.alpha = {alpha}: \
                 the rank must be null and the threshold \"inf\""
            )),
            None if k > n && value == f64::INFINITY => {
                Ok(Threshold::TooFewImages { n, needed: strategy.min_calibration_size(alpha) })
            }
            None if k > n => Err(format!("{side}.threshold must be \"inf\" when {side}.rank is null")),
            None => Err(format!(
                "{side}.rank is null, but n = {n} and {side}.alpha = {alpha} give the rank {k}"
            )),
        }
    }

    /// Sets fitted by risk control: one level, no rank, one set (the
    /// other trivial), the levels validated as a request is.
    fn risk_control<TI, TO>(r: Repr<TI, TO>) -> Result<ConfidenceSets<TI, TO>, String> {
        let alpha = r.outer.alpha;
        if r.inner.alpha != alpha || r.alpha.is_some_and(|a| a != alpha) {
            return Err(format!(
                "mode risk-control uses one level: inner.alpha = {} must equal outer.alpha = {alpha}",
                r.inner.alpha
            ));
        }
        let level = RiskControl::request(alpha, r.delta.map(Delta::get), r.risk, r.bound, r.grid)
            .map_err(|e| e.to_string())?;
        let outer = (r.outer.threshold, r.outer.rank);
        let inner = (r.inner.threshold, r.inner.rank);
        let (set, other) = match level.risk() {
            Risk::Recall => (outer, inner),
            Risk::Precision => (inner, outer),
        };
        let (side, trivial) = match level.risk() {
            Risk::Recall => ("inner", "no inner set"),
            Risk::Precision => ("outer", "the whole image as the outer set"),
        };
        if other.0 != f64::INFINITY || other.1.is_some() {
            return Err(format!(
                "mode risk-control of the {} risk has {trivial}: {side}.threshold must be \"inf\" and {side}.rank null",
                level.risk()
            ));
        }
        if !(r.inner.tolerance.is_none() && r.outer.tolerance.is_none()) {
            return Err("mode risk-control bounds a risk, an expectation: it has no tolerance".into());
        }
        if set.1.is_some() {
            return Err(format!(
                "mode risk-control thresholds have no rank: {}.rank must be null",
                level.risk().side()
            ));
        }
        if set.0.is_nan() {
            return Err(format!("{}.threshold is NaN", level.risk().side()));
        }
        let (spacing, per_image_spacing) = spacing_of(r.spacing, r.ndim)?;
        Ok(ConfidenceSets {
            transforms: Transforms::new(r.inner.transform, r.outer.transform).with_spacing(spacing),
            per_image_spacing,
            ndim: r.ndim,
            guarantee: Guarantee::RiskControl(level),
            n: r.n,
            thresholds: Thresholds {
                inner: Threshold::RiskControl { value: r.inner.threshold },
                outer: Threshold::RiskControl { value: r.outer.threshold },
            },
            version: r.confseg_version,
        })
    }

    /// The default spacing and whether the calibration was per image,
    /// checked against the dimensionality.
    fn spacing_of(s: SpacingRepr, ndim: Option<usize>) -> Result<(Spacing, bool), String> {
        let (spacing, per_image_spacing) = match s {
            SpacingRepr::PerImage(_) => (Spacing::unit(), true),
            SpacingRepr::Default(s) => (s, false),
        };
        if let (Some(nd), Some(sp)) = (ndim, spacing.as_slice()) {
            if sp.len() != nd {
                return Err(format!("spacing has {} entries for {nd}-D images", sp.len()));
            }
        }
        Ok((spacing, per_image_spacing))
    }

    impl<'de, TI, TO> Deserialize<'de> for ConfidenceSets<TI, TO>
    where
        TI: Deserialize<'de>,
        TO: Deserialize<'de>,
    {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r: Repr<TI, TO> = crate::json::one_line_errors(d)?;
            let ours = major_minor(env!("CARGO_PKG_VERSION")).unwrap_or((0, 0));
            match major_minor(&r.confseg_version) {
                None => {
                    return Err(de::Error::custom(format!(
                        "confseg_version {:?} is not a version number",
                        crate::error::one_line(&r.confseg_version)
                    )))
                }
                Some(v) if v > ours => {
                    return Err(de::Error::custom(format!(
                        "written by confseg {}, newer than this confseg {}: its format may differ",
                        crate::error::one_line(&r.confseg_version),
                        env!("CARGO_PKG_VERSION")
                    )))
                }
                Some(_) => {}
            }
            if r.n == 0 {
                return Err(de::Error::custom("n = 0: at least one calibration image is needed"));
            }
            if r.ndim == Some(0) {
                return Err(de::Error::custom("ndim = 0: images have at least one axis"));
            }
            let mode = match (r.mode, r.alpha) {
                (ModeKind::Marginal, _) => Mode::marginal_split(r.inner.alpha, r.outer.alpha),
                (ModeKind::Bonferroni, Some(a)) => {
                    Mode::bonferroni_split(a, r.inner.alpha, r.outer.alpha).map_err(de::Error::custom)?
                }
                (ModeKind::Max, Some(a)) => {
                    if r.inner.alpha != a || r.outer.alpha != a {
                        return Err(de::Error::custom(format!(
                            "mode max uses one level: inner.alpha = {} and outer.alpha = {} must equal alpha = {a}",
                            r.inner.alpha, r.outer.alpha
                        )));
                    }
                    if r.inner.threshold.to_bits() != r.outer.threshold.to_bits() {
                        return Err(de::Error::custom(format!(
                            "mode max uses one threshold: inner.threshold = {} differs from outer.threshold = {}",
                            r.inner.threshold, r.outer.threshold
                        )));
                    }
                    Mode::max(a)
                }
                (ModeKind::RiskControl, _) => {
                    return risk_control(r).map_err(de::Error::custom);
                }
                (kind, None) => {
                    return Err(de::Error::custom(format!("mode {kind} needs a joint \"alpha\"")))
                }
            };
            if r.risk.is_some() || r.bound.is_some() || r.grid.is_some() {
                return Err(de::Error::custom(format!(
                    "risk, bound and grid belong to mode risk-control, not {}",
                    r.mode
                )));
            }
            let rank = r.delta.map_or(Rank::Marginal, Rank::Conditional);
            let mode =
                mode.with_rank(rank).with_tolerances(Tolerances::new(r.inner.tolerance, r.outer.tolerance));
            let inner = threshold("inner", r.n, rank, (r.inner.alpha, r.inner.threshold, r.inner.rank))
                .map_err(de::Error::custom)?;
            let outer = threshold("outer", r.n, rank, (r.outer.alpha, r.outer.threshold, r.outer.rank))
                .map_err(de::Error::custom)?;
            let (spacing, per_image_spacing) = spacing_of(r.spacing, r.ndim).map_err(de::Error::custom)?;
            let transforms = Transforms::new(r.inner.transform, r.outer.transform).with_spacing(spacing);
            Ok(ConfidenceSets {
                transforms,
                per_image_spacing,
                ndim: r.ndim,
                guarantee: Guarantee::Conformal(mode),
                n: r.n,
                thresholds: Thresholds { inner, outer },
                version: r.confseg_version,
            })
        }
    }
}
