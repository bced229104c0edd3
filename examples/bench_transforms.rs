//! Times the spatial transforms on deterministic test volumes, for
//! `scripts/compare_peers.py` and `scripts/compare_scipy.py` (which build
//! the same volumes in NumPy and time scipy, edt and SimpleITK on them in
//! the same run).
//!
//! ```text
//! cargo run --release --features rayon --example bench_transforms -- 512x512 128x128x128
//! RAYON_NUM_THREADS=2 cargo run --release --features rayon --example bench_transforms -- 16x128x128x128
//! ```
//!
//! Prints one JSON object per line: the case, the shape, the number of
//! threads, the time per voxel of every repeat (and the best), and a
//! checksum of the result. A 4-D shape `N x spatial` is a stack: only the
//! end-to-end stack case runs on it (every image through
//! `transform::apply_checked`, as a pipeline does, into an output stack).
//!
//! * `BENCH_REPEATS=N`: timed repeats per case (default 7, 3 above 4M voxels);
//! * `BENCH_WARMUP=N`: untimed calls before them (default 2);
//! * `BENCH_ONLY=TEXT`: only the cases whose name contains `TEXT`;
//! * `BENCH_DUMP=DIR`: write each case's last result to
//!   `DIR/<case>_<shape>.bin` (raw little-endian, row-major) for value checks.
//!
//! Threads: with the `rayon` feature, rayon's global pool (set its size
//! with `RAYON_NUM_THREADS`); without it, one thread.

use std::io::Write;
use std::time::Instant;

use confseg::transform::apply_checked;
use confseg::transform::{BoundaryMode, DistanceConvention};
use confseg::{GaussianSmoothing, Metric, SignedDistance, Spacing, Transform};
use ndarray::{ArrayD, Axis, IxDyn};

/// Union of spheres with integer centres and radii from a fixed LCG; the
/// same integers in the Python scripts give the same mask bit for bit.
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

/// Smooth deterministic scores: a sum of integer-phase ramps.
fn scores(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |ix| {
        let mut v = 0.0;
        for j in 0..shape.len() {
            v += ((ix[j] * (j + 3) % 17) as f64 - 8.0) / 8.0;
        }
        v
    })
}

/// A result that can be checksummed and dumped.
trait Output {
    fn checksum(&self) -> f64;
    fn bytes(&self) -> Vec<u8>;
}

impl Output for ArrayD<f64> {
    fn checksum(&self) -> f64 {
        self.iter().filter(|x| x.is_finite()).sum()
    }
    fn bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

impl Output for ArrayD<f32> {
    fn checksum(&self) -> f64 {
        self.iter().filter(|x| x.is_finite()).map(|&x| f64::from(x)).sum()
    }
    fn bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

struct Bench {
    shape: Vec<usize>,
    label: String,
    repeats: usize,
    warmup: usize,
    only: String,
    dump: Option<std::path::PathBuf>,
    threads: usize,
}

impl Bench {
    /// Time `repeats` calls of `f` (the transform only) and print them.
    fn run<T: Output>(&self, case: &str, f: &mut dyn FnMut() -> T) -> std::io::Result<()> {
        if !case.contains(self.only.as_str()) {
            return Ok(());
        }
        let n = self.shape.iter().product::<usize>() as f64;
        // Untimed calls first: the allocator and the scratch pools reach
        // the steady state of a pipeline that transforms image after image.
        for _ in 0..self.warmup {
            std::hint::black_box(f());
        }
        let mut times = Vec::with_capacity(self.repeats);
        let mut last = None;
        for _ in 0..self.repeats {
            let t = Instant::now();
            let out = f();
            times.push(t.elapsed().as_secs_f64() * 1e9 / n);
            last = Some(out);
        }
        let Some(out) = last else { return Ok(()) };
        if let Some(dir) = &self.dump {
            std::fs::write(dir.join(format!("{case}_{}.bin", self.label)), out.bytes())?;
        }
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        let list = times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", ");
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "{{\"case\": \"{case}\", \"shape\": \"{}\", \"threads\": {}, \"ns_per_voxel\": {best:.3}, \
             \"times\": [{list}], \"checksum\": {:.6}}}",
            self.label,
            self.threads,
            out.checksum()
        )?;
        stdout.flush()
    }
}

fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
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
        let len: usize = shape.iter().product();
        let bench = Bench {
            label: shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x"),
            repeats: std::env::var("BENCH_REPEATS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(if len > 4_000_000 { 3 } else { 7 }),
            warmup: std::env::var("BENCH_WARMUP").ok().and_then(|r| r.parse().ok()).unwrap_or(2),
            only: std::env::var("BENCH_ONLY").unwrap_or_default(),
            dump: std::env::var_os("BENCH_DUMP").map(Into::into),
            threads: threads(),
            shape: shape.clone(),
        };
        let g = GaussianSmoothing::sigma(2.0)?;
        let g_nearest = g.with_mode(BoundaryMode::Nearest)?;
        if shape.len() == 4 {
            // A stack of 3-D images, smoothed one by one end to end.
            let images: Vec<ArrayD<f32>> =
                (0..shape[0]).map(|i| scores(&shape[1..]).mapv(|v| (v + i as f64 * 0.125) as f32)).collect();
            bench.run("gaussian_stack_f32", &mut || {
                let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
                for (img, mut o) in images.iter().zip(out.axis_iter_mut(Axis(0))) {
                    o.assign(&apply_checked(&g, img, &unit).expect("finite scores"));
                }
                out
            })?;
            continue;
        }
        let m = mask(&shape);
        let s = m.mapv(|b| if b { 1.0 } else { -1.0 });
        let s32 = s.mapv(|x| x as f32);
        let mid = SignedDistance::new(Metric::Euclidean);
        let centre = mid.with_convention(DistanceConvention::VoxelCentre);
        let x = scores(&shape);
        let x32 = x.mapv(|v| v as f32);
        bench.run("distance_midpoint_f64", &mut || mid.apply(&s, &unit).expect("valid").into_owned())?;
        bench.run("distance_midpoint_f32", &mut || mid.apply(&s32, &unit).expect("valid").into_owned())?;
        bench.run("distance_centre_f64", &mut || centre.apply(&s, &unit).expect("valid").into_owned())?;
        bench.run("distance_centre_f32", &mut || centre.apply(&s32, &unit).expect("valid").into_owned())?;
        bench.run("gaussian_sigma2_f64", &mut || g.apply(&x, &unit).expect("valid").into_owned())?;
        bench.run("gaussian_sigma2_f32", &mut || g.apply(&x32, &unit).expect("valid").into_owned())?;
        bench.run("gaussian_nearest_f64", &mut || g_nearest.apply(&x, &unit).expect("valid").into_owned())?;
        bench
            .run("gaussian_nearest_f32", &mut || g_nearest.apply(&x32, &unit).expect("valid").into_owned())?;
    }
    Ok(())
}
