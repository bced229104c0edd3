//! `StructureCalibrator`, `StructureCalibration` and `StructureSets`:
//! several structures of a label map with one joint guarantee (METHOD.md §4.1).

use confseg::calibrate::{StructureCalibration, StructureCalibrator};
use confseg::float::Float;
use confseg::io::Labels;
use confseg::mask::MaskValue;
use confseg::mask::Structure;
use confseg::pipeline::structures::StructureAxis;
use confseg::pipeline::{Fitted, Record};
use confseg::sets::StructureSets;
use confseg::stream::Lazy;
use confseg::{Error, ScoreTransform};
use ndarray::{Array, ArrayViewD, Axis, IxDyn};
use numpy::PyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};
use rayon::prelude::*;

use crate::args::{parse_transform, Cal};
use crate::arrays::{self, is_sequence_of_images, labelled, PerImage};
use crate::calibration::PyCalibration;
use crate::errors::{value_error, IntoPy};
use crate::layout::{layout, one_spacing, spacing_arg, Layout, SpacingArg};
use crate::sets::PyConfidenceSets;
use crate::{one_line, with_masks, with_score_list, with_scores};

type SC = StructureCalibrator<ScoreTransform, ScoreTransform>;

/// Outputs with a class/channel axis: `d + 1` axes one image, `d + 2` a stack.
fn out_layout(nd: usize, d: Option<usize>) -> PyResult<Layout> {
    if nd < 2 {
        return Err(value_error(format!(
            "an output needs a class or channel axis and at least one image axis, got {nd} axes"
        )));
    }
    layout(nd - 1, d)
}

fn parse_structures(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Structure>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut out = Vec::new();
        for (k, v) in d.iter() {
            let name: String = k.extract()?;
            let labels: Vec<i64> = v.extract().map_err(|_| {
                value_error(format!("structure {:?}: labels must be a list of integers", one_line(&name)))
            })?;
            out.push(Structure::new(name, Labels::select(labels).py()?).py()?);
        }
        return Ok(out);
    }
    let items: Vec<String> = obj.extract().map_err(|_| {
        value_error("structures must be a dict name -> list of labels, or a list of \"NAME=1,2,4\" strings")
    })?;
    items.iter().map(|s| s.parse::<Structure>().py()).collect()
}

/// Several structures of a label map calibrated together.
///
/// ``StructureCalibrator(inner, outer, structures, class_axis=None, class_labels=None,
/// structure_axis=None, spacing=None, mask_threshold=None, ndim=None)``
///
/// * ``structures``: a dict name -> list of labels (BraTS:
///   ``{"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}``) or a list of
///   ``"NAME=1,2,4"`` strings; structure ``k``'s true mask is
///   ``{v : label(v) in S_k}``.
/// * exactly one of ``class_axis`` (the network outputs logits of ``C``
///   classes along this axis; a softmax over it, a structure's score the
///   sum of its classes' probabilities; ``class_labels[c]`` is the label of
///   class ``c``, default ``0..C-1``) or ``structure_axis`` (one score map
///   per structure along this axis, in the order of ``structures``).
///   The axis is counted in *one image's* output (0 is its first axis;
///   the batch axis of a stack is not counted), as the library stores it;
///   negative values count from the end and need ``ndim`` or ``spacing``.
/// * ``inner``, ``outer``, ``spacing``, ``mask_threshold``: as for
///   ``Calibrator``, applied to each structure's score map. ``ndim``: the
///   number of image (spatial) axes; outputs have ``ndim + 1`` axes for one
///   image and ``ndim + 2`` for a stack (without it: 2 or 3 axes are one
///   image, 4 or more a stack).
#[pyclass(module = "confseg", name = "StructureCalibrator", frozen)]
pub struct PyStructureCalibrator {
    sc: SC,
    ndim: Option<usize>,
}

