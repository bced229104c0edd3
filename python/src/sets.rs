//! `ConfidenceSets`.

use confseg::float::Float;
use confseg::levels::Guarantee;
use confseg::pipeline::{Fitted, Record};
use confseg::{Image, ScoreTransform, Sets, Side, Threshold, Transform};
use ndarray::{Array, ArrayViewD, Axis, IxDyn};
use numpy::{PyArray, PyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};
use rayon::prelude::*;

use crate::arrays::{self, is_sequence_of_images};
use crate::calibration::PyCalibration;
use crate::errors::{value_error, IntoPy};
use crate::layout::{layout, spacing_arg, spacing_tuple, Layout, SpacingArg};
use crate::{with_score_list, with_scores};

/// The library's fitted sets with the built-in transforms (the CLI's).
pub type LibSets = confseg::ConfidenceSets<ScoreTransform, ScoreTransform>;

/// Fitted conformal confidence sets: transforms, thresholds and provenance.
///
/// For a new image exchangeable with the calibration images, the sets
/// returned by ``predict`` satisfy, by ``mode``:
///
/// * ``"marginal"``: ``P(inner ⊆ truth) >= 1 - alpha_inner`` and
///   ``P(truth ⊆ outer) >= 1 - alpha_outer``;
/// * ``"bonferroni"`` and ``"max"``: ``P(inner ⊆ truth ⊆ outer) >= 1 - alpha``.
///
/// ``inner = {v : f_I(scores)(v) > lambda_I}``,
/// ``outer = {v : -f_O(scores)(v) <= lambda_O}``.
///
/// Built by ``Calibrator.fit``. ``to_json`` writes the file that
/// ``confseg calibrate`` writes (``confseg predict`` reads it), and
/// ``ConfidenceSets.from_json`` / ``load`` read the CLI's files (their
/// extra keys are kept and written back). Pickles through the same JSON.
#[pyclass(module = "confseg", name = "ConfidenceSets", frozen)]
pub struct PyConfidenceSets {
    pub sets: LibSets,
    /// How the calibration scores were read (the CLI's `input`,
    /// `class_axis`, `labels`, `source`; defaults for sets fitted here).
    pub record: Record,
    /// The calibration statistics a CLI file keeps for its report
    /// (`statistics`), written back as they were read.
    pub statistics: Option<confseg::Calibration>,
}

impl PyConfidenceSets {
    pub fn new(sets: LibSets) -> Self {
        PyConfidenceSets { sets, record: Record::default(), statistics: None }
    }

    fn fitted(&self) -> Fitted<LibSets> {
        let mut f = Fitted::new(self.sets.clone(), self.record.clone());
        f.statistics.clone_from(&self.statistics);
        f
    }

    fn parse(text: &str) -> PyResult<Self> {
        Self::parse_lib(text).py()
    }

    /// A calibration file of one fit; a file per group is refused, naming
    /// the class that reads it.
    fn parse_lib(text: &str) -> confseg::Result<Self> {
        if confseg::pipeline::record::is_groups_file(text) {
            return Err(confseg::Error::InvalidParameter {
                name: "fitted file",
                value: "JSON".into(),
                reason: "it holds sets per group: read it with GroupedSets.from_json or GroupedSets.load"
                    .into(),
            });
        }
        let Fitted { sets, record, statistics } = Fitted::<LibSets>::parse(text)?;
        Ok(PyConfidenceSets { sets, record, statistics })
    }

    /// Refuse raw-score prediction for files whose pipeline differs (CLI
    /// files calibrated on transformed scores or on two-class logits).
    fn check_raw_input(&self) -> PyResult<()> {
        self.record.check_prepared().py()
    }

    fn side<'py>(&self, py: Python<'py>, side: Side) -> PyResult<Bound<'py, PyDict>> {
        let g = self.sets.guarantee();
        let threshold = self.sets.thresholds().side(side);
        let alpha = g.alpha(side);
        let transform = match side {
            Side::Inner => self.sets.inner_transform().describe(),
            Side::Outer => self.sets.outer_transform().describe(),
        };
        let d = PyDict::new(py);
        d.set_item("value", threshold.value())?;
        d.set_item("rank", threshold.rank())?;
        d.set_item("alpha", alpha.get())?;
        d.set_item("transform", transform)?;
        d.set_item("needed", g.min_calibration_size_for(side))?;
        if let Threshold::TooFewImages { .. } = threshold {
            d.set_item("too_few_images", true)?;
        } else {
            d.set_item("too_few_images", false)?;
        }
        Ok(d)
    }
}

