//! Morphological set families as a score transform: the signed number of
//! erosion / dilation steps of the predicted mask by a footprint
//! (METHOD.md §5, "morphological steps").
//!
//! # Definition
//!
//! For the predicted mask `A = { v : s(v) > t }` of an image with voxels
//! `V`, and a footprint `F` (a set of offsets, symmetric under `o -> -o`,
//! holding `0`), dilation and erosion inside the image are
//!
//! ```text
//! dilate(B) = { v in V : v + o in B for some o in F }
//! erode(B)  = { v in B : v + o in B for every o in F with v + o in V }
//! ```
//!
//! so the image's outside never contributes: it is neither object for a
//! dilation nor background for an erosion (scipy's
//! `binary_dilation(B, F, border_value=0)` and
//! `binary_erosion(B, F, border_value=1)`). Then
//!
//! ```text
//! m(v) = +k   if v in A,     k = the fewest erosions of A that remove v
//!      = -k   otherwise,     k = the fewest dilations of A that reach v
//! ```
//!
//! so `|m| >= 1`, `{m >= -k}` is `A` dilated `k` times and `{m > k}` is `A`
//! eroded `k` times, for every `k >= 0`. A voxel that no number of steps
//! reaches (a footprint that cannot connect the grid) keeps `-inf`
//! outside and `+inf` inside; so an empty `A` is `-inf` everywhere (or
//! the [`EmptyPrediction`] chosen) and a full `A` is `+inf` everywhere.
//!
//! Used as the outer transform, the outer set is the prediction dilated by
//! a calibrated number of steps (the morphological margins of Mossina &
//! Friedrich 2025, ConSeMa); as the inner transform, the prediction
//! eroded.
//!
//! # Footprints
//!
//! | [`Footprint`] | offsets | scipy / skimage |
//! |---|---|---|
//! | `Face` | the `2n` face neighbours (4 in 2-D, 6 in 3-D) | `generate_binary_structure(n, 1)` |
//! | `Edge` | at most two coordinates `±1` (8 in 2-D, 18 in 3-D) | `generate_binary_structure(n, 2)` |
//! | `Full` | every coordinate in `{-1, 0, 1}` (8 in 2-D, 26 in 3-D) | `generate_binary_structure(n, n)` |
//! | `Ball` | `sum_j (o_j u_j)^2 <= R^2`, `u_j = 1` (voxels) or the spacing (physical) | `disk(R)`, `ball(R)`; an ellipsoid in voxels under anisotropic spacing |
//! | `Custom` | the cells of a small boolean array (odd extents, symmetric, centre set) | any symmetric `structure` |
//!
//! With unit steps, `Face` gives the city-block distance between voxel
//! centres and `Full` the chessboard one: on any mask they equal the
//! voxel-centre signed distances `distance-centre:cityblock` and
//! `distance-centre:chessboard` of [`SignedDistance`](super::SignedDistance)
//! with unit spacing, bit for bit. Only `Ball` with physical units uses the
//! voxel spacing; the other footprints count steps whatever it is.
//!
//! # Algorithm
//!
//! When the footprint is the cross or the square in the image (`Face`,
//! `Full`, `Edge` in 2-D, a ball of radius below `sqrt 2` voxels, a custom
//! array holding those cells), the steps are the voxel-centre city-block or
//! chessboard distances, computed by the exact linear-time distance
//! transform of [`distance`](super::distance) with its threads and SIMD
//! (the cross as the midpoint city-block distance, `1/2` less in magnitude
//! with unit spacing: one transform instead of two).
//!
//! Any other footprint runs a breadth-first wavefront over its offsets,
//! from the background into the object (erosions) and from the object into
//! the background (dilations): the voxels first reached at level `k` are
//! those the `k`-th step adds. For a symmetric footprint holding `0` this
//! is exactly the iterated dilation (a voxel is reached in `k` steps iff a
//! path of `k` offsets leads to it inside the image), and erosion of `A` is
//! dilation of its complement. The wavefront runs on rows of 64-voxel
//! words along the last axis: the offsets are grouped by their row offset,
//! each group's shifts along the row are ORed once per frontier row, and a
//! level's new voxels are the reached words still unvisited. Every voxel
//! enters the frontier once, so the work is linear in the voxels times the
//! footprint's row groups (its extent across the rows), a shift along the
//! row costing one word operation per 64 voxels. The wavefront runs on one
//! thread per image (splitting its levels across threads did not pay on
//! the volumes measured); pipelines transform several images at once.
//!
//! Calibrating an outer set with a tolerance (ConSeMa's "at least τ of the
//! object covered") needs, per image, only the level at which enough of the
//! object is reached ([`Transform::outer_tolerance_statistic`]). There the
//! calibrator does not transform the image: the same wavefront, for every
//! footprint, runs from the predicted mask and stops at that level (into
//! the mask when the prediction already covers enough), so an image whose
//! margin is a few dilations costs the band they cover plus one pass to
//! threshold and pack it.
//!
//! # Sizes
//!
//! Offsets longer than the image along an axis can never land in it and
//! are left out; the rest of a footprint, in its bounding box, may hold at
//! most [`MAX_FOOTPRINT_VOXELS`] voxels, so that no radius or array can
//! ask for an unbounded allocation. Steps are whole numbers; in `f32`
//! they are exact up to `2^24` (an [`Error::InvalidParameter`] beyond; for
//! the cross and the square, an axis of more than `2^23 - 1` voxels, as
//! [`distance_spacing`] says).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use ndarray::{Array, ArrayD, ArrayRef, CowArray, Dimension, IxDyn};

use super::distance::{distance_spacing, from_flat, predicted_mask};
use super::smooth::{bad_option, parse_f64};
use super::{check_mask_threshold, DistanceConvention, EmptyPrediction, Metric, Spacing, Transform, Units};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::grid::edt::signed_distance_flat;
use crate::mask::MaskValue;

/// Most voxels a footprint's bounding box may hold, after leaving out the
/// offsets longer than the image (`2^18`: a ball of radius 31 in 3-D, 255
/// in 2-D).
pub const MAX_FOOTPRINT_VOXELS: usize = 1 << 18;

/// Relative tolerance of the ball's test `sum_j (o_j u_j)^2 <= R^2`, so
/// that offsets on the sphere (`R = 1` with spacing `0.1` and `o = 10`)
/// are inside whatever the rounding of the spacing.
const BALL_TOLERANCE: f64 = 1e-9;

/// The structuring element of the steps; see the [module docs](self).
///
/// ```
/// use confseg::transform::morphology::Footprint;
/// use confseg::Spacing;
/// use confseg::transform::Units;
/// use ndarray::array;
/// let edge = Footprint::Edge.array(3, &Spacing::unit())?;
/// assert_eq!(edge.iter().filter(|&&b| b).count(), 19); // 18 neighbours and the centre
/// // A ball of radius 2 mm with 1 x 2 mm pixels: an ellipse of 5 x 3 pixels.
/// let ball = Footprint::ball(2.0, Units::Physical)?;
/// let cells = ball.array(2, &Spacing::new(vec![1.0, 2.0])?)?;
/// assert_eq!(cells.shape(), &[5, 3]);
/// // A custom footprint: odd extents, symmetric, centre set.
/// let cross = Footprint::custom(&array![[false, true, false], [true, true, true], [false, true, false]])?;
/// assert_eq!(cross.to_string(), "[010,111,010]");
/// assert!(Footprint::custom(&array![[true, true, false]]).is_err()); // not symmetric
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Footprint {
    /// The `2n` face neighbours: the cross (ConSeMa's footprint, scipy's
    /// default structure).
    #[default]
    Face,
    /// Neighbours differing in at most two coordinates (18 in 3-D; the
    /// same as [`Footprint::Full`] in 2-D).
    Edge,
    /// All `3^n - 1` neighbours: the square / cube.
    Full,
    /// A ball (an ellipsoid in voxels under anisotropic physical units).
    Ball(Ball),
    /// A footprint given as a boolean array.
    Custom(CustomFootprint),
}

/// A ball footprint: offsets `o` with `sum_j (o_j u_j)^2 <= radius^2`,
/// `u_j = 1` in voxels, the spacing in physical units (compared within a
/// relative `1e-9` of `radius^2`, so that offsets on the sphere count
/// whatever the rounding of the spacing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ball {
    radius: f64,
    units: Units,
}

