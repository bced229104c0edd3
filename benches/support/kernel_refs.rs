//! Reference loops and inputs shared by `benches/kernel.rs` and
//! `examples/bench_kernel.rs` (included by `#[path]`, so both measure the
//! kernel against the same plain max and the same read of the bytes).

use ndarray::{ArrayD, IxDyn};

/// Lanes of the reference loops.
pub const L: usize = 16;

/// A stack `(n, spatial...)` of deterministic scores (an LCG) and masks
/// (a ball of ~10% of each image, shifted per image).
pub fn stack(n: usize, spatial: &[usize]) -> (ArrayD<f32>, ArrayD<u8>) {
    let mut shape = vec![n];
    shape.extend_from_slice(spatial);
    let mut state: u32 = 7;
    let scores = ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
    });
    let voxels: usize = spatial.iter().product();
    let d = spatial.len() as i32;
    // ball volume share 0.1: r^d * (pi^(d/2) / Gamma(d/2 + 1)) = 0.1 voxels
    let unit = if d == 2 { std::f64::consts::PI } else { 4.0 / 3.0 * std::f64::consts::PI };
    let r = (0.1 * voxels as f64 / unit).powf(1.0 / f64::from(d));
    let masks = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
        let d2: f64 = (1..=spatial.len())
            .map(|k| (ix[k] as f64 - spatial[k - 1] as f64 / 2.0 - (ix[0] % 7) as f64).powi(2))
            .sum();
        u8::from(d2 <= r * r)
    });
    (scores, masks)
}

pub fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; L];
    let (chunks, rest) = x.as_chunks::<L>();
    for c in chunks {
        for l in 0..L {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    rest.iter().chain(acc.iter()).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// [`lane_max`] compiled for the widest SIMD the processor has, through
/// the kernel's run-time dispatch.
pub fn lane_max_dispatched(x: &[f32]) -> f32 {
    struct Op<'a>(&'a [f32]);
    impl pulp::WithSimd for Op<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> f32 {
            let mut acc = [f32::NEG_INFINITY; L];
            let (chunks, rest) = self.0.as_chunks::<L>();
            for c in chunks {
                for l in 0..L {
                    acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
                }
            }
            rest.iter().chain(acc.iter()).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
        }
    }
    pulp::Arch::new().dispatch(Op(x))
}

/// What one core reads: a lane sum of the f32 scores and of the mask bytes.
pub fn read_sum(scores: &[f32], masks: &[u8]) -> (f32, u8) {
    // compiled for the widest SIMD the processor has (as the kernel), with
    // enough independent lanes that memory, not the adds, is the limit
    struct Op<'a>(&'a [f32], &'a [u8]);
    impl pulp::WithSimd for Op<'_> {
        type Output = (f32, u8);
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> (f32, u8) {
            let mut acc = [0.0f32; 4 * L];
            let (chunks, rest) = self.0.as_chunks::<{ 4 * L }>();
            for c in chunks {
                for l in 0..4 * L {
                    acc[l] += c[l];
                }
            }
            let mut macc = [0u8; 64];
            let (mchunks, mrest) = self.1.as_chunks::<64>();
            for c in mchunks {
                for l in 0..64 {
                    macc[l] = macc[l].wrapping_add(c[l]);
                }
            }
            (acc.iter().chain(rest).sum(), macc.iter().chain(mrest).fold(0u8, |a, &b| a.wrapping_add(b)))
        }
    }
    pulp::Arch::new().dispatch(Op(scores, masks))
}
