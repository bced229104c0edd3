//! What a validation reports, per method and level: coverage averaged
//! over the splits with its [`Spread`], the [`Efficiency`] of the sets,
//! and the recorded splits ([`SplitRecord`]); [`table`] prints reports.

/// Mean, spread and quantiles of one coverage over the splits.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Spread {
    /// Mean over splits.
    pub mean: f64,
    /// Standard deviation over splits (`n - 1` denominator; 0 for one split).
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// 5% quantile (nearest rank).
    pub q05: f64,
    /// Median (nearest rank).
    pub median: f64,
    /// 95% quantile (nearest rank).
    pub q95: f64,
    /// Largest value.
    pub max: f64,
    /// The level the method promises for this coverage (`None` if it
    /// promises none, e.g. risk control).
    pub nominal: Option<f64>,
    /// Share of splits whose coverage is below `nominal`.
    pub below_nominal: Option<f64>,
}

impl Spread {
    /// Summarize per-split shares `k / m` given as a histogram: `counts[k]`
    /// splits had share `k / m`, `m = counts.len() - 1`. Equal to
    /// [`Spread::of`] on the shares, in memory independent of the number of
    /// splits.
    #[must_use]
    pub fn of_shares(counts: &[u64], nominal: Option<f64>) -> Spread {
        let m = counts.len().saturating_sub(1).max(1) as f64;
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return Spread::of(&[], nominal);
        }
        // ascending values with multiplicity, summed in the same order as `of`
        let values =
            || counts.iter().enumerate().flat_map(|(k, &c)| std::iter::repeat_n(k as f64 / m, c as usize));
        let nf = n as f64;
        let mean = values().sum::<f64>() / nf;
        let sd =
            if n > 1 { (values().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt() } else { 0.0 };
        // nearest-rank quantile: the ceil(p n)-th smallest
        let q = |p: f64| {
            let rank = ((p * nf).ceil() as u64).clamp(1, n);
            let mut seen = 0;
            for (k, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return k as f64 / m;
                }
            }
            1.0
        };
        Spread {
            mean,
            sd,
            min: q(0.0),
            q05: q(0.05),
            median: q(0.5),
            q95: q(0.95),
            max: q(1.0),
            nominal,
            below_nominal: nominal.map(|t| values().filter(|&x| x < t - 1e-12).count() as f64 / nf),
        }
    }

    /// Summarize per-split values.
    #[must_use]
    pub fn of(values: &[f64], nominal: Option<f64>) -> Spread {
        let n = values.len();
        if n == 0 {
            return Spread {
                mean: f64::NAN,
                sd: f64::NAN,
                min: f64::NAN,
                q05: f64::NAN,
                median: f64::NAN,
                q95: f64::NAN,
                max: f64::NAN,
                nominal,
                below_nominal: None,
            };
        }
        let mut v = values.to_vec();
        v.sort_unstable_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        // nearest-rank quantile: the ceil(p n)-th smallest
        let q = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Spread {
            mean,
            sd,
            min: v[0],
            q05: q(0.05),
            median: q(0.5),
            q95: q(0.95),
            max: v[n - 1],
            nominal,
            below_nominal: nominal.map(|t| v.iter().filter(|&&x| x < t - 1e-12).count() as f64 / n as f64),
        }
    }
}

