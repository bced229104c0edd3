//! Shared proptest strategies: arbitrary small n-D score maps and masks.
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// A shape with 1 to `max_ndim` axes, each of length `0..=max_len`.
pub fn shape(max_ndim: usize, max_len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=max_len, 1..=max_ndim)
}

/// Like [`shape`] but with no zero-length axis.
pub fn nonempty_shape(max_ndim: usize, max_len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_len, 1..=max_ndim)
}

/// A score value: mostly finite, sometimes ±inf.
pub fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -50.0..50.0f64,
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

/// Any f64, NaN included.
pub fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![4 => score(), 1 => Just(f64::NAN), 1 => any::<f64>()]
}

/// A score map of the given shape.
pub fn scores_of(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<f64>> {
    let len = shape.iter().product::<usize>();
    prop::collection::vec(score(), len)
        .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("length matches shape"))
}

/// A binary mask of the given shape.
pub fn mask_of(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<u8>> {
    let len = shape.iter().product::<usize>();
    prop::collection::vec(0u8..=1, len)
        .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("length matches shape"))
}

/// A (scores, mask) pair of one arbitrary non-empty shape.
pub fn pair(max_ndim: usize, max_len: usize) -> impl Strategy<Value = (ArrayD<f64>, ArrayD<u8>)> {
    nonempty_shape(max_ndim, max_len).prop_flat_map(|s| (scores_of(s.clone()), mask_of(s)))
}
