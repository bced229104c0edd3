//! `Calibrator` and `Calibration`.

use std::sync::Arc;

use confseg::float::Float;
use confseg::groups::Group;
use confseg::levels::Guarantee;
use confseg::mask::MaskValue;
use confseg::pipeline::Inputs;
use confseg::stream::Lazy;
use confseg::{Error, Image, ScoreTransform, Spacing, Transform};
use ndarray::{ArrayViewD, Axis};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::args::{coding_arg, levels_arg, parse_transform, precision_arg, tolerances_arg, warn_all, Cal};
use crate::arrays::{self, labelled, PerImage};
use crate::calibration::PyCalibration;
use crate::errors::{value_error, IntoPy};
use crate::io::PyCohort;
use crate::layout::{layout, one_spacing, spacing_arg, spacing_tuple, Layout, SpacingArg};
use crate::risk::{risk_lists, risk_views, Objects, PyRiskCalibration};
use crate::sets::PyConfidenceSets;
use crate::{one_line, with_masks};

/// Calibration parameters: the score transforms ``f_I`` (inner) and ``f_O``
/// (outer), fixed before seeing calibration labels, and the default voxel
/// spacing.
///
/// ``Calibrator(inner="identity", outer="identity", spacing=None, ndim=None, mask_threshold=None)``
///
/// * ``inner``, ``outer``: transform names as on the command line:
///   ``"identity"``, ``"sigmoid"``, ``"distance[:euclidean|chessboard|cityblock]"``,
///   ``"distance-centre[:METRIC]"``, ``"gaussian:FWHM"``, ``"gaussian-sigma:S"``,
///   ``"box-outer"``, ``"box-inner"``,
///   ``"morphological[:footprint=face|edge|full|ball|FILE.npy]"`` (signed
///   erosion / dilation steps; ``:radius=R`` and ``:units=physical`` with
///   ``ball``), with options such as ``":threshold=0.5"``.
/// * ``spacing``: the physical voxel size per axis, for images that do not
///   carry their own (default: 1 on every axis).
/// * ``ndim``: the image dimensionality, if ``spacing`` does not give it.
///   It decides whether an array is one image or a batch-first stack
///   (``ndim`` axes: one image; ``ndim + 1``: a stack). Without it, arrays
///   of 1 or 2 axes are one image and arrays of 3 or more axes a stack of
///   images: for one 3-D volume, give ``spacing`` or ``ndim=3``.
/// * ``mask_threshold``: the predicted mask ``scores > t`` of the
///   ``distance`` and ``box`` transforms (0 for logits, 0.5 for probabilities).
///
/// ``statistics`` reduces labelled images to their calibration statistics
/// (a ``Calibration``); ``fit`` turns them into ``ConfidenceSets`` with
/// ``P(inner ⊆ truth ⊆ outer) >= 1 - alpha`` for a new image exchangeable
/// with the calibration images.
#[pyclass(module = "confseg", name = "Calibrator", frozen)]
pub struct PyCalibrator {
    pub cal: Cal,
    pub ndim: Option<usize>,
}

/// `Calibrator.statistics` over any input form.
struct Stats<'a>(&'a Cal);

impl PerImage for Stats<'_> {
    type Out = confseg::Calibration;
    fn views<A: Float, M: MaskValue>(
        &self,
        s: ArrayViewD<'_, A>,
        m: ArrayViewD<'_, M>,
        lay: Layout,
        sp: &SpacingArg,
    ) -> confseg::Result<Self::Out> {
        stats_views(self.0, s, m, lay, sp)
    }
    fn lists<A: Float, M: MaskValue>(
        &self,
        s: &[ArrayViewD<'_, A>],
        m: &[ArrayViewD<'_, M>],
        sp: &SpacingArg,
    ) -> confseg::Result<Self::Out> {
        stats_lists(self.0, s, m, sp)
    }
}

/// The stratum of every image (`Calibrator.statistics(..., strata=)`), in
/// image order, from the scores alone.
struct StrataJob<'a> {
    cal: &'a Cal,
    strata: &'a confseg::groups::Strata,
    threshold: f64,
}

