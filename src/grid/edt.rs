//! The exact distance engine of the grid layer: the signed distance of a
//! binary mask (midpoint or voxel-centre convention, Euclidean, chessboard
//! or city-block, anisotropic spacing, any dimension) and the distance to a
//! set, in linear time. The definitions are those of
//! [`transform::distance`](crate::transform::distance); this module is how
//! they are computed, for the score transforms (signed distance, boxes,
//! morphological footprints) and the validation's measures (Hausdorff
//! distance, band width) alike.
//!
//! # Algorithm
//!
//! Seen on the lattice of half voxels, the boundary midpoints are points
//! with exactly one half-integer coordinate: a `k`-type midpoint (between
//! voxels that differ along axis `k`) is shifted by 1/2 along `k` only.
//! With the axes taken in some order `a_0, a_1, ...`, let `D_m` be the
//! distance to the midpoints of types `a_0..a_m` measured within each
//! hyperplane spanned by those axes. `D_0` is one 1-D sweep along `a_0`.
//! Along `a_m`, the hyperplanes of `D_(m-1)` sit at the whole positions
//! `j` and the `a_m`-type midpoints at the half positions `j + 1/2`, where
//! their distance within the hyperplane is `E_(m-1)`, the distance over
//! `a_0..a_(m-1)` to the voxels whose successor along `a_m` differs. So
//! `D_m` is one separable lower-envelope pass along `a_m`
//! (Felzenszwalb–Huttenlocher for Euclidean, the corresponding envelopes of
//! `max(a, |x|)` and `a + |x|` for chessboard and city-block) over the
//! interleaved line `D_(m-1)(0), E_(m-1)(0), D_(m-1)(1), ...`, evaluated
//! at the whole positions, and `D_(n-1)` with the sign of `A` is the
//! signed distance: one transform for inside and outside together, since
//! both sides share the same boundary set. `E_(m-1)` is itself a sweep and
//! `m - 1` plain envelope passes; in all, `n (n - 1) / 2` envelope passes
//! (1 in 2-D, 3 in 3-D; `n - 1` of them over lines with twice the sites)
//! plus `n` sweeps, each linear in the number of voxels. An odd site no
//! lower than both of its even neighbours one step away is never the
//! nearest at a voxel and is left out. In 3-D and beyond, each sweep along
//! `a_0` is followed by an envelope pass along the last axis, and the two
//! run range of lines by range of lines while the sweep's output is in
//! cache. Passes along non-contiguous axes read their lines in place while
//! a block of lines fits a core's L2 cache, and beyond gather tiles of
//! neighbouring lines into a scratch buffer so that memory is read row by
//! row. One scratch array per thread (up to 2^21 elements) is kept between
//! calls, so that transforming a stream of images does not pay for fresh
//! memory every time.
//!
//! # Threads and SIMD
//!
//! With the `rayon` feature, every pass over an image of at least 2^15
//! voxels is split into independent units (chunks of contiguous lines, or
//! ranges of columns of a strided axis) run on the current rayon pool.
//! Each voxel is computed by the same operations whichever thread runs its
//! unit, so the result is bit-identical to the single-threaded one. The
//! sweeps and the final signs are also compiled for AVX2 and run so where
//! the processor has it (chosen at run time), with the same values.
//!

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use crate::error::{Error, Result};
use crate::float::Float;

/// The distance `rho` between points; see the
/// [`transform::distance`](crate::transform::distance) docs for how spacing
/// enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Metric {
    /// `sqrt(sum_j (s_j dx_j)^2)`.
    #[default]
    Euclidean,
    /// `max_j s_j |dx_j|` (L-infinity).
    Chessboard,
    /// `sum_j s_j |dx_j|` (L1, Manhattan).
    CityBlock,
}

impl Metric {
    /// The name used in transform strings.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Chessboard => "chessboard",
            Metric::CityBlock => "cityblock",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "euclidean" => Ok(Metric::Euclidean),
            "chessboard" => Ok(Metric::Chessboard),
            "cityblock" | "city-block" | "manhattan" => Ok(Metric::CityBlock),
            _ => Err(Error::InvalidParameter {
                name: "metric",
                value: s.to_owned(),
                reason: "known metrics: euclidean, chessboard, cityblock".into(),
            }),
        }
    }
}

/// Where the boundary of the mask is taken to be; see the
/// [`transform::distance`](crate::transform::distance) docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum DistanceConvention {
    /// Distance to the midpoints between inside and outside voxels (the
    /// 0.5-level boundary; METHOD.md §5, the paper's definition).
    #[default]
    Midpoint,
    /// Distance to the nearest voxel centre on the other side (scipy's
    /// `distance_transform_edt`, MATLAB's `bwdist`).
    VoxelCentre,
}

/// Signed distance of a row-major binary mask of shape `shape`.
pub(crate) fn signed_distance_flat<A: Float>(
    mask: &[bool],
    shape: &[usize],
    spacing: &[f64],
    metric: Metric,
    convention: DistanceConvention,
) -> Vec<A> {
    match metric {
        Metric::Euclidean => signed::<A, Euclid>(mask, shape, spacing, convention),
        Metric::Chessboard => signed::<A, Chess>(mask, shape, spacing, convention),
        Metric::CityBlock => signed::<A, City>(mask, shape, spacing, convention),
    }
}

