//! `RiskCalibration` and `Calibrator.risk_statistics` (conformal risk
//! control of the missed fraction, METHOD.md §4.3).
//!
//! The library's `RiskCalibration` computes everything (object scores by
//! `Calibrator::object_scores`, the threshold, the missed fraction, the
//! provenance checks of `merge` and `fit_risk_control`, its JSON form).
//! The object scores of borrowed images are computed here in parallel
//! (as `Calibrator.statistics` does), then entered into the library's
//! state through `Calibrator::observe_risk` with transforms that pass them
//! through under the calibrator's names, so that the provenance is the
//! library's own.

use confseg::{AsImage, Error, Float, Image, MaskValue, RiskCalibration, Spacing, Transform};
use ndarray::{ArrayD, ArrayRef, ArrayViewD, Axis, CowArray, Dimension, IxDyn};
use pyo3::prelude::*;
use pyo3::types::PyType;
use rayon::prelude::*;

use crate::calibrate::Cal;
use crate::errors::{value_error, IntoPy};
use crate::layout::{Layout, SpacingArg};
use crate::{json_loads, one_line};

/// One image's object scores `f_O(v)`, `v` in the mask, and whether the
/// image carried its own spacing.
pub struct Objects {
    scores: Vec<f64>,
    ndim: usize,
    own: bool,
}

fn objects_of<I: AsImage + ?Sized, M: MaskValue>(
    c: &Cal,
    image: &I,
    mask: &ArrayRef<M, I::Dim>,
) -> confseg::Result<Objects> {
    Ok(Objects {
        scores: c.object_scores(image, mask)?,
        ndim: image.scores().ndim(),
        own: image.spacing().is_some(),
    })
}

fn objects_one<A: Float, M: MaskValue>(
    c: &Cal,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    sp: Option<Spacing>,
) -> confseg::Result<Objects> {
    match sp {
        None => objects_of(c, &s, &m),
        Some(x) => objects_of(c, &Image::new(s, x)?, &m),
    }
}

/// Object scores of one image or a stack, borrowed, in parallel.
pub fn risk_views<A: Float, M: MaskValue>(
    c: &Cal,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    layout: Layout,
    sp: &SpacingArg,
) -> confseg::Result<Vec<Objects>> {
    match layout {
        Layout::Single => Ok(vec![objects_one(c, s, m, sp.for_image(0, 1)?)?]),
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
            let out: Vec<_> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let x = sp.for_image(i, n)?;
                    objects_one(c, s.index_axis(Axis(0), i), m.index_axis(Axis(0), i), x)
                })
                .collect();
            out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
        }
    }
}

/// Object scores of a list of images (any shapes), borrowed, in parallel.
pub fn risk_lists<A: Float, M: MaskValue>(
    c: &Cal,
    s: &[ArrayViewD<'_, A>],
    m: &[ArrayViewD<'_, M>],
    sp: &SpacingArg,
) -> confseg::Result<Vec<Objects>> {
    if s.len() != m.len() {
        return Err(Error::InvalidParameter {
            name: "masks",
            value: format!("{} masks", m.len()),
            reason: format!("one mask per score image is needed, and there are {} score images", s.len()),
        });
    }
    let n = s.len();
    let out: Vec<_> = (0..n)
        .into_par_iter()
        .map(|i| objects_one(c, s[i].view(), m[i].view(), sp.for_image(i, n)?))
        .collect();
    out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
}

/// A transform that passes scores through under a recorded name: replays
/// stored object scores into the library's state with its provenance.
#[derive(Debug, Clone, PartialEq)]
struct Replay(String);

impl Transform for Replay {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        _spacing: &Spacing,
    ) -> confseg::Result<CowArray<'a, A, D>> {
        Ok(CowArray::from(scores.view()))
    }

    fn describe(&self) -> String {
        self.0.clone()
    }
}

/// The library's state holding `images`, recorded as computed by a
/// calibrator with transforms named `inner`, `outer` and default `spacing`
/// (each image replayed through `Calibrator::observe_risk`).
fn replay(
    inner: &str,
    outer: &str,
    spacing: &Spacing,
    images: &[Objects],
) -> confseg::Result<RiskCalibration> {
    let c =
        confseg::Calibrator::new(Replay(inner.into()), Replay(outer.into())).with_spacing(spacing.clone());
    let mut risk = RiskCalibration::new();
    for o in images {
        let k = o.scores.len();
        let mut shape = vec![1usize; o.ndim.max(1)];
        shape[0] = k.max(1);
        let values = if k == 0 { vec![0.0] } else { o.scores.clone() };
        let s = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| Error::InvalidParameter {
            name: "object scores",
            value: k.to_string(),
            reason: e.to_string(),
        })?;
        let m = ArrayD::from_elem(IxDyn(&shape), u8::from(k > 0));
        if o.own {
            let image = Image::new(s.view(), Spacing::new(vec![1.0; shape.len()])?)?;
            c.observe_risk(&mut risk, &image, &m)?;
        } else {
            c.observe_risk(&mut risk, &s, &m)?;
        }
    }
    Ok(risk)
}