impl Ball {
    /// A ball of this radius.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a radius that is not finite and
    /// positive, or below 1 in voxels (it would hold only its centre).
    pub fn new(radius: f64, units: Units) -> Result<Ball> {
        let bad = |reason: &str| Error::InvalidParameter {
            name: "ball radius",
            value: radius.to_string(),
            reason: reason.into(),
        };
        if !(radius.is_finite() && radius > 0.0) {
            return Err(bad("must be a finite positive number"));
        }
        if units == Units::Voxels && radius < 1.0 {
            return Err(bad(
                "a ball of radius below 1 voxel holds only its centre and never grows; use radius >= 1",
            ));
        }
        Ok(Ball { radius, units })
    }

    /// The radius.
    #[must_use]
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// The units of the radius.
    #[must_use]
    pub fn units(&self) -> Units {
        self.units
    }

    /// Half extent along an axis of unit `u`: the largest `h` with `h u` in the ball.
    fn half_extent(&self, u: f64) -> f64 {
        (self.radius / u * (1.0 + BALL_TOLERANCE)).floor()
    }

    fn contains(&self, o: &[isize], units: &[f64]) -> bool {
        let r2 = self.radius * self.radius;
        let s: f64 = o.iter().zip(units).map(|(&x, &u)| (x as f64 * u) * (x as f64 * u)).sum();
        s <= r2 * (1.0 + BALL_TOLERANCE)
    }
}

/// A footprint given as an n-D boolean array, validated: odd extent on
/// every axis, symmetric under point reflection through the centre, the
/// centre set, some other cell set, and at most [`MAX_FOOTPRINT_VOXELS`]
/// cells.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomFootprint {
    shape: Vec<usize>,
    /// row-major
    cells: Vec<bool>,
}

impl CustomFootprint {
    /// Validate a footprint array (0/1 or `bool` values).
    ///
    /// # Errors
    /// [`Error::NonBinaryMask`] for a value other than 0/1;
    /// [`Error::InvalidParameter`] (named `"footprint"`) when a condition
    /// above fails.
    pub fn new<M: MaskValue, D: Dimension>(cells: &ArrayRef<M, D>) -> Result<CustomFootprint> {
        crate::mask::check_mask(cells)?;
        CustomFootprint::from_parts(cells.shape().to_vec(), cells.iter().map(|m| m.is_object()).collect())
    }

    fn from_parts(shape: Vec<usize>, cells: Vec<bool>) -> Result<CustomFootprint> {
        let bad = |reason: String| Error::InvalidParameter {
            name: "footprint",
            value: format!("an array of shape {shape:?}"),
            reason,
        };
        if shape.is_empty() {
            return Err(bad("has no axes; give a 1-D or larger array".into()));
        }
        if let Some(n) = shape.iter().find(|&&n| n % 2 == 0) {
            return Err(bad(format!(
                "has an even extent {n}; every extent must be odd (the centre is the middle cell)"
            )));
        }
        let size = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).unwrap_or(usize::MAX);
        if size > MAX_FOOTPRINT_VOXELS {
            return Err(bad(format!("has {size} cells; at most {MAX_FOOTPRINT_VOXELS}")));
        }
        if cells.len() != size {
            return Err(bad(format!("has {} cells for {size} places", cells.len())));
        }
        // Reversing the row-major order reflects every coordinate through the centre.
        if cells.iter().zip(cells.iter().rev()).any(|(a, b)| a != b) {
            return Err(bad(
                "is not symmetric under point reflection through its centre; iterated dilation \
                 equals the steps only for symmetric footprints"
                    .into(),
            ));
        }
        if !cells[size / 2] {
            return Err(bad("does not hold its centre; set the middle cell".into()));
        }
        if cells.iter().filter(|&&b| b).count() < 2 {
            return Err(bad("holds only its centre and never grows; set a neighbour".into()));
        }
        Ok(CustomFootprint { shape, cells })
    }

    /// The number of axes.
    #[must_use]
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The footprint as a boolean array.
    #[must_use]
    pub fn cells(&self) -> ArrayD<bool> {
        from_flat(IxDyn(&self.shape), self.cells.clone())
    }

    /// Parse the inline form `[010,111,010]` (nested lists of 0/1 digit
    /// strings, innermost along the last axis; a bare `101` is 1-D).
    fn parse(s: &str) -> Result<CustomFootprint> {
        let bad = |reason: &str| bad_option("footprint", s, reason);
        let (shape, cells) = parse_cells(s.trim()).ok_or_else(|| {
            bad("inline footprint cells are nested lists of 0/1 digits with equal lengths, e.g. [010,111,010]")
        })?;
        CustomFootprint::from_parts(shape, cells)
    }
}

/// `(shape, cells)` of `101` or `[..., ...]`, `None` if malformed or ragged.
fn parse_cells(s: &str) -> Option<(Vec<usize>, Vec<bool>)> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        // split at the commas of this level
        let (mut depth, mut start, mut parts) = (0usize, 0usize, Vec::new());
        for (i, c) in inner.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.checked_sub(1)?,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        let mut shape: Option<Vec<usize>> = None;
        let mut cells = Vec::new();
        for p in &parts {
            let (sh, c) = parse_cells(p.trim())?;
            if shape.as_ref().is_some_and(|s| *s != sh) {
                return None;
            }
            shape = Some(sh);
            cells.extend(c);
            if cells.len() > MAX_FOOTPRINT_VOXELS {
                return None;
            }
        }
        let mut shape = shape?;
        shape.insert(0, parts.len());
        Some((shape, cells))
    } else {
        if s.is_empty() || s.len() > MAX_FOOTPRINT_VOXELS {
            return None;
        }
        let cells =
            s.chars().map(|c| matches!(c, '0' | '1').then_some(c == '1')).collect::<Option<Vec<_>>>()?;
        Some((vec![cells.len()], cells))
    }
}

impl fmt::Display for CustomFootprint {
    /// The inline form, `[010,111,010]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(f: &mut fmt::Formatter<'_>, shape: &[usize], cells: &[bool]) -> fmt::Result {
            match shape {
                [] => Ok(()),
                [_] => cells.iter().try_for_each(|&b| f.write_str(if b { "1" } else { "0" })),
                [n, rest @ ..] => {
                    let step = cells.len() / n;
                    f.write_str("[")?;
                    for (i, c) in cells.chunks(step.max(1)).enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write(f, rest, c)?;
                    }
                    f.write_str("]")
                }
            }
        }
        write(f, &self.shape, &self.cells)
    }
}

impl Footprint {
    /// A ball footprint; see [`Ball::new`].
    ///
    /// # Errors
    /// As [`Ball::new`].
    pub fn ball(radius: f64, units: Units) -> Result<Footprint> {
        Ball::new(radius, units).map(Footprint::Ball)
    }

    /// A footprint from an n-D 0/1 array; see [`CustomFootprint::new`].
    ///
    /// # Errors
    /// As [`CustomFootprint::new`].
    pub fn custom<M: MaskValue, D: Dimension>(cells: &ArrayRef<M, D>) -> Result<Footprint> {
        CustomFootprint::new(cells).map(Footprint::Custom)
    }

