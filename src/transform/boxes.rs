//! Bounding-box scores (METHOD.md §5, after Andéol et al. 2023): conformal
//! boxes from the connected components of the predicted mask.
//!
//! # Definition
//!
//! Let `A = { v : s(v) > t }` be the predicted mask and `C_1, ..., C_m` its
//! connected components ([`Connectivity::Face`]: voxels sharing a face,
//! the default; [`Connectivity::Full`]: sharing a face, edge or corner).
//!
//! * outer box of `C_i`: its bounding box (smallest axis-aligned box holding it);
//! * inner box of `C_i`: the largest axis-aligned box inside `C_i`, largest
//!   meaning most voxels; among equally large boxes, the one whose
//!   `(start, end)` corner coordinates are lexicographically smallest
//!   (start corner first, axes in order).
//!
//! `B_O` is the union of the outer boxes, `B_I` the union of the inner
//! boxes, and the scores are the chessboard signed distance to the union
//! ([`SignedDistance`](super::SignedDistance) with
//! [`Metric::Chessboard`] and the midpoint
//! convention, spacing-weighted): `+` inside, `-` outside, `-inf`
//! everywhere when nothing is predicted, `+inf` when the union is the whole
//! image.
//!
//! The largest box is exact in any dimension: maximal rectangles by
//! histogram stacks in 2-D (`O(area)`), and in n-D every slab `[a, b]` along
//! the first axis is reduced to the (n-1)-D problem on the intersection of
//! its slices, with pruning by an upper bound on the volume.

use std::fmt;

use ndarray::{Array, ArrayRef, CowArray, Dimension};

use super::distance::{distance_spacing, from_flat, predicted_mask};
use super::smooth::{bad_option, parse_f64};
use super::{check_mask_threshold, DistanceConvention, EmptyPrediction, Metric, Spacing, Transform};
use crate::error::Result;
use crate::float::Float;
use crate::grid::edt::signed_distance_flat;
use crate::grid::strides;
pub use crate::grid::Connectivity;
use crate::mask::MaskValue;

/// Which inner boxes: any axis-aligned box, or cubes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum BoxShape {
    /// The largest axis-aligned box (most voxels).
    #[default]
    Rectangle,
    /// The largest axis-aligned cube (equal side in voxels on every axis;
    /// a square in 2-D), as in the paper's published figures.
    Square,
}

/// Which union of boxes the scores measure distance to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum BoxKind {
    /// Union of the components' bounding boxes (for outer sets).
    Outer,
    /// Union of the largest boxes inside the components (for inner sets).
    Inner,
}

/// An axis-aligned box of voxels `start[j] <= i_j < end[j]` (half-open).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoundingBox {
    start: Vec<usize>,
    end: Vec<usize>,
}

impl BoundingBox {
    /// First voxel index on each axis.
    #[must_use]
    pub fn start(&self) -> &[usize] {
        &self.start
    }

    /// One past the last voxel index on each axis.
    #[must_use]
    pub fn end(&self) -> &[usize] {
        &self.end
    }

    /// Number of voxels in the box.
    #[must_use]
    pub fn volume(&self) -> usize {
        self.start.iter().zip(&self.end).map(|(s, e)| e - s).product()
    }

    /// Whether the box holds the voxel `index`.
    #[must_use]
    pub fn contains(&self, index: &[usize]) -> bool {
        index.len() == self.start.len()
            && index.iter().zip(self.start.iter().zip(&self.end)).all(|(i, (s, e))| s <= i && i < e)
    }
}

/// One connected component of a mask and its two boxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentBoxes {
    /// Number of voxels in the component.
    pub size: usize,
    /// Its bounding box.
    pub outer: BoundingBox,
    /// The largest box inside it (ties: lexicographically smallest corners).
    pub inner: BoundingBox,
}