/// The per-voxel state of conformal risk control of the missed fraction
/// (METHOD.md §4.3): for every calibration image, the outer scores
/// ``f_O(v)`` of its object voxels (8 bytes per object voxel, not two
/// numbers per image), and what they were computed with (``provenance``).
///
/// Built by ``Calibrator.risk_statistics``; ``Calibrator.fit(risk_cal,
/// alpha, mode="risk-control")`` turns it into ``ConfidenceSets`` whose
/// outer set ``{f_O >= t}`` misses, *in expectation*, at most an ``alpha``
/// share of the object: ``E[|truth \ outer| / |truth|] <= alpha``. That is
/// a weaker promise than the conformal modes' (it bounds a proportion, not
/// the probability of missing any of the object), and there is no inner set.
///
/// ``RiskCalibration()`` is empty; ``merge`` concatenates states computed
/// elsewhere (same transforms, default spacing and dimensionality, else
/// ``ValueError``). Pickles and round-trips through JSON.
#[pyclass(module = "confseg", name = "RiskCalibration")]
#[derive(Clone)]
pub struct PyRiskCalibration {
    pub risk: RiskCalibration,
}

impl PyRiskCalibration {
    /// The state of images computed by the calibrator `c`.
    pub fn from_objects(c: &Cal, images: Vec<Objects>) -> confseg::Result<Self> {
        let (inner, outer) = (c.inner_transform().describe(), c.outer_transform().describe());
        let risk = replay(&inner, &outer, c.spacing(), &images)?;
        Ok(PyRiskCalibration { risk })
    }
}

#[pymethods]
impl PyRiskCalibration {
    #[new]
    fn new() -> Self {
        PyRiskCalibration { risk: RiskCalibration::new() }
    }

    fn __len__(&self) -> usize {
        self.risk.len()
    }

    /// What the scores were computed with: a dict with ``inner``,
    /// ``outer``, ``combination``, ``spacing`` and ``ndim``, or ``None``.
    #[getter]
    fn provenance<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_string(&self.risk.provenance()).map_err(|e| value_error(e.to_string()))?;
        json_loads(py, &v)
    }

    /// Whether some image carried its own spacing.
    #[getter]
    fn per_image_spacing(&self) -> bool {
        self.risk.per_image_spacing()
    }

    /// The risk-controlling threshold ``t`` at level ``alpha``: the largest
    /// ``t`` with ``n/(n+1) * mean_i FNR_i(t) + 1/(n+1) <= alpha``, where
    /// ``FNR_i(t)`` is the share of image ``i``'s object with ``f_O < t``
    /// (0 for an empty mask); ``-inf`` if none (too few images),
    /// ``+inf`` if every ``t`` qualifies. The outer set is ``{f_O >= t}``.
    fn threshold(&self, alpha: f64) -> PyResult<f64> {
        self.risk.threshold(confseg::Alpha::new(alpha).py()?).py()
    }

    /// The mean missed fraction ``mean_i FNR_i(t)`` of the outer sets
    /// ``{f_O >= t}`` over the calibration images.
    fn missed_fraction(&self, t: f64) -> f64 {
        self.risk.missed_fraction(t)
    }

    /// Append another state's images (in place; returns ``self``).
    fn merge<'py>(slf: Bound<'py, Self>, other: PyRef<'_, PyRiskCalibration>) -> PyResult<Bound<'py, Self>> {
        let theirs = other.risk.clone();
        drop(other);
        slf.borrow_mut().risk.merge(&theirs).py()?;
        Ok(slf)
    }

    /// A new state with both states' images.
    fn __add__(&self, other: PyRef<'_, PyRiskCalibration>) -> PyResult<PyRiskCalibration> {
        let mut out = self.clone();
        out.risk.merge(&other.risk).py()?;
        Ok(out)
    }

    /// One state from many (e.g. the results of parallel tasks).
    #[staticmethod]
    fn concat(parts: &Bound<'_, PyAny>) -> PyResult<PyRiskCalibration> {
        let mut out = PyRiskCalibration::new();
        for p in parts.try_iter()? {
            let p = p?;
            let p = p.cast::<PyRiskCalibration>()?.borrow();
            out.risk.merge(&p.risk).py()?;
        }
        Ok(out)
    }

    /// The state as JSON (the library's form): ``{"objects": [[f_O of each
    /// object voxel, ascending], ...], "provenance", "per_image_spacing"}``
    /// (infinite scores as ``"inf"`` / ``"-inf"``).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.risk).map_err(|e| value_error(e.to_string()))
    }

    /// A state from its JSON (``to_json``'s), checked by the library.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<PyRiskCalibration> {
        let risk = serde_json::from_str(text).map_err(|e| {
            value_error(format!("not a valid confseg risk calibration state: {}", one_line(&e.to_string())))
        })?;
        Ok(PyRiskCalibration { risk })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyRiskCalibration>().is_ok_and(|o| o.borrow().risk == self.risk)
    }

    fn __repr__(&self) -> String {
        match self.risk.provenance() {
            Some(p) => format!("RiskCalibration(n={}, {p})", self.risk.len()),
            None => format!("RiskCalibration(n={})", self.risk.len()),
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.borrow().to_json()?,)))
    }
}
