//! `GroupedSets`: sets fitted per group (group-conditional calibration).

use confseg::groups::{Group, GroupedSets, SmallGroups};
use confseg::pipeline::{Fitted, Record};
use confseg::ScoreTransform;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};

use crate::errors::{type_error, IntoPy};
use crate::sets::PyConfidenceSets;

/// The library's sets per group with the built-in transforms.
pub type LibGrouped = GroupedSets<ScoreTransform, ScoreTransform>;

/// One group label from Python: an ``int`` (or NumPy integer) or a ``str``.
pub fn group_arg(g: &Bound<'_, PyAny>, what: &str) -> PyResult<Group> {
    if g.is_instance_of::<pyo3::types::PyBool>() {
        return Err(type_error(format!("{what} is a bool: a group label is an int or a str")));
    }
    if let Ok(id) = g.extract::<i64>() {
        return Ok(Group::Id(id));
    }
    if let Ok(name) = g.extract::<String>() {
        return name.parse().py();
    }
    let shown = g.repr().map_or_else(|_| "?".to_owned(), |r| crate::one_line(&r.to_string()));
    Err(type_error(format!("{what} = {shown} is not a group label (an int or a str)")))
}

/// One group label per image from a sequence (list, tuple, 1-D NumPy array).
pub fn groups_arg(groups: &Bound<'_, PyAny>) -> PyResult<Vec<Group>> {
    if groups.is_instance_of::<pyo3::types::PyString>() {
        return Err(type_error("groups must be a sequence of labels, one per image, not a str"));
    }
    let n = groups.len().map_err(|_| type_error("groups must be a sequence of labels, one per image"))?;
    let mut out = Vec::with_capacity(n.min(confseg::io::cohort::MAX_SUBJECTS));
    for (i, g) in groups.try_iter()?.enumerate() {
        out.push(group_arg(&g?, &format!("groups[{i}]"))?);
    }
    Ok(out)
}

/// A group label as a Python object (``int`` or ``str``).
fn group_py<'py>(py: Python<'py>, g: &Group) -> PyResult<Bound<'py, PyAny>> {
    Ok(match g {
        Group::Id(id) => id.into_pyobject(py)?.into_any(),
        Group::Name(n) => n.into_pyobject(py)?.into_any(),
    })
}

/// Sets fitted per group by ``Calibrator.fit(..., groups=...)``: for every
/// group ``g`` with enough images, ``P(inner ⊆ truth ⊆ outer | group g) >=
/// 1 - alpha``. A group with too few images has infinite thresholds (empty
/// inner, whole outer sets), or with ``pool_small_groups=True`` shares one
/// fit with the other small groups (its guarantee is then marginal over
/// them). ``sets(g)`` is a group's ``ConfidenceSets``; ``predict(scores,
/// group)`` uses its thresholds; an unknown group is a ``ValueError``
/// naming the known groups. ``to_json`` writes the file ``confseg
/// calibrate --groups`` writes.
#[pyclass(module = "confseg", name = "GroupedSets", frozen)]
pub struct PyGroupedSets {
    pub sets: LibGrouped,
    pub record: Record,
}

impl PyGroupedSets {
    pub fn new(sets: LibGrouped) -> Self {
        PyGroupedSets { sets, record: Record::default() }
    }

    fn fitted(&self) -> Fitted<LibGrouped> {
        Fitted::new(self.sets.clone(), self.record.clone())
    }
}

#[pymethods]
impl PyGroupedSets {
    /// The groups, sorted (integers before names).
    #[getter]
    fn groups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self.sets.sizes().iter().map(|(g, _)| group_py(py, g)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// ``{group: number of calibration images}``.
    #[getter]
    fn sizes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (g, n) in self.sets.sizes() {
            d.set_item(group_py(py, &g)?, n)?;
        }
        Ok(d)
    }