type Pair<'py> = (Bound<'py, PyArrayDyn<bool>>, Bound<'py, PyArrayDyn<bool>>);

fn to_numpy<'py>(py: Python<'py>, s: Sets<IxDyn>) -> Pair<'py> {
    (PyArray::from_owned_array(py, s.inner), PyArray::from_owned_array(py, s.outer))
}

/// Sets of one image or a stack, with the call's spacing.
fn predict_views<A: Float>(
    sets: &LibSets,
    s: ArrayViewD<'_, A>,
    layout: Layout,
    sp: &SpacingArg,
) -> confseg::Result<Sets<IxDyn>> {
    match layout {
        Layout::Single => match sp.for_image(0, 1)? {
            None => sets.predict(&s),
            Some(x) => sets.predict(&Image::new(s, x)?),
        },
        Layout::Stack if *sp == SpacingArg::Default => sets.predict_stack(&s),
        Layout::Stack => {
            let n = s.len_of(Axis(0));
            let per_image = (0..n)
                .into_par_iter()
                .map(|i| {
                    let spacing = sp.for_image(i, n)?.unwrap_or_default();
                    let image = Image::new(s.index_axis(Axis(0), i), spacing)?;
                    sets.predict(&image)
                })
                .collect::<Vec<_>>();
            let mut inner = Array::from_elem(s.raw_dim(), false);
            let mut outer = Array::from_elem(s.raw_dim(), false);
            for (i, r) in per_image.into_iter().enumerate() {
                let p = r.map_err(|e| e.in_image(i))?;
                inner.index_axis_mut(Axis(0), i).assign(&p.inner);
                outer.index_axis_mut(Axis(0), i).assign(&p.outer);
            }
            Ok(Sets { inner, outer })
        }
    }
}