    /// A footprint read from a `.npy` file holding one small 0/1 array (any
    /// integer, float or bool dtype).
    ///
    /// # Errors
    /// [`Error::InFile`] for an unreadable file or a value other than 0/1;
    /// [`Error::InvalidParameter`] for a file of more than
    /// [`MAX_FOOTPRINT_VOXELS`] cells (refused before reading its data) or
    /// an invalid footprint ([`CustomFootprint::new`]).
    #[cfg(feature = "npy")]
    pub fn from_npy(path: impl AsRef<std::path::Path>) -> Result<Footprint> {
        let path = path.as_ref();
        let info = crate::io::image_info(path)?;
        let size = info.shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).unwrap_or(usize::MAX);
        if size > MAX_FOOTPRINT_VOXELS {
            return Err(Error::InvalidParameter {
                name: "footprint",
                value: path.display().to_string(),
                reason: format!(
                    "holds an array of shape {:?} ({size} cells); at most {MAX_FOOTPRINT_VOXELS}",
                    info.shape
                ),
            });
        }
        let cells = crate::io::read_mask_image(path, &crate::mask::Labels::Binary)?;
        Footprint::custom(&cells)
    }

    /// The name used in transform strings (`face`, `edge`, `full`, `ball`,
    /// `custom`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Footprint::Face => "face",
            Footprint::Edge => "edge",
            Footprint::Full => "full",
            Footprint::Ball(_) => "ball",
            Footprint::Custom(_) => "custom",
        }
    }

    /// Whether the footprint depends on the voxel spacing (a ball in
    /// physical units).
    #[must_use]
    pub fn uses_spacing(&self) -> bool {
        matches!(self, Footprint::Ball(b) if b.units == Units::Physical)
    }

    /// The footprint for `ndim`-D images with this spacing, as a boolean
    /// array centred on its middle cell (odd extents).
    ///
    /// # Errors
    /// [`Error::InvalidSpacing`] if a physical ball's spacing does not fit
    /// `ndim`; [`Error::InvalidParameter`] for a custom footprint of
    /// another dimension, a physical ball smaller than every spacing, or
    /// more than [`MAX_FOOTPRINT_VOXELS`] cells.
    pub fn array(&self, ndim: usize, spacing: &Spacing) -> Result<ArrayD<bool>> {
        if let Footprint::Custom(c) = self {
            check_custom_ndim(c, ndim)?;
            return Ok(c.cells());
        }
        let halves = self.half_extents(ndim, spacing)?;
        let shape: Vec<usize> = halves.iter().map(|&h| 2 * h + 1).collect();
        check_box(&shape, self)?;
        let units = self.units(ndim, spacing)?;
        let mut cells = Vec::with_capacity(shape.iter().product());
        let mut o = vec![0isize; ndim];
        for_each_in_box(&halves, &mut o, &mut |o| cells.push(self.contains(o, &units)));
        Ok(from_flat(IxDyn(&shape), cells))
    }

    /// Half extents of the bounding box for `ndim`-D images (custom: its own).
    fn half_extents(&self, ndim: usize, spacing: &Spacing) -> Result<Vec<usize>> {
        Ok(match self {
            Footprint::Face | Footprint::Edge | Footprint::Full => vec![usize::from(ndim > 0); ndim],
            Footprint::Ball(b) => {
                let units = self.units(ndim, spacing)?;
                // finite: the radius and the spacing are
                let h: Vec<f64> = units.iter().map(|&u| b.half_extent(u)).collect();
                if !h.is_empty() && h.iter().all(|&x| x < 1.0) {
                    return Err(Error::InvalidParameter {
                        name: "ball radius",
                        value: format!("{} (physical) with spacing {units:?}", b.radius),
                        reason: "holds only its centre voxel and never grows; use a radius of at least \
                                 the smallest spacing"
                            .into(),
                    });
                }
                h.iter().map(|&x| if x >= usize::MAX as f64 { usize::MAX / 4 } else { x as usize }).collect()
            }
            Footprint::Custom(c) => {
                check_custom_ndim(c, ndim)?;
                c.shape.iter().map(|&n| n / 2).collect()
            }
        })
    }

    /// The per-axis unit of the ball test: 1 (voxels) or the spacing.
    fn units(&self, ndim: usize, spacing: &Spacing) -> Result<Vec<f64>> {
        if self.uses_spacing() {
            Ok(spacing.for_ndim(ndim)?.into_owned())
        } else {
            Ok(vec![1.0; ndim])
        }
    }

    /// Whether offset `o` (within the bounding box) is in the footprint.
    fn contains(&self, o: &[isize], units: &[f64]) -> bool {
        match self {
            Footprint::Face => o.iter().filter(|&&x| x != 0).count() <= 1,
            Footprint::Edge => o.iter().filter(|&&x| x != 0).count() <= 2,
            Footprint::Full => true,
            Footprint::Ball(b) => b.contains(o, units),
            Footprint::Custom(c) => {
                let mut i = 0usize;
                for (&x, &n) in o.iter().zip(&c.shape) {
                    i = i * n + (x + (n / 2) as isize) as usize;
                }
                c.cells[i]
            }
        }
    }

    /// The offsets of the footprint that can land in an image of `shape`
    /// (`|o_j| < n_j`), without the centre.
    ///
    /// # Errors
    /// As [`Footprint::array`], the box being clipped to the image.
    fn offsets(&self, shape: &[usize], spacing: &Spacing) -> Result<Vec<Vec<isize>>> {
        let ndim = shape.len();
        let halves: Vec<usize> = self
            .half_extents(ndim, spacing)?
            .iter()
            .zip(shape)
            .map(|(&h, &n)| h.min(n.saturating_sub(1)))
            .collect();
        let units = self.units(ndim, spacing)?;
        let mut out = Vec::new();
        let mut o = vec![0isize; ndim];
        match self {
            // 2n and 2n^2 offsets: listed directly, whatever n
            Footprint::Face | Footprint::Edge => {
                let limit = if matches!(self, Footprint::Face) { 1 } else { 2 };
                list_sparse(&halves, limit, 0, 0, &mut o, &mut out);
            }
            _ => {
                let shape_box: Vec<usize> = halves.iter().map(|&h| 2 * h + 1).collect();
                check_box(&shape_box, self)?;
                for_each_in_box(&halves, &mut o, &mut |o| {
                    if o.iter().any(|&x| x != 0) && self.contains(o, &units) {
                        out.push(o.to_vec());
                    }
                });
            }
        }
        Ok(out)
    }
}

/// Offsets in `{-1, 0, 1}^n` (within `halves`) with 1 to `limit` nonzero
/// coordinates, from axis `a` on.
fn list_sparse(
    halves: &[usize],
    limit: usize,
    nonzero: usize,
    a: usize,
    o: &mut [isize],
    out: &mut Vec<Vec<isize>>,
) {
    if a == halves.len() {
        if nonzero > 0 {
            out.push(o.to_vec());
        }
        return;
    }
    list_sparse(halves, limit, nonzero, a + 1, o, out);
    if nonzero < limit && halves[a] >= 1 {
        for s in [-1, 1] {
            o[a] = s;
            list_sparse(halves, limit, nonzero + 1, a + 1, o, out);
        }
        o[a] = 0;
    }
}

/// `f(o)` for every `o` of the box `[-h_j, h_j]`, in row-major order.
fn for_each_in_box(halves: &[usize], o: &mut [isize], f: &mut impl FnMut(&[isize])) {
    fn rec(halves: &[usize], a: usize, o: &mut [isize], f: &mut impl FnMut(&[isize])) {
        if a == halves.len() {
            f(o);
            return;
        }
        let h = halves[a] as isize;
        for x in -h..=h {
            o[a] = x;
            rec(halves, a + 1, o, f);
        }
        o[a] = 0;
    }
    rec(halves, 0, o, f);
}

fn check_box(shape: &[usize], fp: &Footprint) -> Result<()> {
    let size = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).unwrap_or(usize::MAX);
    if size > MAX_FOOTPRINT_VOXELS {
        return Err(Error::InvalidParameter {
            name: "footprint",
            value: fp.to_string(),
            reason: format!(
                "its bounding box in this image is {shape:?} ({size} voxels); at most {MAX_FOOTPRINT_VOXELS}: \
                 use a smaller radius"
            ),
        });
    }
    Ok(())
}

fn check_custom_ndim(c: &CustomFootprint, ndim: usize) -> Result<()> {
    if c.ndim() == ndim {
        return Ok(());
    }
    Err(Error::InvalidParameter {
        name: "footprint",
        value: c.to_string(),
        reason: format!(
            "is {}-D, the image {ndim}-D; give a footprint with one axis per image axis",
            c.ndim()
        ),
    })
}

impl fmt::Display for Footprint {
    /// As in transform strings: `face`, `edge`, `full`,
    /// `ball:radius=R[:units=physical]`, or a custom footprint's inline
    /// cells `[010,111,010]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Footprint::Ball(b) => {
                write!(f, "ball:radius={}", b.radius)?;
                if b.units == Units::Physical {
                    f.write_str(":units=physical")?;
                }
                Ok(())
            }
            Footprint::Custom(c) => c.fmt(f),
            _ => f.write_str(self.name()),
        }
    }
}