#[pymethods]
impl PyStructureCalibrator {
    #[new]
    #[pyo3(signature = (inner, outer, structures, class_axis=None, class_labels=None, structure_axis=None,
        spacing=None, mask_threshold=None, ndim=None, inner_tolerance=None, outer_tolerance=None, ignore_label=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        inner: &str,
        outer: &str,
        structures: &Bound<'_, PyAny>,
        class_axis: Option<i64>,
        class_labels: Option<Vec<i64>>,
        structure_axis: Option<i64>,
        spacing: Option<&Bound<'_, PyAny>>,
        mask_threshold: Option<f64>,
        ndim: Option<usize>,
        inner_tolerance: Option<&Bound<'_, PyAny>>,
        outer_tolerance: Option<&Bound<'_, PyAny>>,
        ignore_label: Option<i64>,
    ) -> PyResult<Self> {
        let tolerances = crate::args::tolerances_arg(inner_tolerance, outer_tolerance)?;
        let structures = parse_structures(structures)?;
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
        // one image's output has the spatial axes and the class (structure) axis
        let scores = StructureAxis::new(class_axis, class_labels, structure_axis)
            .and_then(|a| a.scores(ndim.map(|d| d + 1), |_| None, false))
            .py()?;
        let fi = parse_transform(inner, mask_threshold)?;
        let fo = parse_transform(outer, mask_threshold)?;
        let sc =
            SC::new(Cal::new(fi, fo).with_spacing(spacing).with_tolerances(tolerances), structures, scores)
                .and_then(|sc| sc.with_ignore_label(ignore_label))
                .py()?;
        Ok(PyStructureCalibrator { sc, ndim })
    }

    /// The structures' names, in order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.sc.structures().iter().map(|s| s.name().to_owned()).collect()
    }

    /// Per-structure ``(tau_ik, gamma_ik)`` of labelled images.
    ///
    /// ``statistics(outputs, label_maps, spacing=None) -> StructureCalibration``
    ///
    /// ``outputs``: one image's network output (with its class or channel
    /// axis), a batch-first stack, or a list; ``label_maps``: integer label
    /// maps without that axis, alike. ``spacing``: of the image axes, one
    /// for all or one per image. Runs in parallel, without the GIL.
    #[pyo3(signature = (outputs, label_maps, spacing=None))]
    fn statistics(
        &self,
        py: Python<'_>,
        outputs: &Bound<'_, PyAny>,
        label_maps: &Bound<'_, PyAny>,
        spacing: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyStructureCalibration> {
        let sp = spacing_arg(spacing)?;
        let job = Stats(&self.sc);
        // label maps as they are: the calibrator reads each structure's mask (and the ignore label)
        let raw = confseg::mask::Coding::default();
        let names = ("outputs", "label maps");
        let cal = labelled(py, &job, (outputs, label_maps), &raw, names, &sp, out_layout, self.ndim)?;
        Ok(PyStructureCalibration { cal })
    }

    /// Fit every structure's thresholds.
    ///
    /// ``fit(calibration, alpha, mode="max", weights=None, delta=None) -> StructureSets``
    ///
    /// * ``"max"``: one threshold on ``max_k max(tau_ik, gamma_ik)``:
    ///   ``P(for every structure k: inner_k ⊆ truth_k ⊆ outer_k) >= 1 - alpha``;
    /// * ``"bonferroni"``: ``alpha`` split over the ``2K`` (structure, side)
    ///   pairs by ``weights`` (one ``(w_I, w_O)`` for all structures or one
    ///   per structure; default 1:1): the same joint guarantee;
    /// * ``"marginal"``: each structure and side at ``alpha``:
    ///   ``P(inner_k ⊆ truth_k) >= 1 - alpha`` and ``P(truth_k ⊆ outer_k) >= 1 - alpha``
    ///   for each ``k`` (no joint statement).
    ///
    /// ``delta``: training-conditional, with probability ``>= 1 - delta``
    /// over the calibration set (see ``Calibrator.fit``).
    #[pyo3(signature = (calibration, alpha, mode="max", weights=None, delta=None))]
    fn fit(
        &self,
        py: Python<'_>,
        calibration: PyRef<'_, PyStructureCalibration>,
        alpha: f64,
        mode: &str,
        weights: Option<&Bound<'_, PyAny>>,
        delta: Option<f64>,
    ) -> PyResult<PyStructureSets> {
        let k = self.sc.structures().len();
        let weights = weights.filter(|w| !w.is_none());
        let request = crate::args::levels_arg(Some(alpha), mode, None, None, None, delta, None, None, None)?;
        let jm = match weights {
            None => request.joint(k),
            Some(w) => {
                let pairs: Vec<(f64, f64)> = match w.extract::<(f64, f64)>() {
                    Ok(p) => vec![p; k],
                    Err(_) => w.extract::<Vec<(f64, f64)>>().map_err(|_| {
                        value_error("weights: one (w_I, w_O) pair, or one pair per structure")
                    })?,
                };
                if pairs.len() != k {
                    return Err(value_error(format!("weights: {} pairs for {k} structures", pairs.len())));
                }
                request.joint_weighted(&pairs)
            }
        }
        .py()?;
        let sets = self.sc.fit(&calibration.cal, jm).py()?;
        for (name, w) in calibration.cal.warnings(&sets) {
            crate::args::warn_text(py, &format!("{name}: {w}"))?;
        }
        Ok(PyStructureSets {
            sets,
            record: Record { ignore_label: self.sc.ignore_label(), ..Record::default() },
        })
    }

    fn __repr__(&self) -> String {
        let s: Vec<String> = self.sc.structures().iter().map(ToString::to_string).collect();
        format!("StructureCalibrator(structures={:?}, scores={:?})", s, self.sc.scores())
    }
}

