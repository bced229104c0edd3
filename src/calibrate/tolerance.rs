//! The statistics of tolerance events (METHOD.md §4.4): per image, the
//! smallest threshold at which "at most `m` voxels wrong" (or a share, or a
//! volume) holds, in place of the maximum of containment.
//!
//! With the inner set `I(λ) = {f_I > λ}` and the outer set
//! `O(λ) = {-f_O <= λ}`:
//!
//! * a count `m` on the outer side holds at `λ` iff fewer than `m + 1` object
//!   voxels have `-f_O > λ`, i.e. iff `λ >=` the `(m+1)`-th largest `-f_O`
//!   over `Y` (`-inf` when `|Y| <= m`); a share `ε` is the count
//!   `⌊ε |Y|⌋` of the image; a volume the count of whole voxels within it;
//! * the same on the inner side with `f_I` over the background;
//! * a share on the inner side bounds the false discovery proportion
//!   `|I(λ) \ Y| / |I(λ)|`, which is not monotone in `λ`. The statistic is
//!   the smallest `λ` from which every larger threshold keeps the
//!   proportion within `ε` (the monotone envelope): the event "every
//!   `λ' >= λ` is within `ε`" is monotone in `λ`, so its conformal quantile
//!   is valid, and it implies the proportion at `λ` itself is within `ε`.
//!
//! Tolerance 0 reduces to the maximum: the same numbers as the fused kernel,
//! which is what is used then.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::kernel::ImageStatistics;
use crate::float::Float;
use crate::mask::MaskValue;
use crate::tolerance::{Share, Tolerance, Tolerances};

/// The tolerance statistics of one image, folded chunk by chunk next to the
/// fused kernel (which validates each chunk first and keeps the maxima that
/// containment sides use). Memory: the `m + 1` largest values of a counted
/// side; the object's values for an outer share; every voxel for an inner
/// share.
#[derive(Debug, Clone)]
pub(crate) struct TolerantFold<A> {
    inner: SideFold<A>,
    outer: SideFold<A>,
}

#[derive(Debug, Clone)]
enum SideFold<A> {
    /// Containment: the kernel's maximum is the statistic.
    Max,
    /// A count: the `keep = m + 1` largest values so far.
    Top(TopK<A>),
    /// An outer share: every `-f_O` of the object (`m` is known at the end).
    All { share: Share, values: Vec<A> },
    /// An inner share: every voxel's `(f_I, is background)`.
    Envelope { share: Share, voxels: Vec<(A, bool)> },
}

impl<A: Float> SideFold<A> {
    fn new(t: Tolerance, voxel_volume: f64, outer: bool) -> Self {
        match t {
            t if t.is_none() => SideFold::Max,
            Tolerance::Share(share) if outer => SideFold::All { share, values: Vec::new() },
            Tolerance::Share(share) => SideFold::Envelope { share, voxels: Vec::new() },
            t => SideFold::Top(TopK::new(t.allowed(0, voxel_volume).saturating_add(1))),
        }
    }

    fn finish(self, max: f64) -> f64 {
        match self {
            SideFold::Max => max,
            SideFold::Top(top) => top.value(),
            SideFold::All { share, mut values } => {
                let m = share.of(values.len() as u64);
                largest_after(&mut values, m)
            }
            SideFold::Envelope { share, mut voxels } => {
                false_discovery_envelope(&mut voxels, |wrong, n| share.allows(wrong, n))
            }
        }
    }
}

impl<A: Float> TolerantFold<A> {
    /// The fold for these tolerances; `voxel_volume` (mm³) turns volumes
    /// into counts.
    pub(crate) fn new(tolerances: &Tolerances, voxel_volume: f64) -> Self {
        TolerantFold {
            inner: SideFold::new(tolerances.inner, voxel_volume, false),
            outer: SideFold::new(tolerances.outer, voxel_volume, true),
        }
    }

    /// Whether some side needs more than the kernel's maximum.
    pub(crate) fn is_active(&self) -> bool {
        !matches!((&self.inner, &self.outer), (SideFold::Max, SideFold::Max))
    }

