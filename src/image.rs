//! One image and where its voxels are: the score array, its physical voxel
//! [`Spacing`] and, for medical volumes, the [`Affine`] placing voxels in
//! scanner space ([`Geometry`]); and the checks every input array goes
//! through (shapes, NaN, 0/1 masks).
//!
//! Spatial transforms (distances, smoothing) depend on the spacing, and real
//! cohorts have a spacing per subject, e.g. (0.8, 0.8, 2.5) mm and
//! (0.7, 0.7, 3.0) mm. An [`Image`] carries its own geometry, so every
//! spatial operation uses the right one; a plain array has none and gets
//! the cohort default of the calibrator or of the fitted sets. Both are
//! accepted wherever a score image is: through [`AsImage`].
//!
//! ```
//! use confseg::{Image, Spacing};
//! use confseg::image::AsImage;
//! use ndarray::Array3;
//!
//! let scores = Array3::<f32>::zeros((4, 5, 6));
//! let img = Image::new(scores.view(), Spacing::new(vec![0.8, 0.8, 2.5])?)?;
//! assert_eq!(img.spacing().map(|s| s.as_slice()), Some(Some(&[0.8, 0.8, 2.5][..])));
//! assert!(scores.spacing().is_none()); // a plain array: the cohort default applies
//! // a spacing must have one entry per axis
//! assert!(Image::new(scores.view(), Spacing::new(vec![1.0, 1.0])?).is_err());
//! # Ok::<(), confseg::Error>(())
//! ```

use std::borrow::Cow;

use ndarray::{ArrayBase, ArrayRef, CowArray, Data, Dimension};

use crate::error::{Error, Result};
use crate::float::Float;

/// Physical size of a voxel along each axis.
///
/// The default is unit spacing on every axis, whatever the dimension.
///
/// ```
/// use confseg::Spacing;
/// let s = Spacing::new(vec![1.0, 1.0, 2.5])?;
/// assert_eq!(s.for_ndim(3)?.as_ref(), &[1.0, 1.0, 2.5]);
/// assert!(s.for_ndim(2).is_err());
/// assert_eq!(Spacing::unit().for_ndim(2)?.as_ref(), &[1.0, 1.0]);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "Option<Vec<f64>>", into = "Option<Vec<f64>>"))]
pub struct Spacing(Option<Vec<f64>>);

impl Spacing {
    /// Unit spacing on every axis.
    #[must_use]
    pub fn unit() -> Self {
        Spacing(None)
    }

