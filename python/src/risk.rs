//! `RiskCalibration` and `Calibrator.risk_statistics` (risk control of
//! the missed fraction or of the inner set's false share, METHOD.md
//! §4.3, §4.5).
//!
//! The library's `RiskCalibration` computes everything (the scores a risk
//! keeps by `Calibrator::risk_scores`, the threshold, the missed fraction,
//! the provenance checks of `merge` and `fit_risk_control`, its JSON
//! form). The scores of borrowed images are computed here in parallel
//! (as `Calibrator.statistics` does), then entered into the library's
//! state through `Calibrator::observe_risk` with transforms that pass them
//! through under the calibrator's names, so that the provenance is the
//! library's own.

use confseg::calibrate::RiskCalibration;
use confseg::float::Float;
use confseg::image::AsImage;
use confseg::mask::MaskValue;
use confseg::risk::Risk;
use confseg::{Error, Image, Spacing, Transform};
use ndarray::{ArrayD, ArrayRef, ArrayViewD, Axis, CowArray, Dimension, IxDyn};
use pyo3::prelude::*;
use pyo3::types::PyType;
use rayon::prelude::*;

use crate::args::Cal;
use crate::errors::{value_error, IntoPy};
use crate::json_loads;
use crate::layout::{Layout, SpacingArg};

/// What a state for one risk keeps of one image (the scores of its object
/// and background voxels on the risk's side), and whether the image
/// carried its own spacing.
pub struct Objects {
    scores: Vec<f64>,
    background: Vec<f64>,
    ndim: usize,
    own: bool,
}

fn objects_of<I: AsImage + ?Sized, M: MaskValue>(
    c: &Cal,
    risk: Risk,
    image: &I,
    mask: &ArrayRef<M, I::Dim>,
) -> confseg::Result<Objects> {
    let (mut scores, mut background) = c.risk_scores(risk, image, mask)?;
    // sorted here, in parallel (the library's state then finds them in order)
    scores.sort_unstable_by(f64::total_cmp);
    background.sort_unstable_by(f64::total_cmp);
    Ok(Objects { scores, background, ndim: image.scores().ndim(), own: image.spacing().is_some() })
}

fn objects_one<A: Float, M: MaskValue>(
    c: &Cal,
    risk: Risk,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    sp: Option<Spacing>,
) -> confseg::Result<Objects> {
    match sp {
        None => objects_of(c, risk, &s, &m),
        Some(x) => objects_of(c, risk, &Image::new(s, x)?, &m),
    }
}

/// What a state for `risk` keeps of one image or a stack, borrowed, in parallel.
pub fn risk_views<A: Float, M: MaskValue>(
    c: &Cal,
    risk: Risk,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    layout: Layout,
    sp: &SpacingArg,
) -> confseg::Result<Vec<Objects>> {
    match layout {
        Layout::Single => Ok(vec![objects_one(c, risk, s, m, sp.for_image(0, 1)?)?]),
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
                    objects_one(c, risk, s.index_axis(Axis(0), i), m.index_axis(Axis(0), i), x)
                })
                .collect();
            out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
        }
    }
}

/// What a state for `risk` keeps of a list of images (any shapes), borrowed, in parallel.
pub fn risk_lists<A: Float, M: MaskValue>(
    c: &Cal,
    risk: Risk,
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
        .map(|i| objects_one(c, risk, s[i].view(), m[i].view(), sp.for_image(i, n)?))
        .collect();
    out.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_image(i))).collect()
}

/// A transform that passes scores through under a recorded name: replays
/// stored scores into the library's state with its provenance.
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

/// The library's state for `risk` holding `images`, recorded as computed
/// by a calibrator with transforms named `inner`, `outer` and default
/// `spacing` (each image replayed through `Calibrator::observe_risk` as
/// its object voxels, then its background voxels).
fn replay(
    risk: Risk,
    inner: &str,
    outer: &str,
    spacing: &Spacing,
    images: &[Objects],
) -> confseg::Result<RiskCalibration> {
    let c =
        confseg::Calibrator::new(Replay(inner.into()), Replay(outer.into())).with_spacing(spacing.clone());
    let mut state = RiskCalibration::for_risk(risk);
    for o in images {
        let (k, b) = (o.scores.len(), o.background.len());
        let mut shape = vec![1usize; o.ndim.max(1)];
        shape[0] = (k + b).max(1);
        let values = if k + b == 0 { vec![0.0] } else { [&o.scores[..], &o.background[..]].concat() };
        let s = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| Error::InvalidParameter {
            name: "object scores",
            value: k.to_string(),
            reason: e.to_string(),
        })?;
        // the object voxels first; a voxel of an image without any stands for its (empty) object
        let m = ArrayD::from_shape_fn(IxDyn(&shape), |i| u8::from(i[0] < k));
        if o.own {
            let image = Image::new(s.view(), Spacing::new(vec![1.0; shape.len()])?)?;
            c.observe_risk(&mut state, &image, &m)?;
        } else {
            c.observe_risk(&mut state, &s, &m)?;
        }
    }
    Ok(state)
}