fn signed<A: Float, M: LineMetric>(
    mask: &[bool],
    shape: &[usize],
    spacing: &[f64],
    convention: DistanceConvention,
) -> Vec<A> {
    let n = mask.len();
    if n == 0 {
        return Vec::new();
    }
    let sp: Vec<A> = spacing.iter().map(|&s| A::from_f64_lossy(s)).collect();
    let parallel = super::par::worth_splitting(n);
    let finish = finish_signed::<A, M>;
    let nd = shape.len();
    let Some(&s0) = sp.first() else {
        // One voxel: no boundary, and no voxel on the other side.
        return mask.iter().map(|&m| finish(m, A::infinity())).collect();
    };
    // Zeroed memory, no fill pass: the first sweep writes every element.
    let mut acc = vec![A::zero(); n];
    match convention {
        DistanceConvention::Midpoint => {
            // On the half-voxel lattice (module docs), with the axes taken in
            // the order a_0, a_1, ...: D_0 is the sweep over a_0-type
            // midpoints; D_m is one envelope pass along a_m over the line
            // D_(m-1) (at even half-voxel positions) interleaved with
            // E_(m-1) (at odd ones), the distance over a_0..a_(m-1) to the
            // voxels whose successor along a_m differs. The last pass writes
            // the signed distance. Axis a_1 carries the most envelope passes
            // (n - 1), so it is the contiguous last axis; the sweeps run
            // along the first.
            let order: Vec<usize> = match nd {
                0..=2 => (0..nd).collect(),
                _ => [0, nd - 1].into_iter().chain(1..nd - 1).collect(),
            };
            if nd == 1 {
                sites_pass::<A, M>(mask, shape, 0, Sites::Transitions, s0, &mut acc, parallel);
                acc.iter_mut().zip(mask).for_each(|(a, &m)| *a = finish(m, *a));
                return acc;
            }
            // In 3-D and beyond (a_1 is then the last axis), each sweep is
            // followed by its envelope pass along a_1 range of lines by
            // range of lines, while the sweep's output is in cache; E_0 is
            // then kept only for one range.
            let fused = nd >= 3;
            if !fused {
                sites_pass::<A, M>(mask, shape, 0, Sites::Transitions, s0, &mut acc, parallel);
            }
            let mut steps = vec![false; n];
            let mut odd = pooled::<A>(n);
            for (m, &a) in order.iter().enumerate().skip(1) {
                step_set(mask, shape, a, &mut steps, parallel);
                if m == 1 && fused {
                    let sweeps = (mask, Sites::Transitions, Some(&steps[..]));
                    sweep_then_last_axis::<A, M>(&mut acc, sweeps, shape, &sp, parallel);
                    continue;
                }
                // E_(m-1): a sweep and m - 1 plain passes
                let plain = if fused {
                    let sweeps = (&steps[..], Sites::Voxels(true), None);
                    sweep_then_last_axis::<A, M>(&mut odd, sweeps, shape, &sp, parallel);
                    &order[2..m]
                } else {
                    sites_pass::<A, M>(&steps, shape, 0, Sites::Voxels(true), s0, &mut odd, parallel);
                    &order[1..m]
                };
                for &b in plain {
                    envelope_pass::<A, M>(&mut odd, None, shape, b, sp[b], None, parallel);
                }
                let signs = (m + 1 == nd).then_some(mask);
                envelope_pass::<A, M>(&mut acc, Some(&odd), shape, a, sp[a], signs, parallel);
            }
            give_back(odd);
            acc
        }
        DistanceConvention::VoxelCentre => {
            // Inside voxels measure to the nearest outside voxel and vice versa.
            let mut outside = pooled::<A>(n);
            for (buf, site) in [(&mut acc, false), (&mut outside, true)] {
                sites_pass::<A, M>(mask, shape, 0, Sites::Voxels(site), s0, buf, parallel);
                for (j, &sj) in sp.iter().enumerate().skip(1) {
                    envelope_pass::<A, M>(buf, None, shape, j, sj, None, parallel);
                }
            }
            acc.iter_mut()
                .zip(&outside)
                .zip(mask)
                .for_each(|((a, &o), &m)| *a = if m { finish(true, *a) } else { finish(false, o) });
            give_back(outside);
            acc
        }
    }
}

/// `steps[v] = mask[v] != mask[v + e_axis]` (false on the last layer along
/// `axis`): the voxels followed along `axis` by a boundary midpoint. Blocks
/// of layers are independent units of work, run in parallel if `parallel`.
fn step_set(mask: &[bool], shape: &[usize], axis: usize, steps: &mut [bool], parallel: bool) {
    let (_, n, inner) = split(shape, axis);
    let layer = n * inner;
    let unit = layer * (super::par::MIN_PARALLEL / layer).max(1);
    super::par::for_each_chunk(
        steps,
        unit,
        parallel,
        || (),
        |_, u, outs| {
            let blocks = mask[u * unit..u * unit + outs.len()].chunks_exact(layer);
            for (blk, out) in blocks.zip(outs.chunks_exact_mut(layer)) {
                let (body, last) = out.split_at_mut((n - 1) * inner);
                for ((o, &a), &b) in body.iter_mut().zip(&blk[..(n - 1) * inner]).zip(&blk[inner..]) {
                    *o = a != b;
                }
                last.fill(false);
            }
        },
    );
}

thread_local! {
    /// Scratch arrays kept between calls on this thread (at most one per
    /// float type and thread, up to [`POOL_MAX`] elements), to spare the
    /// page faults of fresh memory on every image.
    static POOL: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest scratch array kept in the pool (elements): a 128^3 volume.
const POOL_MAX: usize = 1 << 21;

/// An array of `n` elements for a pass that writes every one of them
/// (a reused one keeps its old values), from the pool when possible.
fn pooled<A: Float>(n: usize) -> Vec<A> {
    let reused = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|b| b.is::<Vec<A>>())?;
        p.swap_remove(i).downcast::<Vec<A>>().ok()
    });
    match reused {
        Some(mut v) if v.capacity() >= n => {
            v.truncate(n);
            v.resize(n, A::zero());
            *v
        }
        _ => vec![A::zero(); n],
    }
}