/// `StructureCalibrator.statistics` over any input form.
struct Stats<'a>(&'a SC);

impl PerImage for Stats<'_> {
    type Out = StructureCalibration;
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
        stats_list(self.0, s, m, sp)
    }
}

fn stats_views<A: Float, M: MaskValue>(
    sc: &SC,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    lay: Layout,
    sp: &SpacingArg,
) -> confseg::Result<StructureCalibration> {
    match lay {
        Layout::Single => {
            let x = sp.for_image(0, 1)?;
            let item = Lazy(move || Ok((s.to_owned(), x, m.to_owned())));
            sc.calibrate_stream(std::iter::once(Ok(item))).map_err(Error::without_image)
        }
        Layout::Stack => {
            let n = s.len_of(Axis(0));
            if m.ndim() == 0 || m.len_of(Axis(0)) != n {
                return Err(Error::InvalidParameter {
                    name: "label maps",
                    value: format!("shape {:?}", m.shape()),
                    reason: format!("one label map per output is needed, and there are {n} outputs"),
                });
            }
            let (s, m) = (&s, &m);
            let items = (0..n).map(move |i| {
                let x = sp.for_image(i, n)?;
                Ok(Lazy(move || {
                    Ok((s.index_axis(Axis(0), i).to_owned(), x, m.index_axis(Axis(0), i).to_owned()))
                }))
            });
            sc.calibrate_stream(items)
        }
    }
}

fn stats_list<A: Float, M: MaskValue>(
    sc: &SC,
    s: &[ArrayViewD<'_, A>],
    m: &[ArrayViewD<'_, M>],
    sp: &SpacingArg,
) -> confseg::Result<StructureCalibration> {
    let n = s.len();
    if m.len() != n {
        return Err(Error::InvalidParameter {
            name: "label maps",
            value: format!("{} label maps", m.len()),
            reason: format!("one label map per output is needed, and there are {n} outputs"),
        });
    }
    let items = (0..n).map(move |i| {
        let x = sp.for_image(i, n)?;
        Ok(Lazy(move || Ok((s[i].to_owned(), x, m[i].to_owned()))))
    });
    sc.calibrate_stream(items)
}

/// The calibration state of several structures: one ``Calibration`` per
/// structure, aligned by image. Merges by concatenation; pickles and
/// round-trips through JSON.
#[pyclass(module = "confseg", name = "StructureCalibration")]
#[derive(Clone)]
pub struct PyStructureCalibration {
    pub cal: StructureCalibration,
}

#[pymethods]
impl PyStructureCalibration {
    fn __len__(&self) -> usize {
        self.cal.len()
    }

    /// The structures' names, in order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.cal.names().to_vec()
    }

    /// Each structure's ``Calibration`` (a dict name -> Calibration, copies).
    #[getter]
    fn calibrations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (n, c) in self.cal.names().iter().zip(self.cal.calibrations()) {
            d.set_item(n, PyCalibration::of(c.clone()))?;
        }
        Ok(d)
    }

    /// Append another state's images (in place; returns ``self``).
    fn merge<'py>(
        slf: Bound<'py, Self>,
        other: PyRef<'_, PyStructureCalibration>,
    ) -> PyResult<Bound<'py, Self>> {
        let theirs = other.cal.clone();
        drop(other);
        slf.borrow_mut().cal.merge(&theirs).py()?;
        Ok(slf)
    }

    fn __add__(&self, other: PyRef<'_, PyStructureCalibration>) -> PyResult<PyStructureCalibration> {
        let mut cal = self.cal.clone();
        cal.merge(&other.cal).py()?;
        Ok(PyStructureCalibration { cal })
    }

    /// A state holding only the images at ``indices``.
    fn select(&self, indices: Vec<usize>) -> PyResult<PyStructureCalibration> {
        Ok(PyStructureCalibration { cal: self.cal.select(&indices).py()? })
    }

    /// The state as JSON (the library's form).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.cal).map_err(|e| value_error(e.to_string()))
    }

    /// A state from its JSON.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<PyStructureCalibration> {
        let cal = serde_json::from_str(text).map_err(|e| {
            value_error(format!(
                "not a valid confseg structure calibration state: {}",
                crate::escaped(&e.to_string())
            ))
        })?;
        Ok(PyStructureCalibration { cal })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyStructureCalibration>().is_ok_and(|o| o.borrow().cal == self.cal)
    }

    fn __repr__(&self) -> String {
        format!("StructureCalibration(n={}, structures={:?})", self.cal.len(), self.cal.names())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.borrow().to_json()?,)))
    }
}