impl StrataJob<'_> {
    fn one<A: Float>(&self, s: ArrayViewD<'_, A>, spacing: Option<Spacing>) -> confseg::Result<Group> {
        let spacing = spacing.unwrap_or_else(|| self.cal.spacing().clone());
        self.strata.stratum(&s, self.threshold, &spacing)
    }
}

impl PerImage for StrataJob<'_> {
    type Out = Vec<Group>;
    fn views<A: Float, M: MaskValue>(
        &self,
        s: ArrayViewD<'_, A>,
        _: ArrayViewD<'_, M>,
        lay: Layout,
        sp: &SpacingArg,
    ) -> confseg::Result<Self::Out> {
        match lay {
            Layout::Single => Ok(vec![self.one(s, sp.for_image(0, 1)?).map_err(Error::without_image)?]),
            Layout::Stack => {
                let n = s.len_of(Axis(0));
                (0..n)
                    .map(|i| {
                        self.one(s.index_axis(Axis(0), i), sp.for_image(i, n)?).map_err(|e| e.in_image(i))
                    })
                    .collect()
            }
        }
    }
    fn lists<A: Float, M: MaskValue>(
        &self,
        s: &[ArrayViewD<'_, A>],
        _: &[ArrayViewD<'_, M>],
        sp: &SpacingArg,
    ) -> confseg::Result<Self::Out> {
        let n = s.len();
        (0..n).map(|i| self.one(s[i].view(), sp.for_image(i, n)?).map_err(|e| e.in_image(i))).collect()
    }
}

/// `Calibrator.risk_statistics` over any input form.
struct Risk<'a>(&'a Cal, confseg::risk::Risk);