/// Return a scratch array to the pool, keeping at most one per type.
fn give_back<A: Float>(v: Vec<A>) {
    if v.capacity() <= POOL_MAX {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if !p.iter().any(|b| b.is::<Vec<A>>()) {
                p.push(Box::new(v));
            }
        });
    }
}

/// The signed physical distance of an internal value.
#[inline]
fn finish_signed<A: Float, M: LineMetric>(inside: bool, v: A) -> A {
    let d = M::finish(v);
    if inside {
        d
    } else {
        -d
    }
}

/// A metric seen along one line: internal values (squared for Euclidean),
/// the envelope of one site and where a later site takes over.
trait LineMetric {
    /// Internal value of a 1-D physical distance `d >= 0`.
    fn from_1d<A: Float>(d: A) -> A;
    /// Internal value at physical offset `dx >= 0` from a site whose value is `a`.
    fn eval<A: Float>(a: A, dx: A) -> A;
    /// Per-pass factor for [`LineMetric::key`] from the spacing `s`.
    fn scale<A: Float>(s: A) -> A;
    /// Per-site key of a site at position `u` (voxels) with value `a`.
    fn key<A: Float>(a: A, u: A, scale: A) -> A;
    /// For sites `u < w` (positions in voxels) with keys `ku`, `kw`: the
    /// real position from which `w` is at least as close as `u` (the set
    /// where it is is always a right half-line), as a fraction
    /// `(numerator, denominator > 0)` so that the envelope compares
    /// positions without dividing.
    fn takeover<A: Float>(u: A, ku: A, w: A, kw: A) -> (A, A);
    /// Physical distance of an internal value.
    fn finish<A: Float>(v: A) -> A;
}

struct Euclid;
struct Chess;
struct City;

impl LineMetric for Euclid {
    #[inline]
    fn from_1d<A: Float>(d: A) -> A {
        d * d
    }
    #[inline]
    fn eval<A: Float>(a: A, dx: A) -> A {
        a + dx * dx
    }
    #[inline]
    fn scale<A: Float>(s: A) -> A {
        (s * s).recip()
    }
    #[inline]
    fn key<A: Float>(a: A, _u: A, scale: A) -> A {
        a * scale
    }
    #[inline]
    fn takeover<A: Float>(u: A, ku: A, w: A, kw: A) -> (A, A) {
        // b + s^2 (x - w)^2 <= a + s^2 (x - u)^2
        //   <=>  x >= (kw - ku + (w - u)(w + u)) / (2 (w - u)),
        // with w^2 - u^2 as a product of integers (exact while it fits the
        // float type's mantissa): squares of far positions, each rounded,
        // would lose the distance in f32 on long lines.
        let d = w - u;
        (kw - ku + d * (w + u), d + d)
    }
    #[inline]
    fn finish<A: Float>(v: A) -> A {
        v.sqrt()
    }
}

impl LineMetric for Chess {
    #[inline]
    fn from_1d<A: Float>(d: A) -> A {
        d
    }
    #[inline]
    fn eval<A: Float>(a: A, dx: A) -> A {
        a.max(dx)
    }
    #[inline]
    fn scale<A: Float>(s: A) -> A {
        s.recip()
    }
    #[inline]
    fn key<A: Float>(a: A, _u: A, scale: A) -> A {
        a * scale
    }
    #[inline]
    fn takeover<A: Float>(u: A, ku: A, w: A, kw: A) -> (A, A) {
        // max(kw, |x - w|) <= max(ku, |x - u|) (in voxels), solved case by case.
        let mid = (u + w) * A::from_f64_lossy(0.5);
        let x = if kw <= ku { (w - ku).min(mid) } else { (u + kw).max(mid) };
        (x, A::one())
    }
    #[inline]
    fn finish<A: Float>(v: A) -> A {
        v
    }
}

impl LineMetric for City {
    #[inline]
    fn from_1d<A: Float>(d: A) -> A {
        d
    }
    #[inline]
    fn eval<A: Float>(a: A, dx: A) -> A {
        a + dx
    }
    #[inline]
    fn scale<A: Float>(s: A) -> A {
        s.recip()
    }
    #[inline]
    fn key<A: Float>(a: A, _u: A, scale: A) -> A {
        a * scale
    }
    #[inline]
    fn takeover<A: Float>(u: A, ku: A, w: A, kw: A) -> (A, A) {
        // kw + |x - w| <= ku + |x - u| (in voxels)
        let gap = w - u;
        let x = if kw + gap <= ku {
            A::neg_infinity()
        } else if kw <= ku + gap {
            (kw - ku + u + w) * A::from_f64_lossy(0.5)
        } else {
            A::infinity()
        };
        (x, A::one())
    }
    #[inline]
    fn finish<A: Float>(v: A) -> A {
        v
    }
}

/// Sites of the first 1-D pass along an axis.
#[derive(Clone, Copy)]
enum Sites {
    /// Midpoints between consecutive voxels that differ (half-integer positions).
    Transitions,
    /// Voxels whose mask value equals this.
    Voxels(bool),
}

