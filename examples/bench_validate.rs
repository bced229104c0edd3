//! Times `Validation::run` (the splits; geometry off) on one and on two
//! threads in the same run, over interleaved rounds, and checks that the
//! reports are identical.
//!
//! ```text
//! cargo run --release --features rayon --example bench_validate
//! BENCH_ROUNDS=5 BENCH_SPLITS=2000 cargo run --release --features rayon --example bench_validate
//! ```
//!
//! The pool: 1500 synthetic 64x64 images (`Synthetic`, seed 1), identity
//! inner and signed-distance outer transform; 1000 calibration and 500 test
//! images per split; levels 0.05 to 0.30 in steps of 0.05; the three
//! conformal modes and the three baselines (`BENCH_METHODS=conformal` for
//! the conformal modes only). Prints the time per split on 1 and 2 threads
//! and the ratio (min / median / max over the rounds), and writes the
//! per-split shares of test images to `BENCH_DUMP` if set (for a NumPy
//! comparison).

use std::time::Instant;

use confseg::evaluate::{Geometry, Method, Pool, Splits, Validation};
use confseg::levels::ModeKind;
use confseg::quantile::Rank;
use confseg::synthetic::Synthetic;
use confseg::Levels;
use confseg::{Alpha, Calibrator, Identity, Metric, SignedDistance};

fn spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.2} / {:.2} / {:.2}", v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> Result<(), confseg::Error> {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
    let rounds = env("BENCH_ROUNDS", 3);
    let splits = env("BENCH_SPLITS", 1000);
    let conformal_only = std::env::var("BENCH_METHODS").is_ok_and(|m| m == "conformal");

    let t = Instant::now();
    let (scores, masks) = Synthetic::new([64, 64]).seed(1).stack(0..1500);
    let calibrator = Calibrator::new(Identity, SignedDistance::new(Metric::Euclidean));
    let pool = Pool::new(&calibrator, &scores, &masks, 0.0)?;
    println!("pool of {} images in {:.1} s", pool.len(), t.elapsed().as_secs_f64());

    let mut methods = vec![
        Method::Conformal(Levels::new(ModeKind::Marginal)),
        Method::Conformal(Levels::new(ModeKind::Max)),
        Method::Conformal(Levels::bonferroni(1.0, 4.0)),
    ];
    if !conformal_only {
        methods.extend([
            Method::RiskControl,
            Method::PixelwiseBonferroni(Levels::bonferroni(1.0, 4.0)),
            Method::Morphological(confseg::transform::Footprint::Full, Rank::Marginal),
        ]);
    }
    let alphas: Vec<Alpha> = (1..=6).map(|k| Alpha::new(0.05 * f64::from(k))).collect::<Result<_, _>>()?;
    let validation =
        Validation::new(alphas, Splits::new(1000, splits, 7)?.with_n_test(500)?).with_geometry(Geometry::Off);

    let pools: Vec<rayon::ThreadPool> = [1, 2]
        .iter()
        .map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("thread pool"))
        .collect();
    let (mut one, mut two, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut reports = Vec::new();
    for _ in 0..rounds {
        let mut times = [0.0; 2];
        for (k, p) in pools.iter().enumerate() {
            let t = Instant::now();
            let r = p.install(|| validation.run(&pool, &methods))?;
            times[k] = t.elapsed().as_secs_f64();
            reports.push(r);
        }
        one.push(times[0] / splits as f64 * 1e3);
        two.push(times[1] / splits as f64 * 1e3);
        ratio.push(times[0] / times[1]);
    }
    assert!(reports.windows(2).all(|w| w[0] == w[1]), "reports differ between runs");
    println!(
        "{} methods x {} levels, {} splits of 1000 + 500 images ({rounds} rounds; min / median / max):",
        methods.len(),
        validation.alphas().len(),
        splits
    );
    println!("  1 thread:  {} ms per split", spread(one));
    println!("  2 threads: {} ms per split", spread(two));
    println!("  2 threads vs 1: {} x; reports identical", spread(ratio));
    Ok(())
}