/// Signed erosion / dilation steps of the predicted mask `scores > t` by a
/// [`Footprint`]; see the [module docs](self) for the definition and the
/// guarantee.
///
/// `{m >= -k}` is the prediction dilated `k` times and `{m > k}` the
/// prediction eroded `k` times, exactly as scipy's iterated
/// `binary_dilation` (`border_value=0`) and `binary_erosion`
/// (`border_value=1`) with the footprint as `structure`.
///
/// ```
/// use confseg::transform::morphology::{Footprint, Morphological};
/// use confseg::{Spacing, Transform};
/// use ndarray::array;
/// let scores = array![
///     [-1.0_f64, -1.0, -1.0, -1.0, -1.0],
///     [-1.0, 1.0, 1.0, 1.0, -1.0],
///     [-1.0, 1.0, 1.0, 1.0, -1.0],
///     [-1.0, 1.0, 1.0, 1.0, -1.0],
/// ];
/// let m = Morphological::new(Footprint::Face).apply(&scores, &Spacing::unit())?;
/// assert_eq!(m.row(0).to_vec(), vec![-2.0, -1.0, -1.0, -1.0, -2.0]);
/// // inside: one erosion removes the rim; the image's outside never erodes
/// assert_eq!(m.row(3).to_vec(), vec![-1.0, 1.0, 2.0, 1.0, -1.0]);
/// // the square footprint reaches the corners in one step
/// let full = Morphological::new(Footprint::Full).apply(&scores, &Spacing::unit())?;
/// assert_eq!(full[[0, 0]], -1.0);
/// // nothing predicted: -inf everywhere (or the EmptyPrediction chosen)
/// let nothing = array![-1.0_f32, -2.0];
/// let none = Morphological::default().apply(&nothing, &Spacing::unit())?;
/// assert!(none.iter().all(|&x| x == f32::NEG_INFINITY));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "MorphologicalRepr", into = "MorphologicalRepr"))]
pub struct Morphological {
    footprint: Footprint,
    mask_threshold: f64,
    empty: EmptyPrediction,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
struct MorphologicalRepr {
    footprint: FootprintRepr,
    mask_threshold: f64,
    #[serde(default)]
    empty: EmptyPrediction,
}

/// A footprint in a fitted file: a custom one stores its cells (never a path).
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FootprintRepr {
    Face,
    Edge,
    Full,
    Ball {
        radius: f64,
        #[serde(default)]
        units: Units,
    },
    Custom {
        shape: Vec<usize>,
        /// row-major `0`/`1`
        cells: String,
    },
}

#[cfg(feature = "serde")]
impl TryFrom<MorphologicalRepr> for Morphological {
    type Error = Error;
    fn try_from(r: MorphologicalRepr) -> Result<Self> {
        let footprint = match r.footprint {
            FootprintRepr::Face => Footprint::Face,
            FootprintRepr::Edge => Footprint::Edge,
            FootprintRepr::Full => Footprint::Full,
            FootprintRepr::Ball { radius, units } => Footprint::ball(radius, units)?,
            FootprintRepr::Custom { shape, cells } => {
                let cells = cells
                    .chars()
                    .map(|c| matches!(c, '0' | '1').then_some(c == '1'))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Error::InvalidParameter {
                        name: "footprint",
                        value: cells.clone(),
                        reason: "cells are a string of 0 and 1".into(),
                    })?;
                Footprint::Custom(CustomFootprint::from_parts(shape, cells)?)
            }
        };
        Ok(Morphological::new(footprint).with_mask_threshold(r.mask_threshold)?.with_empty(r.empty))
    }
}

#[cfg(feature = "serde")]
impl From<Morphological> for MorphologicalRepr {
    fn from(m: Morphological) -> Self {
        let footprint = match m.footprint {
            Footprint::Face => FootprintRepr::Face,
            Footprint::Edge => FootprintRepr::Edge,
            Footprint::Full => FootprintRepr::Full,
            Footprint::Ball(b) => FootprintRepr::Ball { radius: b.radius, units: b.units },
            Footprint::Custom(c) => FootprintRepr::Custom {
                cells: c.cells.iter().map(|&b| if b { '1' } else { '0' }).collect(),
                shape: c.shape,
            },
        };
        MorphologicalRepr { footprint, mask_threshold: m.mask_threshold, empty: m.empty }
    }
}

impl Morphological {
    /// Steps by `footprint`, mask threshold 0 (logits) and `-inf` for an
    /// empty prediction.
    #[must_use]
    pub fn new(footprint: Footprint) -> Self {
        Morphological { footprint, mask_threshold: 0.0, empty: EmptyPrediction::NegInf }
    }

    /// Predicted mask = `scores > t`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `t` is not finite.
    pub fn with_mask_threshold(mut self, t: f64) -> Result<Self> {
        check_mask_threshold(t)?;
        self.mask_threshold = t;
        Ok(self)
    }

    /// What to return when the predicted mask is empty.
    #[must_use]
    pub fn with_empty(mut self, empty: EmptyPrediction) -> Self {
        self.empty = empty;
        self
    }

    /// The footprint.
    #[must_use]
    pub fn footprint(&self) -> &Footprint {
        &self.footprint
    }

    /// The predicted-mask threshold `t`.
    #[must_use]
    pub fn mask_threshold(&self) -> f64 {
        self.mask_threshold
    }

    /// The empty-prediction policy.
    #[must_use]
    pub fn empty(&self) -> EmptyPrediction {
        self.empty
    }

    /// Signed steps of a given binary mask (values 0/1 or bool), in the
    /// float type `A`. [`Transform::apply`] is this on `scores > t`; an
    /// empty mask gives `-inf` everywhere (the policy applies to scores).
    ///
    /// ```
    /// use confseg::transform::morphology::{Footprint, Morphological};
    /// use confseg::Spacing;
    /// use ndarray::array;
    /// let mask = array![0u8, 0, 1, 1, 1, 1, 0];
    /// let m = Morphological::new(Footprint::Face).of_mask::<f64, _, _>(&mask, &Spacing::unit())?;
    /// assert_eq!(m, array![-2.0, -1.0, 1.0, 2.0, 2.0, 1.0, -1.0]);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NonBinaryMask`] for a value other than 0/1; as
    /// [`Footprint::array`] for a footprint that does not fit the image;
    /// [`Error::InvalidParameter`] for more than `2^24` steps in `f32`.
    pub fn of_mask<A: Float, M: MaskValue, D: Dimension>(
        &self,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
    ) -> Result<Array<A, D>> {
        crate::mask::check_mask(mask)?;
        let plan = Plan::new::<A>(&self.footprint, mask.shape(), spacing)?;
        let bits: Vec<bool> = mask.iter().map(|m| m.is_object()).collect();
        Ok(from_flat(mask.raw_dim(), plan.run::<A>(&bits, mask.shape())?))
    }
}

impl Morphological {
    /// The outer side's tolerance statistic of one labelled image with this
    /// transform as `f_O` ([`Transform::outer_tolerance_statistic`]): the
    /// `(m+1)`-th largest `-f_O(v)` over the object voxels of `mask`,
    /// `m = allowed(|Y|)`, equal to transforming the image and selecting,
    /// by a wavefront from the predicted mask that stops at the level where
    /// the statistic is known. A ConSeMa margin that needs a few dilations
    /// costs the band they cover, not a transform of the whole image.
    fn largest_missed<A: Float, D: Dimension, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
        allowed: &dyn Fn(u64) -> u64,
    ) -> Result<f64> {
        // row-major copies of strided inputs, and a byte per voxel for the
        // predicted mask of an empty prediction's policy or a NaN's error
        let per_voxel = 1 + std::mem::size_of::<A>() + std::mem::size_of::<M>();
        crate::alloc::ensure_room(scores.len() as u128 * per_voxel as u128, "the predicted mask")?;
        let plan = Plan::new::<A>(&self.footprint, scores.shape(), spacing)?;
        let (s, y) = (scores.as_standard_layout(), mask.as_standard_layout());
        // `as_standard_layout` returns contiguous row-major arrays, so these are `Some`
        let (Some(s), Some(y)) = (s.as_slice(), y.as_slice()) else {
            unreachable!("standard layout arrays are contiguous")
        };
        if s.is_empty() {
            return Ok(f64::NEG_INFINITY); // no object voxel
        }
        // the predicted mask and the truth, packed straight from the arrays
        let grid = Grid::new(scores.shape(), &plan.offsets);
        let (mut object, truth, nan) =
            crate::grid::par::widest(Packing { grid: &grid, scores: s, mask: y, t: self.mask_threshold });
        if nan {
            // the error the transform gives, naming the voxel
            predicted_mask(scores, self.mask_threshold)?;
        }
        if object.iter().all(|&w| w == 0) {
            let mut bits = vec![false; s.len()];
            if let Some(c) = self.empty.apply(&mut bits, scores)? {
                // the policy's constant everywhere: -c at every voxel of Y
                let n = ones(truth.iter().copied());
                return Ok(if n > allowed(n) { (-c).to_f64_lossless() } else { f64::NEG_INFINITY });
            }
            object = grid.pack_by(&bits, |&b| b);
        }
        largest_after_steps::<A>(&grid, &plan, &object, &truth, scores.shape(), allowed)
    }
}