/// `(outer, n, inner)`: a row-major array seen as `outer` blocks of `n`
/// rows of `inner` contiguous elements, rows running along `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// First pass along `axis`: the internal value of the 1-D physical distance
/// from each voxel to the nearest site on its line (inf if none). Processed
/// row by row (all lines of a range of columns at once), so memory is read
/// contiguously whatever the axis; ranges of columns (or of lines) are
/// independent units of work, run in parallel if `parallel`.
fn sites_pass<A: Float, M: LineMetric>(
    mask: &[bool],
    shape: &[usize],
    axis: usize,
    sites: Sites,
    s: A,
    out: &mut [A],
    parallel: bool,
) {
    let (_, n, inner) = split(shape, axis);
    let half = A::from_f64_lossy(0.5);
    if inner == 1 {
        // Contiguous lines, run by run (maximal stretches of equal mask
        // values): every voxel of a run has the same nearest site on each
        // side, so each run is one loop without branches. The values are
        // those of a forward sweep `(x - last) s` and a backward sweep
        // `(next - x) s`, their minimum, then the metric's value.
        let line = |ml: &[bool], ol: &mut [A]| {
            let mut a = 0;
            while a < n {
                let v = ml[a];
                let b = a + ml[a..].iter().position(|&m| m != v).unwrap_or(n - a);
                let at = |t: usize| A::from_usize(t).unwrap_or_else(A::infinity);
                let (last, next) = match sites {
                    // the midpoints around the run, as the sweeps compute them
                    Sites::Transitions => (
                        if a > 0 { at(a) - half } else { A::neg_infinity() },
                        if b < n { at(b - 1) + half } else { A::infinity() },
                    ),
                    Sites::Voxels(site) if v == site => (A::nan(), A::nan()),
                    Sites::Voxels(_) => (
                        if a > 0 { at(a - 1) } else { A::neg_infinity() },
                        if b < n { at(b) } else { A::infinity() },
                    ),
                };
                let run = &mut ol[a..b];
                if last.is_nan() {
                    // every voxel is a site: (x - x) s
                    run.fill(M::from_1d(A::zero() * s));
                } else {
                    fill_sweep::<A, M>(run, a, last, next, s);
                }
                a = b;
            }
        };
        let lines = lines_per_unit(n);
        super::par::for_each_chunk(
            out,
            lines * n,
            parallel,
            || (),
            |_, u, oc| {
                let base = u * lines * n;
                for (ml, ol) in mask[base..base + oc.len()].chunks_exact(n).zip(oc.chunks_exact_mut(n)) {
                    line(ml, ol);
                }
            },
        );
        return;
    }
    let width = column_width(inner, 1);
    super::par::for_each_column_range(
        out,
        (n, inner),
        width,
        parallel,
        Vec::new,
        |gap: &mut Vec<A>, b, c0, rows| {
            let start = b * n * inner + c0;
            let range = SweepRange::<A, M> { mask, rows, gap, sites, inner, start, s, metric: PhantomData };
            super::par::widest(range);
        },
    );
}

/// One range of columns of a first pass along a strided axis (see
/// [`sites_pass`]): `rows` are its `n` rows, the first starting at `start`
/// in `mask`; `gap` is scratch.
struct SweepRange<'a, 'b, A, M> {
    mask: &'a [bool],
    rows: ArrayViewMut2<'b, A>,
    gap: &'a mut Vec<A>,
    sites: Sites,
    inner: usize,
    start: usize,
    s: A,
    metric: PhantomData<M>,
}

impl<A: Float, M: LineMetric> super::par::Wide for SweepRange<'_, '_, A, M> {
    type Output = ();

    /// Row by row, on vectors of the range's width. Each column carries
    /// its gap (in voxels) to the nearest site so far, a new value on every
    /// row: `0` (or `1/2` for a midpoint) at a site, the previous gap plus
    /// one elsewhere. These are the positions' differences exactly (whole
    /// and half numbers below 2^23), and a value written on every row keeps
    /// the loop free of conditional (masked) stores, which are slow.
    #[inline(always)]
    fn run(self) {
        let SweepRange { mask, mut rows, gap, sites, inner, start, s, .. } = self;
        let (n, w) = rows.dim();
        if n == 0 {
            return;
        }
        let (one, half) = (A::one(), A::from_f64_lossy(0.5));
        let at = |t: usize| start + t * inner;
        gap.resize(w, A::zero());
        fn out<'r, A>(rows: &'r mut ArrayViewMut2<'_, A>, t: usize) -> &'r mut [A] {
            rows.row_mut(t).into_slice().unwrap_or_else(|| unreachable!("rows are contiguous"))
        }
        // forward: gap to the nearest site at or before each voxel (one loop
        // per kind of site, each without branches)
        gap.fill(A::infinity());
        match sites {
            Sites::Transitions => {
                out(&mut rows, 0).fill(A::infinity());
                for t in 1..n {
                    let (row, prev) = (&mask[at(t)..at(t) + w], &mask[at(t - 1)..at(t - 1) + w]);
                    for (((g, o), &a), &b) in gap.iter_mut().zip(out(&mut rows, t)).zip(row).zip(prev) {
                        *g = if a != b { half } else { *g + one };
                        *o = *g * s;
                    }
                }
            }
            Sites::Voxels(v) => {
                for t in 0..n {
                    let row = &mask[at(t)..at(t) + w];
                    for ((g, o), &a) in gap.iter_mut().zip(out(&mut rows, t)).zip(row) {
                        *g = if a == v { A::zero() } else { *g + one };
                        *o = *g * s;
                    }
                }
            }
        }
        // backward: gap to the nearest site at or after, then the metric's value
        gap.fill(A::infinity());
        for t in (0..n).rev() {
            let (orow, row) = (out(&mut rows, t), &mask[at(t)..at(t) + w]);
            match sites {
                Sites::Transitions if t + 1 < n => {
                    let below = &mask[at(t + 1)..at(t + 1) + w];
                    for (((g, o), &a), &b) in gap.iter_mut().zip(orow).zip(row).zip(below) {
                        *g = if a != b { half } else { *g + one };
                        *o = M::from_1d(lesser(*o, *g * s));
                    }
                }
                Sites::Transitions => {
                    // the last row: no midpoint after it
                    for o in orow.iter_mut() {
                        *o = M::from_1d(*o);
                    }
                }
                Sites::Voxels(v) => {
                    for ((g, o), &a) in gap.iter_mut().zip(orow).zip(row) {
                        *g = if a == v { A::zero() } else { *g + one };
                        *o = M::from_1d(lesser(*o, *g * s));
                    }
                }
            }
        }
    }
}