/// Fitted sets of several structures. For a new image exchangeable with
/// the calibration images: modes ``"max"`` and ``"bonferroni"`` give
/// ``P(for every structure k: inner_k ⊆ truth_k ⊆ outer_k) >= 1 - alpha``;
/// ``"marginal"`` gives each structure and side ``1 - alpha`` separately.
/// ``to_json``/``save`` write the library's form, which ``confseg predict``
/// reads; ``load``/``from_json`` read it and the CLI's structures files
/// (their extra keys are kept).
#[pyclass(module = "confseg", name = "StructureSets", frozen)]
pub struct PyStructureSets {
    sets: StructureSets,
    record: Record,
}

type Per = Vec<confseg::Sets<IxDyn>>;

fn predict_views<A: Float>(
    sets: &StructureSets,
    s: ArrayViewD<'_, A>,
    lay: Layout,
    sp: &SpacingArg,
) -> confseg::Result<Vec<Per>> {
    match lay {
        Layout::Single => {
            Ok(vec![sets.predict(&s, sp.for_image(0, 1)?.as_ref()).map_err(Error::without_image)?])
        }
        Layout::Stack => {
            let n = s.len_of(Axis(0));
            let out: Vec<_> = (0..n)
                .into_par_iter()
                .map(|i| sets.predict(&s.index_axis(Axis(0), i), sp.for_image(i, n)?.as_ref()))
                .collect();
            out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
        }
    }
}

