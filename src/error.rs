//! The crate's error type.

use thiserror::Error;

/// Result alias with the crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with user input.
///
/// Variants carry the facts needed to find the problem: the image index (when
/// known) and the voxel index of a bad value, both shapes of a mismatch.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A miscoverage level outside the open interval (0, 1).
    #[error("{name} = {value} is outside (0, 1)")]
    InvalidAlpha {
        /// Which level (`"alpha"`, `"alpha_inner"`, ...).
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// Bonferroni levels whose sum exceeds the joint level.
    #[error("alpha_inner + alpha_outer = {inner} + {outer} exceeds the joint alpha {alpha}")]
    SplitExceedsAlpha {
        /// The joint level.
        alpha: f64,
        /// The inner level.
        inner: f64,
        /// The outer level.
        outer: f64,
    },
    /// A score image contains NaN.
    #[error("NaN in {what}{} at voxel {index:?}", image_suffix(*.image))]
    NanScore {
        /// Which input (`"scores"`, `"inner scores"`, ...).
        what: &'static str,
        /// Index of the image in the calibration or prediction stream, when known.
        image: Option<usize>,
        /// Multi-index of the first NaN voxel.
        index: Vec<usize>,
    },
    /// A mask value other than 0 or 1.
    #[error("mask{} holds {value} at voxel {index:?}; masks must be 0/1", image_suffix(*.image))]
    NonBinaryMask {
        /// Index of the image, when known.
        image: Option<usize>,
        /// Multi-index of the first offending voxel.
        index: Vec<usize>,
        /// The offending value.
        value: f64,
    },
    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch{}: {what} has shape {found:?}, expected {expected:?}", image_suffix(*.image))]
    ShapeMismatch {
        /// What was compared (`"mask vs scores"`, ...).
        what: &'static str,
        /// Index of the image, when known.
        image: Option<usize>,
        /// The reference shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// No calibration images were observed.
    #[error("no calibration data: observe at least one (scores, mask) pair before fitting")]
    NoCalibrationData,
    /// Voxel spacing that is not positive and finite, or has the wrong length.
    #[error("invalid voxel spacing {spacing:?} for a {ndim}-D image: {reason}")]
    InvalidSpacing {
        /// The spacing given.
        spacing: Vec<f64>,
        /// Dimension of the image it was applied to.
        ndim: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Any other parameter out of its domain.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

fn image_suffix(image: Option<usize>) -> String {
    image.map_or_else(String::new, |i| format!(" of image {i}"))
}

impl Error {
    /// Attach an image index to errors that describe one image (NaN, mask,
    /// shape); other variants are returned unchanged.
    #[must_use]
    pub fn in_image(mut self, i: usize) -> Self {
        match &mut self {
            Error::NanScore { image, .. }
            | Error::NonBinaryMask { image, .. }
            | Error::ShapeMismatch { image, .. } => *image = Some(i),
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_image_and_voxel() {
        let e = Error::NanScore { what: "scores", image: None, index: vec![3, 4] }.in_image(7);
        assert_eq!(e.to_string(), "NaN in scores of image 7 at voxel [3, 4]");
        let e = Error::ShapeMismatch {
            what: "mask vs scores",
            image: None,
            expected: vec![2, 3],
            found: vec![3, 2],
        };
        assert_eq!(e.to_string(), "shape mismatch: mask vs scores has shape [3, 2], expected [2, 3]");
    }
}