impl Transform for Morphological {
    /// # Errors
    /// [`Error::NanScore`] for a NaN score; as [`Morphological::of_mask`].
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let mut bits = predicted_mask(scores, self.mask_threshold)?;
        let plan = Plan::new::<A>(&self.footprint, scores.shape(), spacing)?;
        if let Some(c) = self.empty.apply(&mut bits, scores)? {
            return Ok(CowArray::from(Array::from_elem(scores.raw_dim(), c)));
        }
        Ok(CowArray::from(from_flat(scores.raw_dim(), plan.run::<A>(&bits, scores.shape())?)))
    }
    /// The statistic without transforming the image: the wavefront from
    /// the predicted mask stops at the deciding level (see
    /// [`Transform::outer_tolerance_statistic`]).
    fn outer_tolerance_statistic<A: Float, D: Dimension, M: MaskValue>(
        &self,
        scores: &ArrayRef<A, D>,
        mask: &ArrayRef<M, D>,
        spacing: &Spacing,
        allowed: &dyn Fn(u64) -> u64,
    ) -> Option<Result<f64>> {
        Some(self.largest_missed(scores, mask, spacing, allowed))
    }
    fn describe(&self) -> String {
        self.to_string()
    }
    fn uses_spacing(&self) -> bool {
        self.footprint.uses_spacing()
    }
}

impl fmt::Display for Morphological {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "morphological:footprint={}", self.footprint)?;
        if self.mask_threshold != 0.0 {
            write!(f, ":threshold={}", self.mask_threshold)?;
        }
        if self.empty != EmptyPrediction::NegInf {
            write!(f, ":empty={}", self.empty)?;
        }
        Ok(())
    }
}

/// Parse the options of `morphological[:footprint=F][:radius=R][:units=U][:threshold=T][:empty=E]`.
pub(crate) fn parse_morphological(options: &[(&str, &str)]) -> Result<Morphological> {
    let (mut name, mut radius, mut units) = (None, None, None);
    let (mut threshold, mut empty) = (0.0, EmptyPrediction::NegInf);
    for &(key, value) in options {
        match key {
            "footprint" => name = Some(value),
            "radius" => radius = Some((value, parse_f64("ball radius", value)?)),
            "units" => {
                units = Some(match value {
                    "voxels" | "voxel" => Units::Voxels,
                    "physical" => Units::Physical,
                    _ => return Err(bad_option(key, value, "units is voxels or physical")),
                })
            }
            "threshold" => {
                threshold = parse_f64("mask threshold", value)?;
                check_mask_threshold(threshold)?;
            }
            "empty" => empty = EmptyPrediction::parse(value)?,
            _ => {
                return Err(bad_option(
                    key,
                    value,
                    "morphological options: footprint (face, edge, full, ball, FILE.npy or [010,111,010]), \
                     radius and units (with footprint=ball), threshold, empty",
                ))
            }
        }
    }
    let name = name.unwrap_or("face");
    let footprint = match name {
        "ball" => {
            let (_, r) = radius.ok_or_else(|| {
                bad_option(
                    "footprint",
                    "ball",
                    "footprint=ball needs :radius=R (in voxels, or add :units=physical)",
                )
            })?;
            Footprint::ball(r, units.unwrap_or_default())?
        }
        _ if radius.is_some() || units.is_some() => {
            let (key, value) = match (radius, units) {
                (Some((v, _)), _) => ("radius", v.to_owned()),
                (None, Some(u)) => {
                    ("units", if u == Units::Physical { "physical" } else { "voxels" }.to_owned())
                }
                (None, None) => unreachable!("one of them is set"),
            };
            return Err(bad_option(
                key,
                &value,
                &format!("{key} applies to footprint=ball, not footprint={name}"),
            ));
        }
        "face" => Footprint::Face,
        "edge" => Footprint::Edge,
        "full" => Footprint::Full,
        s if s.to_ascii_lowercase().ends_with(".npy") => read_footprint(s)?,
        s if s.starts_with('[') || s.starts_with(['0', '1']) => Footprint::Custom(CustomFootprint::parse(s)?),
        s => return Err(bad_option(
            "footprint",
            s,
            "footprint is face, edge, full, ball (with radius=R), a 0/1 .npy file or inline cells such as \
                 [010,111,010]",
        )),
    };
    Morphological::new(footprint).with_mask_threshold(threshold).map(|m| m.with_empty(empty))
}

#[cfg(feature = "npy")]
fn read_footprint(path: &str) -> Result<Footprint> {
    Footprint::from_npy(path)
}

#[cfg(not(feature = "npy"))]
fn read_footprint(path: &str) -> Result<Footprint> {
    Err(bad_option(
        "footprint",
        path,
        "reading a footprint from a .npy file needs confseg's `npy` feature; give the cells inline, \
         e.g. footprint=[010,111,010]",
    ))
}

// ---------------------------------------------------------------- the wavefront

/// Steps are whole numbers of `A`: at most `2 / epsilon` (2^24 in f32).
fn exact_limit<A: Float>() -> u64 {
    (2.0 / A::epsilon().to_f64_lossless()) as u64
}

/// The rows of an image along its last axis, as words of 64 voxels, in a
/// grid of rows padded along the other axes by the footprint's reach, so
/// that every offset of a row is a row of the grid (padding rows hold no
/// voxel of the image). Without padding (when it would more than double
/// the rows), offsets are checked against the image's bounds instead.
struct Grid {
    /// voxels per row
    len: usize,
    /// words per row
    words: usize,
    /// rows of the grid
    rows: usize,
    /// per grid row, the index of its first voxel in the image (`NONE` for padding)
    start: Vec<usize>,
    /// extents of the grid along the leading axes
    ext: Vec<usize>,
    /// whether the grid is padded
    padded: bool,
}

const NONE: usize = usize::MAX;

impl Grid {
    fn new(shape: &[usize], offsets: &[Vec<isize>]) -> Grid {
        let (lead, len) = match shape.split_last() {
            Some((&len, lead)) => (lead.to_vec(), len),
            None => (Vec::new(), 1),
        };
        let image_rows: usize = lead.iter().product();
        let pads: Vec<usize> =
            (0..lead.len()).map(|j| offsets.iter().map(|o| o[j].unsigned_abs()).max().unwrap_or(0)).collect();
        let padded_ext: Vec<usize> = lead.iter().zip(&pads).map(|(&n, &p)| n + 2 * p).collect();
        let padded_rows = padded_ext.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
        let padded = padded_rows.is_some_and(|r| r <= 2 * image_rows + 4096);
        let (ext, rows) =
            if padded { (padded_ext, padded_rows.unwrap_or(image_rows)) } else { (lead.clone(), image_rows) };
        let mut start = vec![NONE; rows];
        // image row i (row-major over `lead`) sits at grid row sum_j (c_j + pad_j) stride_j
        let mut c = vec![0usize; lead.len()];
        for i in 0..image_rows {
            let mut g = 0usize;
            for (j, (&x, &n)) in c.iter().zip(&ext).enumerate() {
                g = g * n + x + if padded { pads[j] } else { 0 };
            }
            start[g] = i * len;
            for (x, &n) in c.iter_mut().zip(&lead).rev() {
                *x += 1;
                if *x < n {
                    break;
                }
                *x = 0;
            }
        }
        Grid { len, words: len.div_ceil(64), rows, start, ext, padded }
    }