/// The per-voxel state of risk control (METHOD.md §4.3, §4.5): for every
/// calibration image, the scores its ``risk`` needs — for ``"recall"`` the
/// outer scores ``f_O(v)`` of its object voxels (8 bytes per object voxel),
/// for ``"precision"`` the inner scores ``f_I(v)`` of all its voxels — and
/// what they were computed with (``provenance``).
///
/// Built by ``Calibrator.risk_statistics(scores, masks, risk=...)``;
/// ``Calibrator.fit(risk_cal, alpha, mode="risk-control", ...)`` turns it
/// into ``ConfidenceSets``. For recall without ``delta``, the outer set
/// ``{f_O >= t}`` misses, *in expectation*, at most an ``alpha`` share of
/// the object: ``E[|truth \ outer| / |truth|] <= alpha``; with ``delta``,
/// that holds given the calibration set, with probability ``1 - delta``.
/// That is a weaker promise than the conformal modes' (it bounds a
/// proportion, not the probability of missing any of the object).
///
/// ``RiskCalibration(risk="recall")`` is empty; ``merge`` concatenates states computed
/// elsewhere (same transforms, default spacing and dimensionality, else
/// ``ValueError``). Pickles and round-trips through JSON.
#[pyclass(module = "confseg", name = "RiskCalibration")]
#[derive(Clone)]
pub struct PyRiskCalibration {
    pub risk: RiskCalibration,
}

impl PyRiskCalibration {
    /// The state for `risk` of images computed by the calibrator `c`.
    pub fn from_objects(c: &Cal, risk: Risk, images: Vec<Objects>) -> confseg::Result<Self> {
        let (inner, outer) = (c.inner_transform().describe(), c.outer_transform().describe());
        let risk = replay(risk, &inner, &outer, c.spacing(), &images)?;
        Ok(PyRiskCalibration { risk })
    }
}

#[pymethods]
impl PyRiskCalibration {
    #[new]
    #[pyo3(signature = (risk="recall"))]
    fn new(risk: &str) -> PyResult<Self> {
        Ok(PyRiskCalibration { risk: RiskCalibration::for_risk(risk.parse().py()?) })
    }

    /// ``"recall"`` or ``"precision"``: the risk these scores are for.
    #[getter(risk)]
    fn risk_name(&self) -> &'static str {
        self.risk.risk().name()
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

    /// The conformal risk control threshold ``t`` at level ``alpha``
    /// (recall, in expectation): the largest ``t`` with
    /// ``n/(n+1) * mean_i FNR_i(t) + 1/(n+1) <= alpha``, where
    /// ``FNR_i(t)`` is the share of image ``i``'s object with ``f_O < t``
    /// (0 for an empty mask); ``-inf`` if none (too few images),
    /// ``+inf`` if every ``t`` qualifies. The outer set is ``{f_O >= t}``.
    /// (The other methods: ``Calibrator.fit``.)
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
        let mut out = PyRiskCalibration { risk: RiskCalibration::new() };
        for p in parts.try_iter()? {
            let p = p?;
            let p = p.cast::<PyRiskCalibration>()?.borrow();
            out.risk.merge(&p.risk).py()?;
        }
        Ok(out)
    }

    /// The state as JSON (the library's form): ``{"risk", "objects": [[the
    /// score of each object voxel, ascending], ...], "backgrounds"
    /// (precision), "provenance", "per_image_spacing"}`` (infinite scores as
    /// ``"inf"`` / ``"-inf"``).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.risk).map_err(|e| value_error(e.to_string()))
    }

    /// A state from its JSON (``to_json``'s), checked by the library.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<PyRiskCalibration> {
        let risk = serde_json::from_str(text).map_err(|e| {
            value_error(format!(
                "not a valid confseg risk calibration state: {}",
                crate::escaped(&e.to_string())
            ))
        })?;
        Ok(PyRiskCalibration { risk })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyRiskCalibration>().is_ok_and(|o| o.borrow().risk == self.risk)
    }

    fn __repr__(&self) -> String {
        match self.risk.provenance() {
            Some(p) => {
                format!("RiskCalibration(risk={:?}, n={}, {p})", self.risk.risk().name(), self.risk.len())
            }
            None => format!("RiskCalibration(risk={:?}, n={})", self.risk.risk().name(), self.risk.len()),
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.borrow().to_json()?,)))
    }
}
