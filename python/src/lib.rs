//! Python bindings of confseg (`import confseg`): a thin shell over the
//! library's code paths, like the command line. Arrays come in as NumPy
//! views (no copies where the dtype and layout allow) and go out as NumPy
//! arrays that own the library's buffers; the GIL is released while the
//! library computes.

mod args;
mod arrays;
mod calibrate;
mod calibration;
mod errors;
mod functions;
mod groups;
mod interrupt;
mod io;
mod layout;
mod risk;
mod sets;
mod structures;

use pyo3::prelude::*;

/// `json.loads(text)`.
pub(crate) fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A user-given string safe to quote in a one-line message.
pub(crate) fn one_line(s: &str) -> String {
    let t: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if t.chars().count() > 80 {
        t.chars().take(77).collect::<String>() + "..."
    } else {
        t
    }
}

/// A library or JSON message with its control characters escaped (one
/// line), not shortened.
pub(crate) fn escaped(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_debug().collect() } else { vec![c] }).collect()
}

/// `(a, b, c)` as Python prints a tuple of floats.
pub(crate) fn tuple_repr(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// The native part of the `confseg` package.
#[pymodule]
fn _confseg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<calibrate::PyCalibrator>()?;
    m.add_class::<calibration::PyCalibration>()?;
    m.add_class::<risk::PyRiskCalibration>()?;
    m.add_class::<sets::PyConfidenceSets>()?;
    m.add_class::<groups::PyGroupedSets>()?;
    m.add_class::<structures::PyStructureCalibrator>()?;
    m.add_class::<structures::PyStructureCalibration>()?;
    m.add_class::<structures::PyStructureSets>()?;
    m.add_class::<io::PyNpyStack>()?;
    m.add_class::<io::PyCohort>()?;
    m.add_function(wrap_pyfunction!(functions::transform, m)?)?;
    m.add_function(wrap_pyfunction!(functions::two_class_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(functions::synthetic, m)?)?;
    m.add_function(wrap_pyfunction!(functions::validate, m)?)?;
    m.add_function(wrap_pyfunction!(functions::set_measures, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_npy, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_npy_mask, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_npy_stack, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_nifti, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_nifti_mask, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_cohort, m)?)?;
    m.add_function(wrap_pyfunction!(io::write_nifti, m)?)?;
    m.add_function(wrap_pyfunction!(io::write_nifti_mask, m)?)?;
    m.add_function(wrap_pyfunction!(io::write_nifti_label_map, m)?)?;
    Ok(())
}
