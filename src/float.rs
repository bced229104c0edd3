//! The one float trait that bundles the bounds the crate needs.

use std::fmt::{Debug, Display};

/// Scalar type of score images: implemented for `f32` and `f64`.
///
/// Bundles the `num-traits` bounds used throughout the crate so that
/// signatures stay short (`A: Float`).
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// The NumPy name of the type (`"float32"`, `"float64"`).
    const NAME: &'static str;
    /// Lossless widening to `f64` (exact for `f32` and `f64`).
    fn to_f64_lossless(self) -> f64;
    /// Conversion from `f64` (rounds to nearest for `f32`; infinities are kept).
    fn from_f64_lossy(x: f64) -> Self;
}

impl Float for f32 {
    const NAME: &'static str = "float32";
    #[inline]
    fn to_f64_lossless(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64_lossy(x: f64) -> Self {
        x as f32
    }
}

impl Float for f64 {
    const NAME: &'static str = "float64";
    #[inline]
    fn to_f64_lossless(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64_lossy(x: f64) -> Self {
        x
    }
}