/// Bytes of a range of columns in [`sweep_then_last_axis`] (of each of its
/// two arrays): a quarter of a core's L2 cache.
const FUSED_BYTES: usize = 1 << 18;

/// A first pass along axis 0 of a row-major array of `shape` (3-D or more)
/// over `sweeps = (mask, sites, odd)`, then an envelope pass along the last
/// axis, into `out`: the plain pass, or with `odd` (a step set) the doubled
/// pass whose odd sites are the first pass over the voxels of `odd`. Ranges
/// of whole lines of the last axis are independent units of work (in
/// parallel if `parallel`), each swept and then enveloped while in cache;
/// the odd sites are kept for one range only. The values are those of
/// [`sites_pass`] followed by [`envelope_pass`].
fn sweep_then_last_axis<A: Float, M: LineMetric>(
    out: &mut [A],
    (mask, sites, odd): (&[bool], Sites, Option<&[bool]>),
    shape: &[usize],
    sp: &[A],
    parallel: bool,
) {
    let (nd, n0) = (shape.len(), shape[0]);
    let (nl, inner) = (shape[nd - 1], out.len() / n0.max(1));
    if nl == 0 || inner == 0 {
        return;
    }
    let lines = (FUSED_BYTES / (n0 * nl * std::mem::size_of::<A>()).max(1)).clamp(1, inner / nl);
    let s = if odd.is_some() { sp[nd - 1] * A::from_f64_lossy(0.5) } else { sp[nd - 1] };
    let scale = M::scale(s);
    super::par::for_each_column_range(
        out,
        (n0, inner),
        lines * nl,
        parallel,
        || (Vec::new(), Vec::new(), Scratch::default()),
        |(gap, odd_range, sc): &mut (Vec<A>, Vec<A>, Scratch<A>), _, c0, mut rows| {
            let cols = rows.ncols();
            let sweep = |mask, sites, rows, gap: &mut Vec<A>| {
                let s = sp[0];
                let range =
                    SweepRange::<A, M> { mask, rows, gap, sites, inner, start: c0, s, metric: PhantomData };
                super::par::widest(range);
            };
            sweep(mask, sites, rows.view_mut(), gap);
            sc.reserve(nl, 0, odd.is_some());
            if let Some(steps) = odd {
                odd_range.resize(n0 * cols, A::zero());
                let v = ArrayViewMut2::from_shape((n0, cols), &mut odd_range[..n0 * cols])
                    .unwrap_or_else(|_| unreachable!("n0 rows of the range's columns"));
                sweep(steps, Sites::Voxels(true), v, gap);
            }
            for (t, mut row) in rows.rows_mut().into_iter().enumerate() {
                let row = row.as_slice_mut().unwrap_or_else(|| unreachable!("rows are contiguous"));
                for (l, line) in row.chunks_exact_mut(nl).enumerate() {
                    let at = t * cols + l * nl;
                    let o = odd.map(|_| &odd_range[at..at + nl]);
                    envelope_line::<A, M, _, _>(line, nl, o, s, scale, &mut sc.stack);
                }
            }
        },
    );
}

/// `g[i] = from_1d(min((x - last) s, (next - x) s))` for `x = x0 + i`.
#[inline]
fn fill_sweep<A: Float, M: LineMetric>(g: &mut [A], x0: usize, last: A, next: A, s: A) {
    let sweep = |xa: A| M::from_1d(((xa - last) * s).min((next - xa) * s));
    match i32::try_from(x0 + g.len()) {
        // exact integer positions, converted lane by lane
        Ok(_) => {
            for (i, gx) in g.iter_mut().enumerate() {
                *gx = sweep(A::from_i32((x0 + i) as i32).unwrap_or_else(A::infinity));
            }
        }
        Err(_) => {
            for (i, gx) in g.iter_mut().enumerate() {
                *gx = sweep(A::from_usize(x0 + i).unwrap_or_else(A::infinity));
            }
        }
    }
}

/// Contiguous lines of length `n` per unit of work.
fn lines_per_unit(n: usize) -> usize {
    (4096 / n.max(1)).max(1)
}

/// Columns per unit of work of a strided pass: a multiple of `align`
/// (whole tiles for an envelope pass), at most `inner` rounded up to it.
fn column_width(inner: usize, align: usize) -> usize {
    let target = (inner / 16).max(256).min(inner);
    target.div_ceil(align).max(1) * align
}

/// Largest block of strided lines (`n x inner` elements) whose lines are
/// read in place, column by column: the size of a core's L2 cache on
/// current x86 parts. Beyond, a column's elements (a power-of-two stride
/// apart, typically) evict each other from the cache before the next
/// column reuses their lines, and gathered tiles are faster.
const IN_PLACE_BYTES: usize = 1 << 20;

/// Bytes of each row gathered at once from a strided axis (one cache
/// line): 8 lines of f64, 16 of f32.
const TILE_BYTES: usize = 64;

