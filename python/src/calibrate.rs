//! `Calibrator` and `Calibration`.

use std::ffi::CString;

use std::sync::Arc;

use confseg::io::{Labels, Precision};
use confseg::pipeline::Inputs;
use confseg::stream::Lazy;
use confseg::tolerance::{Tolerance, Tolerances};
use confseg::{Error, Float, Guarantee, Image, Levels, MaskValue, ScoreTransform, Spacing, Transform};
use ndarray::{ArrayViewD, Axis};
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::arrays::{self, labelled, PerImage};
use crate::errors::{value_error, IntoPy};
use crate::io::PyCohort;
use crate::layout::{layout, one_spacing, spacing_arg, spacing_tuple, Layout, SpacingArg};
use crate::risk::{risk_lists, risk_views, Objects, PyRiskCalibration};
use crate::sets::PyConfidenceSets;
use crate::{json_loads, one_line, with_masks};

/// The library's calibrator with the built-in transforms.
pub type Cal = confseg::Calibrator<ScoreTransform, ScoreTransform>;

/// Parse a transform name (`"identity"`, `"distance:chessboard"`, ...),
/// with an optional predicted-mask threshold.
pub fn parse_transform(name: &str, mask_threshold: Option<f64>) -> PyResult<ScoreTransform> {
    let t: ScoreTransform = name.parse().py()?;
    match mask_threshold {
        Some(x) => t.with_mask_threshold(x).py(),
        None => Ok(t),
    }
}

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

