//! The spatial transforms on seeded synthetic score images: signed distance
//! (512x512, 64^3, 128^3; midpoint and voxel-centre conventions, f32 and
//! f64, three metrics), Gaussian smoothing (sigma 2) and bounding-box scores.
//! Throughput is reported in voxels.
//!
//! With the `rayon` feature, the `*_threads` groups run the same transforms
//! inside pools of 1 and 2 threads (threads inside one image), and
//! `gaussian_stack` smooths a stack of 128^3 images end to end
//! (`apply_checked` per image, into an output stack).
//!
//! `morphological` counts erosion / dilation steps on one 128^3 volume by
//! the `face`, `edge` and `full` footprints and balls of radius 2 and 3,
//! next to the voxel-centre city-block distance (the same values as
//! `face`); `morphological_threads` runs `face` and `edge` in pools of 1
//! and 2 threads.
//!
//! Run: `cargo bench --bench transforms` (add `--features rayon` for the
//! threaded groups). For ratios against scipy, edt and SimpleITK measured
//! in one run, use `scripts/compare_peers.py`.

use confseg::synthetic::Synthetic;
use confseg::transform::{BoxScores, DistanceConvention, Footprint, Morphological, Units};
use confseg::{GaussianSmoothing, Metric, SignedDistance, Spacing, Transform};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use std::hint::black_box;

fn scores(shape: &[usize]) -> ArrayD<f64> {
    Synthetic::new(IxDyn(shape)).seed(42).pair(0).0
}

fn label(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
}