/// Lines gathered at once from a strided axis for elements of type `A`.
fn tile<A>() -> usize {
    (TILE_BYTES / std::mem::size_of::<A>()).max(1)
}

/// One site on the envelope's stack: its position and value, its key, and
/// where it starts to be the lowest, as the fraction `num / den`.
#[derive(Clone, Copy)]
struct Site<A> {
    pos: A,
    val: A,
    key: A,
    num: A,
    den: A,
}

type Stack<A> = Vec<Site<A>>;

/// Scratch buffers for the envelope passes: gathered tiles of lines (and
/// of the interleaved odd sites) and the envelope's stack.
struct Scratch<A> {
    tile: Vec<A>,
    tile_odd: Vec<A>,
    stack: Stack<A>,
}

impl<A: Float> Scratch<A> {
    /// Room for `tile` gathered lines of length `n` (with their odd sites
    /// if `odd`) and for the sites of one line.
    fn reserve(&mut self, n: usize, tile: usize, odd: bool) {
        let grow = |v: &mut Vec<A>, len: usize| v.resize(v.len().max(len), A::zero());
        grow(&mut self.tile, n * tile);
        if odd {
            grow(&mut self.tile_odd, n * tile);
        }
        let z = A::zero();
        let blank = Site { pos: z, val: z, key: z, num: z, den: z };
        let sites = if odd { 2 * n } else { n };
        self.stack.resize(self.stack.len().max(sites), blank);
    }
}

impl<A> Default for Scratch<A> {
    fn default() -> Self {
        Scratch { tile: Vec::new(), tile_odd: Vec::new(), stack: Vec::new() }
    }
}

/// Lower-envelope pass along `axis`: `g(x) = min_u eval(f(u), |x - u|)`
/// (physical offsets) on every line of `buf`, in place. With `odd`, the
/// sites of a line are those of `buf` at even half-voxel positions
/// interleaved with those of `odd` at the odd ones (between voxel `j` and
/// `j + 1`), and `g` is evaluated at the voxels. With `signs` (the mask),
/// the result is then the signed physical distance. Contiguous lines are
/// processed directly, and so are strided ones while a block of lines
/// fits [`IN_PLACE_BYTES`]; beyond, strided lines are gathered in tiles of
/// [`tile`] neighbours, row by row. Chunks of lines (ranges of columns)
/// are independent units of work, run in parallel if `parallel`.
fn envelope_pass<A: Float, M: LineMetric>(
    buf: &mut [A],
    odd: Option<&[A]>,
    shape: &[usize],
    axis: usize,
    s: A,
    signs: Option<&[bool]>,
    parallel: bool,
) {
    let (_, n, inner) = split(shape, axis);
    // physical length of one step between sites
    let s = if odd.is_some() { s * A::from_f64_lossy(0.5) } else { s };
    let scale = M::scale(s);
    let with_odd = odd.is_some();
    if inner == 1 {
        let lines = lines_per_unit(n);
        super::par::for_each_chunk(
            buf,
            lines * n,
            parallel,
            Scratch::default,
            |sc: &mut Scratch<A>, u, bc| {
                sc.reserve(n, 0, with_odd);
                let base = u * lines * n;
                for (li, line) in bc.chunks_exact_mut(n).enumerate() {
                    let o = odd.map(|o| &o[base + li * n..base + (li + 1) * n]);
                    envelope_line::<A, M, _, _>(line, n, o, s, scale, &mut sc.stack);
                }
                if let Some(m) = signs {
                    let len = bc.len();
                    let rows = ArrayViewMut2::from_shape((1, len), bc)
                        .unwrap_or_else(|_| unreachable!("one row of the chunk's length"));
                    super::par::widest(Signs::<A, M> {
                        rows,
                        inside: m,
                        start: base,
                        inner: len,
                        metric: PhantomData,
                    });
                }
            },
        );
        return;
    }
    let in_place = n * inner * std::mem::size_of::<A>() <= IN_PLACE_BYTES;
    let width = column_width(inner, tile::<A>());
    super::par::for_each_column_range(
        buf,
        (n, inner),
        width,
        parallel,
        Scratch::default,
        |sc: &mut Scratch<A>, b, c0, mut bv| {
            let cols = bv.ncols();
            let tile = tile::<A>().min(cols);
            sc.reserve(n, if in_place { 0 } else { tile }, with_odd);
            let Scratch { tile: tile_io, tile_odd, stack } = sc;
            let at = |t: usize| (b * n + t) * inner + c0;
            if in_place {
                // the odd sites of this block, as its lines
                let odd_block = odd.map(|o| {
                    let start = at(0) - c0;
                    ArrayView2::from_shape((n, inner), &o[start..start + n * inner])
                        .unwrap_or_else(|_| unreachable!("a block holds n rows of inner elements"))
                });
                for (l, line) in bv.columns_mut().into_iter().enumerate() {
                    let o = odd_block.as_ref().map(|o| o.column(c0 + l));
                    envelope_line::<A, M, _, _>(line, n, o, s, scale, stack);
                }
            } else {
                let mut r0 = 0;
                while r0 < cols {
                    let w = tile.min(cols - r0);
                    for t in 0..n {
                        let row = bv.row(t);
                        let row = row.as_slice().unwrap_or_else(|| unreachable!("rows are contiguous"));
                        for (l, &x) in row[r0..r0 + w].iter().enumerate() {
                            tile_io[l * n + t] = x;
                        }
                        if let Some(o) = odd {
                            for (l, &x) in o[at(t) + r0..at(t) + r0 + w].iter().enumerate() {
                                tile_odd[l * n + t] = x;
                            }
                        }
                    }
                    for (l, line) in tile_io.chunks_exact_mut(n).take(w).enumerate() {
                        let o = with_odd.then(|| &tile_odd[l * n..(l + 1) * n]);
                        envelope_line::<A, M, _, _>(line, n, o, s, scale, stack);
                    }
                    for t in 0..n {
                        let mut row = bv.row_mut(t);
                        let row = row.as_slice_mut().unwrap_or_else(|| unreachable!("rows are contiguous"));
                        for (l, x) in row[r0..r0 + w].iter_mut().enumerate() {
                            *x = tile_io[l * n + t];
                        }
                    }
                    r0 += w;
                }
            }
            if let Some(m) = signs {
                let rows = bv.view_mut();
                super::par::widest(Signs::<A, M> {
                    rows,
                    inside: m,
                    start: at(0),
                    inner,
                    metric: PhantomData,
                });
            }
        },
    );
}

