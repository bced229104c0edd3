//! What one image's sets measure, as their reader sees them: the volumes
//! of the inner set, the band `O \ I` and the outer set, and how wide the
//! band is.

use ndarray::{Array, ArrayRef, Dimension};

use crate::error::{Error, Result};
use crate::grid;
pub use crate::grid::BandWidth;
use crate::image::Spacing;
use crate::mask::MaskValue;

use super::Sets;

/// Volumes and band width of one image's sets ([`Sets::measures`]).
///
/// Volumes are voxel counts times the voxel volume (the product of the
/// spacing: mm³ for spacing in mm, as in NIfTI files); the band width is
/// measured from each voxel of the outer contour to the nearest voxel of
/// the inner set, in the units of the spacing ([`BandWidth`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetMeasures {
    /// Voxels in the image.
    pub voxels: usize,
    /// Voxels in the inner set.
    pub inner_voxels: usize,
    /// Voxels in the outer set.
    pub outer_voxels: usize,
    /// Voxels of the band `O \ I`.
    pub band_voxels: usize,
    /// The volume of one voxel (the product of the spacing).
    pub voxel_volume: f64,
    /// The band's width; `None` when it is undefined (an empty inner set,
    /// or an outer set that is empty or the whole image).
    pub band_width: Option<BandWidth>,
}

impl SetMeasures {
    /// Volume of the inner set (units of the spacing, cubed).
    #[must_use]
    pub fn inner_volume(&self) -> f64 {
        self.inner_voxels as f64 * self.voxel_volume
    }

    /// Volume of the band `O \ I`.
    #[must_use]
    pub fn band_volume(&self) -> f64 {
        self.band_voxels as f64 * self.voxel_volume
    }

    /// Volume of the outer set.
    #[must_use]
    pub fn outer_volume(&self) -> f64 {
        self.outer_voxels as f64 * self.voxel_volume
    }

    /// Whether the inner set is empty.
    #[must_use]
    pub fn empty_inner(&self) -> bool {
        self.inner_voxels == 0
    }

    /// Whether the outer set is the whole image.
    #[must_use]
    pub fn whole_outer(&self) -> bool {
        self.outer_voxels == self.voxels
    }
}

impl<D: Dimension> Sets<D> {
    /// The volumes and the band width of these sets, for voxels of the
    /// given spacing (one entry per axis).
    ///
    /// ```
    /// use confseg::{Sets, Spacing};
    /// use ndarray::array;
    /// // a band one voxel wide on either side of a 2-voxel inner set
    /// let s = Sets {
    ///     inner: array![false, false, true, true, false, false],
    ///     outer: array![false, true, true, true, true, false],
    /// };
    /// let m = s.measures(&Spacing::new(vec![0.5])?)?;
    /// assert_eq!((m.inner_voxels, m.band_voxels, m.outer_voxels), (2, 2, 4));
    /// assert_eq!(m.outer_volume(), 2.0);
    /// assert_eq!(m.band_width.map(|w| w.max), Some(0.5));
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the inner and outer sets differ in
    /// shape; a spacing that does not fit the image's dimensionality.
    pub fn measures(&self, spacing: &Spacing) -> Result<SetMeasures> {
        self.check_shapes()?;
        let flat = |s: &Array<bool, D>| -> Vec<bool> { s.iter().copied().collect() };
        measure(&flat(&self.inner), &flat(&self.outer), &[], self.inner.shape(), spacing)
    }

    fn check_shapes(&self) -> Result<()> {
        if self.inner.shape() != self.outer.shape() {
            return Err(Error::ShapeMismatch {
                what: "inner vs outer set",
                image: None,
                expected: self.inner.shape().to_vec(),
                found: self.outer.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// [`Sets::measures`] without the voxels that `truth` ignores
    /// ([`Voxel::Ignored`](crate::mask::Voxel)): they are in neither set,
    /// so the image's voxels, the volumes and the band width leave them out
    /// (the numbers of the image cropped to the other voxels, where that is
    /// possible).
    ///
    /// ```
    /// use confseg::mask::Voxel::{self, Background as B, Ignored as X, Object as Y};
    /// use confseg::{Sets, Spacing};
    /// use ndarray::array;
    /// let s = Sets { inner: array![false, true, true, false], outer: array![true, true, true, true] };
    /// let m = s.measures_within(&Spacing::unit(), &array![X, Y, Y, B])?;
    /// assert_eq!((m.voxels, m.inner_voxels, m.outer_voxels, m.band_voxels), (3, 2, 3, 1));
    /// assert!(m.whole_outer());
    /// // next to an ignored voxel, the outer set has no contour (as at the
    /// // image border): only the right end's, one voxel from the inner set
    /// let s = Sets {
    ///     inner: array![false, false, false, true, false, false],
    ///     outer: array![false, true, true, true, true, false],
    /// };
    /// let width = |m: confseg::sets::SetMeasures| m.band_width.map(|w| w.max);
    /// assert_eq!(width(s.measures_within(&Spacing::unit(), &array![X, B, B, Y, B, B])?), Some(1.0));
    /// assert_eq!(width(s.measures(&Spacing::unit())?), Some(2.0));
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sets::measures`]; [`Error::ShapeMismatch`] for a truth of
    /// another shape.
    pub fn measures_within<M: MaskValue>(
        &self,
        spacing: &Spacing,
        truth: &ArrayRef<M, D>,
    ) -> Result<SetMeasures> {
        crate::image::check_shape("mask vs sets", &self.inner, truth)?;
        if !(M::MAY_IGNORE && truth.iter().any(|y| y.is_ignored())) {
            return self.measures(spacing);
        }
        self.check_shapes()?;
        let ignored: Vec<bool> = truth.iter().map(|y| y.is_ignored()).collect();
        let kept =
            |s: &Array<bool, D>| -> Vec<bool> { s.iter().zip(&ignored).map(|(&b, &x)| b && !x).collect() };
        measure(&kept(&self.inner), &kept(&self.outer), &ignored, self.inner.shape(), spacing)
    }
}

/// The measures of row-major inner and outer sets of `shape` (holding no
/// `ignored` voxel; `ignored` empty: none).
fn measure(
    inner: &[bool],
    outer: &[bool],
    ignored: &[bool],
    shape: &[usize],
    spacing: &Spacing,
) -> Result<SetMeasures> {
    let spacing = spacing.for_ndim(shape.len())?;
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count();
    Ok(SetMeasures {
        voxels: inner.len() - count(ignored),
        inner_voxels: count(inner),
        outer_voxels: count(outer),
        band_voxels: inner.iter().zip(outer).filter(|(&i, &o)| o && !i).count(),
        voxel_volume: spacing.iter().product(),
        band_width: grid::band_width(inner, outer, ignored, shape, &spacing),
    })
}