fn distance(c: &mut Criterion) {
    let mut g = c.benchmark_group("signed_distance");
    g.sample_size(10);
    let unit = Spacing::unit();
    for shape in [vec![512, 512], vec![64, 64, 64], vec![128, 128, 128]] {
        let s = scores(&shape);
        let s32 = s.mapv(|x| x as f32);
        g.throughput(Throughput::Elements(s.len() as u64));
        let name = label(&shape);
        let mid = SignedDistance::new(Metric::Euclidean);
        g.bench_with_input(BenchmarkId::new("euclidean_midpoint_f64", &name), &s, |b, s| {
            b.iter(|| black_box(mid.apply(s, &unit).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("euclidean_midpoint_f32", &name), &s32, |b, s| {
            b.iter(|| black_box(mid.apply(s, &unit).unwrap()))
        });
        let centre = mid.with_convention(DistanceConvention::VoxelCentre);
        g.bench_with_input(BenchmarkId::new("euclidean_centre_f64", &name), &s, |b, s| {
            b.iter(|| black_box(centre.apply(s, &unit).unwrap()))
        });
        if shape.len() == 2 {
            for metric in [Metric::Chessboard, Metric::CityBlock] {
                let t = SignedDistance::new(metric);
                g.bench_with_input(BenchmarkId::new(format!("{metric}_midpoint_f64"), &name), &s, |b, s| {
                    b.iter(|| black_box(t.apply(s, &unit).unwrap()))
                });
            }
        }
    }
    g.finish();
}

fn smoothing(c: &mut Criterion) {
    let mut g = c.benchmark_group("gaussian_sigma2");
    g.sample_size(10);
    let unit = Spacing::unit();
    let t = GaussianSmoothing::sigma(2.0).unwrap();
    for shape in [vec![512, 512], vec![128, 128, 128]] {
        let s = scores(&shape);
        let s32 = s.mapv(|x| x as f32);
        g.throughput(Throughput::Elements(s.len() as u64));
        let name = label(&shape);
        g.bench_with_input(BenchmarkId::new("f64", &name), &s, |b, s| {
            b.iter(|| black_box(t.apply(s, &unit).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("f32", &name), &s32, |b, s| {
            b.iter(|| black_box(t.apply(s, &unit).unwrap()))
        });
    }
    g.finish();
}

fn boxes(c: &mut Criterion) {
    let mut g = c.benchmark_group("box_scores");
    g.sample_size(10);
    let unit = Spacing::unit();
    for shape in [vec![512, 512], vec![64, 64, 64]] {
        let s = scores(&shape);
        g.throughput(Throughput::Elements(s.len() as u64));
        let name = label(&shape);
        for (kind, t) in [("outer", BoxScores::outer()), ("inner", BoxScores::inner())] {
            g.bench_with_input(BenchmarkId::new(kind, &name), &s, |b, s| {
                b.iter(|| black_box(t.apply(s, &unit).unwrap()))
            });
        }
    }
    g.finish();
}

/// The footprints compared on one 128^3 volume (f32 scores).
fn morphology_footprints() -> Vec<(&'static str, Morphological)> {
    let ball = |r| Morphological::new(Footprint::ball(r, Units::Voxels).unwrap());
    vec![
        ("face", Morphological::new(Footprint::Face)),
        ("edge", Morphological::new(Footprint::Edge)),
        ("full", Morphological::new(Footprint::Full)),
        ("ball_r2", ball(2.0)),
        ("ball_r3", ball(3.0)),
    ]
}

fn morphology(c: &mut Criterion) {
    let mut g = c.benchmark_group("morphological");
    g.sample_size(10);
    let unit = Spacing::unit();
    let shape = [128, 128, 128];
    let s = scores(&shape).mapv(|x| x as f32);
    g.throughput(Throughput::Elements(s.len() as u64));
    let name = label(&shape);
    for (f, t) in morphology_footprints() {
        g.bench_with_input(BenchmarkId::new(f, &name), &s, |b, s| {
            b.iter(|| black_box(t.apply(s, &unit).unwrap()))
        });
    }
    let centre = SignedDistance::new(Metric::CityBlock).with_convention(DistanceConvention::VoxelCentre);
    g.bench_with_input(BenchmarkId::new("distance_centre_cityblock", &name), &s, |b, s| {
        b.iter(|| black_box(centre.apply(s, &unit).unwrap()))
    });
    g.finish();
}

/// The same transforms in pools of 1 and 2 threads: threads inside one image.
#[cfg(feature = "rayon")]
fn threads(c: &mut Criterion) {
    let unit = Spacing::unit();
    let pools: Vec<rayon::ThreadPool> =
        [1, 2].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
    let mid = SignedDistance::new(Metric::Euclidean);
    let gauss = GaussianSmoothing::sigma(2.0).unwrap();
    let mut g = c.benchmark_group("distance_threads");
    g.sample_size(10);
    for shape in [vec![512, 512], vec![128, 128, 128]] {
        let s = scores(&shape);
        let s32 = s.mapv(|x| x as f32);
        g.throughput(Throughput::Elements(s.len() as u64));
        for p in &pools {
            let name = format!("{}/{}t", label(&shape), p.current_num_threads());
            g.bench_with_input(BenchmarkId::new("midpoint_f64", &name), &s, |b, s| {
                b.iter(|| p.install(|| black_box(mid.apply(s, &unit).unwrap())))
            });
            g.bench_with_input(BenchmarkId::new("midpoint_f32", &name), &s32, |b, s| {
                b.iter(|| p.install(|| black_box(mid.apply(s, &unit).unwrap())))
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("gaussian_threads");
    g.sample_size(10);
    for shape in [vec![512, 512], vec![128, 128, 128]] {
        let s = scores(&shape);
        let s32 = s.mapv(|x| x as f32);
        g.throughput(Throughput::Elements(s.len() as u64));
        for p in &pools {
            let name = format!("{}/{}t", label(&shape), p.current_num_threads());
            g.bench_with_input(BenchmarkId::new("f64", &name), &s, |b, s| {
                b.iter(|| p.install(|| black_box(gauss.apply(s, &unit).unwrap())))
            });
            g.bench_with_input(BenchmarkId::new("f32", &name), &s32, |b, s| {
                b.iter(|| p.install(|| black_box(gauss.apply(s, &unit).unwrap())))
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("gaussian_stack");
    g.sample_size(10);
    let images: Vec<ArrayD<f32>> =
        (0..4).map(|i| scores(&[128, 128, 128]).mapv(|x| x as f32 + i as f32)).collect();
    g.throughput(Throughput::Elements(images.iter().map(|x| x.len() as u64).sum()));
    for p in &pools {
        g.bench_function(
            BenchmarkId::new("4x128x128x128_f32", format!("{}t", p.current_num_threads())),
            |b| {
                b.iter(|| {
                    p.install(|| {
                        let mut out = ArrayD::<f32>::zeros(IxDyn(&[4, 128, 128, 128]));
                        for (img, mut o) in images.iter().zip(out.axis_iter_mut(ndarray::Axis(0))) {
                            o.assign(&confseg::transform::apply_checked(&gauss, img, &unit).unwrap());
                        }
                        black_box(out)
                    })
                })
            },
        );
    }
    g.finish();
    let mut g = c.benchmark_group("morphological_threads");
    g.sample_size(10);
    let s = scores(&[128, 128, 128]).mapv(|x| x as f32);
    g.throughput(Throughput::Elements(s.len() as u64));
    for (f, t) in morphology_footprints().into_iter().take(2) {
        for p in &pools {
            let name = format!("128x128x128/{}t", p.current_num_threads());
            g.bench_with_input(BenchmarkId::new(f, &name), &s, |b, s| {
                b.iter(|| p.install(|| black_box(t.apply(s, &unit).unwrap())))
            });
        }
    }
    g.finish();
}

#[cfg(not(feature = "rayon"))]
fn threads(_: &mut Criterion) {}

criterion_group!(benches, distance, smoothing, boxes, morphology, threads);
criterion_main!(benches);