/// The connected components of a binary mask with their bounding boxes and
/// largest inner boxes of `shape` (see the [module docs](self)), in the
/// order of their first voxel in row-major order.
///
/// ```
/// use confseg::transform::{component_boxes, BoxShape, Connectivity};
/// use ndarray::array;
/// let mask = array![
///     [1u8, 1, 0, 0],
///     [1, 1, 1, 0],
///     [0, 0, 0, 1],
/// ];
/// let face = component_boxes(&mask, Connectivity::Face, BoxShape::Rectangle)?;
/// assert_eq!(face.len(), 2);
/// assert_eq!((face[0].size, face[0].outer.start(), face[0].outer.end()), (5, &[0, 0][..], &[2, 3][..]));
/// assert_eq!((face[0].inner.start(), face[0].inner.end()), (&[0, 0][..], &[2, 2][..]));
/// // With full connectivity the corner voxel joins the first component.
/// // The largest square inside the first component is 2x2 as well.
/// let square = component_boxes(&mask, Connectivity::Face, BoxShape::Square)?;
/// assert_eq!((square[0].inner.start(), square[0].inner.end()), (&[0, 0][..], &[2, 2][..]));
/// // With full connectivity the corner voxel joins the first component.
/// assert_eq!(component_boxes(&mask, Connectivity::Full, BoxShape::Rectangle)?.len(), 1);
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::NonBinaryMask`](crate::Error::NonBinaryMask) for a value other than 0/1.
pub fn component_boxes<M: MaskValue, D: Dimension>(
    mask: &ArrayRef<M, D>,
    connectivity: Connectivity,
    shape: BoxShape,
) -> Result<Vec<ComponentBoxes>> {
    crate::mask::check_mask(mask)?;
    let bits: Vec<bool> = mask.iter().map(|m| m.is_object()).collect();
    Ok(components(&bits, mask.shape(), connectivity, Some(shape))
        .into_iter()
        .map(|(size, outer, inner)| ComponentBoxes {
            size,
            inner: inner.unwrap_or_else(|| unreachable!("inner boxes were asked for")),
            outer,
        })
        .collect())
}

/// A component: its size, bounding box, and largest inner box of the shape
/// asked for (if asked).
type Component = (usize, BoundingBox, Option<BoundingBox>);

/// Components with their sizes, bounding boxes and largest inner boxes of
/// shape `inner` if it is given, in the order of their first voxel.
fn components(
    mask: &[bool],
    shape: &[usize],
    connectivity: Connectivity,
    inner: Option<BoxShape>,
) -> Vec<Component> {
    let ndim = shape.len();
    let st = strides(shape);
    let (label, count) = crate::grid::components(mask, shape, connectivity);
    let mut comps: Vec<(usize, Vec<usize>, Vec<usize>)> = Vec::with_capacity(count);
    let mut idx = vec![0usize; ndim];
    for &l in &label {
        if l != u32::MAX {
            let l = l as usize;
            if l == comps.len() {
                comps.push((0, idx.clone(), idx.iter().map(|&i| i + 1).collect()));
            }
            let c = &mut comps[l];
            c.0 += 1;
            for ((lo, hi), &i) in c.1.iter_mut().zip(c.2.iter_mut()).zip(&idx) {
                *lo = (*lo).min(i);
                *hi = (*hi).max(i + 1);
            }
        }
        for j in (0..ndim).rev() {
            idx[j] += 1;
            if idx[j] < shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    comps
        .into_iter()
        .enumerate()
        .map(|(l, (size, start, end))| {
            let inner = inner.map(|box_shape| {
                let local_shape: Vec<usize> = start.iter().zip(&end).map(|(s, e)| e - s).collect();
                let local = region(&label, shape, &st, &start, &local_shape, l);
                let best = match box_shape {
                    BoxShape::Rectangle => largest_box(&local, &local_shape),
                    BoxShape::Square => largest_cube(&local, &local_shape),
                };
                let (_, s, e) = best.unwrap_or_else(|| unreachable!("a component has at least one voxel"));
                BoundingBox {
                    start: s.iter().zip(&start).map(|(a, b)| a + b).collect(),
                    end: e.iter().zip(&start).map(|(a, b)| a + b).collect(),
                }
            });
            (size, BoundingBox { start, end }, inner)
        })
        .collect()
}

/// The voxels of label `l` within the box at `start` of `local_shape`, row-major.
fn region(
    label: &[u32],
    _shape: &[usize],
    st: &[usize],
    start: &[usize],
    local_shape: &[usize],
    l: usize,
) -> Vec<bool> {
    let n: usize = local_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; local_shape.len()];
    for _ in 0..n {
        let flat: usize = idx.iter().zip(start).zip(st).map(|((i, s), k)| (i + s) * k).sum();
        out.push(label[flat] as usize == l);
        for j in (0..idx.len()).rev() {
            idx[j] += 1;
            if idx[j] < local_shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    out
}

/// `(volume, start, end)` of the best box so far.
type Best = Option<(usize, Vec<usize>, Vec<usize>)>;

/// Keep the candidate if it has more voxels, or as many with smaller corners.
fn offer(best: &mut Best, vol: usize, start: Vec<usize>, end: Vec<usize>) {
    let better = match best {
        None => true,
        Some((bv, bs, be)) => vol > *bv || (vol == *bv && (&start, &end) < (&*bs, &*be)),
    };
    if better {
        *best = Some((vol, start, end));
    }
}

/// The largest all-true axis-aligned box of a row-major mask (see the
/// module docs for tie-breaking), or `None` if the mask has no true voxel.
fn largest_box(mask: &[bool], shape: &[usize]) -> Best {
    let mut best: Best = None;
    match shape.len() {
        0 => {
            if mask.first() == Some(&true) {
                best = Some((1, vec![], vec![]));
            }
        }
        1 => {
            let mut run = 0;
            for (i, &m) in mask.iter().enumerate() {
                run = if m { run + 1 } else { 0 };
                if run > 0 {
                    offer(&mut best, run, vec![i + 1 - run], vec![i + 1]);
                }
            }
        }
        2 => {
            // Maximal rectangles by histogram stacks: every largest rectangle
            // is popped with its full width from the bar of its minimal height.
            let (h, w) = (shape[0], shape[1]);
            let mut heights = vec![0usize; w];
            let mut stack: Vec<usize> = Vec::with_capacity(w + 1);
            for r in 0..h {
                for (c, ht) in heights.iter_mut().enumerate() {
                    *ht = if mask[r * w + c] { *ht + 1 } else { 0 };
                }
                stack.clear();
                for i in 0..=w {
                    let cur = if i < w { heights[i] } else { 0 };
                    while let Some(&top) = stack.last() {
                        if heights[top] < cur {
                            break;
                        }
                        stack.pop();
                        let ht = heights[top];
                        if ht > 0 {
                            let left = stack.last().map_or(0, |&l| l + 1);
                            offer(&mut best, ht * (i - left), vec![r + 1 - ht, left], vec![r + 1, i]);
                        }
                    }
                    stack.push(i);
                }
            }
        }
        _ => {
            let n0 = shape[0];
            let rest = &shape[1..];
            let len: usize = rest.iter().product();
            let count = |s: &[bool]| s.iter().filter(|&&b| b).count();
            for a in 0..n0 {
                let mut slab = mask[a * len..(a + 1) * len].to_vec();
                for b in a..n0 {
                    if b > a {
                        slab.iter_mut().zip(&mask[b * len..(b + 1) * len]).for_each(|(x, &y)| *x &= y);
                    }
                    let c = count(&slab);
                    // Deeper slabs only lose voxels: stop once they cannot tie the best.
                    if c == 0 || best.as_ref().is_some_and(|(bv, _, _)| (n0 - a) * c < *bv) {
                        break;
                    }
                    if let Some((v, s, e)) = largest_box(&slab, rest) {
                        let start = [vec![a], s].concat();
                        let end = [vec![b + 1], e].concat();
                        offer(&mut best, (b - a + 1) * v, start, end);
                    }
                }
            }
        }
    }
    best
}

/// The largest all-true axis-aligned cube (equal side on every axis) of a
/// row-major mask; among the largest, the one starting first in row-major
/// order (so the smallest corners, as for boxes); `None` if no voxel is
/// true. Binary search on the side `k`: a `k`-cube starts at `v` iff the
/// run of true voxels from `v` along each axis, after the runs along the
/// earlier axes were cut to `k`, reaches `k` — one O(n |mask|) pass per `k`.
fn largest_cube(mask: &[bool], shape: &[usize]) -> Best {
    let st = strides(shape);
    // The first start of a k-cube, if any.
    let mut run = vec![0usize; mask.len()];
    let mut fits = |k: usize| -> Option<usize> {
        let mut ok = mask.to_vec();
        for (&n, &s) in shape.iter().zip(&st) {
            // ok[v] = ok[v] && ok[v + s] && ... && ok[v + (k-1) s], via run lengths
            // counted backwards along the axis.
            for v in (0..ok.len()).rev() {
                let i = (v / s) % n;
                run[v] = if !ok[v] {
                    0
                } else if i + 1 < n {
                    run[v + s] + 1
                } else {
                    1
                };
            }
            for (o, r) in ok.iter_mut().zip(&run) {
                *o = *r >= k;
            }
        }
        ok.iter().position(|&b| b)
    };
    let max_side = shape.iter().copied().min().unwrap_or(1);
    let mut first = fits(1)?;
    let (mut lo, mut hi) = (1, max_side); // a lo-cube fits; none larger than hi
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match fits(mid) {
            Some(v) => {
                lo = mid;
                first = v;
            }
            None => hi = mid - 1,
        }
    }
    let mut start = Vec::with_capacity(shape.len());
    for (&n, &s) in shape.iter().zip(&st) {
        start.push((first / s) % n);
    }
    let end = start.iter().map(|&a| a + lo).collect();
    Some((lo.pow(shape.len() as u32), start, end))
}

/// Bounding-box scores: chessboard signed distance to the union of the
/// outer or inner boxes of the predicted mask's components; see the
/// [module docs](self).
///
/// ```
/// use confseg::{Spacing, Transform};
/// use confseg::transform::BoxScores;
/// use ndarray::array;
/// let s = array![
///     [-1.0_f64, 1.0, 1.0, -1.0, -1.0],
///     [-1.0, 1.0, -1.0, -1.0, -1.0],
///     [-1.0, -1.0, -1.0, -1.0, -1.0],
/// ];
/// let outer = BoxScores::outer().apply(&s, &Spacing::unit())?;
/// assert_eq!(outer[[1, 2]], 0.5); // inside the bounding box [0,2) x [1,3)
/// assert_eq!(outer[[2, 4]], -1.5);
/// let inner = BoxScores::inner().apply(&s, &Spacing::unit())?;
/// assert_eq!(inner[[1, 2]], -0.5); // largest inner box: rows 0..2 of column 1
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "BoxRepr", into = "BoxRepr"))]
pub struct BoxScores {
    kind: BoxKind,
    connectivity: Connectivity,
    mask_threshold: f64,
    shape: BoxShape,
    convention: DistanceConvention,
    empty: EmptyPrediction,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
struct BoxRepr {
    kind: BoxKind,
    connectivity: Connectivity,
    mask_threshold: f64,
    #[serde(default)]
    shape: BoxShape,
    #[serde(default)]
    convention: DistanceConvention,
    #[serde(default)]
    empty: EmptyPrediction,
}

#[cfg(feature = "serde")]
impl TryFrom<BoxRepr> for BoxScores {
    type Error = crate::Error;
    fn try_from(r: BoxRepr) -> Result<Self> {
        Ok(BoxScores::new(r.kind)
            .with_connectivity(r.connectivity)
            .with_mask_threshold(r.mask_threshold)?
            .with_shape(r.shape)
            .with_convention(r.convention)
            .with_empty(r.empty))
    }
}

#[cfg(feature = "serde")]
impl From<BoxScores> for BoxRepr {
    fn from(b: BoxScores) -> Self {
        BoxRepr {
            kind: b.kind,
            connectivity: b.connectivity,
            mask_threshold: b.mask_threshold,
            shape: b.shape,
            convention: b.convention,
            empty: b.empty,
        }
    }
}

impl BoxScores {
    /// Scores of `kind`: face connectivity, mask threshold 0, rectangular
    /// inner boxes, the midpoint convention, `-inf` for an empty prediction.
    #[must_use]
    pub fn new(kind: BoxKind) -> Self {
        BoxScores {
            kind,
            connectivity: Connectivity::Face,
            mask_threshold: 0.0,
            shape: BoxShape::Rectangle,
            convention: DistanceConvention::Midpoint,
            empty: EmptyPrediction::NegInf,
        }
    }

