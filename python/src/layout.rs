//! How an argument is read: one image, a batch-first stack, or a list of
//! images; and spacings given per call.

use confseg::{Error, Spacing};
use pyo3::prelude::*;

use crate::errors::{type_error, IntoPy};

/// One image or a batch-first stack `(N, spatial...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Single,
    Stack,
}

/// The layout of an `ndim`-axis array for images of dimensionality `d`:
/// `d` axes are one image, `d + 1` a stack. With `d` unknown, arrays of 1
/// or 2 axes are one image and arrays of 3 or more a stack.
pub fn layout(ndim: usize, d: Option<usize>) -> PyResult<Layout> {
    match d {
        Some(d) if ndim == d => Ok(Layout::Single),
        Some(d) if ndim == d + 1 => Ok(Layout::Stack),
        Some(d) => Err(Error::DimensionMismatch { expected: d, found: ndim, image: None }).py(),
        None if ndim >= 3 => Ok(Layout::Stack),
        None => Ok(Layout::Single),
    }
}

/// A `spacing` argument given with the images.
#[derive(Debug, Clone, PartialEq)]
pub enum SpacingArg {
    /// None: the calibrator's (or the fitted sets') default spacing.
    Default,
    /// One spacing, for every image given.
    One(Spacing),
    /// One spacing per image.
    PerImage(Vec<Spacing>),
}

impl SpacingArg {
    /// The image dimensionality this spacing implies.
    pub fn ndim(&self) -> Option<usize> {
        match self {
            SpacingArg::Default => None,
            SpacingArg::One(s) => s.as_slice().map(<[f64]>::len),
            SpacingArg::PerImage(v) => v.first().and_then(|s| s.as_slice()).map(<[f64]>::len),
        }
    }

    /// The spacing of image `i` of `n`, if one was given.
    pub fn for_image(&self, i: usize, n: usize) -> confseg::Result<Option<Spacing>> {
        match self {
            SpacingArg::Default => Ok(None),
            SpacingArg::One(s) => Ok(Some(s.clone())),
            SpacingArg::PerImage(v) if v.len() == n => Ok(Some(v[i].clone())),
            SpacingArg::PerImage(v) => Err(Error::InvalidParameter {
                name: "spacing",
                value: format!("{} spacings", v.len()),
                reason: format!("one per image is needed, and there are {n} images"),
            }),
        }
    }
}

/// Parse `None`, a sequence of positive numbers (one per axis), or a
/// sequence of such sequences (one per image).
pub fn spacing_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<SpacingArg> {
    let Some(o) = obj.filter(|o| !o.is_none()) else { return Ok(SpacingArg::Default) };
    if let Ok(v) = o.extract::<Vec<f64>>() {
        return Ok(SpacingArg::One(Spacing::new(v).py()?));
    }
    if let Ok(v) = o.extract::<Vec<Vec<f64>>>() {
        let spacings = v.into_iter().map(|s| Spacing::new(s).py()).collect::<PyResult<Vec<_>>>()?;
        return Ok(SpacingArg::PerImage(spacings));
    }
    Err(type_error(
        "spacing must be a sequence of positive numbers (one per image axis), or a sequence of such \
         sequences (one per image)",
    ))
}

/// Parse an optional spacing for a calibrator or a file: `None` or one
/// sequence of numbers.
pub fn one_spacing(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Spacing> {
    match spacing_arg(obj)? {
        SpacingArg::Default => Ok(Spacing::unit()),
        SpacingArg::One(s) => Ok(s),
        SpacingArg::PerImage(_) => {
            Err(type_error("spacing must be one sequence of numbers, one per image axis"))
        }
    }
}

/// A spacing as Python sees it: a tuple of numbers, or `None` for unit spacing.
pub fn spacing_tuple(s: &Spacing) -> Option<Vec<f64>> {
    s.as_slice().map(<[f64]>::to_vec)
}