    /// Grid row `r`'s coordinates along the leading axes.
    fn coords(&self, mut r: usize, c: &mut [usize]) {
        for (x, &n) in c.iter_mut().zip(&self.ext).rev() {
            *x = r % n;
            r /= n;
        }
    }

    /// The row `g.dr` away from row `r` (at `c` when the grid is not padded), if any.
    #[inline]
    fn shifted(&self, r: usize, c: &[usize], g: &Group) -> Option<usize> {
        let inside = self.padded
            || c.iter().zip(&g.dr).zip(&self.ext).all(|((&x, &d), &n)| ((x as isize + d) as usize) < n);
        inside.then(|| (r as isize + g.delta) as usize)
    }

    /// The voxels of a row-major image whose value passes `test`, as words
    /// per grid row (padding rows and the spare bits of a row's last word
    /// clear).
    #[inline(always)]
    fn pack_by<T>(&self, values: &[T], test: impl Fn(&T) -> bool) -> Vec<u64> {
        let mut out = vec![0u64; self.rows * self.words];
        for (words, &s) in out.chunks_mut(self.words).zip(&self.start) {
            if s == NONE {
                continue;
            }
            for (chunk, w) in values[s..s + self.len].chunks(64).zip(words.iter_mut()) {
                *w = pack_word(chunk, &test);
            }
        }
        out
    }

    /// The image's voxels not in `words` (packed by [`Grid::pack_by`]).
    fn complement(&self, words: &[u64]) -> Vec<u64> {
        let last = u64::MAX >> (self.words * 64 - self.len);
        let mut out = vec![0u64; words.len()];
        for ((o, w), &s) in out.chunks_mut(self.words).zip(words.chunks(self.words)).zip(&self.start) {
            if s == NONE {
                continue;
            }
            o.iter_mut().zip(w).for_each(|(o, &w)| *o = !w);
            if let Some(x) = o.last_mut() {
                *x &= last;
            }
        }
        out
    }
}

/// Up to 64 values as the bits of a word: bit `i` set iff `values[i]`
/// passes `test`. The flags are written as bytes (0 or 1) in a loop that
/// vectorizes; each eight, read as one little-endian word and multiplied by
/// `0x0102_0408_1020_4080`, give their eight bits in the top byte (each
/// byte's bit lands in its own position and no sums carry).
#[inline(always)]
fn pack_word<T>(values: &[T], test: &impl Fn(&T) -> bool) -> u64 {
    let mut flags = [0u8; 64];
    flags.iter_mut().zip(values).for_each(|(f, v)| *f = u8::from(test(v)));
    let (eights, _) = flags.as_chunks::<8>();
    eights.iter().enumerate().fold(0, |word, (j, e)| {
        word | ((u64::from_le_bytes(*e).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * j))
    })
}

/// Offsets sharing a row offset: the row `dr` away (`delta` rows of the
/// grid) and the set of shifts along the row.
struct Group {
    dr: Vec<isize>,
    delta: isize,
    set: usize,
}

/// The offsets grouped by row offset, and the distinct sets of shifts.
fn groups(grid: &Grid, offsets: &[Vec<isize>]) -> (Vec<Group>, Vec<Vec<isize>>) {
    let mut by_row: BTreeMap<Vec<isize>, Vec<isize>> = BTreeMap::new();
    for o in offsets {
        let (dx, dr) = o.split_last().map_or((0, &[][..]), |(&x, r)| (x, r));
        by_row.entry(dr.to_vec()).or_default().push(dx);
    }
    let mut sets: Vec<Vec<isize>> = Vec::new();
    let groups = by_row
        .into_iter()
        .map(|(dr, mut dxs)| {
            dxs.sort_unstable();
            dxs.dedup();
            let set = sets.iter().position(|s| *s == dxs).unwrap_or_else(|| {
                sets.push(dxs);
                sets.len() - 1
            });
            let mut delta = 0isize;
            for (&d, &n) in dr.iter().zip(&grid.ext) {
                delta = delta * n as isize + d;
            }
            Group { dr, delta, set }
        })
        .collect();
    (groups, sets)
}

/// `dst |= src` shifted by `dx` voxels along the row (bits past the
/// first word dropped, past the row's length kept in the last word's
/// spare bits, where the unvisited words are clear).
#[inline]
fn or_shifted(dst: &mut [u64], src: &[u64], dx: isize) {
    let n = src.len().min(dst.len());
    let (q, r) = (dx.unsigned_abs() / 64, (dx.unsigned_abs() % 64) as u32);
    if q >= n {
        return;
    }
    if r == 0 {
        if dx >= 0 {
            dst[q..n].iter_mut().zip(&src[..n - q]).for_each(|(d, &s)| *d |= s);
        } else {
            dst[..n - q].iter_mut().zip(&src[q..n]).for_each(|(d, &s)| *d |= s);
        }
    } else if dx >= 0 {
        dst[q] |= src[0] << r;
        for w in q + 1..n {
            dst[w] |= (src[w - q] << r) | (src[w - q - 1] >> (64 - r));
        }
    } else {
        for w in 0..n - q - 1 {
            dst[w] |= (src[w + q] >> r) | (src[w + q + 1] << (64 - r));
        }
        dst[n - q - 1] |= src[n - 1] >> r;
    }
}

/// How the steps of one image are counted.
struct Plan {
    /// The footprint's offsets in this image (symmetric, without the
    /// centre), sorted.
    offsets: Vec<Vec<isize>>,
    /// The metric whose voxel-centre distance with unit spacing equals the
    /// steps, when the footprint is the cross or the square in this image;
    /// otherwise the wavefront over the offsets counts them.
    distance: Option<Metric>,
}

impl Plan {
    /// The plan for `footprint` on an image of `shape` in the float type `A`.
    ///
    /// # Errors
    /// As [`Footprint::array`]; as [`distance_spacing`] for an axis too
    /// long for `A`.
    fn new<A: Float>(footprint: &Footprint, shape: &[usize], spacing: &Spacing) -> Result<Plan> {
        let mut offsets = footprint.offsets(shape, spacing)?;
        offsets.sort_unstable();
        for (named, metric) in [(Footprint::Face, Metric::CityBlock), (Footprint::Full, Metric::Chessboard)] {
            // (the square's 3^n offsets may be beyond the bound in many dimensions)
            if let Ok(mut o) = named.offsets(shape, &Spacing::unit()) {
                o.sort_unstable();
                if o == offsets {
                    distance_spacing::<A>(&Spacing::unit(), shape)?;
                    return Ok(Plan { offsets, distance: Some(metric) });
                }
            }
        }
        Ok(Plan { offsets, distance: None })
    }

    fn run<A: Float>(&self, bits: &[bool], shape: &[usize]) -> Result<Vec<A>> {
        match self.distance {
            Some(Metric::CityBlock) => {
                // With unit spacing the city-block distances to the boundary
                // midpoints are those to the voxel centres less 1/2 (one
                // transform instead of two): k - 1/2 is exact, and so is k.
                let unit = vec![1.0; shape.len()];
                let mut d = signed_distance_flat::<A>(
                    bits,
                    shape,
                    &unit,
                    Metric::CityBlock,
                    DistanceConvention::Midpoint,
                );
                let half = A::from_f64_lossy(0.5);
                d.iter_mut().zip(bits).for_each(|(x, &b)| *x = if b { *x + half } else { *x - half });
                Ok(d)
            }
            Some(metric) => {
                let unit = vec![1.0; shape.len()];
                Ok(signed_distance_flat::<A>(bits, shape, &unit, metric, DistanceConvention::VoxelCentre))
            }
            None => signed_steps::<A>(bits, shape, &self.offsets),
        }
    }
}