    /// Explicit per-axis spacing.
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if empty or if any entry is not positive and finite.
    pub fn new(spacing: Vec<f64>) -> Result<Self> {
        let ndim = spacing.len();
        if spacing.is_empty() {
            return Err(Error::InvalidSpacing { spacing, ndim, reason: "no axes given" });
        }
        if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::InvalidSpacing {
                spacing,
                ndim,
                reason: "every entry must be positive and finite",
            });
        }
        Ok(Spacing(Some(spacing)))
    }

    /// Whether this is unit spacing.
    #[must_use]
    pub fn is_unit(&self) -> bool {
        match &self.0 {
            None => true,
            Some(v) => v.iter().all(|&s| s == 1.0),
        }
    }

    /// The explicit per-axis values, if any were given.
    #[must_use]
    pub fn as_slice(&self) -> Option<&[f64]> {
        self.0.as_deref()
    }

    /// Per-axis spacing for an image of dimension `ndim`.
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if explicit spacing has a different length.
    pub fn for_ndim(&self, ndim: usize) -> Result<Cow<'_, [f64]>> {
        match &self.0 {
            None => Ok(Cow::Owned(vec![1.0; ndim])),
            Some(v) if v.len() == ndim => Ok(Cow::Borrowed(v)),
            Some(v) => Err(Error::InvalidSpacing {
                spacing: v.clone(),
                ndim,
                reason: "one entry per image axis is needed",
            }),
        }
    }

    /// Per-axis spacing for an image of this `shape` whose physical
    /// distances are computed in the float type `A`: as
    /// [`Spacing::for_ndim`], and every distance the image can hold (up to
    /// its physical extent `sum_j s_j n_j`, squared for Euclidean
    /// distances) must be finite in `A`, and half the smallest spacing,
    /// squared, must not underflow to 0.
    ///
    /// ```
    /// use confseg::Spacing;
    /// let huge = Spacing::new(vec![1e30, 1.0])?;
    /// assert!(huge.for_image::<f64>(&[10, 10]).is_ok());
    /// assert!(huge.for_image::<f32>(&[10, 10]).is_err()); // (1e31)^2 overflows f32
    /// assert!(Spacing::new(vec![1e-30])?.for_image::<f32>(&[4]).is_err());
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if the length does not fit or the values do
    /// not fit `A`.
    pub fn for_image<A: Float>(&self, shape: &[usize]) -> Result<Cow<'_, [f64]>> {
        let sp = self.for_ndim(shape.len())?;
        let extent: f64 = sp.iter().zip(shape).map(|(&s, &n)| s * (n as f64 + 1.0)).sum();
        let min = sp.iter().copied().fold(f64::INFINITY, f64::min);
        let max_sq = A::max_value().to_f64_lossless();
        let min_sq = A::min_positive_value().to_f64_lossless();
        let bad = |reason| Error::InvalidSpacing { spacing: sp.to_vec(), ndim: shape.len(), reason };
        if !(extent * extent).is_finite() || extent * extent > max_sq {
            return Err(bad(if A::NAME == "float64" {
                "the image's physical extent is too large for distances in float64"
            } else {
                "the image's physical extent is too large for distances in float32; \
                 give the spacing in larger units"
            }));
        }
        if !sp.is_empty() && (min * 0.5) * (min * 0.5) < min_sq {
            return Err(bad(if A::NAME == "float64" {
                "a spacing this small underflows in float64 distances"
            } else {
                "a spacing this small underflows in float32 distances; give the spacing in smaller units"
            }));
        }
        Ok(sp)
    }
}

impl TryFrom<Option<Vec<f64>>> for Spacing {
    type Error = Error;
    fn try_from(v: Option<Vec<f64>>) -> Result<Self> {
        v.map_or(Ok(Spacing::unit()), Spacing::new)
    }
}

impl From<Spacing> for Option<Vec<f64>> {
    fn from(s: Spacing) -> Self {
        s.0
    }
}

impl std::fmt::Display for Spacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("1 on every axis"),
            Some(v) => {
                let parts: Vec<String> = v.iter().map(f64::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// A 4x4 voxel-to-world matrix (row-major, the NIfTI `sform`/`qform`
/// convention: `world = A * (i, j, k, 1)`), kept so that outputs can be
/// written in the same space as their input.
pub type Affine = [[f64; 4]; 4];

/// Where an image's voxels are: its spacing and, optionally, an affine.
///
/// Only the spacing enters the method (spatial transforms); the affine is
/// carried through so that sets are written back in the scanner space of
/// their scan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Geometry {
    spacing: Spacing,
    affine: Option<Affine>,
}

impl Geometry {
    /// A geometry with this spacing and no affine.
    #[must_use]
    pub fn new(spacing: Spacing) -> Self {
        Geometry { spacing, affine: None }
    }

    /// Attach a voxel-to-world affine.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an entry is not finite.
    pub fn with_affine(mut self, affine: Affine) -> Result<Self> {
        if affine.iter().flatten().any(|x| !x.is_finite()) {
            return Err(Error::InvalidParameter {
                name: "affine",
                value: format!("{affine:?}"),
                reason: "every entry must be finite".into(),
            });
        }
        self.affine = Some(affine);
        Ok(self)
    }

    /// The voxel spacing.
    #[must_use]
    pub fn spacing(&self) -> &Spacing {
        &self.spacing
    }

    /// The voxel-to-world affine, if known.
    #[must_use]
    pub fn affine(&self) -> Option<&Affine> {
        self.affine.as_ref()
    }

    /// The geometry of the image with axis `k` removed (a class axis
    /// reduced by a softmax, a NIfTI axis of length 1 squeezed): its
    /// spacing entry goes, and so does the affine if `k` is one of the
    /// three axes it maps.
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if an explicit spacing has no axis `k`.
    pub fn without_axis(&self, k: usize) -> Result<Geometry> {
        let spacing = match self.spacing.as_slice() {
            None => Spacing::unit(),
            Some(s) if k < s.len() => {
                let mut v = s.to_vec();
                v.remove(k);
                Spacing::new(v)?
            }
            Some(s) => {
                return Err(Error::InvalidSpacing {
                    spacing: s.to_vec(),
                    ndim: s.len(),
                    reason: "has no such axis to remove",
                })
            }
        };
        Ok(Geometry { spacing, affine: if k < 3 { None } else { self.affine } })
    }
}

/// A score image that carries its geometry, or says it has none of its
/// own ([`Image::plain`]: the calibrator's or the fitted sets' spacing
/// applies).
///
/// The scores are borrowed or owned ([`CowArray`]); the spacing is checked
/// against the image's dimension when the image is built, so an `Image`
/// never holds a spacing that does not fit it.
#[derive(Debug, Clone)]
pub struct Image<'a, A, D: Dimension> {
    scores: CowArray<'a, A, D>,
    geometry: Option<Geometry>,
}