    /// ``{group: {"inner": lambda_I, "outer": lambda_O}}`` (pooled groups
    /// share the pooled fit's).
    #[getter]
    fn thresholds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (g, _) in self.sets.sizes() {
            let s = self.sets.sets(&g).py()?;
            let t = PyDict::new(py);
            t.set_item("inner", s.thresholds().inner.value())?;
            t.set_item("outer", s.thresholds().outer.value())?;
            d.set_item(group_py(py, &g)?, t)?;
        }
        Ok(d)
    }

    /// The groups that share the pooled fit (empty without pooling).
    #[getter]
    fn pooled<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .sets
            .pooled()
            .map(|p| p.groups.iter().map(|(g, _)| group_py(py, g)).collect::<PyResult<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        PyList::new(py, items)
    }

    /// ``"infinite"`` or ``"pool"``: what the fit did with small groups.
    #[getter]
    fn small_groups(&self) -> String {
        self.sets.small_groups().to_string()
    }

    /// What the sets promise, per group.
    #[getter]
    fn guarantee(&self) -> String {
        self.sets.guarantee_text()
    }

    /// The strata of the predictions the groups are (``"predicted-volume=500,5000"``,
    /// ``"max-score=0.99"``), or ``None`` for groups given as labels.
    #[getter]
    fn strata(&self) -> Option<String> {
        self.sets.strata().map(|s| s.strata.to_string())
    }

    /// The stratum of one image (its scores, after any class axis), as
    /// the calibration computed it: for sets fitted per stratum.
    /// ``spacing``: the image's own (for mm3 strata; default: the
    /// calibration's default spacing).
    #[pyo3(signature = (scores, spacing=None))]
    fn stratum<'py>(
        &self,
        py: Python<'py>,
        scores: &Bound<'py, PyAny>,
        spacing: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(st) = self.sets.strata() else {
            return Err(crate::errors::value_error(
                "these sets were fitted per group label, not per stratum: give the group",
            ));
        };
        let spacing = match spacing {
            Some(_) => crate::layout::one_spacing(spacing)?,
            None => {
                self.sets.fits().next().map(|f| f.spacing().clone()).unwrap_or_else(confseg::Spacing::unit)
            }
        };
        let (s, _) = crate::arrays::scores(scores, "scores")?;
        let g = crate::with_scores!(&s, sv => st.strata.stratum(&sv, st.mask_threshold, &spacing)).py()?;
        group_py(py, &g)
    }

    /// The ``ConfidenceSets`` of one group (the pooled fit for a pooled group).
    fn sets(&self, group: &Bound<'_, PyAny>) -> PyResult<PyConfidenceSets> {
        let g = group_arg(group, "group")?;
        Ok(PyConfidenceSets::new(self.sets.sets(&g).py()?.clone()))
    }

    /// ``(inner, outer)`` of one image or a stack of images of one group,
    /// with that group's thresholds (as ``ConfidenceSets.predict``). For
    /// sets fitted per stratum, ``group=None`` recomputes one image's
    /// stratum (``stratum``).
    #[pyo3(signature = (scores, group=None, spacing=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        scores: &Bound<'py, PyAny>,
        group: Option<&Bound<'py, PyAny>>,
        spacing: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let group = match group {
            Some(g) => g.clone(),
            None if self.sets.strata().is_some() => self.stratum(py, scores, spacing)?,
            None => {
                return Err(crate::errors::value_error(
                    "these sets were fitted per group: give the image's group",
                ))
            }
        };
        let sets = Bound::new(py, self.sets(&group)?)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("spacing", spacing)?;
        sets.call_method("predict", (scores,), Some(&kwargs))
    }

    /// The JSON of the calibration file (as ``confseg calibrate --groups`` writes it).
    fn to_json(&self) -> PyResult<String> {
        self.fitted().to_json().py()
    }

    /// Sets per group from the JSON of a calibration file; a file whose
    /// parts disagree is a ``ValueError``.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        let Fitted { sets, record, .. } = Fitted::<LibGrouped>::parse(text).py()?;
        Ok(PyGroupedSets { sets, record })
    }

    /// Read a calibration file per group (the CLI's or ``save``'s).
    #[classmethod]
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let Fitted { sets, record, .. } = py.detach(|| Fitted::<LibGrouped>::read(&path)).py()?;
        Ok(PyGroupedSets { sets, record })
    }

    /// Write the calibration file atomically.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let fitted = self.fitted();
        py.detach(|| fitted.write(&path)).py()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyGroupedSets>()
            .is_ok_and(|o| o.get().sets == self.sets && o.get().record == self.record)
    }

    fn __repr__(&self) -> String {
        let sizes: Vec<String> = self.sets.sizes().iter().map(|(g, n)| format!("{g}: {n}")).collect();
        format!("GroupedSets(sizes={{{}}}, small_groups={:?})", sizes.join(", "), self.small_groups())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.get().to_json()?,)))
    }
}

/// `SmallGroups` from `pool_small_groups`.
pub fn small_groups(pool: bool) -> SmallGroups {
    if pool {
        SmallGroups::Pool
    } else {
        SmallGroups::Infinite
    }
}