/// Signed steps of the row-major mask `bits` of `shape` by the offsets
/// (symmetric, without the centre), `±inf` where no step reaches.
pub(crate) fn signed_steps<A: Float>(
    bits: &[bool],
    shape: &[usize],
    offsets: &[Vec<isize>],
) -> Result<Vec<A>> {
    let mut out: Vec<A> = bits.iter().map(|&b| if b { A::infinity() } else { A::neg_infinity() }).collect();
    if bits.is_empty() || !bits.iter().any(|&b| b) || bits.iter().all(|&b| b) {
        return Ok(out);
    }
    let grid = Grid::new(shape, offsets);
    let (groups, sets) = groups(&grid, offsets);
    let object = grid.pack_by(bits, |&b| b);
    let background = grid.complement(&object);
    let wave = Wave::new::<A>(&grid, &groups, &sets, shape);
    // erosions: from the background into the object; dilations: the reverse
    for (side, sources, sign) in [(&object, &background, A::one()), (&background, &object, -A::one())] {
        let reach = |level: u64, word: Word| {
            let value = sign * A::from_f64_lossy(level as f64);
            word.voxels().for_each(|v| out[v] = value);
        };
        wave.run(side, sources, reach, |_| false)?;
    }
    Ok(out)
}

/// The predicted mask `scores > t` and the truth packed by a grid, and
/// whether a score is NaN: a pass over each array, compiled for the widest
/// SIMD the processor has.
struct Packing<'a, A, M> {
    grid: &'a Grid,
    scores: &'a [A],
    mask: &'a [M],
    t: f64,
}

impl<A: Float, M: MaskValue> crate::grid::par::Wide for Packing<'_, A, M> {
    type Output = (Vec<u64>, Vec<u64>, bool);
    #[inline(always)]
    fn run(self) -> Self::Output {
        let Packing { grid, scores, mask, t } = self;
        let nan = scores.iter().fold(false, |nan, x| nan | x.is_nan());
        (grid.pack_by(scores, |x| x.to_f64_lossless() > t), grid.pack_by(mask, |v| v.is_object()), nan)
    }
}

/// The `(m+1)`-th largest of `-k(v)` over the truth `Y` (packed rows),
/// `m = allowed(|Y|)`, where `k` is the signed steps of the predicted mask
/// `A` (packed rows `object`) by `plan`'s offsets (in the float type `A`:
/// the same numbers and the same limit as [`Plan::run`]), without counting
/// every voxel's steps: `-inf` when `|Y| <= m`; otherwise, if more than `m` of `Y` lie
/// outside `A`, the fewest dilations after which at most `m` remain
/// outside (`+inf` if none suffice), else minus the fewest erosions that
/// remove `m + 1 - |Y \ A|` of `Y`'s voxels from `A` (`-inf` if none
/// do). The wavefront stops at that level, so the cost is the band it
/// visits, not the image.
fn largest_after_steps<A: Float>(
    grid: &Grid,
    plan: &Plan,
    object: &[u64],
    truth: &[u64],
    shape: &[usize],
    allowed: &dyn Fn(u64) -> u64,
) -> Result<f64> {
    let n = ones(truth.iter().copied());
    let m = allowed(n);
    if n <= m {
        return Ok(f64::NEG_INFINITY);
    }
    let outside = n - ones(truth.iter().zip(object).map(|(&y, &a)| y & a));
    let background = grid.complement(object);
    let (groups, sets) = groups(grid, &plan.offsets);
    let wave = Wave::new::<A>(grid, &groups, &sets, shape);
    let mut found = None;
    if outside > m {
        // dilations: the level at which at most m of Y are left outside
        let left = Cell::new(outside);
        wave.run(
            &background,
            object,
            |_, word: Word| left.set(left.get() - ones_in(truth, word)),
            |level| {
                found = (left.get() <= m).then_some(level as f64);
                found.is_some()
            },
        )?;
        Ok(found.unwrap_or(f64::INFINITY))
    } else {
        // erosions: the level at which m + 1 - outside of Y are removed
        let (want, removed) = (m + 1 - outside, Cell::new(0u64));
        wave.run(
            object,
            &background,
            |_, word: Word| removed.set(removed.get() + ones_in(truth, word)),
            |level| {
                found = (removed.get() >= want).then_some(-(level as f64));
                found.is_some()
            },
        )?;
        Ok(found.unwrap_or(f64::NEG_INFINITY))
    }
}

/// The set bits of packed words.
fn ones(words: impl Iterator<Item = u64>) -> u64 {
    words.map(|w| u64::from(w.count_ones())).sum()
}

/// Voxels a wavefront reached in one level, in one word of a grid row.
#[derive(Debug, Clone, Copy)]
struct Word {
    /// the word's index in the packed rows
    grid: usize,
    /// the row-major index of the image voxel at its bit 0
    first: usize,
    /// the voxels, one bit each
    bits: u64,
}

impl Word {
    /// The row-major indices of the voxels.
    fn voxels(self) -> impl Iterator<Item = usize> {
        let mut b = self.bits;
        std::iter::from_fn(move || {
            (b != 0).then(|| {
                let v = self.first + b.trailing_zeros() as usize;
                b &= b - 1;
                v
            })
        })
    }
}

/// How many of a reached word's voxels are set in the packed rows `set`.
fn ones_in(set: &[u64], word: Word) -> u64 {
    u64::from((set[word.grid] & word.bits).count_ones())
}

/// The wavefront of one image.
struct Wave<'a> {
    grid: &'a Grid,
    groups: &'a [Group],
    sets: &'a [Vec<isize>],
    shape: &'a [usize],
    /// the most levels whose number is exact in the output's float type
    limit: u64,
    /// that float type's name, for the error beyond the limit
    float_name: &'static str,
}

impl<'a> Wave<'a> {
    /// The wavefront of an image of `shape` whose steps are counted in
    /// the float type `A`.
    fn new<A: Float>(
        grid: &'a Grid,
        groups: &'a [Group],
        sets: &'a [Vec<isize>],
        shape: &'a [usize],
    ) -> Self {
        Wave { grid, groups, sets, shape, limit: exact_limit::<A>(), float_name: A::NAME }
    }

