//! The fused tau/gamma kernel against a plain max (in cache) and against
//! a plain sum over the same bytes (out of cache: read bandwidth).
//!
//! In cache: 352x352 f32 score images with a ~10% object mask (a disk).
//! Baselines for the plain, unmasked max, measured in the same run:
//! ndarray's `fold` with `f32::max` (what most code writes) and a max
//! accumulated in independent lanes, compiled for the baseline target
//! (`lanes`) and for AVX2 through the same run-time dispatch the kernel
//! uses (`lanes_dispatched`). Target: fused >= 0.7x the plain lane max.
//!
//! Out of cache: stacks larger than the last-level cache (200 x 352^2 and
//! 64 x 128^3 f32 with u8 masks), the kernel over every image against a
//! lane sum over the same bytes (scores and mask), which is what one core
//! can read. Target: fused >= 85% of that bandwidth.
//!
//! Run: `cargo bench --bench kernel` (ratios with their spread over
//! interleaved rounds: `cargo run --release --example bench_kernel`).

use confseg::calibrate::region_statistics;
use confseg::synthetic::Synthetic;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array2, Axis};
use std::hint::black_box;

#[path = "support/kernel_refs.rs"]
mod refs;
use refs::{lane_max, lane_max_dispatched, read_sum, stack};

const SIZE: usize = 352;

fn inputs() -> (Array2<f32>, Array2<f32>, Array2<u8>, Array2<bool>) {
    let (scores, _) = Synthetic::new([SIZE, SIZE]).seed(42).pair(0);
    let inner = scores.mapv(|x| x as f32);
    let outer = inner.mapv(|x| x * 0.5 - 1.0);
    let c = SIZE as f64 / 2.0;
    // radius with pi r^2 = 10% of the image
    let r2 = 0.1 * (SIZE * SIZE) as f64 / std::f64::consts::PI;
    let mask = Array2::from_shape_fn((SIZE, SIZE), |(i, j)| {
        u8::from((i as f64 - c).powi(2) + (j as f64 - c * 0.8).powi(2) <= r2)
    });
    let share = mask.iter().map(|&m| f64::from(m)).sum::<f64>() / (SIZE * SIZE) as f64;
    assert!((0.09..0.11).contains(&share), "mask share {share}");
    let bmask = mask.mapv(|m| m == 1);
    (inner, outer, mask, bmask)
}

fn in_cache(c: &mut Criterion) {
    let (inner, outer, mask, bmask) = inputs();
    let mut g = c.benchmark_group("tau_gamma_352x352_f32");
    g.throughput(Throughput::Elements((SIZE * SIZE) as u64));
    g.bench_function(BenchmarkId::new("plain_max", "ndarray_fold"), |b| {
        b.iter(|| black_box(&inner).fold(f32::NEG_INFINITY, |a, &x| a.max(x)))
    });
    let slice = inner.as_slice().expect("standard layout");
    g.bench_function(BenchmarkId::new("plain_max", "lanes"), |b| b.iter(|| lane_max(black_box(slice))));
    g.bench_function(BenchmarkId::new("plain_max", "lanes_dispatched"), |b| {
        b.iter(|| lane_max_dispatched(black_box(slice)))
    });
    g.bench_function(BenchmarkId::new("fused", "u8_mask"), |b| {
        b.iter(|| region_statistics(black_box(&inner), black_box(&outer), black_box(&mask)))
    });
    g.bench_function(BenchmarkId::new("fused_same_scores", "u8_mask"), |b| {
        b.iter(|| region_statistics(black_box(&inner), black_box(&inner), black_box(&mask)))
    });
    g.bench_function(BenchmarkId::new("fused", "bool_mask"), |b| {
        b.iter(|| region_statistics(black_box(&inner), black_box(&outer), black_box(&bmask)))
    });
    g.finish();
}

fn out_of_cache(c: &mut Criterion) {
    for (n, spatial) in [(200, vec![SIZE, SIZE]), (64, vec![128, 128, 128])] {
        let (scores, masks) = stack(n, &spatial);
        let name = format!(
            "out_of_cache_{n}x{}_f32",
            spatial.iter().map(ToString::to_string).collect::<Vec<_>>().join("x")
        );
        let mut g = c.benchmark_group(name);
        let bytes = scores.len() * 4 + masks.len();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.sample_size(10);
        g.bench_function("read_sum", |b| {
            b.iter(|| {
                for (x, y) in scores.axis_iter(Axis(0)).zip(masks.axis_iter(Axis(0))) {
                    let (x, y) = (x.to_slice().expect("standard"), y.to_slice().expect("standard"));
                    black_box(read_sum(black_box(x), black_box(y)));
                }
            })
        });
        g.bench_function("fused_same_scores", |b| {
            b.iter(|| {
                for (x, y) in scores.axis_iter(Axis(0)).zip(masks.axis_iter(Axis(0))) {
                    black_box(region_statistics(&x, &x, &y).expect("valid"));
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = in_cache, out_of_cache
}
criterion_main!(benches);