impl<'a, A: Float, D: Dimension> Image<'a, A, D> {
    /// An image with this spacing (borrow with `array.view()`, or pass an
    /// owned array).
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if an explicit spacing does not have one
    /// entry per axis.
    pub fn new(scores: impl Into<CowArray<'a, A, D>>, spacing: Spacing) -> Result<Self> {
        Self::with_geometry(scores, Geometry::new(spacing))
    }

    /// An image with a full geometry (spacing and affine).
    ///
    /// # Errors
    /// As [`Image::new`].
    pub fn with_geometry(scores: impl Into<CowArray<'a, A, D>>, geometry: Geometry) -> Result<Self> {
        let scores = scores.into();
        geometry.spacing.for_ndim(scores.ndim())?;
        Ok(Image { scores, geometry: Some(geometry) })
    }

    /// An image with no geometry of its own: the spacing of whatever it is
    /// given to (a calibrator, fitted sets) applies, as for a plain array.
    #[must_use]
    pub fn plain(scores: impl Into<CowArray<'a, A, D>>) -> Self {
        Image { scores: scores.into(), geometry: None }
    }

    /// An image with `geometry` if there is one, else [`Image::plain`].
    ///
    /// # Errors
    /// As [`Image::new`].
    pub fn maybe_with_geometry(
        scores: impl Into<CowArray<'a, A, D>>,
        geometry: Option<Geometry>,
    ) -> Result<Self> {
        match geometry {
            Some(g) => Self::with_geometry(scores, g),
            None => Ok(Self::plain(scores)),
        }
    }

    /// The geometry, if the image carries one.
    #[must_use]
    pub fn geometry(&self) -> Option<&Geometry> {
        self.geometry.as_ref()
    }

    /// The scores, owned.
    #[must_use]
    pub fn into_scores(self) -> ndarray::Array<A, D> {
        self.scores.into_owned()
    }
}

/// Anything that can be used as a score image: a plain array (no geometry
/// of its own: the cohort default applies) or an [`Image`] (its own
/// spacing). Every public function that takes one score image takes `&I`
/// with `I: AsImage`.
pub trait AsImage {
    /// The float type of the scores.
    type Elem: Float;
    /// The dimension.
    type Dim: Dimension;
    /// The score array.
    fn scores(&self) -> &ArrayRef<Self::Elem, Self::Dim>;
    /// The image's own spacing, if it carries one.
    fn spacing(&self) -> Option<&Spacing>;
}

impl<S, D> AsImage for ArrayBase<S, D>
where
    S: Data,
    S::Elem: Float,
    D: Dimension,
{
    type Elem = S::Elem;
    type Dim = D;
    fn scores(&self) -> &ArrayRef<S::Elem, D> {
        self
    }
    fn spacing(&self) -> Option<&Spacing> {
        None
    }
}

