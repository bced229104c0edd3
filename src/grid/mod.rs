//! The grid layer: sets on a voxel grid, below the method's modules.
//!
//! * [`edt`]: the one exact distance engine (signed distances of a mask in
//!   either convention and metric, distances to a set), used by the score
//!   transforms and by the measures here;
//! * [`par`]: how the spatial loops are split across threads and SIMD;
//! * here: row-major index helpers, connected components (face or full
//!   [`Connectivity`]), and the measures
//!   of [`evaluate`](crate::evaluate) and [`sets`](crate::sets): diameters,
//!   Hausdorff distances and the width of the band between an inner and an
//!   outer set.
//!
//! Sets are flat row-major `bool` slices over a grid of the given `shape`;
//! distances are between voxel centres, in physical units (`spacing`).

pub(crate) mod edt;
pub(crate) mod par;

use edt::distance_to_set;

/// Row-major strides of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

/// Row-major multi-index of a flat position.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &s) in shape.iter().enumerate().rev() {
        if s > 0 {
            idx[i] = flat % s;
            flat /= s;
        }
    }
    idx
}

/// Which voxels count as neighbours in a connected component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Connectivity {
    /// Voxels sharing a face (4-connectivity in 2-D, 6 in 3-D, `2n` in n-D).
    #[default]
    Face,
    /// Voxels sharing a face, edge or corner (8 in 2-D, 26 in 3-D, `3^n - 1`).
    Full,
}

