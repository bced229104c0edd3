//! The `.npy` reader on arbitrary bytes: header, whole stacks, single
//! images as `f32`/`f64`, masks (binary and a label set), ranges, small
//! arrays and image indices. No panic, one-line errors, and reads that
//! succeed agree with each other.
#![no_main]

use arbitrary::Arbitrary;
use confseg::io::{self, Labels, NpyStack};
use confseg_fuzz::{assert_one_line, ok, scratch, split};
use libfuzzer_sys::fuzz_target;

/// Parameters, followed in the fuzzer's input by the file's bytes.
#[derive(Debug, Arbitrary)]
struct Params {
    /// Two labels of a label set.
    labels: [i8; 2],
    /// Stack size for `read_indices`.
    n_images: u8,
    /// Bound for `read_array`, in units of 16 elements.
    max_len: u8,
    /// First voxel and length of a range.
    range: [u8; 2],
}

/// NaN-aware equality of two decoded values.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn check_stack(stack: &NpyStack, input: &Params) {
    let labels = Labels::select(input.labels.map(i64::from)).expect("two labels");
    let image_len: usize = stack.image_shape().iter().product();
    assert!(image_len > 0, "open refuses images without voxels");
    let (start, len) = (usize::from(input.range[0]), usize::from(input.range[1]));
    // every image of a small stack, and one past the end
    for i in (0..stack.len().min(16)).chain([stack.len()]) {
        let s32 = ok(stack.read_scores::<f32>(i));
        let s64 = ok(stack.read_scores::<f64>(i));
        if i >= stack.len() {
            assert!(s32.is_none() && s64.is_none(), "image {i} of {} read", stack.len());
        }
        for s in [s32.as_ref().map(|a| a.mapv(f64::from)), s64.clone()].iter().flatten() {
            assert_eq!(s.shape(), stack.image_shape());
        }
        if let (Some(a), Some(b)) = (&s32, &s64) {
            assert!(a.iter().zip(b).all(|(&x, &y)| same(f64::from(x), y)), "f32 and f64 reads differ");
        }
        for l in [&Labels::Binary, &labels] {
            if let Some(m) = ok(stack.read_mask(i, l)) {
                assert_eq!(m.shape(), stack.image_shape());
                if *l != Labels::Binary {
                    assert!(m.iter().all(|&v| v <= 1), "a label set gave a non-binary mask");
                }
                let mut part = Vec::new();
                if ok(stack.read_mask_range(i, start, len, l, &mut part)).is_some() {
                    let want: Vec<u8> = m.iter().skip(start).take(len).copied().collect();
                    assert_eq!(part, want, "mask range differs from the whole image");
                }
            }
        }
        let (mut r32, mut r64, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        let got32 = ok(stack.read_scores_range::<f32>(i, start, len, &mut r32, &mut scratch));
        let got64 = ok(stack.read_scores_range::<f64>(i, start, len, &mut r64, &mut scratch));
        if got64.is_some() {
            assert!(start + len <= image_len);
            assert_eq!(r64.len(), len);
            if let Some(whole) = &s64 {
                assert!(whole.iter().skip(start).zip(&r64).all(|(&x, &y)| same(x, y)));
            }
        }
        if let (Some(()), Some(whole)) = (got32, &s32) {
            assert_eq!(r32.len(), len);
            assert!(whole.iter().skip(start).zip(&r32).all(|(&x, &y)| same(f64::from(x), f64::from(y))));
        }
    }
    // streaming statistics with the stack as scores and as masks
    if !stack.is_empty() {
        for l in [&Labels::Binary, &labels] {
            ok(io::transformed_statistics::<f64>(stack, None, stack, l, 0));
            ok(io::transformed_statistics::<f32>(stack, Some(stack), stack, l, 0));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (input, file): (Params, _) = split(data);
    let path = scratch("x.npy");
    std::fs::write(&path, file).expect("scratch file written");

    if let Some(info) = ok(io::inspect(&path)) {
        let len = info.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let len = len.expect("inspect accepts only addressable shapes");
        assert!(len as u128 * info.dtype.size() as u128 <= file.len() as u128);
    }
    let max_len = usize::from(input.max_len) * 16;
    if let Some(a) = ok(io::read_array(&path, max_len)) {
        assert!(a.len() <= max_len);
    }
    let n_images = usize::from(input.n_images);
    if let Some(idx) = ok(io::read_indices(&path, n_images)) {
        let mut seen = vec![false; n_images];
        for &i in &idx {
            assert!(i < n_images && !seen[i], "index {i} out of range or repeated");
            seen[i] = true;
        }
    }
    for what in ["scores", "masks"] {
        if let Some(stack) = ok(NpyStack::open(&path, what)) {
            check_stack(&stack, &input);
        }
    }
    let whole32 = ok(io::read_scores::<f32>(&path));
    let whole64 = ok(io::read_scores::<f64>(&path));
    if let (Some(a), Some(b)) = (&whole32, &whole64) {
        assert_eq!(a.shape(), b.shape());
        assert!(a.iter().zip(b).all(|(&x, &y)| same(f64::from(x), y)));
    }
    if let Some(m) = ok(io::read_masks(&path)) {
        assert!(m.ndim() >= 2);
    }
    // the error for a missing file is one line too
    let e = io::inspect(scratch("missing.npy")).expect_err("no such file");
    assert_one_line(&e);
});
