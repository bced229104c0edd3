//! The library's errors as Python exceptions: `OSError` (or its
//! `FileNotFoundError` / `PermissionError` / `IsADirectoryError` subclasses)
//! for files that cannot be read or written or do not hold what was
//! expected, `ValueError` for everything else; the message is the library's
//! one line, and the exception's `kind` attribute names the library's
//! error variant (`"NanScore"`, `"ShapeMismatch"`, ...).

use std::io::ErrorKind;

use confseg::error::FileProblem;
use confseg::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyKeyboardInterrupt, PyMemoryError, PyOSError,
    PyPermissionError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;

/// The variant name of a library error (`"NanScore"`, ...), from its
/// derived `Debug` form.
fn variant(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug.split([' ', '{', '(']).next().unwrap_or("Error").to_owned()
}

/// A library error as a Python exception with the library's message.
pub fn to_py(e: Error) -> PyErr {
    if e == Error::Interrupted {
        // the exception of the signal handler that interrupted the call
        return crate::interrupt::take_pending()
            .unwrap_or_else(|| PyKeyboardInterrupt::new_err("interrupted"));
    }
    let message = e.to_string();
    let kind = variant(&e);
    let err = match &e {
        Error::File { problem: FileProblem::Io { kind, .. }, .. } => match kind {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
            _ => PyOSError::new_err(message),
        },
        Error::NoSubjects { .. } => PyFileNotFoundError::new_err(message),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(message),
        Error::File { .. } | Error::Manifest { .. } => PyOSError::new_err(message),
        _ => PyValueError::new_err(message),
    };
    Python::attach(|py| {
        let value = err.value(py);
        // Attributes of a fresh exception instance: setting them cannot
        // fail in practice; the exception is raised either way.
        let _ = value.setattr("kind", kind);
    });
    err
}

/// `map_err` shorthand.
pub trait IntoPy<T> {
    /// The result with a library error turned into a Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for confseg::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// A `ValueError` with this message.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// A `TypeError` with this message.
pub fn type_error(message: impl Into<String>) -> PyErr {
    PyTypeError::new_err(message.into())
}