/// A side's tolerance (the library's `Tolerance`): `None` or 0 for
/// containment, a float share below 1 (`0.05`), or a string (`"5vox"`,
/// `"12.5mm3"`, `"5%"`, `"0.05"`).
pub fn tolerance_arg(t: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Tolerance> {
    let Some(t) = t.filter(|t| !t.is_none()) else { return Ok(Tolerance::NONE) };
    let text = if let Ok(s) = t.extract::<String>() {
        s
    } else if t.is_instance_of::<pyo3::types::PyBool>() {
        return Err(value_error(format!(
            "{name} is a share (0.05), a count (\"5vox\") or a volume (\"12.5mm3\"), not a bool"
        )));
    } else if let Ok(x) = t.extract::<f64>() {
        x.to_string()
    } else {
        return Err(value_error(format!(
            "{name} is a share (0.05), a count (\"5vox\") or a volume (\"12.5mm3\")"
        )));
    };
    text.parse::<Tolerance>().map_err(|e| value_error(format!("{name}: {e}")))
}

/// Both sides' tolerances.
pub fn tolerances_arg(
    inner: Option<&Bound<'_, PyAny>>,
    outer: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tolerances> {
    Ok(Tolerances::new(tolerance_arg(inner, "inner_tolerance")?, tolerance_arg(outer, "outer_tolerance")?))
}

/// Labels of the masks that are the object: `None` for 0/1 masks.
pub fn labels_arg(labels: Option<Vec<i64>>) -> PyResult<Labels> {
    labels.map_or(Ok(Labels::Binary), |v| Labels::select(v).py())
}

/// Parse a precision name (the library's: `float32`, `float64`).
pub fn precision_arg(p: Option<&str>) -> PyResult<Option<Precision>> {
    p.map(str::parse::<Precision>).transpose().py()
}

/// The level arguments of `fit` as the library's request (the library
/// validates it, as it does the command line's).
#[allow(clippy::too_many_arguments)]
pub fn levels_arg(
    alpha: Option<f64>,
    mode: &str,
    weights: Option<(f64, f64)>,
    alpha_inner: Option<f64>,
    alpha_outer: Option<f64>,
    delta: Option<f64>,
    risk: Option<&str>,
    bound: Option<&str>,
    grid: Option<&Bound<'_, PyAny>>,
) -> PyResult<Levels> {
    Ok(Levels {
        mode: mode.parse().py()?,
        alpha,
        weights,
        alpha_inner,
        alpha_outer,
        delta,
        risk: risk.map(str::parse).transpose().py()?,
        bound: bound.map(str::parse).transpose().py()?,
        grid: grid_arg(grid)?,
    })
}

/// A risk-control grid: ``"START:STOP:STEP"`` or ``(start, stop, step)``.
fn grid_arg(grid: Option<&Bound<'_, PyAny>>) -> PyResult<Option<confseg::risk::Grid>> {
    let Some(g) = grid.filter(|g| !g.is_none()) else { return Ok(None) };
    if let Ok(text) = g.extract::<String>() {
        return text.parse().map(Some).py();
    }
    let (start, stop, step) = g.extract::<(f64, f64, f64)>().map_err(|_| {
        crate::errors::type_error("grid must be a string \"START:STOP:STEP\" or a tuple (start, stop, step)")
    })?;
    confseg::risk::Grid::new(start, stop, step).map(Some).py()
}

/// Emit one Python `UserWarning`.
pub fn warn_text(py: Python<'_>, text: &str) -> PyResult<()> {
    let msg = CString::new(text.replace('\0', " ")).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &msg, 1)
}

/// Emit Python `UserWarning`s.
pub fn warn_all(py: Python<'_>, warnings: &[confseg::Warning]) -> PyResult<()> {
    for w in warnings {
        let msg = CString::new(w.to_string().replace('\0', " ")).unwrap_or_default();
        PyErr::warn(py, &py.get_type::<PyUserWarning>(), &msg, 1)?;
    }
    Ok(())
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
    /// Runs in parallel, without the GIL.
    #[pyo3(signature = (scores, masks, spacing=None))]
    fn statistics(
        &self,
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        masks: &Bound<'_, PyAny>,
        spacing: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyCalibration> {
        let sp = spacing_arg(spacing)?;
        let cal =
            labelled(py, &Stats(&self.cal), (scores, masks), ("scores", "masks"), &sp, layout, self.ndim)?;
        Ok(PyCalibration { cal })
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
    #[pyo3(signature = (scores, masks, spacing=None, risk="recall"))]
    fn risk_statistics(
        &self,
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        masks: &Bound<'_, PyAny>,
        spacing: Option<&Bound<'_, PyAny>>,
        risk: &str,
    ) -> PyResult<PyRiskCalibration> {
        let risk: confseg::risk::Risk = risk.parse().py()?;
        let sp = spacing_arg(spacing)?;
        let c = &self.cal;
        let objects =
            labelled(py, &Risk(c, risk), (scores, masks), ("scores", "masks"), &sp, layout, self.ndim)?;
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
    fn statistics_transformed(
        &self,
        py: Python<'_>,
        inner_scores: &Bound<'_, PyAny>,
        outer_scores: &Bound<'_, PyAny>,
        masks: &Bound<'_, PyAny>,
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
        let m = arrays::masks(masks, "masks")?;
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
        Ok(PyCalibration { cal: cal.py()? })
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
    /// narrowest that holds every subject's scores exactly, as the CLI).
    #[pyo3(signature = (cohort, indices=None, labels=None, precision=None))]
    fn statistics_cohort(
        &self,
        py: Python<'_>,
        cohort: PyRef<'_, PyCohort>,
        indices: Option<Vec<usize>>,
        labels: Option<Vec<i64>>,
        precision: Option<&str>,
    ) -> PyResult<PyCalibration> {
        let labels = labels_arg(labels)?;
        let mut inputs =
            Inputs::from_cohort(Arc::clone(&cohort.cohort), labels, self.cal.clone(), indices).py()?;
        if let Some(p) = precision_arg(precision)? {
            inputs = inputs.with_precision(p);
        }
        let cal = crate::interrupt::detach(py, || inputs.statistics());
        warn_all(py, &inputs.warnings())?;
        Ok(PyCalibration { cal: cal.py()? })
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
    #[pyo3(signature = (calibration, alpha=None, mode="marginal", weights=None, alpha_inner=None, alpha_outer=None, delta=None, risk=None, bound=None, grid=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        &self,
        py: Python<'_>,
        calibration: &Bound<'_, PyAny>,
        alpha: Option<f64>,
        mode: &str,
        weights: Option<(f64, f64)>,
        alpha_inner: Option<f64>,
        alpha_outer: Option<f64>,
        delta: Option<f64>,
        risk: Option<&str>,
        bound: Option<&str>,
        grid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyConfidenceSets> {
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
        Ok(PyConfidenceSets::new(sets))
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

/// The streaming calibration state: every calibration image's statistics
/// ``tau_i`` (worst inner false positive, ``max f_I`` over the background)
/// and ``gamma_i`` (worst outer miss, ``max -f_O`` over the object), and
/// what they were computed with (``provenance``).
///
/// ``Calibration()`` is empty. ``merge`` concatenates states computed
/// elsewhere (other processes, machines, Dask tasks): thresholds depend
/// only on the multiset of statistics, not on the order or the split.
/// States computed with other transforms, default spacing or
/// dimensionality do not merge (``ValueError``). Pickles and round-trips
/// through JSON (``to_json`` / ``Calibration.from_json``).
#[pyclass(module = "confseg", name = "Calibration")]
#[derive(Clone)]
pub struct PyCalibration {
    pub cal: confseg::Calibration,
}

#[pymethods]
impl PyCalibration {
    #[new]
    fn new() -> Self {
        PyCalibration { cal: confseg::Calibration::new() }
    }

    fn __len__(&self) -> usize {
        self.cal.len()
    }

    /// The ``tau_i`` in observation order (a new ``float64`` array).
    #[getter]
    fn tau<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.cal.tau().to_vec().into_pyarray(py)
    }

    /// The ``gamma_i`` in observation order (a new ``float64`` array).
    #[getter]
    fn gamma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.cal.gamma().to_vec().into_pyarray(py)
    }

    /// What the statistics were computed with: a dict with ``inner``,
    /// ``outer``, ``combination``, ``spacing`` and ``ndim``, or ``None``.
    #[getter]
    fn provenance<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_string(&self.cal.provenance()).map_err(|e| value_error(e.to_string()))?;
        json_loads(py, &v)
    }

    /// Whether some image carried its own spacing.
    #[getter]
    fn per_image_spacing(&self) -> bool {
        self.cal.per_image_spacing()
    }

    /// Append another state's statistics (in place; returns ``self``).
    fn merge<'py>(slf: Bound<'py, Self>, other: PyRef<'_, PyCalibration>) -> PyResult<Bound<'py, Self>> {
        let theirs = other.cal.clone();
        drop(other);
        slf.borrow_mut().cal.merge(&theirs).py()?;
        Ok(slf)
    }

    /// A new state with both states' statistics.
    fn __add__(&self, other: PyRef<'_, PyCalibration>) -> PyResult<PyCalibration> {
        let mut cal = self.cal.clone();
        cal.merge(&other.cal).py()?;
        Ok(PyCalibration { cal })
    }

    /// One state from many (e.g. the results of parallel tasks).
    #[staticmethod]
    fn concat(parts: &Bound<'_, PyAny>) -> PyResult<PyCalibration> {
        let mut cal = confseg::Calibration::new();
        for p in parts.try_iter()? {
            let p = p?;
            let p = p.cast::<PyCalibration>()?;
            cal.merge(&p.borrow().cal).py()?;
        }
        Ok(PyCalibration { cal })
    }

    /// A state holding only the images at ``indices`` (e.g. one split).
    fn select(&self, indices: Vec<usize>) -> PyResult<PyCalibration> {
        Ok(PyCalibration { cal: self.cal.select(&indices).py()? })
    }

    /// The state as JSON (infinite statistics as ``"inf"`` / ``"-inf"``).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.cal).map_err(|e| value_error(e.to_string()))
    }

    /// A state from its JSON.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<PyCalibration> {
        let cal = serde_json::from_str(text).map_err(|e| {
            value_error(format!("not a valid confseg calibration state: {}", crate::escaped(&e.to_string())))
        })?;
        Ok(PyCalibration { cal })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyCalibration>().is_ok_and(|o| o.borrow().cal == self.cal)
    }

    fn __repr__(&self) -> String {
        match self.cal.provenance() {
            Some(p) => format!("Calibration(n={}, {p})", self.cal.len()),
            None => format!("Calibration(n={})", self.cal.len()),
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.borrow().to_json()?,)))
    }
}
