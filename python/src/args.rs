//! Python arguments into the library's vocabulary: transform names,
//! tolerances, labels, precisions and levels become the library's values
//! (which parse and validate them), and the library's warnings become
//! Python `UserWarning`s.

use std::ffi::CString;

use confseg::io::{Labels, Precision};
use confseg::mask::Coding;
use confseg::tolerance::{Tolerance, Tolerances};
use confseg::{Levels, ScoreTransform};
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;

use crate::errors::{value_error, IntoPy};

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

/// How masks are read: the object's labels (`None`: 0/1 masks) and the
/// value of voxels to ignore (`ignore_label`), checked by the library.
pub fn coding_arg(labels: Option<Vec<i64>>, ignore_label: Option<i64>) -> PyResult<Coding> {
    Coding::new(labels_arg(labels)?, ignore_label).py()
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