fn predict_list<A: Float>(
    sets: &StructureSets,
    s: &[ArrayViewD<'_, A>],
    sp: &SpacingArg,
) -> confseg::Result<Vec<Per>> {
    let n = s.len();
    let out: Vec<_> =
        (0..n).into_par_iter().map(|i| sets.predict(&s[i], sp.for_image(i, n)?.as_ref())).collect();
    out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
}

/// Per image and structure, `(inner ⊆ truth, truth ⊆ outer)`.
fn coverage<M: MaskValue>(
    sets: &StructureSets,
    per: &[Per],
    m: ArrayViewD<'_, M>,
    lay: Layout,
    ignore: Option<i64>,
) -> confseg::Result<Vec<Vec<confseg::sets::Coverage>>> {
    per.iter()
        .enumerate()
        .map(|(i, p)| {
            let labels = match lay {
                Layout::Single => m.view(),
                Layout::Stack => m.index_axis(Axis(0), i),
            };
            p.iter()
                .zip(sets.structures())
                .map(|(s, st)| {
                    s.coverage(&confseg::mask::Coding::new(st.labels().clone(), ignore)?.read(&labels)?)
                })
                .collect::<confseg::Result<Vec<_>>>()
                .map_err(|e| if lay == Layout::Stack { e.in_image(i) } else { e })
        })
        .collect()
}

impl PyStructureSets {
    fn parse(text: &str) -> PyResult<Self> {
        let Fitted { sets, record, .. } = Fitted::<StructureSets>::parse(text).py()?;
        Ok(PyStructureSets { sets, record })
    }

    fn fitted(&self) -> Fitted<StructureSets> {
        Fitted::new(self.sets.clone(), self.record.clone())
    }

    fn ndim(&self) -> Option<usize> {
        self.sets.sets().first().and_then(|s| s.ndim())
    }
}

#[pymethods]
impl PyStructureSets {
    /// Inner and outer sets of every structure for new outputs: a dict
    /// name -> ``(inner, outer)``, ``bool`` arrays of one image's shape
    /// (without the class axis), stacked for a stack, lists for a list.
    #[pyo3(signature = (outputs, spacing=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        outputs: &Bound<'py, PyAny>,
        spacing: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let sp = spacing_arg(spacing)?;
        let sets = &self.sets;
        let names: Vec<String> = sets.structures().iter().map(|s| s.name().to_owned()).collect();
        let d = PyDict::new(py);
        if is_sequence_of_images(outputs) {
            let s = arrays::score_list(outputs, "outputs")?;
            let per =
                with_score_list!(&s, sv => crate::interrupt::detach(py, || predict_list(sets, &sv, &sp)))
                    .py()?;
            for (k, name) in names.iter().enumerate() {
                let inner: Vec<_> =
                    per.iter().map(|p| PyArray::from_owned_array(py, p[k].inner.clone())).collect();
                let outer: Vec<_> =
                    per.iter().map(|p| PyArray::from_owned_array(py, p[k].outer.clone())).collect();
                d.set_item(name, (PyList::new(py, inner)?, PyList::new(py, outer)?))?;
            }
            return Ok(d);
        }
        let (s, _) = arrays::scores(outputs, "outputs")?;
        let lay = match sp {
            SpacingArg::PerImage(_) => Layout::Stack,
            _ => out_layout(s.ndim(), sp.ndim().or(self.ndim()))?,
        };
        let mut per =
            with_scores!(&s, sv => crate::interrupt::detach(py, || predict_views(sets, sv, lay, &sp)))
                .py()?;
        for (k, name) in names.iter().enumerate() {
            let (inner, outer) = if lay == Layout::Single {
                let p = std::mem::replace(
                    &mut per[0][k],
                    confseg::Sets {
                        inner: Array::from_elem(IxDyn(&[0]), false),
                        outer: Array::from_elem(IxDyn(&[0]), false),
                    },
                );
                (p.inner, p.outer)
            } else {
                let views_i: Vec<_> = per.iter().map(|p| p[k].inner.view()).collect();
                let views_o: Vec<_> = per.iter().map(|p| p[k].outer.view()).collect();
                let stack = |v: &[ndarray::ArrayViewD<'_, bool>]| {
                    ndarray::stack(Axis(0), v).map_err(|e| value_error(e.to_string()))
                };
                (stack(&views_i)?, stack(&views_o)?)
            };
            d.set_item(name, (PyArray::from_owned_array(py, inner), PyArray::from_owned_array(py, outer)))?;
        }
        Ok(d)
    }

    /// Whether the sets of labelled outputs cover each structure's mask:
    /// ``(per_structure, joint)`` with ``per_structure`` a dict name ->
    /// ``(inner_ok, outer_ok)`` and ``joint`` whether every structure is
    /// covered on both sides (``bool`` arrays with one entry per image of
    /// a stack, or ``bool`` for one image). ``ignore_label``: the label of
    /// voxels to ignore (default: the one the sets were calibrated with).
    #[pyo3(signature = (outputs, label_maps, spacing=None, ignore_label=None))]
    fn covers<'py>(
        &self,
        py: Python<'py>,
        outputs: &Bound<'py, PyAny>,
        label_maps: &Bound<'py, PyAny>,
        spacing: Option<&Bound<'py, PyAny>>,
        ignore_label: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ignore = ignore_label.or(self.record.ignore_label);
        let sp = spacing_arg(spacing)?;
        let sets = &self.sets;
        let (s, _) = arrays::scores(outputs, "outputs")?;
        let m = arrays::masks(label_maps, "label maps")?;
        let lay = match sp {
            SpacingArg::PerImage(_) => Layout::Stack,
            _ => out_layout(s.ndim(), sp.ndim().or(self.ndim()))?,
        };
        let per = with_scores!(&s, sv => crate::interrupt::detach(py, || predict_views(sets, sv, lay, &sp)))
            .py()?;
        let cov =
            with_masks!(&m, mv => crate::interrupt::detach(py, || coverage(sets, &per, mv, lay, ignore)))
                .py()?;
        let d = PyDict::new(py);
        for (k, st) in sets.structures().iter().enumerate() {
            let inner: Vec<bool> = cov.iter().map(|c| c[k].inner).collect();
            let outer: Vec<bool> = cov.iter().map(|c| c[k].outer).collect();
            if lay == Layout::Single {
                d.set_item(st.name(), (inner[0], outer[0]))?;
            } else {
                d.set_item(st.name(), (PyArray::from_vec(py, inner), PyArray::from_vec(py, outer)))?;
            }
        }
        let joint: Vec<bool> = cov.iter().map(|c| c.iter().all(|x| x.inner && x.outer)).collect();
        if lay == Layout::Single {
            return Ok((d, joint[0]).into_pyobject(py)?.into_any());
        }
        Ok((d, PyArray::from_vec(py, joint)).into_pyobject(py)?.into_any())
    }

    /// Each structure's thresholds: dict name -> ``{"inner": {...}, "outer": {...}}``
    /// (as ``ConfidenceSets.thresholds``).
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (st, s) in self.sets.structures().iter().zip(self.sets.sets()) {
            d.set_item(st.name(), PyConfidenceSets::new(s.clone()).thresholds(py)?)?;
        }
        Ok(d)
    }

    /// Each structure's fitted sets (dict name -> ``ConfidenceSets``), to use alone.
    #[getter]
    fn sets<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (st, s) in self.sets.structures().iter().zip(self.sets.sets()) {
            d.set_item(st.name(), PyConfidenceSets::new(s.clone()))?;
        }
        Ok(d)
    }

    /// The structures: dict name -> list of labels.
    #[getter]
    fn structures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for st in self.sets.structures() {
            let labels: Vec<i64> = match st.labels() {
                Labels::Select(v) => v.clone(),
                Labels::Binary => vec![1],
            };
            d.set_item(st.name(), labels)?;
        }
        Ok(d)
    }

    /// ``"max"``, ``"bonferroni"`` or ``"marginal"``.
    #[getter]
    fn mode(&self) -> &'static str {
        self.sets.mode().kind().name()
    }

    /// The level ``alpha`` (joint, or each set's for marginal).
    #[getter]
    fn alpha(&self) -> f64 {
        self.sets.mode().alpha().get()
    }

    /// ``delta`` of a training-conditional guarantee, or ``None``.
    #[getter]
    fn delta(&self) -> Option<f64> {
        self.sets.mode().rank().delta().map(|d| d.get())
    }

    /// Number of calibration images.
    #[getter]
    fn n(&self) -> usize {
        self.sets.sets().first().map_or(0, |s| s.n())
    }

    /// The guarantee, in words.
    #[getter]
    fn guarantee(&self) -> String {
        self.sets.mode().guarantee()
    }

    /// The calibration file as JSON (the library's ``StructureSets`` form).
    fn to_json(&self) -> PyResult<String> {
        self.fitted().to_json().py()
    }

    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Self::parse(text)
    }

    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let fitted = self.fitted();
        crate::interrupt::detach(py, || fitted.write(&path)).py()
    }

    /// Read a structures calibration file: a regular file of at most 16 MiB.
    #[classmethod]
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let Fitted { sets, record, .. } =
            crate::interrupt::detach(py, || Fitted::<StructureSets>::read(&path)).py()?;
        Ok(PyStructureSets { sets, record })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyStructureSets>()
            .is_ok_and(|o| o.get().sets == self.sets && o.get().record == self.record)
    }

    fn __repr__(&self) -> String {
        let names: Vec<&str> = self.sets.structures().iter().map(Structure::name).collect();
        format!(
            "StructureSets(n={}, mode={:?}, alpha={}, structures={:?})",
            self.n(),
            self.mode(),
            self.alpha(),
            names
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.get().to_json()?,)))
    }
}