/// The connected components of `set` under `connectivity`: a component
/// number per voxel (`u32::MAX` outside the set), numbered in the order of
/// their first voxel (row-major), and the number of components.
///
/// Union-find over the neighbours already visited in row-major order (each
/// union keeps the earlier voxel as the root, so a component's root is its
/// first voxel), then one labelling pass; near-linear time, no recursion.
pub(crate) fn components(set: &[bool], shape: &[usize], connectivity: Connectivity) -> (Vec<u32>, usize) {
    let ndim = shape.len();
    let st = strides(shape);
    // neighbour offsets earlier in row-major order: first non-zero entry is -1
    let deltas: Vec<Vec<isize>> = match connectivity {
        Connectivity::Face => {
            (0..ndim).map(|j| (0..ndim).map(|i| if i == j { -1 } else { 0 }).collect()).collect()
        }
        Connectivity::Full => {
            let mut all: Vec<Vec<isize>> = vec![vec![]];
            for _ in 0..ndim {
                all =
                    all.into_iter().flat_map(|d| [-1, 0, 1].map(|x| [d.clone(), vec![x]].concat())).collect();
            }
            all.into_iter().filter(|d| d.iter().find(|&&x| x != 0) == Some(&-1)).collect()
        }
    };
    let mut parent: Vec<usize> = (0..set.len()).collect();
    let mut idx = vec![0usize; ndim];
    for (flat, &m) in set.iter().enumerate() {
        if m {
            for d in &deltas {
                let inside = idx.iter().zip(d).zip(shape).all(|((&i, &dx), &n)| {
                    let j = i as isize + dx;
                    j >= 0 && (j as usize) < n
                });
                if !inside {
                    continue;
                }
                let off: isize = d.iter().zip(&st).map(|(&dx, &s)| dx * s as isize).sum();
                let nb = flat.wrapping_add_signed(off);
                if set[nb] {
                    let (a, b) = (find(&mut parent, flat), find(&mut parent, nb));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
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
    let mut label = vec![u32::MAX; set.len()];
    let mut count = 0usize;
    for flat in 0..set.len() {
        if set[flat] {
            let r = find(&mut parent, flat);
            label[flat] = if r == flat {
                count += 1;
                u32::try_from(count - 1).unwrap_or(u32::MAX - 1)
            } else {
                label[r]
            };
        }
    }
    (label, count)
}

/// The root of `i`'s tree, halving the path on the way.
fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Diameter of a set: the largest Euclidean distance (with `spacing`)
/// between the centres of two of its voxels; `None` for an empty set, 0 for
/// a single voxel.
///
/// The maximum is attained at extreme points of the convex hull, and every
/// extreme point is the first or last set voxel on its grid line along the
/// last axis, so only those candidates are compared (O(m^2) for m lines
/// instead of O(|set|^2)).
pub(crate) fn diameter(set: &[bool], shape: &[usize], spacing: &[f64]) -> Option<f64> {
    let ndim = shape.len();
    let last = *shape.last()?;
    if last == 0 {
        return None;
    }
    let st = strides(shape);
    // candidate points, flat: `ndim` physical coordinates each
    let mut pts: Vec<f64> = Vec::new();
    for (line, chunk) in set.chunks(last).enumerate() {
        let first = chunk.iter().position(|&b| b);
        let lastp = chunk.iter().rposition(|&b| b).filter(|&l| Some(l) != first);
        let base = line * last;
        for k in [first, lastp].into_iter().flatten() {
            let mut rem = base + k;
            for a in 0..ndim {
                pts.push((rem / st[a]) as f64 * spacing[a]);
                rem %= st[a];
            }
        }
    }
    if pts.is_empty() {
        return None;
    }
    let mut best = 0.0_f64;
    for (i, p) in pts.chunks_exact(ndim).enumerate() {
        for q in pts.chunks_exact(ndim).skip(i + 1) {
            let d2: f64 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            best = best.max(d2);
        }
    }
    Some(best.sqrt())
}

/// Hausdorff distance between two sets given each set and the distance to
/// it ([`edt::distance_to_set`]): `max(sup_{a in A} d(a, B), sup_{b in B} d(b, A))`.
/// `Some(0)` when both are empty, `None` (infinite) when exactly one is.
pub(crate) fn hausdorff(a: &[bool], to_a: &[f64], b: &[bool], to_b: &[f64]) -> Option<f64> {
    let a_empty = !a.iter().any(|&x| x);
    let b_empty = !b.iter().any(|&x| x);
    match (a_empty, b_empty) {
        (true, true) => return Some(0.0),
        (true, false) | (false, true) => return None,
        _ => {}
    }
    let from_a = a.iter().zip(to_b).filter(|(&x, _)| x).map(|(_, &d)| d).fold(0.0_f64, f64::max);
    let from_b = b.iter().zip(to_a).filter(|(&x, _)| x).map(|(_, &d)| d).fold(0.0_f64, f64::max);
    Some(from_a.max(from_b))
}

/// Width of the band `O \ I` between an inner set `I` and an outer set `O`:
/// the distance from each voxel on the outer contour to the nearest voxel
/// of `I` (between centres, with `spacing`), its mean and its maximum.
///
/// The outer contour is the voxels of `O` with a face neighbour in the
/// image that is not in `O` and not `ignored` (empty: none), so that
/// neither the image border nor ignored voxels make a contour: the set goes
/// on beyond them, as if the image were cropped to the other voxels. A contour voxel in `I` has width 0, so equal sets
/// have width 0 and a band one voxel thick has width one voxel. `None`
/// when the width is not defined: `I` empty (the band reaches infinitely
/// far) or `O` without a contour (empty, or the whole image).
pub(crate) fn band_width(
    inner: &[bool],
    outer: &[bool],
    ignored: &[bool],
    shape: &[usize],
    spacing: &[f64],
) -> Option<BandWidth> {
    if !inner.iter().any(|&x| x) {
        return None;
    }
    let to_inner = distance_to_set(inner, shape, spacing);
    let st = strides(shape);
    let outside = |q: usize| !outer[q] && !ignored.get(q).copied().unwrap_or(false);
    let (mut sum, mut max, mut n) = (0.0_f64, 0.0_f64, 0_usize);
    for (p, _) in outer.iter().enumerate().filter(|(_, &o)| o) {
        let on_contour = st.iter().zip(shape).any(|(&s, &len)| {
            let c = (p / s) % len;
            (c > 0 && outside(p - s)) || (c + 1 < len && outside(p + s))
        });
        if on_contour {
            let d = to_inner[p];
            sum += d;
            max = max.max(d);
            n += 1;
        }
    }
    (n > 0).then(|| BandWidth { mean: sum / n as f64, max })
}

/// The width of the band `O \ I` between an inner and an outer set: the
/// distance from each voxel of the outer contour (voxels of `O` with a
/// face neighbour in the image outside `O`) to the nearest voxel of `I`,
/// between centres, its mean and its maximum, in the units of the spacing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BandWidth {
    /// Mean distance from the outer contour to the inner set.
    pub mean: f64,
    /// Largest distance from the outer contour to the inner set.
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_face_connected_in_any_dimension() {
        // 3-D: voxels touching by an edge or a corner are separate components
        let shape = [2, 3, 3];
        let mut set = vec![false; 18];
        for p in [0, 1, 4, 13, 17] {
            set[p] = true;
        }
        let (label, count) = components(&set, &shape, Connectivity::Face);
        // (0,0,0),(0,0,1),(0,1,1) and below it (1,1,1) = one component; (1,2,2) alone
        assert_eq!(count, 2);
        assert_eq!(label[0], label[1]);
        assert_eq!(label[1], label[4]);
        assert_eq!(label[4], label[13]);
        assert_ne!(label[13], label[17]);
        assert!(label.iter().zip(&set).all(|(&l, &b)| (l == u32::MAX) != b));
        // a diagonal pair in 2-D is two components
        let (_, count) = components(&[true, false, false, true], &[2, 2], Connectivity::Face);
        assert_eq!(count, 2);
        assert_eq!(components(&[], &[0, 3], Connectivity::Face).1, 0);
        // ... and one with full connectivity, as the corner-touching 3-D voxels are
        let (label, count) = components(&[true, false, false, true], &[2, 2], Connectivity::Full);
        assert_eq!((count, label[0], label[3]), (1, 0, 0));
        let (label, count) = components(&set, &shape, Connectivity::Full);
        assert_eq!((count, label[13], label[17]), (1, 0, 0));
    }

    /// Numbered in the order of their first voxel, and equal to a plain
    /// flood fill (breadth-first, from each unlabelled voxel in order) for
    /// both connectivities.
    #[test]
    fn components_equal_a_flood_fill() {
        for (shape, density) in [(vec![7usize, 9], 45), (vec![4, 5, 6], 35), (vec![13], 50)] {
            let n: usize = shape.iter().product();
            for seed in 0..8 {
                let set = pseudo_set(n, seed + 3, density);
                for conn in [Connectivity::Face, Connectivity::Full] {
                    let neighbours = |p: usize, q: usize| {
                        let (a, b) = (coords(p, &shape), coords(q, &shape));
                        let d: Vec<usize> = a.iter().zip(&b).map(|(&x, &y)| x.abs_diff(y)).collect();
                        d.iter().all(|&x| x <= 1)
                            && match conn {
                                Connectivity::Face => d.iter().sum::<usize>() == 1,
                                Connectivity::Full => d.contains(&1),
                            }
                    };
                    let mut want = vec![u32::MAX; n];
                    let mut next = 0u32;
                    for start in 0..n {
                        if !set[start] || want[start] != u32::MAX {
                            continue;
                        }
                        want[start] = next;
                        let mut queue = std::collections::VecDeque::from([start]);
                        while let Some(p) = queue.pop_front() {
                            for q in 0..n {
                                if set[q] && want[q] == u32::MAX && neighbours(p, q) {
                                    want[q] = next;
                                    queue.push_back(q);
                                }
                            }
                        }
                        next += 1;
                    }
                    let (got, count) = components(&set, &shape, conn);
                    assert_eq!(count, next as usize, "{shape:?} {conn:?}");
                    assert_eq!(got, want, "{shape:?} {conn:?}");
                }
            }
        }
    }

    fn coords(i: usize, shape: &[usize]) -> Vec<usize> {
        let st = strides(shape);
        let mut rem = i;
        st.iter()
            .map(|&s| {
                let c = rem / s;
                rem %= s;
                c
            })
            .collect()
    }

    fn pseudo_set(n: usize, seed: u64, density: u64) -> Vec<bool> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 100 < density
            })
            .collect()
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn distance_to_set_matches_brute_force_with_spacing() {
        for (shape, spacing) in
            [(vec![7usize, 9], vec![1.0, 1.0]), (vec![5, 6, 4], vec![2.0, 1.0, 0.5]), (vec![11], vec![3.0])]
        {
            let n: usize = shape.iter().product();
            for seed in 0..6 {
                let set = pseudo_set(n, seed + 1, [3, 20, 60][seed as usize % 3]);
                let got = distance_to_set(&set, &shape, &spacing);
                for v in 0..n {
                    let cv = coords(v, &shape);
                    let want = (0..n)
                        .filter(|&u| set[u])
                        .map(|u| {
                            let cu = coords(u, &shape);
                            cv.iter()
                                .zip(&cu)
                                .zip(&spacing)
                                .map(|((&a, &b), &s)| ((a as f64 - b as f64) * s).powi(2))
                                .sum::<f64>()
                        })
                        .fold(f64::INFINITY, f64::min)
                        .sqrt();
                    assert!(
                        (got[v] - want).abs() < 1e-9 || got[v] == want,
                        "{shape:?} {v}: {} vs {want}",
                        got[v]
                    );
                }
            }
        }
    }

    #[test]
    fn diameter_and_hausdorff_match_brute_force() {
        let shape = [6usize, 8];
        let spacing = [1.5, 1.0];
        for seed in 1..20 {
            let a = pseudo_set(48, seed, 25);
            let b = pseudo_set(48, seed + 100, 25);
            let pts = |s: &[bool]| -> Vec<Vec<f64>> {
                (0..48)
                    .filter(|&i| s[i])
                    .map(|i| coords(i, &shape).iter().zip(&spacing).map(|(&c, &w)| c as f64 * w).collect())
                    .collect()
            };
            let d = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            let (pa, pb) = (pts(&a), pts(&b));
            let want_diam = pa
                .iter()
                .flat_map(|p| pa.iter().map(move |q| (p, q)))
                .map(|(p, q)| d(p, q))
                .fold(0.0, f64::max);
            if pa.is_empty() {
                assert_eq!(diameter(&a, &shape, &spacing), None);
            } else {
                assert!((diameter(&a, &shape, &spacing).unwrap() - want_diam).abs() < 1e-12);
            }
            let dir = |x: &[Vec<f64>], y: &[Vec<f64>]| {
                x.iter().map(|p| y.iter().map(|q| d(p, q)).fold(f64::INFINITY, f64::min)).fold(0.0, f64::max)
            };
            let got = hausdorff(
                &a,
                &distance_to_set(&a, &shape, &spacing),
                &b,
                &distance_to_set(&b, &shape, &spacing),
            );
            if !pa.is_empty() && !pb.is_empty() {
                let want = dir(&pa, &pb).max(dir(&pb, &pa));
                assert!((got.unwrap() - want).abs() < 1e-9);
            }
        }
        let empty = vec![false; 48];
        let one = {
            let mut v = empty.clone();
            v[5] = true;
            v
        };
        let e = distance_to_set(&empty, &shape, &spacing);
        assert_eq!(hausdorff(&empty, &e, &empty, &e), Some(0.0));
        assert_eq!(hausdorff(&empty, &e, &one, &distance_to_set(&one, &shape, &spacing)), None);
        assert_eq!(diameter(&one, &shape, &spacing), Some(0.0));
    }
    #[test]
    fn band_widths_equal_brute_force() {
        for (shape, spacing) in
            [(vec![9usize], vec![1.0]), (vec![7, 8], vec![1.0, 2.5]), (vec![4, 5, 6], vec![3.0, 1.0, 0.5])]
        {
            let n: usize = shape.iter().product();
            for seed in 0..40u64 {
                let inner = pseudo_set(n, seed, 8 + seed % 30);
                let extra = pseudo_set(n, seed + 1000, 20 + seed % 60);
                let outer: Vec<bool> = inner.iter().zip(&extra).map(|(&a, &b)| a || b).collect();
                let want = {
                    let ci: Vec<Vec<usize>> =
                        (0..n).filter(|&p| inner[p]).map(|p| coords(p, &shape)).collect();
                    let contour: Vec<usize> = (0..n)
                        .filter(|&p| outer[p])
                        .filter(|&p| {
                            let c = coords(p, &shape);
                            (0..shape.len()).any(|a| {
                                [-1i64, 1].iter().any(|&step| {
                                    let mut q = c.clone();
                                    let x = q[a] as i64 + step;
                                    if x < 0 || x >= shape[a] as i64 {
                                        return false;
                                    }
                                    q[a] = x as usize;
                                    let flat =
                                        q.iter().zip(strides(&shape)).map(|(i, s)| i * s).sum::<usize>();
                                    !outer[flat]
                                })
                            })
                        })
                        .collect();
                    let d = |p: usize| {
                        let c = coords(p, &shape);
                        ci.iter()
                            .map(|q| {
                                c.iter()
                                    .zip(q)
                                    .zip(&spacing)
                                    .map(|((&a, &b), s)| ((a as f64 - b as f64) * s).powi(2))
                                    .sum::<f64>()
                            })
                            .fold(f64::INFINITY, f64::min)
                            .sqrt()
                    };
                    if ci.is_empty() || contour.is_empty() {
                        None
                    } else {
                        let ds: Vec<f64> = contour.iter().map(|&p| d(p)).collect();
                        Some((
                            ds.iter().sum::<f64>() / ds.len() as f64,
                            ds.iter().copied().fold(0.0, f64::max),
                        ))
                    }
                };
                let got = band_width(&inner, &outer, &[], &shape, &spacing).map(|b| (b.mean, b.max));
                match (got, want) {
                    (Some(g), Some(w)) => {
                        assert!(
                            (g.0 - w.0).abs() < 1e-9 && (g.1 - w.1).abs() < 1e-9,
                            "{shape:?} {seed}: {g:?} {w:?}"
                        )
                    }
                    (g, w) => assert_eq!(g, w, "{shape:?} {seed}"),
                }
            }
        }
        // equal sets: width 0; a one-voxel ring: width 1 voxel; no contour: undefined
        let inner = [false, false, true, true, false, false];
        assert_eq!(band_width(&inner, &inner, &[], &[6], &[2.0]), Some(BandWidth { mean: 0.0, max: 0.0 }));
        let ring = [false, true, true, true, true, false];
        assert_eq!(band_width(&inner, &ring, &[], &[6], &[2.0]), Some(BandWidth { mean: 2.0, max: 2.0 }));
        assert_eq!(band_width(&inner, &[true; 6], &[], &[6], &[2.0]), None);
        assert_eq!(band_width(&[false; 6], &ring, &[], &[6], &[2.0]), None);
    }
}
