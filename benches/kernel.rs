//! The fused tau/gamma kernel against a plain max over the same scores.
//!
//! 352x352 f32 score images with a ~10% object mask (a disk). Three
//! baselines for the plain, unmasked max are measured in the same run:
//! ndarray's `fold` with `f32::max` (what most code writes) and a max
//! accumulated in independent lanes (the fastest safe Rust we know, and the
//! technique the fused kernel uses). The target is fused >= 0.7x the faster
//! plain max.
//!
//! Run: `cargo bench --bench kernel`

use confseg::synthetic::Synthetic;
use confseg::{region_statistics, Max};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use std::hint::black_box;

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

fn lane_max(x: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..L {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    rest.iter().chain(acc.iter()).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

fn bench(c: &mut Criterion) {
    let (inner, outer, mask, bmask) = inputs();
    let mut g = c.benchmark_group("tau_gamma_352x352_f32");
    g.throughput(Throughput::Elements((SIZE * SIZE) as u64));
    g.bench_function(BenchmarkId::new("plain_max", "ndarray_fold"), |b| {
        b.iter(|| black_box(&inner).fold(f32::NEG_INFINITY, |a, &x| a.max(x)))
    });
    let slice = inner.as_slice().expect("standard layout");
    g.bench_function(BenchmarkId::new("plain_max", "lanes"), |b| b.iter(|| lane_max(black_box(slice))));
    g.bench_function(BenchmarkId::new("fused", "u8_mask"), |b| {
        b.iter(|| region_statistics(black_box(&inner), black_box(&outer), black_box(&mask), &Max))
    });
    g.bench_function(BenchmarkId::new("fused_same_scores", "u8_mask"), |b| {
        b.iter(|| region_statistics(black_box(&inner), black_box(&inner), black_box(&mask), &Max))
    });
    g.bench_function(BenchmarkId::new("fused", "bool_mask"), |b| {
        b.iter(|| region_statistics(black_box(&inner), black_box(&outer), black_box(&bmask), &Max))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