/// Internal values to signed physical distances, positive inside, on
/// `rows` (contiguous, `inner` apart in the image) whose first starts at
/// `start` in the mask `inside`.
struct Signs<'a, 'b, A, M> {
    rows: ArrayViewMut2<'b, A>,
    inside: &'a [bool],
    start: usize,
    inner: usize,
    metric: PhantomData<M>,
}

impl<A: Float, M: LineMetric> super::par::Wide for Signs<'_, '_, A, M> {
    type Output = ();

    /// One loop without branches per row, so that it vectorises.
    #[inline(always)]
    fn run(self) {
        let Signs { mut rows, inside, start, inner, .. } = self;
        for (t, mut row) in rows.rows_mut().into_iter().enumerate() {
            let row = row.as_slice_mut().unwrap_or_else(|| unreachable!("rows are contiguous"));
            let m = &inside[start + t * inner..start + t * inner + row.len()];
            for (x, &b) in row.iter_mut().zip(m) {
                let sign = if b { A::one() } else { -A::one() };
                *x = M::finish(*x) * sign;
            }
        }
    }
}

/// The lesser of two values that are never NaN (internal distances), in
/// one instruction (`min` also handles NaN).
#[inline]
fn lesser<A: Float>(a: A, b: A) -> A {
    if b < a {
        b
    } else {
        a
    }
}

/// The envelope's stack size and its top site, held in locals once
/// [`Top::push`] is inlined into the scan.
struct Top<A> {
    /// stack size
    k: usize,
    pos: A,
    key: A,
    num: A,
    den: A,
}

impl<A: Float> Top<A> {
    #[inline(always)]
    fn new() -> Self {
        Top { k: 0, pos: A::zero(), key: A::zero(), num: A::neg_infinity(), den: A::one() }
    }

    /// Add the site at position `qa` with value `fq` (if finite), popping
    /// the sites it hides.
    #[inline(always)]
    fn push<M: LineMetric>(&mut self, st: &mut [Site<A>], qa: A, fq: A, scale: A) {
        if !fq.is_finite() {
            return;
        }
        let kq = M::key(fq, qa, scale);
        // start of the new site: -inf unless an earlier site survives
        let (mut xn, mut xd) = (A::neg_infinity(), A::one());
        while self.k > 0 {
            (xn, xd) = M::takeover(self.pos, self.key, qa, kq);
            // xn / xd <= num / den, denominators positive
            if xn * self.den <= self.num * xd {
                self.k -= 1;
                (xn, xd) = (A::neg_infinity(), A::one());
                if self.k > 0 {
                    let t = st[self.k - 1];
                    (self.pos, self.key, self.num, self.den) = (t.pos, t.key, t.num, t.den);
                }
            } else {
                break;
            }
        }
        st[self.k] = Site { pos: qa, val: fq, key: kq, num: xn, den: xd };
        (self.pos, self.key, self.num, self.den) = (qa, kq, xn, xd);
        self.k += 1;
    }
}

/// A line of values read by index: a slice, or a strided view along an
/// axis that is not the last.
trait Line<A> {
    fn at(&self, i: usize) -> A;
}

/// A line whose values are replaced by index.
trait LineMut<A>: Line<A> {
    fn set(&mut self, i: usize, v: A);
}

impl<A: Copy> Line<A> for &[A] {
    #[inline(always)]
    fn at(&self, i: usize) -> A {
        self[i]
    }
}

impl<A: Copy> Line<A> for &mut [A] {
    #[inline(always)]
    fn at(&self, i: usize) -> A {
        self[i]
    }
}

impl<A: Copy> LineMut<A> for &mut [A] {
    #[inline(always)]
    fn set(&mut self, i: usize, v: A) {
        self[i] = v;
    }
}

impl<A: Copy> Line<A> for ArrayView1<'_, A> {
    #[inline(always)]
    fn at(&self, i: usize) -> A {
        self[i]
    }
}

impl<A: Copy> Line<A> for ArrayViewMut1<'_, A> {
    #[inline(always)]
    fn at(&self, i: usize) -> A {
        self[i]
    }
}

impl<A: Copy> LineMut<A> for ArrayViewMut1<'_, A> {
    #[inline(always)]
    fn set(&mut self, i: usize, v: A) {
        self[i] = v;
    }
}