    /// Fold a chunk the kernel has validated (no NaN, a binary mask).
    pub(crate) fn push<M: MaskValue>(&mut self, fi: &[A], fo: &[A], mask: &[M]) {
        match &mut self.inner {
            SideFold::Max | SideFold::All { .. } => {}
            SideFold::Top(top) => top.offer_region::<M, false>(fi, mask, false),
            SideFold::Envelope { voxels, .. } => {
                voxels.extend(fi.iter().zip(mask).map(|(&x, m)| (x, !m.is_object())));
            }
        }
        match &mut self.outer {
            SideFold::Max | SideFold::Envelope { .. } => {}
            SideFold::Top(top) => top.offer_region::<M, true>(fo, mask, true),
            SideFold::All { values, .. } => {
                // objects are small: blocks without an object voxel (a
                // vectorized or-reduction) are skipped
                for (yb, mb) in fo.chunks(1024).zip(mask.chunks(1024)) {
                    if mb.iter().fold(false, |any, m| any | m.is_object()) {
                        values.extend(yb.iter().zip(mb).filter(|(_, m)| m.is_object()).map(|(&y, _)| -y));
                    }
                }
            }
        }
    }

    /// The statistics, given the kernel's maxima.
    pub(crate) fn finish(self, max: ImageStatistics) -> ImageStatistics {
        ImageStatistics { tau: self.inner.finish(max.tau), gamma: self.outer.finish(max.gamma) }
    }
}

/// A float ordered by value (no NaN reaches a fold: the kernel refuses them).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key<A>(A);

impl<A: Float> Eq for Key<A> {}

impl<A: Float> PartialOrd for Key<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A: Float> Ord for Key<A> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// The `keep` largest values seen, in a min-heap, with its minimum cached
/// once full so that most values are turned away by one comparison: one
/// pass, `O(keep)` memory, whatever the region's size.
#[derive(Debug, Clone)]
struct TopK<A> {
    keep: u64,
    heap: BinaryHeap<Reverse<Key<A>>>,
    floor: A,
}

impl<A: Float> TopK<A> {
    fn new(keep: u64) -> Self {
        TopK { keep, heap: BinaryHeap::new(), floor: A::neg_infinity() }
    }

    #[inline]
    fn offer(&mut self, x: A) {
        if (self.heap.len() as u64) < self.keep {
            self.heap.push(Reverse(Key(x)));
            if self.heap.len() as u64 == self.keep {
                self.floor = self.heap.peek().map_or(self.floor, |r| r.0 .0);
            }
        } else if x > self.floor {
            if let Some(mut top) = self.heap.peek_mut() {
                *top = Reverse(Key(x));
            }
            self.floor = self.heap.peek().map_or(self.floor, |r| r.0 .0);
        }
    }

    /// Offer the values of one region (`object`: the mask's object, else
    /// its background), negated if `NEG`, block by block: once the heap is
    /// full, a block whose largest value does not beat the heap's minimum
    /// (found by a lane-wise maximum the compiler vectorizes) is skipped
    /// whole, so that after the first blocks most voxels cost one compare.
    fn offer_region<M: MaskValue, const NEG: bool>(&mut self, xs: &[A], mask: &[M], object: bool) {
        const BLOCK: usize = 1024;
        const LANES: usize = 8;
        let value = |x: A| if NEG { -x } else { x };
        for (xb, mb) in xs.chunks(BLOCK).zip(mask.chunks(BLOCK)) {
            if self.heap.len() as u64 >= self.keep {
                let mut best = [A::neg_infinity(); LANES];
                let (xc, xr) = xb.as_chunks::<LANES>();
                let (mc, mr) = mb.as_chunks::<LANES>();
                for (x, m) in xc.iter().zip(mc) {
                    for l in 0..LANES {
                        let v = if m[l].is_object() == object { value(x[l]) } else { A::neg_infinity() };
                        best[l] = if v > best[l] { v } else { best[l] };
                    }
                }
                let rest = xr.iter().zip(mr).filter(|(_, m)| m.is_object() == object).map(|(&x, _)| value(x));
                let best = rest.chain(best).fold(A::neg_infinity(), |a, b| if b > a { b } else { a });
                if best <= self.floor {
                    continue;
                }
            }
            for (&x, m) in xb.iter().zip(mb) {
                if m.is_object() == object {
                    self.offer(value(x));
                }
            }
        }
    }

