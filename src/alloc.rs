//! Fallible allocation of buffers proportional to the input: a buffer that
//! does not fit in memory (or under the process's limit, `ulimit -v`) is
//! [`Error::OutOfMemory`], not an abort of the process.
//!
//! Buffers whose size the library chooses (per image, per stack) are
//! allocated with [`try_zeroed`] or [`try_array`]; before a transform the
//! library checks that its output and workspace fit ([`ensure_room`]).
//! Inputs larger than [`MAX_ELEMENTS`] values are refused outright, as
//! files larger than any valid file of their kind are.

use ndarray::{Array, Dimension};

use crate::error::{Error, Result};

/// The most values an input array (one image or a stack, counted by its
/// shape) may hold: `2^33`, about 8.6 billion (a 2048^3 volume). Larger
/// shapes — a broadcast view that claims `10^10` voxels, say — are refused
/// with [`Error::Options`] before anything is read or allocated;
/// split such stacks into batches.
pub const MAX_ELEMENTS: usize = 1 << 33;

/// The number of values of an input of `shape` (`what`, e.g. `"scores"`),
/// if at most [`MAX_ELEMENTS`].
///
/// # Errors
/// [`Error::Options`] naming `what`, its shape and the bound.
pub fn check_elements(what: &str, shape: &[usize]) -> Result<usize> {
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    match n {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(Error::Options {
            reason: format!(
                "{} of shape {shape:?} hold more than 2^33 values, the most an input may hold; \
                 give them in batches",
                crate::error::one_line(what)
            ),
        }),
    }
}

fn out_of_memory(len: usize, size: usize, what: &'static str) -> Error {
    let bytes = (len as u128 * size as u128).min(u128::from(u64::MAX)) as u64;
    Error::OutOfMemory { bytes, what }
}

/// A vector of `len` copies of `value`, or [`Error::OutOfMemory`] if it
/// cannot be allocated.
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what` and the bytes asked for.
pub fn try_filled<T: Clone>(len: usize, value: T, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| out_of_memory(len, std::mem::size_of::<T>(), what))?;
    v.resize(len, value);
    Ok(v)
}

/// A vector of `len` default values (zeros), or [`Error::OutOfMemory`].
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what` and the bytes asked for.
pub fn try_zeroed<T: Clone + Default>(len: usize, what: &'static str) -> Result<Vec<T>> {
    try_filled(len, T::default(), what)
}

/// An array of `shape` filled with zeros (default values), or
/// [`Error::OutOfMemory`].
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what`; [`Error::Options`] for a shape of
/// more than [`MAX_ELEMENTS`] values.
pub fn try_array<T: Clone + Default, D: Dimension>(shape: D, what: &'static str) -> Result<Array<T, D>> {
    let len = check_elements(what, shape.slice())?;
    let v = try_zeroed(len, what)?;
    Array::from_shape_vec(shape, v).map_err(|e| Error::Options { reason: format!("{what}: {e}") })
}

/// An owned copy of `a` (row-major), or [`Error::OutOfMemory`]: for
/// copying a caller's array (another thread may change it while the work
/// runs) without aborting when the copy does not fit.
///
/// # Errors
/// As [`try_array`].
pub fn try_copy<T: Clone + Default, D: Dimension>(
    a: &ndarray::ArrayRef<T, D>,
    what: &'static str,
) -> Result<Array<T, D>> {
    let mut out = try_array(a.raw_dim(), what)?;
    out.assign(a);
    Ok(out)
}

/// `Ok` if `bytes` can be allocated now (they are reserved and released at
/// once: with lazy allocation, this costs no memory). Checked before work
/// whose buffers are allocated deep inside, so that an input too large for
/// the memory is an error instead of an abort.
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what` and the bytes.
pub fn ensure_room(bytes: u128, what: &'static str) -> Result<()> {
    let oom = || Error::OutOfMemory { bytes: bytes.min(u128::from(u64::MAX)) as u64, what };
    let n = usize::try_from(bytes).map_err(|_| oom())?;
    if n < (1 << 20) {
        return Ok(());
    }
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_row_major_and_equal_whatever_the_strides() {
        let a = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (10 * i + j) as f64);
        let t = a.t();
        let c = try_copy(&t, "test").unwrap();
        assert_eq!(c, t);
        assert!(c.is_standard_layout());
        let huge = ndarray::ArrayView1::from(&[0.0_f64; 0][..]);
        assert_eq!(try_copy(&huge, "test").unwrap().len(), 0);
    }

    #[test]
    fn impossible_sizes_are_errors() {
        let e = try_zeroed::<f64>(usize::MAX / 4, "the test buffer").unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { what: "the test buffer", .. }), "{e}");
        assert!(e.to_string().starts_with("out of memory: cannot allocate "), "{e}");
        assert!(ensure_room(1 << 70, "x").is_err());
        assert!(check_elements("scores", &[100_000, 100_000]).is_err());
        assert_eq!(check_elements("scores", &[2, 3]), Ok(6));
        assert_eq!(try_array::<f32, _>(ndarray::Ix2(2, 3), "x").unwrap(), Array::<f32, _>::zeros((2, 3)));
    }
}