/// One line of the lower envelope (Felzenszwalb & Huttenlocher 2012, with
/// the metric's own takeover point), in place: sites are the finite
/// values `f[i]` of the `n` in `line` at positions `i = 0, 1, 2, ...` (in
/// steps of physical length `s`), or with `odd` those of `line` at `0, 2,
/// 4, ...` and of `odd` at `1, 3, 5, ...`; the envelope, evaluated at the
/// positions of `line`'s values, then replaces them. The top of the
/// stack and the next site of the scan are kept in locals, so that the
/// common step (no site popped, no site taken over) touches no memory but
/// the line.
fn envelope_line<A: Float, M: LineMetric, L: LineMut<A>, O: Line<A>>(
    mut line: L,
    n: usize,
    odd: Option<O>,
    s: A,
    scale: A,
    st: &mut Stack<A>,
) {
    if n == 0 {
        return;
    }
    let mut top = Top::new();
    let mut qa = A::zero();
    let step = match odd {
        None => {
            for i in 0..n {
                top.push::<M>(st, qa, line.at(i), scale);
                qa += A::one();
            }
            A::one()
        }
        Some(odd) => {
            // An odd site no lower than both even neighbours one step away
            // (`f[j], f[j + 1] <= eval(odd[j], s)`) is never below them at
            // an even position: it is left out.
            let mut fq = line.at(0);
            for i in 0..n {
                let fr = if i + 1 < n { line.at(i + 1) } else { A::infinity() };
                let fo = odd.at(i);
                top.push::<M>(st, qa, fq, scale);
                let reach = M::eval(fo, s);
                if !(fq <= reach && fr <= reach) {
                    top.push::<M>(st, qa + A::one(), fo, scale);
                }
                qa += A::one() + A::one();
                fq = fr;
            }
            A::one() + A::one()
        }
    };
    let k = top.k;
    if k == 0 {
        (0..n).for_each(|i| line.set(i, A::infinity()));
        return;
    }
    let st = &st[..k];
    // the site in use, and where the next one takes over (never, past the last)
    let next = |j: usize| st.get(j + 1).map_or((A::infinity(), A::one()), |t| (t.num, t.den));
    let mut j = 0;
    let (mut cv, mut cp) = (st[0].val, st[0].pos);
    let (mut nn, mut nd) = next(0);
    let mut xa = A::zero();
    for i in 0..n {
        while nn <= xa * nd {
            j += 1;
            (cv, cp) = (st[j].val, st[j].pos);
            (nn, nd) = next(j);
        }
        line.set(i, M::eval(cv, (xa - cp).abs() * s));
        xa += step;
    }
}

/// Euclidean distance (between voxel centres, with `spacing`) from every
/// voxel to the nearest voxel of `set`: 0 on the set, `+inf` everywhere if
/// `set` is empty. The same passes as the voxel-centre signed distance.
pub(crate) fn distance_to_set(set: &[bool], shape: &[usize], spacing: &[f64]) -> Vec<f64> {
    let n = set.len();
    let Some(&s0) = spacing.first() else {
        return set.iter().map(|&b| if b { 0.0 } else { f64::INFINITY }).collect();
    };
    let parallel = super::par::worth_splitting(n);
    let mut d = vec![0.0; n];
    sites_pass::<f64, Euclid>(set, shape, 0, Sites::Voxels(true), s0, &mut d, parallel);
    for (j, &sj) in spacing.iter().enumerate().skip(1) {
        envelope_pass::<f64, Euclid>(&mut d, None, shape, j, sj, None, parallel);
    }
    d.iter_mut().for_each(|v| *v = Euclid::finish(*v));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweeps and the signs run on the widest SIMD the processor has;
    /// the same loops compiled for the baseline give the same bits.
    #[test]
    fn dispatched_loops_match_the_baseline() {
        use super::super::par::{widest, Wide};
        use rand::{Rng, SeedableRng};
        fn check<A: Float, M: LineMetric>(mask: &[bool], shape: (usize, usize)) {
            let (n, inner) = shape;
            for sites in [Sites::Transitions, Sites::Voxels(true), Sites::Voxels(false)] {
                let (mut a, mut b) = (vec![A::zero(); n * inner], vec![A::zero(); n * inner]);
                let (mut la, mut lb) = (Vec::new(), Vec::new());
                let s = A::from_f64_lossy(0.7);
                let rows = ArrayViewMut2::from_shape(shape, &mut a[..]).unwrap();
                let range = SweepRange::<A, M> {
                    mask,
                    rows,
                    gap: &mut la,
                    sites,
                    inner,
                    start: 0,
                    s,
                    metric: PhantomData,
                };
                widest(range);
                let rows = ArrayViewMut2::from_shape(shape, &mut b[..]).unwrap();
                SweepRange::<A, M> {
                    mask,
                    rows,
                    gap: &mut lb,
                    sites,
                    inner,
                    start: 0,
                    s,
                    metric: PhantomData,
                }
                .run();
                assert!(a
                    .iter()
                    .zip(&b)
                    .all(|(x, y)| x.to_f64_lossless().to_bits() == y.to_f64_lossless().to_bits()));
                let rows = ArrayViewMut2::from_shape(shape, &mut a[..]).unwrap();
                widest(Signs::<A, M> { rows, inside: mask, start: 0, inner, metric: PhantomData });
                let rows = ArrayViewMut2::from_shape(shape, &mut b[..]).unwrap();
                Signs::<A, M> { rows, inside: mask, start: 0, inner, metric: PhantomData }.run();
                assert!(a
                    .iter()
                    .zip(&b)
                    .all(|(x, y)| x.to_f64_lossless().to_bits() == y.to_f64_lossless().to_bits()));
            }
        }
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(21);
        let shape = (37, 61);
        let mask: Vec<bool> = (0..shape.0 * shape.1).map(|_| rng.random_bool(0.3)).collect();
        check::<f64, Euclid>(&mask, shape);
        check::<f32, Euclid>(&mask, shape);
        check::<f64, City>(&mask, shape);
        check::<f32, Chess>(&mask, shape);
    }
}