    /// The wavefront from `sources` into `side` (both packed rows): the
    /// voxels of `side` first reached at level `k` are given, a word at a
    /// time, to `reach(k, word)`; after each level, `stop(k)` ends the
    /// wavefront if it says so.
    fn run(
        &self,
        side: &[u64],
        sources: &[u64],
        mut reach: impl FnMut(u64, Word),
        mut stop: impl FnMut(u64) -> bool,
    ) -> Result<()> {
        let Wave { grid, groups, sets, limit, .. } = *self;
        let w = grid.words;
        let nsets = sets.len();
        let mut unvisited = side.to_vec();
        // the front: its rows and their words
        let (mut front, mut front_bits) = (Vec::new(), Vec::new());
        for (r, words) in sources.chunks(w).enumerate() {
            if words.iter().any(|&x| x != 0) {
                front.push(r);
                front_bits.extend_from_slice(words);
            }
        }
        let mut acc = vec![0u64; grid.rows * w];
        let mut marked = vec![false; grid.rows];
        let mut targets: Vec<usize> = Vec::new();
        let mut shifted = vec![0u64; nsets * w];
        let mut coords = vec![0usize; grid.ext.len()];
        let mut level = 0u64;
        while !front.is_empty() {
            level += 1;
            if level > limit {
                return Err(Error::InvalidParameter {
                    name: "shape",
                    value: format!("{:?}", self.shape),
                    reason: format!(
                        "more than {limit} morphological steps are beyond whole numbers in {}; compute in float64",
                        self.float_name
                    ),
                });
            }
            // push every front row's shifts to the rows they reach
            for (&r, src) in front.iter().zip(front_bits.chunks_exact(w)) {
                shifted.fill(0);
                for (dst, set) in shifted.chunks_exact_mut(w).zip(sets) {
                    for &dx in set {
                        or_shifted(dst, src, dx);
                    }
                }
                if !grid.padded {
                    grid.coords(r, &mut coords);
                }
                for g in groups {
                    let Some(t) = grid.shifted(r, &coords, g) else { continue };
                    let sh = &shifted[g.set * w..(g.set + 1) * w];
                    acc[t * w..(t + 1) * w].iter_mut().zip(sh).for_each(|(d, &s)| *d |= s);
                    if !marked[t] {
                        marked[t] = true;
                        targets.push(t);
                    }
                }
            }
            // the reached voxels still unvisited are the next front
            front.clear();
            front_bits.clear();
            for &t in &targets {
                marked[t] = false;
                let (hit, todo) = (&mut acc[t * w..(t + 1) * w], &mut unvisited[t * w..(t + 1) * w]);
                let mut any = 0;
                for (a, u) in hit.iter_mut().zip(todo.iter_mut()) {
                    let new = *a & *u;
                    *a = 0;
                    *u &= !new;
                    any |= new;
                    front_bits.push(new);
                }
                if any == 0 {
                    front_bits.truncate(front_bits.len() - w);
                    continue;
                }
                front.push(t);
                for (k, &nw) in front_bits[front_bits.len() - w..].iter().enumerate() {
                    if nw != 0 {
                        reach(level, Word { grid: t * w + k, first: grid.start[t] + 64 * k, bits: nw });
                    }
                }
            }
            targets.clear();
            if stop(level) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn shifts_cross_word_boundaries() {
        let src = [1u64 << 63, 1];
        let mut dst = [0u64; 2];
        or_shifted(&mut dst, &src, 1);
        assert_eq!(dst, [0, 0b10 | 1]);
        let mut dst = [0u64; 2];
        or_shifted(&mut dst, &src, -1);
        assert_eq!(dst, [1 << 62 | 1 << 63, 0]);
        let mut dst = [0u64; 2];
        or_shifted(&mut dst, &src, 64);
        assert_eq!(dst, [0, 1 << 63]);
        let mut dst = [0u64; 2];
        or_shifted(&mut dst, &src, -65);
        assert_eq!(dst, [0, 0]);
        or_shifted(&mut dst, &src, -64);
        assert_eq!(dst, [1, 0]);
        or_shifted(&mut dst, &src, 200);
        assert_eq!(dst, [1, 0]);
    }

    #[test]
    fn words_pack_every_flag_in_place() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 1..=64 {
            for _ in 0..20 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let flags: Vec<bool> = (0..len).map(|i| (state >> (i % 61)) & 1 == 1).collect();
                for want in [true, false] {
                    let plain =
                        flags.iter().enumerate().fold(0, |a, (i, &b)| a | (u64::from(b == want) << i));
                    assert_eq!(pack_word(&flags, &|&b: &bool| b == want), plain, "{flags:?} {want}");
                }
            }
        }
    }

    #[test]
    fn inline_cells_round_trip() {
        for s in ["[010,111,010]", "111", "[[000,010,000],[010,111,010],[000,010,000]]", "[1,1,1]"] {
            let c = CustomFootprint::parse(s).unwrap();
            assert_eq!(c.to_string(), s);
        }
        assert_eq!(CustomFootprint::parse("[1,1,1]").unwrap().shape, vec![3, 1]);
        for bad in ["[010,11,010]", "[010,111,010", "[]", "[012]", "", "[[1],1]", "[010,111,010]]"] {
            assert!(CustomFootprint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn custom_footprints_are_validated() {
        assert!(Footprint::custom(&array![[0u8, 1, 0], [1, 1, 1], [0, 1, 0]]).is_ok());
        let e = |a: Array2<u8>| Footprint::custom(&a).unwrap_err().to_string();
        assert!(e(array![[1, 1], [1, 1]]).contains("odd"));
        assert!(e(array![[1, 1, 0], [0, 1, 0], [0, 0, 0]]).contains("symmetric"));
        assert!(e(array![[1, 0, 1]]).contains("centre"));
        assert!(e(array![[0, 1, 0]]).contains("only its centre"));
        assert!(matches!(Footprint::custom(&array![[0u8, 2, 0]]), Err(Error::NonBinaryMask { .. })));
        let big = ArrayD::from_elem(IxDyn(&[65, 65, 65]), true);
        assert!(Footprint::custom(&big).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn offsets_of_the_named_footprints() {
        let unit = Spacing::unit();
        let count = |f: &Footprint, shape: &[usize]| f.offsets(shape, &unit).unwrap().len();
        assert_eq!(count(&Footprint::Face, &[5, 5, 5]), 6);
        assert_eq!(count(&Footprint::Edge, &[5, 5, 5]), 18);
        assert_eq!(count(&Footprint::Full, &[5, 5, 5]), 26);
        assert_eq!(count(&Footprint::Edge, &[5, 5]), 8);
        assert_eq!(count(&Footprint::Face, &[1, 5]), 2); // clipped to the image
        let ball = Footprint::ball(2.0, Units::Voxels).unwrap();
        assert_eq!(count(&ball, &[9, 9, 9]), 32); // skimage's ball(2) has 33 cells
        assert_eq!(count(&ball, &[9, 9]), 12); // disk(2): 13
                                               // a face footprint lists its 2n offsets directly, in any dimension
        assert_eq!(count(&Footprint::Face, &[2; 20]), 40);
        assert!(Footprint::Full.offsets(&[2; 20], &unit).is_err());
    }

    #[test]
    fn balls_are_bounded_and_grow() {
        assert!(Ball::new(0.5, Units::Voxels).is_err());
        assert!(Ball::new(f64::INFINITY, Units::Voxels).is_err());
        assert!(Ball::new(-1.0, Units::Physical).is_err());
        let tiny = Footprint::ball(0.4, Units::Physical).unwrap();
        let sp = Spacing::new(vec![0.5, 0.5]).unwrap();
        assert!(tiny.offsets(&[8, 8], &sp).unwrap_err().to_string().contains("only its centre"));
        assert_eq!(tiny.offsets(&[8, 8], &Spacing::new(vec![0.4, 1.0]).unwrap()).unwrap().len(), 2);
        // a huge radius is clipped to the image, and refused beyond the bound
        let huge = Footprint::ball(1e300, Units::Voxels).unwrap();
        assert_eq!(huge.offsets(&[4, 5], &Spacing::unit()).unwrap().len(), 7 * 9 - 1);
        assert!(huge
            .offsets(&[128, 128, 128], &Spacing::unit())
            .unwrap_err()
            .to_string()
            .contains("at most"));
        assert!(huge.array(3, &Spacing::unit()).is_err());
        // on the sphere despite rounding: R = 1 with spacing 0.1 reaches 10 voxels
        let b = Footprint::ball(1.0, Units::Physical).unwrap();
        let a = b.array(1, &Spacing::new(vec![0.1]).unwrap()).unwrap();
        assert_eq!(a.len(), 21);
    }

    #[test]
    fn zero_dimensional_images_are_full_or_empty() {
        let unit = Spacing::unit();
        for fp in [Footprint::Face, Footprint::Full, Footprint::ball(2.0, Units::Physical).unwrap()] {
            let t = Morphological::new(fp);
            assert_eq!(t.apply(&ndarray::arr0(1.0_f64), &unit).unwrap()[()], f64::INFINITY);
            assert_eq!(t.apply(&ndarray::arr0(-1.0_f32), &unit).unwrap()[()], f32::NEG_INFINITY);
        }
    }

    #[test]
    fn steps_along_a_line() {
        let m = array![false, true, true, true, true, true, false, false, false];
        let f = Morphological::new(Footprint::Face);
        let d: ndarray::Array1<f64> = f.of_mask(&m, &Spacing::unit()).unwrap();
        assert_eq!(d, array![-1.0, 1.0, 2.0, 3.0, 2.0, 1.0, -1.0, -2.0, -3.0]);
        // a footprint jumping two voxels skips one parity on the way out
        let jump = Morphological::new(Footprint::custom(&array![1u8, 0, 1, 0, 1]).unwrap());
        let d: ndarray::Array1<f64> = jump.of_mask(&m, &Spacing::unit()).unwrap();
        assert_eq!(d, array![-1.0, 3.0, 1.0, 2.0, 1.0, 1.0, -1.0, -1.0, -2.0]);
        // voxels of the other parity are never reached
        let one = array![true, false, false, false];
        let d: ndarray::Array1<f64> = jump.of_mask(&one, &Spacing::unit()).unwrap();
        assert_eq!(d, array![1.0, f64::NEG_INFINITY, -1.0, f64::NEG_INFINITY]);
    }
}