    /// The `keep`-th largest value, `-inf` if fewer were seen.
    fn value(&self) -> f64 {
        if (self.heap.len() as u64) < self.keep {
            f64::NEG_INFINITY
        } else {
            self.floor.to_f64_lossless()
        }
    }
}

fn descending<A: Float>(a: &A, b: &A) -> Ordering {
    // no NaN here (the kernel refused them)
    b.partial_cmp(a).unwrap_or(Ordering::Equal)
}

/// The `(m+1)`-th largest value (`-inf` if there are at most `m`), by
/// linear-time selection.
fn largest_after<A: Float>(values: &mut [A], m: u64) -> f64 {
    match usize::try_from(m) {
        Ok(m) if m < values.len() => values.select_nth_unstable_by(m, descending).1.to_f64_lossless(),
        _ => f64::NEG_INFINITY,
    }
}

/// The monotone envelope of the false discovery proportion of
/// `{x > λ}`: the largest distinct value `u` such that the set `{x >= u}`
/// (the inner set for `λ` just below `u`) is not within the tolerance
/// (`within(background voxels, voxels)`), or `-inf` if every such set is.
/// For every `λ >=` the result, `{x > λ}` is within; for `λ` just below it,
/// not. `voxels` holds `(score, is background)`.
///
/// The walk only needs the top of the order: the `k` largest are selected
/// (linear time) and sorted, and `k` doubles until a violation is found
/// among the tie groups the top `k` holds entirely, or everything is sorted.
/// A violation typically comes where the inner set first takes in the
/// background, near the object's size, so most voxels are never sorted.
fn false_discovery_envelope<A: Float>(voxels: &mut [(A, bool)], within: impl Fn(u64, u64) -> bool) -> f64 {
    let n = voxels.len();
    let objects = voxels.iter().filter(|v| !v.1).count();
    let mut k = n.min(2 * objects + 1024);
    loop {
        // the top k (unordered) before position k; a pivot equal to values
        // after it means its tie group may be incomplete
        let pivot = if k < n {
            Some(voxels.select_nth_unstable_by(k - 1, |a, b| descending(&a.0, &b.0)).1 .0)
        } else {
            None
        };
        let top = &mut voxels[..k];
        top.sort_unstable_by(|a, b| descending(&a.0, &b.0));
        let (mut wrong, mut n_in) = (0u64, 0u64);
        let mut i = 0;
        while i < top.len() {
            let u = top[i].0;
            if pivot.is_some_and(|p| u == p) {
                break; // possibly incomplete: look further with a larger k
            }
            // the tie group of u: every voxel with the same value enters together
            while i < top.len() && top[i].0 == u {
                wrong += u64::from(top[i].1);
                n_in += 1;
                i += 1;
            }
            if !within(wrong, n_in) {
                return u.to_f64_lossless();
            }
        }
        if pivot.is_none() {
            return f64::NEG_INFINITY;
        }
        k = n.min(k.saturating_mul(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{region_statistics, Calibrator};
    use crate::quantile::Side;
    use crate::tolerance::Volume;
    use crate::{Identity, Spacing};
    use ndarray::{Array1, Array3, ArrayRef, Dimension};
    use proptest::prelude::*;

    /// The statistics through the calibrator (the fold the library uses),
    /// with a default spacing whose voxel volume is `vv`.
    fn tolerant_statistics<D: Dimension>(
        t: &Tolerances,
        vv: f64,
        fi: &ArrayRef<f64, D>,
        fo: &ArrayRef<f64, D>,
        m: &ArrayRef<u8, D>,
    ) -> crate::Result<ImageStatistics> {
        let mut spacing = vec![1.0; m.ndim()];
        spacing[0] = vv;
        let c = Calibrator::new(Identity, Identity).with_tolerances(*t).with_spacing(Spacing::new(spacing)?);
        c.transformed_statistics(fi, fo, m, None)
    }

    /// The event, checked directly on the sets at threshold `lambda`.
    fn holds(side: Side, t: Tolerance, vv: f64, f: &[f64], y: &[bool], lambda: f64) -> bool {
        match side {
            Side::Inner => {
                let in_set: Vec<bool> = f.iter().map(|&x| x > lambda).collect();
                let wrong = in_set.iter().zip(y).filter(|(&i, &y)| i && !y).count() as u64;
                let size = in_set.iter().filter(|&&i| i).count() as u64;
                match t {
                    Tolerance::Share(s) => s.allows(wrong, size),
                    _ => wrong <= t.allowed(0, vv),
                }
            }
            Side::Outer => {
                let missed = f.iter().zip(y).filter(|(&x, &y)| y && -x > lambda).count() as u64;
                let n_obj = y.iter().filter(|&&y| y).count() as u64;
                missed <= t.allowed(n_obj, vv)
            }
        }
    }

    /// The brute-force statistic: scan λ over every candidate (each
    /// distinct relevant value and `-inf`), and return the smallest λ from
    /// which the event holds at every larger candidate. For the monotone
    /// events that is the smallest λ at which it holds.
    fn brute(side: Side, t: Tolerance, vv: f64, f: &[f64], y: &[bool]) -> f64 {
        let mut cands: Vec<f64> = match side {
            Side::Inner => f.to_vec(),
            Side::Outer => f.iter().map(|x| -x).collect(),
        };
        cands.push(f64::NEG_INFINITY);
        cands.push(f64::INFINITY);
        cands.sort_by(|a, b| a.partial_cmp(b).unwrap());
        cands.dedup();
        let mut best = f64::INFINITY;
        for &l in cands.iter().rev() {
            if holds(side, t, vv, f, y, l) {
                best = l;
            } else {
                break;
            }
        }
        best
    }

    fn tolerances() -> impl Strategy<Value = Tolerance> {
        prop_oneof![
            (0u64..6).prop_map(Tolerance::Voxels),
            (0u32..8).prop_map(|k| Tolerance::Share(Share::new(f64::from(k) / 8.0).unwrap())),
            (1u32..5).prop_map(|k| Tolerance::Volume(Volume::new(f64::from(k) * 0.75).unwrap())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn statistics_match_the_brute_force_scan(
            values in prop::collection::vec((-4i32..4, any::<bool>()), 1..40),
            ti in tolerances(),
            to in tolerances(),
            shape3 in any::<bool>(),
        ) {
            // integers: many ties; a 1-D image or a 3-D one of the same voxels
            let f: Vec<f64> = values.iter().map(|&(x, _)| f64::from(x) * 0.5).collect();
            let y: Vec<bool> = values.iter().map(|&(_, y)| y).collect();
            let vv = 0.25;
            let t = Tolerances::new(ti, to);
            let m: Vec<u8> = y.iter().map(|&b| u8::from(b)).collect();
            let got = if shape3 {
                let sh = (1, 1, f.len());
                let fa = Array3::from_shape_vec(sh, f.clone()).unwrap();
                let ma = Array3::from_shape_vec(sh, m).unwrap();
                tolerant_statistics(&t, vv, &fa, &fa, &ma).unwrap()
            } else {
                let fa = Array1::from(f.clone());
                tolerant_statistics(&t, vv, &fa, &fa, &Array1::from(m)).unwrap()
            };
            prop_assert_eq!(got.tau, brute(Side::Inner, ti, vv, &f, &y));
            prop_assert_eq!(got.gamma, brute(Side::Outer, to, vv, &f, &y));
            // the event holds at the statistic, and (unless -inf) fails just below it
            for (side, stat, t) in [(Side::Inner, got.tau, ti), (Side::Outer, got.gamma, to)] {
                prop_assert!(holds(side, t, vv, &f, &y, stat));
                if stat.is_finite() {
                    let below = stat - 1e-9;
                    let fails_below = !holds(side, t, vv, &f, &y, below);
                    // for the inner share the envelope fails at some λ' >= below
                    prop_assert!(fails_below || matches!((side, t), (Side::Inner, Tolerance::Share(_))));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Images of several blocks: the block skipping of the bounded heap
        /// against a sort of the region.
        #[test]
        fn counts_on_large_images_equal_a_sort(
            seed in any::<u64>(),
            len in 1usize..6000,
            m in 0u64..80,
            object_share in 0.0f64..1.0,
        ) {
            let mut state = seed | 1;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            // a drifting score, so that the heap's minimum rises block by block
            let f: Vec<f64> = (0..len).map(|i| (next() * 50.0).round() + i as f64 * 0.01).collect();
            let y: Vec<u8> = (0..len).map(|_| u8::from(next() < object_share)).collect();
            let sorted = |mut v: Vec<f64>| {
                v.sort_by(|a, b| b.partial_cmp(a).unwrap());
                v.get(m as usize).copied().unwrap_or(f64::NEG_INFINITY)
            };
            let want_tau = sorted(f.iter().zip(&y).filter(|(_, &y)| y == 0).map(|(&x, _)| x).collect());
            let want_gamma = sorted(f.iter().zip(&y).filter(|(_, &y)| y == 1).map(|(&x, _)| -x).collect());
            let t = Tolerances::new(Tolerance::Voxels(m), Tolerance::Voxels(m));
            let (fa, ya) = (Array1::from(f), Array1::from(y));
            let got = tolerant_statistics(&t, 1.0, &fa, &fa, &ya).unwrap();
            prop_assert_eq!((got.tau, got.gamma), (want_tau, want_gamma));
        }
    }

    #[test]
    fn tolerance_zero_is_the_maximum_bit_for_bit() {
        let f = Array1::from(vec![-0.0_f64, 0.0, 3.5, -2.0, f64::INFINITY, -1.0]);
        let y = Array1::from(vec![1u8, 0, 1, 0, 0, 1]);
        let base = region_statistics(&f, &f, &y).unwrap();
        for t in ["0", "0vox", "0.0", "0%"] {
            let t: Tolerance = t.parse().unwrap();
            let s = tolerant_statistics(&Tolerances::new(t, t), 1.0, &f, &f, &y).unwrap();
            assert_eq!((s.tau.to_bits(), s.gamma.to_bits()), (base.tau.to_bits(), base.gamma.to_bits()));
        }
        // computed through the envelope and the selection (not the kernel), the same values
        let all: Vec<(f64, bool)> = f.iter().zip(&y).map(|(&x, &m)| (x, m == 0)).collect();
        assert_eq!(false_discovery_envelope(&mut all.clone(), |w, _| w == 0), base.tau);
        let mut obj: Vec<f64> = f.iter().zip(&y).filter(|(_, &m)| m == 1).map(|(&x, _)| -x).collect();
        assert_eq!(largest_after(&mut obj, 0), base.gamma);
        let mut top = TopK::new(1);
        obj.iter().for_each(|&x| top.offer(x));
        assert_eq!(top.value(), base.gamma);
    }

    #[test]
    fn the_false_discovery_envelope_stays_above_where_the_proportion_recovers() {
        // scores from the top: object, background, object x3, background x2;
        // the proportion of {f >= u}: 0, 1/2, 1/3, 1/4, 1/5, 2/6, 3/7
        let f = Array1::from(vec![9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]);
        let y = Array1::from(vec![1u8, 0, 1, 1, 1, 0, 0]);
        let s = |e: f64| {
            let t = Tolerances::new(Tolerance::Share(Share::new(e).unwrap()), Tolerance::NONE);
            tolerant_statistics(&t, 1.0, &f, &f, &y).unwrap().tau
        };
        // ε = 0.4: {f > 6.5} has proportion 1/3, within, but {f > 7.5} has
        // 1/2: thresholds in [7, 8) are not all safe, so the statistic is 8
        assert_eq!(s(0.4), 8.0);
        assert!(holds(
            Side::Inner,
            Tolerance::Share(Share::new(0.4).unwrap()),
            1.0,
            &f.to_vec(),
            &[true, false, true, true, true, false, false],
            6.5
        ));
        // ε = 0.5: every set is within (3/7 <= 0.5)
        assert_eq!(s(0.5), f64::NEG_INFINITY);
        // ε = 0.25: 2/6 > 0.25 at u = 4 as well, but 1/2 at u = 8 comes first
        assert_eq!(s(0.25), 8.0);
    }
}