/// Sets of a list of images, in parallel.
fn predict_list<A: Float>(
    sets: &LibSets,
    s: &[ArrayViewD<'_, A>],
    sp: &SpacingArg,
) -> confseg::Result<Vec<Sets<IxDyn>>> {
    let n = s.len();
    let out = (0..n)
        .into_par_iter()
        .map(|i| match sp.for_image(i, n)? {
            None => sets.predict(&s[i]),
            Some(x) => sets.predict(&Image::new(s[i].view(), x)?),
        })
        .collect::<Vec<_>>();
    out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
}

/// Sets from already transformed scores, one image or a stack.
fn predict_transformed_views<A: Float>(
    sets: &LibSets,
    fi: ArrayViewD<'_, A>,
    fo: ArrayViewD<'_, A>,
    lay: Layout,
) -> confseg::Result<Sets<IxDyn>> {
    if lay == Layout::Single {
        return sets.predict_transformed(&fi, &fo);
    }
    if fi.shape() != fo.shape() {
        return Err(confseg::Error::ShapeMismatch {
            what: "outer scores stack vs inner scores stack",
            image: None,
            expected: fi.shape().to_vec(),
            found: fo.shape().to_vec(),
        });
    }
    let n = fi.len_of(Axis(0));
    let per = (0..n)
        .into_par_iter()
        .map(|i| sets.predict_transformed(&fi.index_axis(Axis(0), i), &fo.index_axis(Axis(0), i)))
        .collect::<Vec<_>>();
    let mut inner = Array::from_elem(fi.raw_dim(), false);
    let mut outer = Array::from_elem(fi.raw_dim(), false);
    for (i, r) in per.into_iter().enumerate() {
        let p = r.map_err(|e| e.in_image(i))?;
        inner.index_axis_mut(Axis(0), i).assign(&p.inner);
        outer.index_axis_mut(Axis(0), i).assign(&p.outer);
    }
    Ok(Sets { inner, outer })
}

/// Whether each image's sets cover its mask: `(inner ⊆ truth, truth ⊆ outer)`.
fn coverage_views<A: Float, M: confseg::mask::MaskValue>(
    sets: &LibSets,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    layout: Layout,
    sp: &SpacingArg,
) -> confseg::Result<Vec<confseg::sets::Coverage>> {
    match layout {
        Layout::Single => {
            let p = predict_views(sets, s, Layout::Single, sp)?;
            Ok(vec![p.coverage(&m)?])
        }
        Layout::Stack => {
            if s.shape() != m.shape() {
                return Err(confseg::Error::ShapeMismatch {
                    what: "scores stack vs masks stack",
                    image: None,
                    expected: m.shape().to_vec(),
                    found: s.shape().to_vec(),
                });
            }
            let n = s.len_of(Axis(0));
            let out = (0..n)
                .into_par_iter()
                .map(|i| {
                    let si = s.index_axis(Axis(0), i);
                    let p = match sp.for_image(i, n)? {
                        None => sets.predict(&si)?,
                        Some(x) => sets.predict(&Image::new(si, x)?)?,
                    };
                    p.coverage(&m.index_axis(Axis(0), i))
                })
                .collect::<Vec<_>>();
            out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
        }
    }
}

#[pymethods]
impl PyConfidenceSets {
    /// Inner and outer sets of new images.
    ///
    /// ``predict(scores, spacing=None) -> (inner, outer)``
    ///
    /// ``scores``: one image (``ndim`` axes), a batch-first stack
    /// (``ndim + 1`` axes) or a list of images; ``inner`` and ``outer`` are
    /// ``bool`` arrays of the same shape (lists for a list). ``spacing``:
    /// the images' own spacing (one for all, or one per image); required
    /// when the calibration used each image's own spacing and a transform
    /// depends on it. ``prepared=True``: for a file that records a class
    /// axis (``record["class_axis"]``), the scores are already reduced as it
    /// says (``prepare``); without it such files refuse raw scores. Runs in
    /// parallel, without the GIL.
    #[pyo3(signature = (scores, spacing=None, prepared=false))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        scores: &Bound<'py, PyAny>,
        spacing: Option<&Bound<'py, PyAny>>,
        prepared: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if prepared {
            self.record.check_raw().py()?;
        } else {
            self.check_raw_input()?;
        }
        let sp = spacing_arg(spacing)?;
        let sets = &self.sets;
        if is_sequence_of_images(scores) {
            let s = arrays::score_list(scores, "scores")?;
            let out =
                with_score_list!(&s, sv => crate::interrupt::detach(py, || predict_list(sets, &sv, &sp)))
                    .py()?;
            let (inner, outer): (Vec<_>, Vec<_>) = out.into_iter().map(|p| to_numpy(py, p)).unzip();
            return Ok((PyList::new(py, inner)?, PyList::new(py, outer)?).into_pyobject(py)?.into_any());
        }
        let (s, _) = arrays::scores(scores, "scores")?;
        let lay = match sp {
            SpacingArg::PerImage(_) => Layout::Stack,
            _ => layout(s.ndim(), sp.ndim().or(self.sets.ndim()))?,
        };
        let p = with_scores!(&s, sv => crate::interrupt::detach(py, || predict_views(sets, sv, lay, &sp)))
            .py()?;
        Ok(to_numpy(py, p).into_pyobject(py)?.into_any())
    }

    /// Inner and outer sets from scores already transformed by ``f_I`` and
    /// ``f_O`` (the stored transforms are not applied); one image or a stack.
    ///
    /// ``predict_transformed(inner_scores, outer_scores) -> (inner, outer)``
    fn predict_transformed<'py>(
        &self,
        py: Python<'py>,
        inner_scores: &Bound<'py, PyAny>,
        outer_scores: &Bound<'py, PyAny>,
    ) -> PyResult<Pair<'py>> {
        let a = arrays::asarray(inner_scores)?;
        let b = arrays::asarray(outer_scores)?;
        let t = match (arrays::score_type(&a, "inner scores")?, arrays::score_type(&b, "outer scores")?) {
            (arrays::ScoreType::F32, arrays::ScoreType::F32) => arrays::ScoreType::F32,
            _ => arrays::ScoreType::F64,
        };
        let (fi, fo) = (arrays::cast_scores(&a, t)?, arrays::cast_scores(&b, t)?);
        let sets = &self.sets;
        let lay = layout(fi.ndim(), self.sets.ndim())?;
        let p = match (&fi, &fo) {
            (arrays::Scores::F32(x), arrays::Scores::F32(y)) => {
                let (x, y) = (x.as_array(), y.as_array());
                crate::interrupt::detach(py, || predict_transformed_views(sets, x, y, lay))
            }
            (arrays::Scores::F64(x), arrays::Scores::F64(y)) => {
                let (x, y) = (x.as_array(), y.as_array());
                crate::interrupt::detach(py, || predict_transformed_views(sets, x, y, lay))
            }
            _ => unreachable!("both sides are cast to one float type"),
        };
        Ok(to_numpy(py, p.py()?))
    }

    /// Whether the sets of labelled images cover their masks, by the
    /// library's check: ``(inner_ok, outer_ok)``, ``bool`` arrays with one
    /// entry per image of a stack (or two ``bool`` for one image);
    /// ``inner_ok & outer_ok`` is joint coverage.
    ///
    /// ``covers(scores, masks, spacing=None, ignore_label=None) -> (inner_ok, outer_ok)``
    ///
    /// ``ignore_label``: the mask value of voxels that count nowhere
    /// (default: the one recorded in the fitted file, if any).
    #[pyo3(signature = (scores, masks, spacing=None, ignore_label=None))]
    fn covers<'py>(
        &self,
        py: Python<'py>,
        scores: &Bound<'py, PyAny>,
        masks: &Bound<'py, PyAny>,
        spacing: Option<&Bound<'py, PyAny>>,
        ignore_label: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_raw_input()?;
        let sp = spacing_arg(spacing)?;
        let (s, _) = arrays::scores(scores, "scores")?;
        let coding = self.record.coding(confseg::io::Labels::Binary, ignore_label).py()?;
        let m = arrays::masks_coded(masks, "masks", &coding)?;
        let lay = match sp {
            SpacingArg::PerImage(_) => Layout::Stack,
            _ => layout(s.ndim(), sp.ndim().or(self.sets.ndim()))?,
        };
        let sets = &self.sets;
        let cov = with_scores!(&s, sv => crate::with_masks!(&m, mv => crate::interrupt::detach(py, || coverage_views(sets, sv, mv, lay, &sp))))
            .py()?;
        if lay == Layout::Single {
            return Ok((cov[0].inner, cov[0].outer).into_pyobject(py)?.into_any());
        }
        let inner: Vec<bool> = cov.iter().map(|c| c.inner).collect();
        let outer: Vec<bool> = cov.iter().map(|c| c.outer).collect();
        Ok((PyArray::from_vec(py, inner), PyArray::from_vec(py, outer)).into_pyobject(py)?.into_any())
    }

    /// ``lambda_I`` and ``lambda_O`` with their ranks:
    /// ``{"inner": {"value", "rank", "alpha", "transform", "needed", "too_few_images"}, "outer": {...}}``.
    /// ``value`` is ``math.inf`` (and ``rank`` ``None``) when there were
    /// too few calibration images for the level (fewer than ``needed``).
    #[getter]
    pub(crate) fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for side in Side::BOTH {
            d.set_item(side.name(), self.side(py, side)?)?;
        }
        Ok(d)
    }

    /// ``lambda_I`` (``math.inf`` when too few images).
    #[getter]
    fn lambda_inner(&self) -> f64 {
        self.sets.thresholds().inner.value()
    }

    /// ``lambda_O`` (``math.inf`` when too few images).
    #[getter]
    fn lambda_outer(&self) -> f64 {
        self.sets.thresholds().outer.value()
    }

    /// Number of calibration images.
    #[getter]
    fn n(&self) -> usize {
        self.sets.n()
    }

    /// Dimensionality of the calibration images (``None`` if unknown).
    #[getter]
    fn ndim(&self) -> Option<usize> {
        self.sets.ndim()
    }

    /// ``"marginal"``, ``"bonferroni"``, ``"max"`` or ``"risk-control"``.
    #[getter]
    fn mode(&self) -> &'static str {
        self.sets.guarantee().kind().name()
    }

    /// The joint level ``alpha`` (``None`` for marginal sets); for
    /// risk control, the bound on the expected loss.
    #[getter]
    fn alpha(&self) -> Option<f64> {
        self.sets.guarantee().overall_alpha().map(|a| a.get())
    }

    /// The confidence level ``delta`` of a training-conditional guarantee
    /// (``None``: the guarantee holds on average over calibration sets).
    #[getter]
    fn delta(&self) -> Option<f64> {
        self.sets.guarantee().delta().map(|d| d.get())
    }

    /// Risk control: ``"recall"`` or ``"precision"`` (``None`` for conformal sets).
    #[getter]
    fn risk(&self) -> Option<&'static str> {
        match self.sets.guarantee() {
            Guarantee::RiskControl(r) => Some(r.risk().name()),
            Guarantee::Conformal(_) => None,
        }
    }

    /// Risk control with ``delta``: the bound (``"hoeffding"``,
    /// ``"bernstein"``, ``"wsr"`` or ``"hoeffding-bentkus"``), else ``None``.
    #[getter]
    fn bound(&self) -> Option<&'static str> {
        match self.sets.guarantee() {
            Guarantee::RiskControl(r) => r.bound().map(|b| b.name()),
            Guarantee::Conformal(_) => None,
        }
    }

    /// Risk control on a grid: ``"START:STOP:STEP"``, else ``None`` (exact search).
    #[getter]
    fn grid(&self) -> Option<String> {
        match self.sets.guarantee() {
            Guarantee::RiskControl(r) => match r.search() {
                confseg::risk::Search::Grid(g) => Some(g.to_string()),
                confseg::risk::Search::Exact => None,
            },
            Guarantee::Conformal(_) => None,
        }
    }

    /// Risk control: the fitted set in words (``"O = {f_O > 0.35}"``,
    /// ``"I = {f_I > 0.7}"``), else ``None``.
    #[getter]
    fn set_rule(&self) -> Option<String> {
        match self.sets.guarantee() {
            Guarantee::RiskControl(r) => Some(r.set_rule(self.sets.thresholds())),
            Guarantee::Conformal(_) => None,
        }
    }

    /// The library's description of the mode and its levels (with
    /// ``delta``, "... with probability 1 - delta over the calibration set").
    #[getter]
    fn description(&self) -> String {
        self.sets.guarantee().levels()
    }

    /// The inner level ``alpha_I``.
    #[getter]
    fn alpha_inner(&self) -> f64 {
        self.sets.guarantee().alpha(Side::Inner).get()
    }

    /// The outer level ``alpha_O``.
    #[getter]
    fn alpha_outer(&self) -> f64 {
        self.sets.guarantee().alpha(Side::Outer).get()
    }

    /// The guarantee, in words. With ``delta``, it holds with probability
    /// at least ``1 - delta`` over the calibration set (conditional on it);
    /// without, on average over calibration sets. For risk control it is
    /// a bound on the expected missed share of the object, not coverage.
    #[getter]
    fn guarantee(&self) -> String {
        format!("{:#}", self.sets.guarantee())
    }

    /// The inner transform ``f_I``, by name.
    #[getter]
    fn inner_transform(&self) -> String {
        self.sets.inner_transform().describe()
    }

    /// The outer transform ``f_O``, by name.
    #[getter]
    fn outer_transform(&self) -> String {
        self.sets.outer_transform().describe()
    }

    /// The default voxel spacing (``None``: 1 on every axis).
    #[getter]
    fn spacing(&self) -> Option<Vec<f64>> {
        spacing_tuple(self.sets.spacing())
    }

    /// Whether the calibration used each image's own spacing.
    #[getter]
    fn per_image_spacing(&self) -> bool {
        self.sets.per_image_spacing()
    }

    /// The version of confseg that fitted these sets.
    #[getter]
    fn version(&self) -> &str {
        self.sets.crate_version()
    }

    /// How the calibration scores were read, as the calibration file
    /// records it: ``{"input": "scores" | "transformed", "class_axis": int
    /// | None (an axis of one image), "labels": list | None, "source": {...}}``.
    #[getter]
    fn record<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.record).map_err(|e| value_error(e.to_string()))?;
        crate::json_loads(py, &text)
    }

    /// One raw network output made ready for ``predict`` as the calibration
    /// file records it (``record["class_axis"]``): two-class logits reduced
    /// by the two-class softmax, nnU-Net's probabilities by taking the
    /// foreground channel; returned unchanged when nothing is recorded.
    ///
    /// ``prepare(scores) -> numpy.ndarray``
    fn prepare<'py>(&self, py: Python<'py>, scores: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let record = &self.record;
        Ok(match arrays::scores(scores, "scores")?.0 {
            arrays::Scores::F32(a) => {
                let a = confseg::alloc::try_copy(&a.as_array(), "the scores").py()?;
                let out = crate::interrupt::detach(py, || record.prepare(a)).py()?;
                PyArray::from_owned_array(py, out).into_any()
            }
            arrays::Scores::F64(a) => {
                let a = confseg::alloc::try_copy(&a.as_array(), "the scores").py()?;
                let out = crate::interrupt::detach(py, || record.prepare(a)).py()?;
                PyArray::from_owned_array(py, out).into_any()
            }
        })
    }

    /// Predict every subject of ``cohort`` (``read_cohort``: NIfTI, ``.npy``
    /// or nnU-Net ``.npz`` files) and write the sets as ``confseg predict``
    /// does: ``ID_inner`` and ``ID_outer`` in ``out_dir``, each in the
    /// subject's format (NIfTI with its header and affine), and the viewer
    /// label maps ``ID_sets`` (1 the band, 2 the inner set) with the
    /// ITK-SNAP and 3D Slicer colour tables in ``label_map_dir``. The
    /// recorded class axis and input kind apply; every file of the run is
    /// published at the end, all of them or none.
    ///
    /// ``predict_cohort(cohort, out_dir=None, label_map_dir=None) -> dict``:
    /// ``{"images", "voxels", "inner_voxels", "outer_voxels",
    /// "empty_inner", "whole_outer"}``.
    #[pyo3(signature = (cohort, out_dir=None, label_map_dir=None))]
    fn predict_cohort<'py>(
        &self,
        py: Python<'py>,
        cohort: PyRef<'_, crate::io::PyCohort>,
        out_dir: Option<std::path::PathBuf>,
        label_map_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Bound<'py, PyDict>> {
        use confseg::pipeline::{subjects::SubjectOutputs, Extras, Reader};
        if out_dir.is_none() && label_map_dir.is_none() {
            return Err(value_error(
                "give out_dir (ID_inner and ID_outer per subject) and/or label_map_dir (ID_sets label maps)",
            ));
        }
        let cohort = std::sync::Arc::clone(&cohort.cohort);
        let (sets, record) = (&self.sets, &self.record);
        let summary = crate::interrupt::detach(py, || {
            let source = record.open_subjects(std::sync::Arc::clone(&cohort))?;
            let outputs = SubjectOutputs::new(cohort, out_dir, label_map_dir)?;
            let reader = std::sync::Arc::new(Reader::new(source));
            let all: Vec<usize> = (0..reader.scores.n_images()).collect();
            let mut run = confseg::io::Publication::new();
            let summary =
                reader.predict(sets, &all, Extras::default(), |i, p| outputs.stage(i, &p.sets, &mut run))?;
            outputs.finish(&mut run)?;
            run.publish()?;
            Ok(summary)
        })
        .py()?;
        let d = PyDict::new(py);
        d.set_item("images", summary.images)?;
        d.set_item("voxels", summary.voxels)?;
        d.set_item("inner_voxels", summary.inner_voxels)?;
        d.set_item("outer_voxels", summary.outer_voxels)?;
        d.set_item("empty_inner", summary.empty_inner)?;
        d.set_item("whole_outer", summary.whole_outer)?;
        Ok(d)
    }

    /// The library's warnings about these thresholds (too few images for
    /// a level, an infinite statistic, and given the ``calibration``, a max
    /// mode on transforms of different scales), one line each.
    #[pyo3(signature = (calibration=None))]
    fn warnings(&self, calibration: Option<PyRef<'_, PyCalibration>>) -> Vec<String> {
        let w = match &calibration {
            Some(c) => c.cal.warnings(&self.sets),
            None => self.sets.warnings(),
        };
        w.iter().map(ToString::to_string).collect()
    }

    /// The calibration file as JSON text (what ``confseg calibrate`` writes).
    fn to_json(&self) -> PyResult<String> {
        self.fitted().to_json().py()
    }

    /// Sets from the JSON of a calibration file (the CLI's or ``to_json``'s).
    /// A file whose fields disagree (a rank that ``n`` and ``alpha`` do not
    /// give, a newer format, ...) is a ``ValueError`` naming the field.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Self::parse(text)
    }

    /// Write the calibration file atomically (``OSError`` if it cannot be written).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let fitted = self.fitted();
        crate::interrupt::detach(py, || fitted.write(&path)).py()
    }

    /// Read a calibration file (the CLI's or ``save``'s): a regular file of
    /// at most 16 MiB.
    #[classmethod]
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let text = crate::interrupt::detach(py, || {
            confseg::pipeline::record::read_text(&path, confseg::pipeline::record::MAX_FITTED_FILE_BYTES)
        })
        .py()?;
        Self::parse(&text).map_err(|e| crate::errors::value_error(format!("{}: {e}", path.display())))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyConfidenceSets>().is_ok_and(|o| {
            let o = o.get();
            o.sets == self.sets && o.record == self.record
        })
    }

    fn __repr__(&self) -> String {
        let t = self.sets.thresholds();
        format!(
            "ConfidenceSets(n={}, mode={:?}, inner={:?}, outer={:?}, lambda_inner={}, lambda_outer={})",
            self.sets.n(),
            self.mode(),
            self.inner_transform(),
            self.outer_transform(),
            t.inner.value(),
            t.outer.value()
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.get().to_json()?,)))
    }
}