    /// The paper's published box scores (the options its figures and
    /// tables were made with): 8-connected ([`Connectivity::Full`])
    /// components, square inner boxes, the voxel-centre convention.
    ///
    /// ```
    /// use confseg::ScoreTransform;
    /// use confseg::transform::BoxScores;
    /// let t = ScoreTransform::Box(BoxScores::inner().paper());
    /// assert_eq!(t.to_string(), "box-inner:connectivity=full:shape=square:convention=centre");
    /// assert_eq!(t, "box-inner:connectivity=full:shape=square:convention=centre".parse()?);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn paper(self) -> Self {
        self.with_connectivity(Connectivity::Full)
            .with_shape(BoxShape::Square)
            .with_convention(DistanceConvention::VoxelCentre)
    }

    /// Use square (cubic) or rectangular inner boxes. Outer boxes are
    /// always bounding boxes.
    #[must_use]
    pub fn with_shape(mut self, shape: BoxShape) -> Self {
        self.shape = shape;
        self
    }

    /// Measure distances between voxel midpoints (default) or centres:
    /// with [`DistanceConvention::VoxelCentre`], a voxel outside the union
    /// scores `-d` and one inside `d - h`, where `d` is the chessboard
    /// distance between voxel centres to the nearest voxel on the other side
    /// and `h` the smallest spacing (with unit spacing, the box's own
    /// boundary voxels score 0, and `{score > -k}` is the union grown by
    /// `k` voxels: an exact box) — the paper's published convention.
    #[must_use]
    pub fn with_convention(mut self, convention: DistanceConvention) -> Self {
        self.convention = convention;
        self
    }