/// Efficiency of the sets, averaged over all (split, test image) pairs
/// where the measure is defined.
///
/// Definitions, for one test image with truth `Y`, sets `I`, `O` and `|V|`
/// voxels:
/// * `inner_size_ratio = |I| / |Y|`, `outer_size_ratio = |O| / |Y|`
///   (images with an empty truth are left out);
/// * `inner_share = |I| / |V|`, `outer_share = |O| / |V|`;
/// * `under_covered = |Y \ I| / |V|`: share of the image that is object but
///   not in the inner set; `over_covered = |O \ Y| / |V|`: share that is
///   background but in the outer set;
/// * `outer_missed_fraction = |Y \ O| / |Y|` (the false-negative rate risk
///   control bounds in expectation; 0 for an empty truth), and
///   `inner_false_fraction = |I \ Y| / |I|` (the false discovery proportion
///   an inner tolerance bounds; 0 for an empty inner set);
/// * diameter of a set: the largest Euclidean distance between the centres
///   of two of its voxels, in physical units (voxel spacing); 0 for one
///   voxel, undefined for an empty set. `inner_diameter_ratio = diam(I) /
///   diam(Y)` with `diam(I) = 0` for an empty inner set; images with
///   `diam(Y)` undefined or 0 are left out, and so are empty outer sets for
///   `outer_diameter_ratio`;
/// * Hausdorff distance `d_H(A, Y) = max(sup_{a in A} d(a, Y), sup_{y in Y} d(y, A))`
///   between voxel centres (physical units): `0` when both sets are empty,
///   infinite when exactly one is. The means are over the finite cases;
///   `*_hausdorff_infinite` is the share of infinite cases;
/// * band width: the distance from each voxel of the outer contour (voxels
///   of `O` with a face neighbour in the image outside `O`) to the nearest
///   voxel of `I`, its mean and maximum per image — how far the outer
///   contour lies from the inner set, the number a reader of the sets sees.
///   Undefined for an empty inner set or an outer set without a contour;
///   the means are over the defined cases.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Efficiency {
    /// Mean `|I| / |Y|`.
    pub inner_size_ratio: Option<f64>,
    /// Mean `|O| / |Y|`.
    pub outer_size_ratio: Option<f64>,
    /// Mean `|I| / |V|`.
    pub inner_share: f64,
    /// Mean `|O| / |V|`.
    pub outer_share: f64,
    /// Mean `|Y \ I| / |V|`.
    pub under_covered: f64,
    /// Mean `|O \ Y| / |V|`.
    pub over_covered: f64,
    /// Mean `|Y \ O| / |Y|`.
    pub outer_missed_fraction: f64,
    /// Mean `|I \ Y| / |I|` (0 for an empty inner set).
    pub inner_false_fraction: f64,
    /// Mean `diam(I) / diam(Y)`.
    pub inner_diameter_ratio: Option<f64>,
    /// Mean `diam(O) / diam(Y)`.
    pub outer_diameter_ratio: Option<f64>,
    /// Mean finite `d_H(I, Y)`.
    pub inner_hausdorff: Option<f64>,
    /// Mean finite `d_H(O, Y)`.
    pub outer_hausdorff: Option<f64>,
    /// Share of infinite `d_H(I, Y)`.
    pub inner_hausdorff_infinite: Option<f64>,
    /// Share of infinite `d_H(O, Y)`.
    pub outer_hausdorff_infinite: Option<f64>,
    /// Mean over test images of the band's mean width: the distance from
    /// the outer contour to the inner set, averaged over the contour, in
    /// the units of the spacing (e.g. mm). Only images where it is defined
    /// (a non-empty inner set, an outer set with a contour in the image).
    pub band_width_mean: Option<f64>,
    /// Mean over test images of the band's largest width (the directed
    /// Hausdorff distance from the outer contour to the inner set).
    pub band_width_max: Option<f64>,
    /// [`Efficiency::band_width_mean`] in voxels (unit spacing).
    pub band_width_mean_voxels: Option<f64>,
    /// [`Efficiency::band_width_max`] in voxels (unit spacing).
    pub band_width_max_voxels: Option<f64>,
    /// Share of test images whose band width is undefined (empty inner set,
    /// or an outer set that is empty or the whole image).
    pub band_width_undefined: Option<f64>,
    /// Number of splits the geometry measures were averaged over.
    pub geometry_splits: usize,
}

