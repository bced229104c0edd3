//! Times the spatial transforms on deterministic test volumes, for
//! `scripts/compare_scipy.py` (which builds the same volumes in NumPy and
//! times scipy on them in the same run).
//!
//! ```text
//! cargo run --release --example bench_transforms -- 512x512 128x128x128
//! ```
//!
//! Prints one JSON object per line: the case, the shape, the best time per
//! voxel over the repeats, and a checksum of the result that the script
//! compares with scipy's output where the definitions coincide.
//! `BENCH_REPEATS=N` sets the number of repeats (default 7, 3 above 4M voxels);
//! `BENCH_ONLY=TEXT` runs only the cases whose name contains `TEXT`.

use std::time::Instant;

use confseg::{DistanceConvention, GaussianSmoothing, Metric, SignedDistance, Spacing, Transform};
use ndarray::{ArrayD, IxDyn};

/// Union of spheres with integer centres and radii from a fixed LCG; the
/// same integers in `compare_scipy.py` give the same mask bit for bit.
fn mask(shape: &[usize]) -> ArrayD<bool> {
    let mut state: u64 = 12345;
    let mut next = |m: u64| {
        state = (state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)) % (1 << 63);
        (state >> 33) % m
    };
    let min_len = *shape.iter().min().unwrap_or(&1) as u64;
    let spheres: Vec<(Vec<i64>, i64)> = (0..12)
        .map(|_| {
            let c: Vec<i64> = shape.iter().map(|&n| next(n as u64) as i64).collect();
            let r = (min_len / 16 + next(min_len / 6 + 1)) as i64;
            (c, r)
        })
        .collect();
    ArrayD::from_shape_fn(IxDyn(shape), |ix| {
        spheres.iter().any(|(c, r)| {
            let d2: i64 = c.iter().enumerate().map(|(j, &cj)| (ix[j] as i64 - cj).pow(2)).sum();
            d2 <= r * r
        })
    })
}

/// Smooth deterministic scores: a sum of products of cosines of integer phases.
fn scores(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |ix| {
        let mut v = 0.0;
        for j in 0..shape.len() {
            v += ((ix[j] * (j + 3) % 17) as f64 - 8.0) / 8.0;
        }
        v
    })
}

/// Best wall time of `repeats` calls of `f` (the transform only), and the
/// checksum of the last result.
fn time<T>(repeats: usize, f: &mut dyn FnMut() -> T, check: fn(&T) -> f64) -> (f64, f64) {
    let mut best = f64::INFINITY;
    let mut sum = 0.0;
    for _ in 0..repeats {
        let t = Instant::now();
        let out = f();
        best = best.min(t.elapsed().as_secs_f64());
        sum = check(&out);
    }
    (best, sum)
}

fn finite_sum<'a, I: Iterator<Item = &'a f64>>(it: I) -> f64 {
    it.filter(|x| x.is_finite()).sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shapes: Vec<Vec<usize>> = if args.is_empty() {
        vec![vec![512, 512], vec![64, 64, 64], vec![128, 128, 128], vec![256, 256, 256]]
    } else {
        args.iter()
            .map(|a| a.split('x').map(str::parse).collect::<Result<Vec<usize>, _>>())
            .collect::<Result<_, _>>()?
    };
    let unit = Spacing::unit();
    for shape in shapes {
        let m = mask(&shape);
        let n = m.len() as f64;
        let repeats = std::env::var("BENCH_REPEATS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(if m.len() > 4_000_000 { 3 } else { 7 });
        let s = m.mapv(|b| if b { 1.0 } else { -1.0 });
        let s32 = s.mapv(|x| x as f32);
        let shape_s = shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let print = |case: &str, (secs, check): (f64, f64)| {
            println!(
                "{{\"case\": \"{case}\", \"shape\": \"{shape_s}\", \"ns_per_voxel\": {:.3}, \"checksum\": {check:.6}}}",
                secs * 1e9 / n
            );
        };
        let f64s = |a: &ArrayD<f64>| finite_sum(a.iter());
        let f32s = |a: &ArrayD<f32>| a.iter().filter(|x| x.is_finite()).map(|&x| f64::from(x)).sum();
        let mid = SignedDistance::new(Metric::Euclidean);
        let centre = mid.with_convention(DistanceConvention::VoxelCentre);
        let x = scores(&shape);
        let x32 = x.mapv(|v| v as f32);
        let g = GaussianSmoothing::sigma(2.0)?;
        let wanted = |case: &str| case.contains(only.as_str());
        if wanted("distance_midpoint_f64") {
            print(
                "distance_midpoint_f64",
                time(repeats, &mut || mid.apply(&s, &unit).expect("valid").into_owned(), f64s),
            );
        }
        if wanted("distance_midpoint_f32") {
            print(
                "distance_midpoint_f32",
                time(repeats, &mut || mid.apply(&s32, &unit).expect("valid").into_owned(), f32s),
            );
        }
        if wanted("distance_centre_f64") {
            print(
                "distance_centre_f64",
                time(repeats, &mut || centre.apply(&s, &unit).expect("valid").into_owned(), f64s),
            );
        }
        if wanted("gaussian_sigma2_f64") {
            print(
                "gaussian_sigma2_f64",
                time(repeats, &mut || g.apply(&x, &unit).expect("valid").into_owned(), f64s),
            );
        }
        if wanted("gaussian_sigma2_f32") {
            print(
                "gaussian_sigma2_f32",
                time(repeats, &mut || g.apply(&x32, &unit).expect("valid").into_owned(), f32s),
            );
        }
    }
    Ok(())
}
