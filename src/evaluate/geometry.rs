//! Geometry of the sets over the first splits ([`Geometry`](super::Geometry)):
//! diameter ratios, Hausdorff distances and band widths need the sets
//! themselves, not only their sizes (ignored voxels are in no set).
//! Thresholds are order statistics of the pool, so the splits meet few
//! distinct `(image, set, threshold)`:
//! each is built and measured once (in parallel with `rayon`), each
//! distinct inner and outer pair once for its band width, and every split
//! looks its measures up.

use std::collections::HashMap;

use super::validation::{Cell, Mean, Progress};
use super::{baselines, FieldId, Pool};
use crate::error::Result;
use crate::grid;
use crate::stream::for_each_image;

/// Geometry means per cell: diameter ratios (2), Hausdorff distances and
/// their infinite shares (4), band widths in physical units and voxels (4)
/// and their undefined share (1).
pub(super) const GEOMETRY_MEANS: usize = 11;

#[derive(Default, Clone, Copy)]
struct Geom {
    diameter: Option<f64>,
    hausdorff: Option<f64>,
}

/// Per-image truth geometry, computed once per run.
struct TruthGeometry {
    diameter: Option<f64>,
    to_truth: Vec<f64>,
}

/// A distinct set: image, field, strict (`> t`, the inner set) or not
/// (`>= t`, the outer set), threshold.
type SetKey = (usize, FieldId, bool, f64);

/// Per cell, per geometry split, per test image: `(image, inner key, outer key)`.
type Lookups = Vec<Vec<(usize, usize, usize)>>;

/// Where each distinct `(inner key, outer key)` pair is in the band widths.
type Pairs = HashMap<(usize, usize), usize>;

/// Band widths of a pair of sets: in physical units and in voxels.
type Bands = [Option<grid::BandWidth>; 2];

/// The geometry means of every cell (method and level) over the geometry
/// splits, whose thresholds the cells hold (`Cell::geo`) and whose test
/// images are `geometry_tests`.
pub(super) fn geometry_means(
    pool: &Pool,
    prepared: &[baselines::Prepared],
    acc: &[Cell],
    geometry_tests: &[Vec<usize>],
    n_alpha: usize,
    progress: &mut impl FnMut(Progress),
) -> Result<Vec<[Mean; GEOMETRY_MEANS]>> {
    // Geometry: distinct (image, field, op, threshold) over the geometry splits.
    let (key_list, lookups) = set_keys(prepared, acc, geometry_tests, n_alpha);
    let images_needed: Vec<usize> = {
        let mut v: Vec<usize> = key_list.iter().map(|k| k.0).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    progress(Progress { stage: "geometry", unit: "sets", done: 0, total: key_list.len() });
    let truth_geo = truth_geometry(pool, &images_needed);
    let geoms = set_geometry(pool, prepared, &key_list, &truth_geo)?;
    let (pairs, bands) = band_widths(pool, prepared, &key_list, &lookups)?;
    progress(Progress { stage: "geometry", unit: "sets", done: key_list.len(), total: key_list.len() });
    Ok(fold_means(acc.len(), &lookups, &pairs, &bands, &truth_geo, &geoms))
}

/// The distinct sets of the geometry splits, and per cell the keys of each
/// (split, test image)'s inner and outer set.
fn set_keys(
    prepared: &[baselines::Prepared],
    acc: &[Cell],
    geometry_tests: &[Vec<usize>],
    n_alpha: usize,
) -> (Vec<SetKey>, Lookups) {
    let cells = acc.len();
    let mut keys: HashMap<(usize, FieldId, bool, u64), usize> = HashMap::new();
    let mut key_list: Vec<(usize, FieldId, bool, f64)> = Vec::new();
    let mut intern = |j: usize, f: FieldId, strict: bool, t: f64| -> usize {
        let n = key_list.len();
        *keys.entry((j, f, strict, t.to_bits())).or_insert_with(|| {
            key_list.push((j, f, strict, t));
            n
        })
    };
    // per cell, per geometry split, per test image: (inner key, outer key)
    let mut lookups: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); cells];
    for (mi, p) in prepared.iter().enumerate() {
        let (fid_i, fid_o) = p.field_ids(mi);
        for ai in 0..n_alpha {
            let c = mi * n_alpha + ai;
            for (r, t) in acc[c].geo.iter().enumerate() {
                for &j in &geometry_tests[r] {
                    let ki = intern(j, fid_i, true, t.inner);
                    let ko = intern(j, fid_o, false, t.outer);
                    lookups[c].push((j, ki, ko));
                }
            }
        }
    }
    (key_list, lookups)
}

/// The diameter and distance transform of the truth of each image in `images`.
fn truth_geometry(pool: &Pool, images: &[usize]) -> HashMap<usize, TruthGeometry> {
    images
        .iter()
        .map(|&j| {
            let img = &pool.images[j];
            (
                j,
                TruthGeometry {
                    diameter: grid::diameter(&img.truth, &img.shape, &img.spacing),
                    to_truth: grid::edt::distance_to_set(&img.truth, &img.shape, &img.spacing),
                },
            )
        })
        .collect()
}