impl PerImage for Risk<'_> {
    type Out = Vec<Objects>;
    fn views<A: Float, M: MaskValue>(
        &self,
        s: ArrayViewD<'_, A>,
        m: ArrayViewD<'_, M>,
        lay: Layout,
        sp: &SpacingArg,
    ) -> confseg::Result<Self::Out> {
        risk_views(self.0, self.1, s, m, lay, sp)
    }
    fn lists<A: Float, M: MaskValue>(
        &self,
        s: &[ArrayViewD<'_, A>],
        m: &[ArrayViewD<'_, M>],
        sp: &SpacingArg,
    ) -> confseg::Result<Self::Out> {
        risk_lists(self.0, self.1, s, m, sp)
    }
}

/// Calibration statistics of one image or a stack, borrowed.
fn stats_views<A: Float, M: MaskValue>(
    c: &Cal,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    layout: Layout,
    sp: &SpacingArg,
) -> confseg::Result<confseg::Calibration> {
    match layout {
        Layout::Single => match sp.for_image(0, 1)? {
            None => c.calibrate_images(&[(s, m)]),
            Some(x) => c.calibrate_images(&[(Image::new(s, x)?, m)]),
        }
        .map_err(Error::without_image),
        Layout::Stack if *sp == SpacingArg::Default => c.calibrate_stack(&s, &m),
        Layout::Stack => {
            if s.shape() != m.shape() {
                return Err(Error::ShapeMismatch {
                    what: "scores stack vs masks stack",
                    image: None,
                    expected: m.shape().to_vec(),
                    found: s.shape().to_vec(),
                });
            }
            let n = s.len_of(Axis(0));
            let mut pairs = Vec::with_capacity(n);
            for i in 0..n {
                let spacing = sp.for_image(i, n)?.unwrap_or_else(Spacing::unit);
                let image = Image::new(s.index_axis(Axis(0), i), spacing).map_err(|e| e.in_image(i))?;
                pairs.push((image, m.index_axis(Axis(0), i)));
            }
            c.calibrate_images(&pairs)
        }
    }
}

/// Calibration statistics of a list of images (any shapes), borrowed.
fn stats_lists<A: Float, M: MaskValue>(
    c: &Cal,
    s: &[ArrayViewD<'_, A>],
    m: &[ArrayViewD<'_, M>],
    sp: &SpacingArg,
) -> confseg::Result<confseg::Calibration> {
    if s.len() != m.len() {
        return Err(Error::InvalidParameter {
            name: "masks",
            value: format!("{} masks", m.len()),
            reason: format!("one mask per score image is needed, and there are {} score images", s.len()),
        });
    }
    let n = s.len();
    if *sp == SpacingArg::Default {
        let pairs: Vec<_> = s.iter().zip(m).map(|(s, m)| (s.view(), m.view())).collect();
        return c.calibrate_images(&pairs);
    }
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let spacing = sp.for_image(i, n)?.unwrap_or_else(Spacing::unit);
        pairs.push((Image::new(s[i].view(), spacing).map_err(|e| e.in_image(i))?, m[i].view()));
    }
    c.calibrate_images(&pairs)
}

/// Statistics of already transformed scores (one image or a stack), borrowed.
fn stats_transformed<A: Float, M: MaskValue>(
    c: &Cal,
    fi: ArrayViewD<'_, A>,
    fo: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    layout: Layout,
) -> confseg::Result<confseg::Calibration> {
    for (what, other) in
        [("inner scores stack vs masks stack", &fi), ("outer scores stack vs masks stack", &fo)]
    {
        if other.shape() != m.shape() {
            return Err(Error::ShapeMismatch {
                what,
                image: None,
                expected: m.shape().to_vec(),
                found: other.shape().to_vec(),
            });
        }
    }
    match layout {
        Layout::Single => {
            let ndim = fi.ndim();
            let item = Lazy(|| c.transformed_statistics(&fi, &fo, &m, None));
            c.calibrate_statistics_stream(std::iter::once(Ok(item)), ndim).map_err(Error::without_image)
        }
        Layout::Stack => {
            let n = fi.len_of(Axis(0));
            let (fi, fo, m) = (&fi, &fo, &m);
            let items = (0..n).map(move |i| {
                Ok(Lazy(move || {
                    c.transformed_statistics(
                        &fi.index_axis(Axis(0), i),
                        &fo.index_axis(Axis(0), i),
                        &m.index_axis(Axis(0), i),
                        None,
                    )
                }))
            });
            c.calibrate_statistics_stream(items, fi.ndim().saturating_sub(1))
        }
    }
}

#[pymethods]
impl PyCalibrator {
    #[new]
    #[pyo3(signature = (inner="identity", outer="identity", spacing=None, ndim=None, mask_threshold=None,
        inner_tolerance=None, outer_tolerance=None))]
    fn new(
        inner: &str,
        outer: &str,
        spacing: Option<&Bound<'_, PyAny>>,
        ndim: Option<usize>,
        mask_threshold: Option<f64>,
        inner_tolerance: Option<&Bound<'_, PyAny>>,
        outer_tolerance: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let tolerances = tolerances_arg(inner_tolerance, outer_tolerance)?;
        let fi = parse_transform(inner, mask_threshold)?;
        let fo = parse_transform(outer, mask_threshold)?;
        let spacing = one_spacing(spacing)?;
        let ndim = match (ndim, spacing.as_slice()) {
            (Some(0), _) => return Err(value_error("ndim must be at least 1")),
            (Some(d), _) => {
                spacing.for_ndim(d).py()?;
                Some(d)
            }
            (None, Some(s)) => Some(s.len()),
            (None, None) => None,
        };
        Ok(PyCalibrator { cal: Cal::new(fi, fo).with_spacing(spacing).with_tolerances(tolerances), ndim })
    }

    /// The inner set's tolerance (``"0"``: containment, ``inner ⊆ truth``).
    #[getter]
    fn inner_tolerance(&self) -> String {
        self.cal.tolerances().inner.to_string()
    }

    /// The outer set's tolerance (``"0"``: containment, ``truth ⊆ outer``).
    #[getter]
    fn outer_tolerance(&self) -> String {
        self.cal.tolerances().outer.to_string()
    }

    /// The inner transform ``f_I``, by name.
    #[getter]
    fn inner(&self) -> String {
        self.cal.inner_transform().describe()
    }

    /// The outer transform ``f_O``, by name.
    #[getter]
    fn outer(&self) -> String {
        self.cal.outer_transform().describe()
    }

    /// The default voxel spacing (``None``: 1 on every axis).
    #[getter]
    fn spacing(&self) -> Option<Vec<f64>> {
        spacing_tuple(self.cal.spacing())
    }

    /// The image dimensionality, if known (from ``ndim`` or ``spacing``).
    #[getter]
    fn ndim(&self) -> Option<usize> {
        self.ndim
    }

    /// Calibration statistics ``(tau_i, gamma_i)`` of labelled images.
    ///
    /// ``statistics(scores, masks, spacing=None) -> Calibration``
    ///
    /// ``scores``: one score image, a batch-first stack ``(N, spatial...)``,
    /// or a list of images (shapes may differ); ``masks`` alike (0/1,
    /// ``bool`` or ``uint8`` read without copies). ``spacing``: this call's
    /// voxel spacing, one sequence for every image or one per image (the
    /// images then carry their own spacing, and the fitted sets will ask
    /// for the spacing of new images when a transform depends on it).
    /// ``strata``: groups from the prediction, by fixed edges chosen before
    /// calibration (``"predicted-volume=0,500,5000"`` in voxels or ``...mm3``,
    /// ``"max-score=0.99"``; the predicted mask is ``scores >`` the
    /// transforms' ``:threshold=``, default 0): the calibration remembers
    /// each image's stratum, ``fit`` then fits per stratum and the sets
    /// recompute each new image's stratum. ``ignore_label``: the mask value of
    /// voxels to ignore (e.g. 255): they count neither as object nor as
    /// background. Runs in parallel, without the GIL.
    #[pyo3(signature = (scores, masks, spacing=None, strata=None, ignore_label=None))]
    fn statistics(
        &self,
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        masks: &Bound<'_, PyAny>,
        spacing: Option<&Bound<'_, PyAny>>,
        strata: Option<&str>,
        ignore_label: Option<i64>,
    ) -> PyResult<PyCalibration> {
        let sp = spacing_arg(spacing)?;
        let coding = coding_arg(None, ignore_label)?;
        let strata = strata.map(str::parse::<confseg::groups::Strata>).transpose().py()?;
        let job = Stats(&self.cal);
        let cal = labelled(py, &job, (scores, masks), &coding, ("scores", "masks"), &sp, layout, self.ndim)?;
        let mut out = PyCalibration::of(cal).ignoring(ignore_label);
        if let Some(strata) = strata {
            let threshold = self.cal.mask_threshold().unwrap_or(0.0);
            let job = StrataJob { cal: &self.cal, strata: &strata, threshold };
            let labels =
                labelled(py, &job, (scores, masks), &coding, ("scores", "masks"), &sp, layout, self.ndim)?;
            let by = confseg::groups::Stratification { strata, mask_threshold: threshold };
            out.strata = Some(crate::calibration::Stratified { by, labels });
        }
        Ok(out)
    }

    /// The per-voxel state of risk control (METHOD.md §4.3, §4.5): for
    /// ``risk="recall"`` the outer scores ``f_O(v)`` of every object voxel
    /// of each labelled image (8 bytes per object voxel), for
    /// ``risk="precision"`` the inner scores ``f_I(v)`` of every voxel.
    ///
    /// ``risk_statistics(scores, masks, spacing=None, risk="recall") -> RiskCalibration``
    ///
    /// Inputs as for ``statistics`` (one image, a batch-first stack or a
    /// list; ``spacing`` one for all or one per image). ``fit(risk_cal,
    /// alpha, mode="risk-control")`` gives an outer set with
    /// ``E[|truth \ outer| / |truth|] <= alpha`` (expected missed share,
    /// not whole-mask coverage) and no inner set; see ``fit`` for
    /// ``delta`` and precision. Runs in parallel, without the GIL.
    /// ``ignore_label``: the mask value of voxels to ignore (e.g. 255):
    /// they count neither as object nor as background.
    #[pyo3(signature = (scores, masks, spacing=None, risk="recall", ignore_label=None))]
    fn risk_statistics(
        &self,
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        masks: &Bound<'_, PyAny>,
        spacing: Option<&Bound<'_, PyAny>>,
        risk: &str,
        ignore_label: Option<i64>,
    ) -> PyResult<PyRiskCalibration> {
        let risk: confseg::risk::Risk = risk.parse().py()?;
        let sp = spacing_arg(spacing)?;
        let coding = coding_arg(None, ignore_label)?;
        let c = &self.cal;
        let job = Risk(c, risk);
        let objects =
            labelled(py, &job, (scores, masks), &coding, ("scores", "masks"), &sp, layout, self.ndim)?;
        crate::interrupt::detach(py, || PyRiskCalibration::from_objects(c, risk, objects)).py()
    }

    /// Calibration statistics of scores already transformed by ``f_I`` and
    /// ``f_O`` (for example by another tool), used as they are; the
    /// calibrator's transforms must be ``"identity"`` (what the fitted sets
    /// then record).
    ///
    /// ``statistics_transformed(inner_scores, outer_scores, masks) -> Calibration``
    ///
    /// One image or a batch-first stack, as for ``statistics``.
    /// ``ignore_label``: the mask value of voxels to ignore (e.g. 255):
    /// they count neither as object nor as background.
    #[pyo3(signature = (inner_scores, outer_scores, masks, ignore_label=None))]
    fn statistics_transformed(
        &self,
        py: Python<'_>,
        inner_scores: &Bound<'_, PyAny>,
        outer_scores: &Bound<'_, PyAny>,
        masks: &Bound<'_, PyAny>,
        ignore_label: Option<i64>,
    ) -> PyResult<PyCalibration> {
        let identity = |t: &ScoreTransform| *t == ScoreTransform::Identity;
        if !identity(self.cal.inner_transform()) || !identity(self.cal.outer_transform()) {
            return Err(value_error(
                "statistics of already transformed scores need Calibrator(inner=\"identity\", outer=\"identity\")",
            ));
        }
        let a = arrays::asarray(inner_scores)?;
        let b = arrays::asarray(outer_scores)?;
        let t = match (arrays::score_type(&a, "inner scores")?, arrays::score_type(&b, "outer scores")?) {
            (arrays::ScoreType::F32, arrays::ScoreType::F32) => arrays::ScoreType::F32,
            _ => arrays::ScoreType::F64,
        };
        let (fi, fo) = (arrays::cast_scores(&a, t)?, arrays::cast_scores(&b, t)?);
        let m = arrays::masks_coded(masks, "masks", &coding_arg(None, ignore_label)?)?;
        let lay = layout(fi.ndim(), self.ndim)?;
        let c = &self.cal;
        let cal = match (&fi, &fo) {
            (arrays::Scores::F32(x), arrays::Scores::F32(y)) => {
                let (x, y) = (x.as_array(), y.as_array());
                with_masks!(&m, mv => crate::interrupt::detach(py, || stats_transformed(c, x, y, mv, lay)))
            }
            (arrays::Scores::F64(x), arrays::Scores::F64(y)) => {
                let (x, y) = (x.as_array(), y.as_array());
                with_masks!(&m, mv => crate::interrupt::detach(py, || stats_transformed(c, x, y, mv, lay)))
            }
            _ => unreachable!("both sides are cast to one float type"),
        };
        Ok(PyCalibration::of(cal.py()?).ignoring(ignore_label))
    }

    /// Calibration statistics of per-subject files (a ``Cohort``: NIfTI
    /// volumes with their header spacing, or ``.npy`` images), read in
    /// parallel a few at a time, as ``confseg calibrate`` reads them.
    ///
    /// ``statistics_cohort(cohort, indices=None, labels=None, precision=None) -> Calibration``
    ///
    /// ``indices``: the subjects to use (default all), ``labels``: the
    /// label values that are the object in label maps (default: 0/1
    /// masks), ``precision``: ``"float32"`` or ``"float64"`` (default: the
    /// narrowest that holds every subject's scores exactly, as the CLI),
    /// ``progress``: ``True`` for a tqdm bar of the subjects read, or a
    /// callable ``progress(done, total)``. ``ignore_label``: the mask value
    /// of voxels to ignore (e.g. 255): they count neither as object nor as
    /// background.
    #[pyo3(signature = (cohort, indices=None, labels=None, precision=None, ignore_label=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn statistics_cohort(
        &self,
        py: Python<'_>,
        cohort: PyRef<'_, PyCohort>,
        indices: Option<Vec<usize>>,
        labels: Option<Vec<i64>>,
        precision: Option<&str>,
        ignore_label: Option<i64>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyCalibration> {
        let progress = crate::interrupt::progress_arg(py, progress)?;
        let labels = coding_arg(labels, ignore_label)?;
        let mut inputs =
            Inputs::from_cohort(Arc::clone(&cohort.cohort), labels, self.cal.clone(), indices).py()?;
        if let Some(p) = precision_arg(precision)? {
            inputs = inputs.with_precision(p);
        }
        let record = inputs.reading();
        let counter = crate::interrupt::Counter::with_total(inputs.images.len());
        let cal = crate::interrupt::detach_reporting(py, progress, counter, |counter| {
            let counter = Arc::clone(counter);
            inputs
                .clone()
                .with_tick(Arc::new(move || {
                    counter.tick();
                    Ok(())
                }))
                .statistics()
        });
        warn_all(py, &inputs.warnings())?;
        Ok(PyCalibration { cal: cal.py()?, record: Some(record), strata: None })
    }

    /// Fit the conformal thresholds.
    ///
    /// ``fit(calibration, alpha=None, mode="marginal", weights=None, alpha_inner=None, alpha_outer=None, delta=None) -> ConfidenceSets``
    ///
    /// * ``mode="marginal"``: ``P(inner ⊆ truth) >= 1 - alpha_I`` and
    ///   ``P(truth ⊆ outer) >= 1 - alpha_O`` (both ``alpha``, or
    ///   ``alpha_inner`` / ``alpha_outer``);
    /// * ``mode="bonferroni"``: ``P(inner ⊆ truth ⊆ outer) >= 1 - alpha``,
    ///   ``alpha`` split between the sides by ``weights=(w_I, w_O)``
    ///   (default 1:1; the paper uses 1:4) or by ``alpha_inner`` +
    ///   ``alpha_outer <= alpha``;
    /// * ``mode="max"``: ``P(inner ⊆ truth ⊆ outer) >= 1 - alpha`` from one
    ///   threshold on ``max(tau, gamma)``;
    /// * ``mode="risk-control"`` (``calibration`` a ``RiskCalibration``, from
    ///   ``risk_statistics``): risk control, a bound on an expected loss,
    ///   not coverage (METHOD.md §4.3, §4.5). ``risk="recall"`` (default):
    ///   the missed share of the object, ``E[|truth \ outer| / |truth|] <=
    ///   alpha``, with an outer set and an empty inner set; without
    ///   ``delta`` in expectation (conformal risk control, outer set
    ///   ``{f_O >= t}``), with ``delta`` given the calibration set with
    ///   probability ``1 - delta`` (RCPS, ``bound="wsr"`` (default),
    ///   ``"hoeffding"`` or ``"bernstein"``). ``risk="precision"`` (needs
    ///   ``delta``): the false share of the inner set,
    ///   ``E[|inner \ truth| / |inner|] <= alpha`` with probability
    ///   ``1 - delta`` (Learn-then-Test, ``bound="hoeffding-bentkus"``), the
    ///   outer set the whole image. The threshold is searched exactly over
    ///   the calibration scores, or on ``grid="START:STOP:STEP"`` (ends
    ///   included; ``"0:0.99:0.01"`` reproduces MAPIE 1.6's choice).
    ///
    /// The threshold is the ``k``-th smallest statistic,
    /// ``k = ceil((1 - alpha)(n + 1))``, or ``inf`` when ``k > n`` (then the
    /// inner set is empty and the outer set everything, with a
    /// ``UserWarning``). With ``delta`` in (0, 1) the guarantee is
    /// training-conditional: with probability at least ``1 - delta`` over
    /// the calibration set, the coverage of future images is at least the
    /// nominal level; ``k`` is then the smallest rank with
    /// ``P(Binomial(n, 1 - alpha) <= k - 1) >= 1 - delta`` (exact binomial;
    /// each side at its own level). Warnings of the library are emitted
    /// as ``UserWarning``.
    ///
    /// With ``groups`` (one label per calibration image, ``int`` or ``str``)
    /// the thresholds are fitted per group and a ``GroupedSets`` is
    /// returned: ``P(inner ⊆ truth ⊆ outer | group g) >= 1 - alpha`` for
    /// every group with enough images; a smaller group gets infinite
    /// thresholds, or with ``pool_small_groups=True`` one fit shared by
    /// all small groups (for them the guarantee is marginal over the pooled
    /// groups). The statistics are not recomputed: grouping partitions them.
    /// A ``RiskCalibration`` with ``mode="risk-control"`` and ``groups``
    /// controls the risk per group in the same way.
    #[pyo3(signature = (calibration, alpha=None, mode="marginal", weights=None, alpha_inner=None, alpha_outer=None, delta=None, risk=None, bound=None, grid=None, groups=None, pool_small_groups=false))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &self,
        py: Python<'py>,
        calibration: &Bound<'py, PyAny>,
        alpha: Option<f64>,
        mode: &str,
        weights: Option<(f64, f64)>,
        alpha_inner: Option<f64>,
        alpha_outer: Option<f64>,
        delta: Option<f64>,
        risk: Option<&str>,
        bound: Option<&str>,
        grid: Option<&Bound<'_, PyAny>>,
        groups: Option<&Bound<'_, PyAny>>,
        pool_small_groups: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let by_strata = calibration.cast::<PyCalibration>().is_ok_and(|c| c.borrow().strata.is_some());
        if groups.is_none() && pool_small_groups && !by_strata {
            return Err(value_error(
                "pool_small_groups=True needs groups= (one label per calibration image)",
            ));
        }
        let state = calibration.cast::<PyRiskCalibration>().ok();
        let plain = calibration.cast::<PyCalibration>().ok();
        if state.is_none() && plain.is_none() {
            return Err(crate::errors::type_error(
                "calibration must be a Calibration (from statistics) or a RiskCalibration (from risk_statistics)",
            ));
        }
        let guarantee = levels_arg(alpha, mode, weights, alpha_inner, alpha_outer, delta, risk, bound, grid)?
            .guarantee()
            .py()?;
        let stratified = plain.as_ref().and_then(|c| c.borrow().strata.clone());
        if let (Some(st), None) = (&stratified, groups) {
            let Guarantee::Conformal(m) = guarantee else {
                return Err(value_error(
                    "a calibration by strata fits the conformal modes, not risk control",
                ));
            };
            let calibration = plain.as_ref().map(|c| c.borrow().cal.clone()).unwrap_or_default();
            let policy = crate::groups::small_groups(pool_small_groups);
            let sets = self.cal.fit_groups(&calibration, &st.labels, m, policy).py()?;
            warn_all(py, &sets.calibration_warnings(&calibration, &st.labels).py()?)?;
            let sets = sets.with_strata(st.by.clone());
            return Ok(Bound::new(py, crate::groups::PyGroupedSets::new(sets))?.into_any());
        }
        if stratified.is_some() && groups.is_some() {
            return Err(value_error(
                "this calibration is by strata: give no groups= (or calibrate without strata)",
            ));
        }
        if let Some(groups) = groups {
            let labels = crate::groups::groups_arg(groups)?;
            let policy = crate::groups::small_groups(pool_small_groups);
            let sets =
                match (guarantee, &state, &plain) {
                    (Guarantee::Conformal(m), _, Some(calibration)) => {
                        let calibration = calibration.borrow();
                        let sets = self.cal.fit_groups(&calibration.cal, &labels, m, policy).py()?;
                        warn_all(py, &sets.calibration_warnings(&calibration.cal, &labels).py()?)?;
                        sets
                    }
                    (Guarantee::RiskControl(level), Some(state), _) => {
                        let state = state.borrow();
                        let r = &state.risk;
                        let sets = crate::interrupt::detach(py, || {
                            self.cal.fit_groups_risk_control(r, &labels, level, policy)
                        })
                        .py()?;
                        warn_all(py, &sets.warnings())?;
                        sets
                    }
                    _ => return Err(value_error(
                        "groups= fits the conformal modes from a Calibration (Calibrator.statistics) and \
                         mode=\"risk-control\" from a RiskCalibration (Calibrator.risk_statistics)",
                    )),
                };
            return Ok(Bound::new(py, crate::groups::PyGroupedSets::new(sets))?.into_any());
        }
        let sets =
            match (guarantee, state, plain) {
                (Guarantee::RiskControl(level), Some(state), _) => {
                    let state = state.borrow();
                    let r = &state.risk;
                    let sets = crate::interrupt::detach(py, || self.cal.fit_risk_control(r, level)).py()?;
                    warn_all(py, &sets.warnings())?;
                    sets
                }
                (Guarantee::Conformal(m), _, Some(calibration)) => {
                    let calibration = calibration.borrow();
                    let sets = self.cal.fit(&calibration.cal, m).py()?;
                    warn_all(py, &calibration.cal.warnings(&sets))?;
                    if let Some(record) = &calibration.record {
                        let fitted = PyConfidenceSets { sets, record: record.clone(), statistics: None };
                        return Ok(Bound::new(py, fitted)?.into_any());
                    }
                    sets
                }
                (Guarantee::RiskControl(_), None, _) => return Err(value_error(
                    "mode=\"risk-control\" is fitted from a RiskCalibration (Calibrator.risk_statistics), \
                     not from a Calibration",
                )),
                (Guarantee::Conformal(_), _, None) => {
                    return Err(value_error(format!(
                        "a RiskCalibration is fitted with mode=\"risk-control\", not {:?}",
                        one_line(mode)
                    )))
                }
            };
        Ok(Bound::new(py, PyConfidenceSets::new(sets))?.into_any())
    }

    fn __repr__(&self) -> String {
        let mut s = format!("Calibrator(inner={:?}, outer={:?}", self.inner(), self.outer());
        if let Some(sp) = self.spacing() {
            s += &format!(", spacing={}", crate::tuple_repr(&sp));
        } else if let Some(d) = self.ndim {
            s += &format!(", ndim={d}");
        }
        s + ")"
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyCalibrator>().is_ok_and(|o| {
            let o = o.get();
            o.cal == self.cal && o.ndim == self.ndim
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyAny>)> {
        let me = slf.get();
        let args = (me.inner(), me.outer(), me.spacing(), me.ndim).into_pyobject(slf.py())?.into_any();
        Ok((slf.get_type(), args))
    }
}