impl<A: Float, D: Dimension> AsImage for ArrayRef<A, D> {
    type Elem = A;
    type Dim = D;
    fn scores(&self) -> &ArrayRef<A, D> {
        self
    }
    fn spacing(&self) -> Option<&Spacing> {
        None
    }
}

impl<A: Float, D: Dimension> AsImage for Image<'_, A, D> {
    type Elem = A;
    type Dim = D;
    fn scores(&self) -> &ArrayRef<A, D> {
        &self.scores
    }
    fn spacing(&self) -> Option<&Spacing> {
        self.geometry.as_ref().map(Geometry::spacing)
    }
}

/// [`Error::EmptyImage`] for an image with no voxels.
pub(crate) fn check_nonempty(shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(Error::EmptyImage { image: None, shape: shape.to_vec() });
    }
    Ok(())
}

/// [`Error::ShapeMismatch`] unless the two arrays have the same shape.
pub(crate) fn check_shape<A, B, D: Dimension>(
    what: &'static str,
    reference: &ArrayRef<A, D>,
    other: &ArrayRef<B, D>,
) -> Result<()> {
    if reference.shape() == other.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            image: None,
            expected: reference.shape().to_vec(),
            found: other.shape().to_vec(),
        })
    }
}

/// Error for the first NaN of `a`, if any (row-major order).
pub(crate) fn check_nan<A: Float, D: Dimension>(what: &'static str, a: &ArrayRef<A, D>) -> Result<()> {
    // Contiguous in any order: one flag over the slice (no early exit, so
    // the loop vectorises); the index is looked up only if there is a NaN.
    if let Some(sl) = a.as_slice_memory_order() {
        if !sl.iter().fold(false, |nan, x| nan | x.is_nan()) {
            return Ok(());
        }
    }
    match a.iter().position(|x| x.is_nan()) {
        None => Ok(()),
        Some(p) => Err(Error::NanScore { what, image: None, index: crate::grid::unravel(p, a.shape()) }),
    }
}

/// `Ok` for a batch-first stack `(N, spatial...)`: at least one axis.
///
/// # Errors
/// [`Error::InvalidParameter`] for a 0-D array.
pub(crate) fn check_stack(what: &'static str, ndim: usize) -> crate::error::Result<()> {
    if ndim == 0 {
        return Err(crate::error::Error::InvalidParameter {
            name: what,
            value: "a 0-D array".into(),
            reason: "a stack is batch-first (N, spatial...); give at least one axis".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn spacing_validation() {
        assert!(Spacing::new(vec![]).is_err());
        assert!(Spacing::new(vec![1.0, 0.0]).is_err());
        assert!(Spacing::new(vec![1.0, f64::NAN]).is_err());
        assert!(Spacing::new(vec![1.0, 2.0]).unwrap().for_ndim(3).is_err());
        assert_eq!(Spacing::new(vec![1.0, 2.5]).unwrap().to_string(), "1,2.5");
    }

    #[test]
    fn spacing_must_fit_the_float_type() {
        let s = Spacing::new(vec![1e18, 1.0]).unwrap();
        assert!(s.for_image::<f32>(&[100, 100]).is_err());
        assert!(s.for_image::<f64>(&[100, 100]).is_ok());
        let tiny = Spacing::new(vec![1e-200]).unwrap();
        assert!(tiny.for_image::<f64>(&[3]).is_err());
        assert!(Spacing::new(vec![1e-10]).unwrap().for_image::<f32>(&[3]).is_ok());
        assert!(Spacing::new(vec![1e308]).unwrap().for_image::<f64>(&[3]).is_err());
    }

    #[test]
    fn images_carry_their_spacing() {
        let a = array![[1.0_f64, 2.0]];
        let img = Image::new(a.view(), Spacing::new(vec![2.0, 3.0]).unwrap()).unwrap();
        assert_eq!(img.scores(), &a);
        assert_eq!(AsImage::spacing(&img).and_then(Spacing::as_slice), Some(&[2.0, 3.0][..]));
        assert!(AsImage::spacing(&a).is_none());
        assert!(Geometry::default().with_affine([[f64::NAN; 4]; 4]).is_err());
    }
}