/// Validation results of one method at one level.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    /// The method (e.g. `"conformal max"`, `"risk-control"`).
    pub method: String,
    /// The nominal level `alpha`.
    pub alpha: f64,
    /// Mean share of test images with `I ⊆ Y` (or the inner tolerance
    /// event, for a pool calibrated with tolerances: [`Pool::tolerances`](super::Pool::tolerances)).
    pub inner_coverage: f64,
    /// Mean share of test images with `Y ⊆ O` (or the outer tolerance event).
    pub outer_coverage: f64,
    /// Mean share of test images with `I ⊆ Y ⊆ O` (or both tolerance events).
    pub joint_coverage: f64,
    /// Spread of the inner coverage over splits.
    pub inner: Spread,
    /// Spread of the outer coverage over splits.
    pub outer: Spread,
    /// Spread of the joint coverage over splits.
    pub joint: Spread,
    /// Share of splits whose thresholds were infinite because `n_cal` was too
    /// small for the level (sets then trivial).
    pub too_few_images: f64,
    /// Efficiency measures.
    pub efficiency: Efficiency,
    /// Calibration images per split.
    pub n_cal: usize,
    /// Test images per split.
    pub n_test: usize,
    /// Number of splits.
    pub splits: usize,
    /// The first splits' calibration images and thresholds, as many as
    /// [`Validation::with_recorded_splits`](super::Validation::with_recorded_splits) asks for (none by default).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub recorded: Vec<SplitRecord>,
}

/// One split's calibration images and the thresholds a method fitted on
/// them, in the convention of fitted sets: `I = {g_I > lambda_inner}`,
/// `O = {-g_O <= lambda_outer}` (for the conformal method exactly the
/// thresholds [`Calibrator::fit`](crate::Calibrator::fit) gives on these
/// images; `lambda_inner = +inf` for methods without an inner set).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SplitRecord {
    /// The calibration images (positions in the pool), in draw order.
    pub calibration: Vec<usize>,
    /// `lambda_I`.
    #[cfg_attr(feature = "serde", serde(with = "crate::json::inf_as_string"))]
    pub lambda_inner: f64,
    /// `lambda_O`.
    #[cfg_attr(feature = "serde", serde(with = "crate::json::inf_as_string"))]
    pub lambda_outer: f64,
}

/// A human-readable table of reports (one line per method and level;
/// `band` is the mean band width [`Efficiency::band_width_mean`]).
#[must_use]
pub fn table(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>6} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "method",
        "alpha",
        "inner",
        "outer",
        "joint",
        "sd",
        "<nom",
        "|I|/|Y|",
        "|O|/|Y|",
        "dI/dY",
        "dO/dY",
        "H(I,Y)",
        "H(O,Y)",
        "band"
    );
    let f = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    for r in reports {
        let _ = writeln!(
            s,
            "{:<28} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>6.4} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7}",
            r.method,
            r.alpha,
            r.inner_coverage,
            r.outer_coverage,
            r.joint_coverage,
            r.joint.sd,
            f(r.joint.below_nominal),
            f(r.efficiency.inner_size_ratio),
            f(r.efficiency.outer_size_ratio),
            f(r.efficiency.inner_diameter_ratio),
            f(r.efficiency.outer_diameter_ratio),
            f(r.efficiency.inner_hausdorff),
            f(r.efficiency.outer_hausdorff),
            f(r.efficiency.band_width_mean),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    #[test]
    fn spreads_of_share_histograms_equal_spreads_of_values() {
        use rand::Rng;
        let mut rng = Pcg64Mcg::seed_from_u64(4);
        for m in [1usize, 7, 50] {
            for n in [1usize, 2, 19, 300] {
                let ks: Vec<usize> = (0..n).map(|_| rng.random_range(0..=m)).collect();
                let mut counts = vec![0u64; m + 1];
                for &k in &ks {
                    counts[k] += 1;
                }
                let values: Vec<f64> = ks.iter().map(|&k| k as f64 / m as f64).collect();
                for nominal in [None, Some(0.5)] {
                    assert_eq!(
                        Spread::of_shares(&counts, nominal),
                        Spread::of(&values, nominal),
                        "m={m} n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn spread_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Spread::of(&v, Some(3.5));
        assert_eq!(s.q05, 1.0);
        assert_eq!(s.median, 10.0);
        assert_eq!(s.q95, 19.0);
        assert_eq!(s.below_nominal, Some(0.15));
        assert!((s.sd - (35.0f64).sqrt()).abs() < 1e-12);
    }
}