/// The diameter and Hausdorff distance to the truth of every distinct set.
fn set_geometry(
    pool: &Pool,
    prepared: &[baselines::Prepared],
    key_list: &[SetKey],
    truth_geo: &HashMap<usize, TruthGeometry>,
) -> Result<Vec<Geom>> {
    for_each_image(key_list.len(), |k| {
        let j = key_list[k].0;
        let set = set_of(pool, prepared, key_list[k]);
        let tg = &truth_geo[&j];
        let img = &pool.images[j];
        let to_set = grid::edt::distance_to_set(&set, &img.shape, &img.spacing);
        Ok(Geom {
            diameter: grid::diameter(&set, &img.shape, &img.spacing),
            hausdorff: grid::hausdorff(&set, &to_set, &pool.images[j].truth, &tg.to_truth),
        })
    })
}

/// The band widths (in physical units and in voxels) of every distinct
/// pair of inner and outer set, and where each pair is in the list.
fn band_widths(
    pool: &Pool,
    prepared: &[baselines::Prepared],
    key_list: &[SetKey],
    lookups: &Lookups,
) -> Result<(Pairs, Vec<Bands>)> {
    // band widths: distinct (inner key, outer key) pairs
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    let mut pair_list: Vec<(usize, usize, usize)> = Vec::new();
    for look in lookups {
        for &(j, ki, ko) in look {
            let n = pair_list.len();
            pairs.entry((ki, ko)).or_insert_with(|| {
                pair_list.push((j, ki, ko));
                n
            });
        }
    }
    let bands: Vec<[Option<grid::BandWidth>; 2]> = for_each_image(pair_list.len(), |k| {
        let (j, ki, ko) = pair_list[k];
        let (inner, outer) = (set_of(pool, prepared, key_list[ki]), set_of(pool, prepared, key_list[ko]));
        let img = &pool.images[j];
        let physical = grid::band_width(&inner, &outer, &img.ignored, &img.shape, &img.spacing);
        let voxels = if img.spacing.iter().all(|&s| s == 1.0) {
            physical
        } else {
            grid::band_width(&inner, &outer, &img.ignored, &img.shape, &vec![1.0; img.shape.len()])
        };
        Ok([physical, voxels])
    })?;
    Ok((pairs, bands))
}

/// The means per cell of the measures its lookups point to.
fn fold_means(
    cells: usize,
    lookups: &Lookups,
    pairs: &Pairs,
    bands: &[Bands],
    truth_geo: &HashMap<usize, TruthGeometry>,
    geoms: &[Geom],
) -> Vec<[Mean; GEOMETRY_MEANS]> {
    let mut results: Vec<[Mean; GEOMETRY_MEANS]> = vec![[Mean::default(); GEOMETRY_MEANS]; cells];
    for (c, look) in lookups.iter().enumerate() {
        let m = &mut results[c];
        for &(j, ki, ko) in look {
            let [physical, voxels] = bands[pairs[&(ki, ko)]];
            m[10].add(f64::from(u8::from(physical.is_none())));
            if let (Some(p), Some(v)) = (physical, voxels) {
                m[6].add(p.mean);
                m[7].add(p.max);
                m[8].add(v.mean);
                m[9].add(v.max);
            }
            let tg = &truth_geo[&j];
            let (gi, go) = (geoms[ki], geoms[ko]);
            if let Some(dy) = tg.diameter.filter(|&d| d > 0.0) {
                m[0].add(gi.diameter.unwrap_or(0.0) / dy);
                if let Some(d) = go.diameter {
                    m[1].add(d / dy);
                }
            }
            match gi.hausdorff {
                Some(h) => {
                    m[2].add(h);
                    m[4].add(0.0);
                }
                None => m[4].add(1.0),
            }
            match go.hausdorff {
                Some(h) => {
                    m[3].add(h);
                    m[5].add(0.0);
                }
                None => m[5].add(1.0),
            }
        }
    }
    results
}

/// The set of a key, row-major: `field > t` (strict) or `field >= t`,
/// without the image's ignored voxels (they are in no set, as if the image
/// were cropped to the others).
fn set_of(pool: &Pool, prepared: &[baselines::Prepared], (j, f, strict, t): SetKey) -> Vec<bool> {
    let ignored = &pool.images[j].ignored;
    let kept = |p: usize| !ignored.get(p).copied().unwrap_or(false);
    let field = prepared_field(prepared, pool, j, f);
    field.iter().enumerate().map(|(p, &x)| (if strict { x > t } else { x >= t }) && kept(p)).collect()
}

fn prepared_field<'a>(
    prepared: &'a [baselines::Prepared],
    pool: &'a Pool,
    j: usize,
    f: FieldId,
) -> &'a [f64] {
    match f {
        FieldId::Inner => &pool.images[j].inner.values,
        FieldId::Outer => &pool.images[j].outer.values,
        FieldId::Steps(mi) => prepared
            .get(mi)
            .and_then(|p| p.steps_field(j))
            .map_or(&pool.images[j].outer.values, |f| &f.values),
    }
}
