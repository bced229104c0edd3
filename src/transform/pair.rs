//! The two transforms of the method, `f_I` and `f_O`, with the default
//! voxel spacing they use for images that carry none: what a calibrator is
//! made of and what fitted sets keep.

use ndarray::{ArrayRef, CowArray, Dimension};

use super::{Spacing, Transform};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::image::{check_nan, check_nonempty};

/// `f_I`, `f_O` and the default spacing (for images without their own).
///
/// ```
/// use confseg::transform::Transforms;
/// use confseg::{Identity, Metric, SignedDistance, Spacing};
/// let t = Transforms::new(Identity, SignedDistance::new(Metric::Euclidean))
///     .with_spacing(Spacing::new(vec![1.0, 2.0])?);
/// assert!(t.uses_spacing());
/// assert_eq!(t.describe(), "identity / distance:euclidean");
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transforms<TI, TO> {
    inner: TI,
    outer: TO,
    spacing: Spacing,
}

impl<TI, TO> Transforms<TI, TO> {
    /// `f_I = inner`, `f_O = outer`, unit default spacing.
    pub fn new(inner: TI, outer: TO) -> Self {
        Transforms { inner, outer, spacing: Spacing::unit() }
    }

    /// The same transforms with this default spacing.
    #[must_use]
    pub fn with_spacing(mut self, spacing: Spacing) -> Self {
        self.spacing = spacing;
        self
    }

    /// The inner transform `f_I`.
    pub fn inner(&self) -> &TI {
        &self.inner
    }

    /// The outer transform `f_O`.
    pub fn outer(&self) -> &TO {
        &self.outer
    }

    /// The default voxel spacing (for images without their own).
    pub fn spacing(&self) -> &Spacing {
        &self.spacing
    }
}

/// Whether a transformed array is the score array itself, borrowed (the
/// fused kernel then checks the scores for NaN as it reads them).
pub(crate) fn borrows<A, D: Dimension>(transformed: &CowArray<'_, A, D>, scores: &ArrayRef<A, D>) -> bool {
    transformed.is_view() && std::ptr::eq(transformed.as_ptr(), scores.as_ptr())
}

impl<TI: Transform, TO: Transform> Transforms<TI, TO> {
    /// Whether either transform depends on the voxel spacing.
    pub fn uses_spacing(&self) -> bool {
        self.inner.uses_spacing() || self.outer.uses_spacing()
    }

    /// `"f_I / f_O"`, for messages.
    pub fn describe(&self) -> String {
        format!("{} / {}", self.inner.describe(), self.outer.describe())
    }

    /// `f_I(s)` and `f_O(s)` of one image, with the image's own spacing or
    /// the default. NaN in the input is an [`Error::NanScore`] (checked
    /// here unless a side borrows the scores, whose reader then checks
    /// them).
    pub(crate) fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        own: Option<&Spacing>,
    ) -> Result<(CowArray<'a, A, D>, CowArray<'a, A, D>)> {
        check_nonempty(scores.shape())?;
        let spacing = own.unwrap_or(&self.spacing);
        let fi = self.inner.apply(scores, spacing)?;
        let fo = self.outer.apply(scores, spacing)?;
        // A transform may hide a NaN of its input (e.g. by thresholding).
        // When one side borrows the scores, the kernel reads and checks
        // them anyway; otherwise check them here.
        if !borrows(&fi, scores) && !borrows(&fo, scores) {
            check_nan("scores", scores)?;
        }
        Ok((fi, fo))
    }

    /// Map a NaN found in transformed scores to its cause: the input (when
    /// that side borrows it) or the transform ([`Error::TransformNan`]).
    pub(crate) fn blame_nan<A, D: Dimension>(
        &self,
        e: Error,
        scores: &ArrayRef<A, D>,
        fi: &CowArray<'_, A, D>,
        fo: &CowArray<'_, A, D>,
    ) -> Error {
        match e {
            Error::NanScore { what, image, index } if what == "inner scores" || what == "outer scores" => {
                let (side, t, borrowed) = if what == "inner scores" {
                    ("inner", self.inner.describe(), borrows(fi, scores))
                } else {
                    ("outer", self.outer.describe(), borrows(fo, scores))
                };
                if borrowed {
                    Error::NanScore { what: "scores", image, index }
                } else {
                    Error::TransformNan { transform: t, side, image, index }
                }
            }
            other => other,
        }
    }
}

impl Transforms<super::ScoreTransform, super::ScoreTransform> {
    /// Warnings about scores given to these transforms (see
    /// [`ScoreTransform::warning_for`](super::ScoreTransform::warning_for)):
    /// probability maps thresholded at 0 by a mask-based transform. Cheap;
    /// meant for the first image of a cohort.
    pub fn warnings_for<A: Float, D: Dimension>(&self, scores: &ArrayRef<A, D>) -> Vec<crate::Warning> {
        let mut out: Vec<crate::Warning> =
            [&self.inner, &self.outer].iter().filter_map(|t| t.warning_for(scores)).collect();
        out.dedup();
        out
    }
}
