//! Times the library's in-memory calibration of a stack (the fused kernel
//! through `Calibrator::calibrate_stack`, then `fit`), for
//! `scripts/bench_python.py`, which compares the Python package with it.
//!
//! `cargo run --release --features npy,rayon --example bench_stack -- S.npy M.npy REPEATS`
//! reads both stacks into memory, then prints one line per repeat: the
//! seconds of `calibrate_stack` + `fit` and the threshold.

use confseg::io::{read_masks, read_scores};
use confseg::{Alpha, Calibrator, Identity, Mode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (scores, masks) = (&args[1], &args[2]);
    let repeats: usize = args.get(3).map_or(Ok(5), |r| r.parse())?;
    let s = read_scores::<f32>(scores)?;
    let m = read_masks(masks)?;
    let calibrator = Calibrator::new(Identity, Identity);
    let mode = Mode::max(Alpha::new(0.1)?);
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        let cal = calibrator.calibrate_stack(&s, &m)?;
        let sets = calibrator.fit(&cal, mode)?;
        let secs = t.elapsed().as_secs_f64();
        println!("{secs} {}", sets.thresholds().inner.value());
    }
    Ok(())
}
