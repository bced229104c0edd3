//! Ratios for the fused calibration kernel, measured in one run over
//! interleaved rounds (the machine may be shared: every round times every
//! case back to back, and the ratio is taken within the round).
//!
//! ```text
//! cargo run --release --example bench_kernel            # 7 rounds
//! BENCH_ROUNDS=11 cargo run --release --example bench_kernel
//! ```
//!
//! * in cache, one 352x352 f32 image with a 10% disk mask: the kernel
//!   (`f_I = f_O`, read once; and `f_I != f_O`, u8 and bool masks) against
//!   a plain lane max over the same scores compiled for the baseline target
//!   and for the widest SIMD the processor has (the kernel's own dispatch);
//! * out of cache, 200 x 352^2 and 64 x 128^3 f32 stacks with u8 masks: the
//!   kernel over every image against a plain lane sum over the same bytes
//!   (scores and masks, image by image, compiled for the same SIMD as the
//!   kernel), i.e. the share of one core's read bandwidth.
//!
//! Prints, per ratio, `min / median / max` over the rounds (a ratio above
//! 1 means the kernel is faster than the reference).

use std::hint::black_box;
use std::time::Instant;

use confseg::calibrate::region_statistics;
use ndarray::{Array2, Axis};

#[path = "../benches/support/kernel_refs.rs"]
mod refs;
use refs::{lane_max, lane_max_dispatched, read_sum, stack};

/// Best of `reps` timings of `f`, in seconds.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.2} / {:.2} / {:.2}", v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let arch = format!("{:?}", pulp::Arch::new());
    println!("dispatch: {}", arch.split('(').next().unwrap_or(&arch));

    // in cache
    let n = 352;
    let (s, _) = stack(1, &[n, n]);
    let inner = Array2::from_shape_vec((n, n), s.iter().copied().collect()).expect("shape");
    let outer = inner.mapv(|x| x * 0.5 - 1.0);
    let r2 = 0.1 * (n * n) as f64 / std::f64::consts::PI;
    let mask = Array2::from_shape_fn((n, n), |(i, j)| {
        u8::from((i as f64 - 176.0).powi(2) + (j as f64 - 140.8).powi(2) <= r2)
    });
    let bmask = mask.mapv(|m| m == 1);
    let x = inner.as_slice().expect("standard");
    let reps = 200;
    let names = ["fused f_I = f_O", "fused f_I != f_O", "fused f_I != f_O, bool mask"];
    let mut vs_plain: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut vs_wide: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut gvox = Vec::new();
    for _ in 0..rounds {
        let plain = time(reps, || {
            black_box(lane_max(black_box(x)));
        });
        let wide = time(reps, || {
            black_box(lane_max_dispatched(black_box(x)));
        });
        let fused = [
            time(reps, || {
                black_box(region_statistics(&inner, &inner, &mask).expect("valid"));
            }),
            time(reps, || {
                black_box(region_statistics(&inner, &outer, &mask).expect("valid"));
            }),
            time(reps, || {
                black_box(region_statistics(&inner, &outer, &bmask).expect("valid"));
            }),
        ];
        for k in 0..3 {
            vs_plain[k].push(plain / fused[k]);
            vs_wide[k].push(wide / fused[k]);
        }
        gvox.push((n * n) as f64 / fused[0] / 1e9);
    }
    println!("in cache, 352x352 f32, 10% disk mask ({rounds} rounds; min / median / max):");
    println!("  fused f_I = f_O: {} Gvoxel/s", spread(gvox));
    for k in 0..3 {
        println!(
            "  {:<28} {} x plain lane max (baseline target), {} x plain lane max (dispatched)",
            names[k],
            spread(vs_plain[k].clone()),
            spread(vs_wide[k].clone())
        );
    }

    // out of cache
    for (n, spatial) in [(200, vec![352, 352]), (64, vec![128, 128, 128])] {
        let (scores, masks) = stack(n, &spatial);
        let bytes = (scores.len() * 4 + masks.len()) as f64;
        let mut share = Vec::new();
        let mut bw = Vec::new();
        for _ in 0..rounds {
            let sum = time(3, || {
                for (x, y) in scores.axis_iter(Axis(0)).zip(masks.axis_iter(Axis(0))) {
                    let (x, y) = (x.to_slice().expect("standard"), y.to_slice().expect("standard"));
                    black_box(read_sum(black_box(x), black_box(y)));
                }
            });
            let fused = time(3, || {
                for (x, y) in scores.axis_iter(Axis(0)).zip(masks.axis_iter(Axis(0))) {
                    black_box(region_statistics(&x, &x, &y).expect("valid"));
                }
            });
            share.push(sum / fused);
            bw.push(bytes / sum / 1e9);
        }
        let shape: Vec<String> = spatial.iter().map(ToString::to_string).collect();
        println!(
            "out of cache, {n} x {} f32 + u8 masks ({:.0} MB): fused f_I = f_O at {} of the read bandwidth ({} GB/s)",
            shape.join("x"),
            bytes / 1e6,
            spread(share),
            spread(bw)
        );
    }
}