    /// What to return when the predicted mask is empty (no component, no
    /// box); see [`EmptyPrediction`].
    #[must_use]
    pub fn with_empty(mut self, empty: EmptyPrediction) -> Self {
        self.empty = empty;
        self
    }

    /// Rectangular or square inner boxes.
    #[must_use]
    pub fn shape(&self) -> BoxShape {
        self.shape
    }

    /// The distance convention.
    #[must_use]
    pub fn convention(&self) -> DistanceConvention {
        self.convention
    }

    /// The empty-prediction policy.
    #[must_use]
    pub fn empty(&self) -> EmptyPrediction {
        self.empty
    }

    /// Distance to the union of bounding boxes (for the outer transform).
    #[must_use]
    pub fn outer() -> Self {
        Self::new(BoxKind::Outer)
    }

    /// Distance to the union of largest inner boxes (for the inner transform).
    #[must_use]
    pub fn inner() -> Self {
        Self::new(BoxKind::Inner)
    }

    /// Use this connectivity for the components.
    #[must_use]
    pub fn with_connectivity(mut self, connectivity: Connectivity) -> Self {
        self.connectivity = connectivity;
        self
    }

    /// Predicted mask = `scores > t`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) if `t` is not finite.
    pub fn with_mask_threshold(mut self, t: f64) -> Result<Self> {
        check_mask_threshold(t)?;
        self.mask_threshold = t;
        Ok(self)
    }

