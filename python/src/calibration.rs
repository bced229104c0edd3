//! `Calibration`: the streaming calibration state.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::errors::{value_error, IntoPy};
use crate::json_loads;

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
    /// How the scores were read, for statistics of files (`statistics_cohort`):
    /// the fitted sets record it, so that they predict on the same kind of files.
    pub record: Option<confseg::pipeline::Record>,
    /// Each image's stratum (`statistics(..., strata=)`): `fit` fits per stratum.
    pub strata: Option<Stratified>,
}

/// The strata of a calibration's images, and how they were computed.
#[derive(Clone, Debug, PartialEq)]
pub struct Stratified {
    pub by: confseg::groups::Stratification,
    pub labels: Vec<confseg::groups::Group>,
}

/// The strata of two calibrations joined (`None` for none): both or
/// neither must be by strata, the same ones.
fn join_strata(
    a: &Option<Stratified>,
    b: &Option<Stratified>,
    b_len: usize,
    a_len: usize,
) -> PyResult<Option<Stratified>> {
    match (a, b) {
        (None, None) => Ok(None),
        (Some(x), Some(y)) if x.by == y.by => {
            Ok(Some(Stratified { by: x.by.clone(), labels: [x.labels.clone(), y.labels.clone()].concat() }))
        }
        (None, Some(_)) if a_len == 0 => Ok(b.clone()),
        (Some(_), None) if b_len == 0 => Ok(a.clone()),
        _ => Err(value_error(
            "these calibrations are by different strata (or only one by strata); join like with like",
        )),
    }
}

impl PyCalibration {
    /// Statistics of arrays (no file record).
    pub fn of(cal: confseg::Calibration) -> Self {
        PyCalibration { cal, record: None, strata: None }
    }

    /// Statistics of arrays whose masks marked voxels to ignore: the fitted
    /// sets record the ignore label, as the CLI's files do, so that
    /// checking new masks against them ignores the same voxels.
    pub fn ignoring(mut self, ignore_label: Option<i64>) -> Self {
        if ignore_label.is_some() {
            let record = self.record.take().unwrap_or_default();
            self.record = Some(confseg::pipeline::Record { ignore_label, ..record });
        }
        self
    }

    /// The record of two states joined: states of files read differently
    /// (probabilities and logits, say) do not mix.
    fn joined(
        a: &Option<confseg::pipeline::Record>,
        b: &Option<confseg::pipeline::Record>,
    ) -> PyResult<Option<confseg::pipeline::Record>> {
        match (a, b) {
            (Some(x), Some(y))
                if (x.input, x.class_axis, x.ignore_label) != (y.input, y.class_axis, y.ignore_label) =>
            {
                Err(value_error(
                    "these statistics come from inputs read differently (probabilities and logits, another \
                     class axis or ignore label); calibrate them separately",
                ))
            }
            (Some(x), _) => Ok(Some(x.clone())),
            (None, y) => Ok(y.clone()),
        }
    }
}

#[pymethods]
impl PyCalibration {
    #[new]
    fn new() -> Self {
        PyCalibration::of(confseg::Calibration::new())
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
        let (theirs, their_record, their_strata) =
            (other.cal.clone(), other.record.clone(), other.strata.clone());
        drop(other);
        let record = Self::joined(&slf.borrow().record, &their_record)?;
        let strata = {
            let me = slf.borrow();
            join_strata(&me.strata, &their_strata, theirs.len(), me.cal.len())?
        };
        let mut me = slf.borrow_mut();
        me.cal.merge(&theirs).py()?;
        me.record = record;
        me.strata = strata;
        drop(me);
        Ok(slf)
    }

    /// A new state with both states' statistics.
    fn __add__(&self, other: PyRef<'_, PyCalibration>) -> PyResult<PyCalibration> {
        let record = Self::joined(&self.record, &other.record)?;
        let strata = join_strata(&self.strata, &other.strata, other.cal.len(), self.cal.len())?;
        let mut cal = self.cal.clone();
        cal.merge(&other.cal).py()?;
        Ok(PyCalibration { cal, record, strata })
    }

    /// One state from many (e.g. the results of parallel tasks).
    #[staticmethod]
    fn concat(parts: &Bound<'_, PyAny>) -> PyResult<PyCalibration> {
        let mut cal = confseg::Calibration::new();
        let (mut record, mut strata) = (None, None);
        for p in parts.try_iter()? {
            let p = p?;
            let p = p.cast::<PyCalibration>()?.borrow();
            record = Self::joined(&record, &p.record)?;
            strata = join_strata(&strata, &p.strata, p.cal.len(), cal.len())?;
            cal.merge(&p.cal).py()?;
        }
        Ok(PyCalibration { cal, record, strata })
    }

    /// A state holding only the images at ``indices`` (e.g. one split).
    fn select(&self, indices: Vec<usize>) -> PyResult<PyCalibration> {
        let cal = self.cal.select(&indices).py()?;
        let strata = self.strata.as_ref().map(|st| Stratified {
            by: st.by.clone(),
            labels: indices.iter().filter_map(|&i| st.labels.get(i).cloned()).collect(),
        });
        Ok(PyCalibration { cal, record: self.record.clone(), strata })
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
        Ok(PyCalibration::of(cal))
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