    /// The name in transform strings: `box-outer` or `box-inner`.
    fn name(&self) -> &'static str {
        match self.kind {
            BoxKind::Outer => "box-outer",
            BoxKind::Inner => "box-inner",
        }
    }

    /// Outer or inner.
    #[must_use]
    pub fn kind(&self) -> BoxKind {
        self.kind
    }

    /// The connectivity.
    #[must_use]
    pub fn connectivity(&self) -> Connectivity {
        self.connectivity
    }

    /// The predicted-mask threshold.
    #[must_use]
    pub fn mask_threshold(&self) -> f64 {
        self.mask_threshold
    }
}

impl Transform for BoxScores {
    /// # Errors
    /// [`Error::NanScore`](crate::Error::NanScore) for a NaN score, [`Error::InvalidSpacing`](crate::Error::InvalidSpacing) if the
    /// spacing does not fit the dimension or the float type (see
    /// [`SignedDistance`](super::SignedDistance)'s errors).
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let mut bits = predicted_mask(scores, self.mask_threshold)?;
        let shape = scores.shape();
        let sp = distance_spacing::<A>(spacing, shape)?;
        if let Some(c) = self.empty.apply(&mut bits, scores)? {
            return Ok(CowArray::from(Array::from_elem(scores.raw_dim(), c)));
        }
        let st = strides(shape);
        let mut union = vec![false; bits.len()];
        let inner = match self.kind {
            BoxKind::Outer => None,
            BoxKind::Inner => Some(self.shape),
        };
        for (_, outer, inner) in components(&bits, shape, self.connectivity, inner) {
            fill_box(&mut union, &st, inner.as_ref().unwrap_or(&outer));
        }
        let mut d = signed_distance_flat::<A>(&union, shape, &sp, Metric::Chessboard, self.convention);
        if self.convention == DistanceConvention::VoxelCentre {
            // Inside: d - h (d >= h there), so the inside continues the outside's -d.
            let h = A::from_f64_lossy(sp.iter().copied().fold(f64::INFINITY, f64::min));
            for (x, &m) in d.iter_mut().zip(&union) {
                if m {
                    *x -= h;
                }
            }
        }
        Ok(CowArray::from(from_flat(scores.raw_dim(), d)))
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

fn fill_box(buf: &mut [bool], st: &[usize], b: &BoundingBox) {
    let shape: Vec<usize> = b.start.iter().zip(&b.end).map(|(s, e)| e - s).collect();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..b.volume() {
        let flat: usize = idx.iter().zip(&b.start).zip(st).map(|((i, s), k)| (i + s) * k).sum();
        buf[flat] = true;
        for j in (0..idx.len()).rev() {
            idx[j] += 1;
            if idx[j] < shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
}

impl fmt::Display for BoxScores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if self.connectivity == Connectivity::Full {
            f.write_str(":connectivity=full")?;
        }
        if self.mask_threshold != 0.0 {
            write!(f, ":threshold={}", self.mask_threshold)?;
        }
        if self.shape == BoxShape::Square {
            f.write_str(":shape=square")?;
        }
        if self.convention == DistanceConvention::VoxelCentre {
            f.write_str(":convention=centre")?;
        }
        if self.empty != EmptyPrediction::NegInf {
            write!(f, ":empty={}", self.empty)?;
        }
        Ok(())
    }
}

/// Parse the options after `box-outer` / `box-inner`.
pub(crate) fn parse_box(kind: BoxKind, options: &[(&str, &str)]) -> Result<BoxScores> {
    let mut b = BoxScores::new(kind);
    for &(key, value) in options {
        match key {
            "connectivity" => {
                b.connectivity = match value {
                    "face" => Connectivity::Face,
                    "full" => Connectivity::Full,
                    _ => return Err(bad_option(key, value, "connectivity is face or full")),
                }
            }
            "threshold" => b = b.with_mask_threshold(parse_f64("mask threshold", value)?)?,
            "shape" if kind == BoxKind::Inner => {
                b.shape = match value {
                    "rectangle" => BoxShape::Rectangle,
                    "square" => BoxShape::Square,
                    _ => return Err(bad_option(key, value, "shape is rectangle or square")),
                }
            }
            "convention" => {
                b.convention = match value {
                    "midpoint" => DistanceConvention::Midpoint,
                    "centre" | "center" => DistanceConvention::VoxelCentre,
                    _ => return Err(bad_option(key, value, "convention is midpoint or centre")),
                }
            }
            "empty" => b.empty = EmptyPrediction::parse(value)?,
            _ => {
                let inner = if kind == BoxKind::Inner { "shape, " } else { "" };
                let known =
                    format!("{} options: connectivity, threshold, {inner}convention, empty", b.name());
                return Err(bad_option(key, value, &known));
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn largest_box_3d_prefers_volume_then_smallest_corner() {
        // An L-shaped solid: a 2x2x3 bar plus a 1x1x4 spur.
        let mut m = Array3::from_elem((3, 3, 4), false);
        for ((i, j, k), v) in m.indexed_iter_mut() {
            *v = (i < 2 && j < 2 && k < 3) || (i == 2 && j == 2);
        }
        let c = component_boxes(&m, Connectivity::Full, BoxShape::Rectangle).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].inner, BoundingBox { start: vec![0, 0, 0], end: vec![2, 2, 3] });
        assert_eq!(c[0].outer, BoundingBox { start: vec![0, 0, 0], end: vec![3, 3, 4] });
        assert_eq!(component_boxes(&m, Connectivity::Face, BoxShape::Rectangle).unwrap().len(), 2);
        // Two equal 1x2 boxes in an L: the smaller start corner wins.
        let l = array![[true, true], [true, false]];
        let c = component_boxes(&l, Connectivity::Face, BoxShape::Rectangle).unwrap();
        assert_eq!(c[0].inner, BoundingBox { start: vec![0, 0], end: vec![1, 2] });
    }

    #[test]
    fn empty_prediction_is_minus_infinity() {
        let s = Array3::<f32>::from_elem((2, 3, 4), -1.0);
        for b in [BoxScores::outer(), BoxScores::inner()] {
            let d = b.apply(&s, &Spacing::unit()).unwrap();
            assert!(d.iter().all(|&x| x == f32::NEG_INFINITY));
        }
        let full = Array3::<f32>::from_elem((2, 3, 4), 1.0);
        assert!(BoxScores::inner()
            .apply(&full, &Spacing::unit())
            .unwrap()
            .iter()
            .all(|&x| x == f32::INFINITY));
    }
}
