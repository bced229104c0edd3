//! Images processed in parallel, results delivered in order: the plumbing
//! that lets calibration, prediction and validation stream a cohort with a
//! bounded number of images in memory.
//!
//! [`stream`] reads a batch of images from a source while the previous
//! batch is being processed (with the `rayon` feature, on all threads),
//! then hands the results to a sink in source order. At most two batches
//! are in flight, so peak memory is `O(in_flight x image size)` whatever
//! the number of images, and reading overlaps computing.

use ndarray::{Array, ArrayBase, Data, Dimension};

use crate::error::Result;
use crate::float::Float;
use crate::image::{AsImage, Image};
use crate::mask::MaskValue;

/// An item of a stream, made ready on a worker thread.
///
/// Data already in memory (an array, an [`Image`], an `(image, mask)`
/// pair) is ready as it is. A [`Lazy`] item loads itself when the worker
/// takes it: give the stream cheap handles (e.g. "image 17 of this file")
/// and the reading itself runs in parallel, instead of one thread reading
/// for all.
pub trait Load: Send {
    /// The loaded item.
    type Output;
    /// Load the item.
    ///
    /// # Errors
    /// Whatever loading fails with (an I/O error, a bad value in a file).
    fn load(self) -> Result<Self::Output>;
}

/// A closure that loads a stream item on the worker thread that processes it.
///
/// ```
/// use confseg::stream::{Lazy, Load};
/// let item = Lazy(|| Ok(21 * 2));
/// assert_eq!(item.load()?, 42);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Lazy<F>(pub F);

impl<F, T> Load for Lazy<F>
where
    F: FnOnce() -> Result<T> + Send,
{
    type Output = T;
    fn load(self) -> Result<T> {
        (self.0)()
    }
}

impl<S, D> Load for ArrayBase<S, D>
where
    S: Data + Send,
    S::Elem: Float,
    D: Dimension,
{
    type Output = Self;
    fn load(self) -> Result<Self> {
        Ok(self)
    }
}

impl<A: Float, D: Dimension> Load for Image<'_, A, D> {
    type Output = Self;
    fn load(self) -> Result<Self> {
        Ok(self)
    }
}

impl<I, M> Load for (I, Array<M, I::Dim>)
where
    I: AsImage + Send,
    M: MaskValue,
{
    type Output = Self;
    fn load(self) -> Result<Self> {
        Ok(self)
    }
}

/// Images in flight by default: four per thread (two batches of two).
#[must_use]
pub fn default_in_flight() -> usize {
    #[cfg(feature = "rayon")]
    let threads = rayon::current_num_threads();
    #[cfg(not(feature = "rayon"))]
    let threads = 1;
    4 * threads.max(1)
}

/// Apply `map` to every item of `source` and give the results to `sink`
/// in source order; `map` gets the item's position in the source.
///
/// At most `in_flight` items (rounded up to an even number, at least 2)
/// have been read and not yet passed to `sink`. With the `rayon` feature
/// the items of a batch are mapped in parallel while the next batch is
/// read; without it, one item at a time.
///
/// ```
/// use confseg::stream::stream;
/// let mut out = Vec::new();
/// stream((0..10).map(Ok), 4, |i, x: i32| Ok(x * 10 + i as i32), |_, y| {
///     out.push(y);
///     Ok(())
/// })?;
/// assert_eq!(out, (0..10).map(|x| x * 11).collect::<Vec<_>>());
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// The first error in source order, from the source, `map` or `sink`;
/// nothing after that item reaches `sink`.
pub fn stream<I, T, S, F, K>(source: S, in_flight: usize, map: F, mut sink: K) -> Result<()>
where
    S: Iterator<Item = Result<I>> + Send,
    I: Send,
    T: Send,
    F: Fn(usize, I) -> Result<T> + Sync,
    K: FnMut(usize, T) -> Result<()>,
{
    // checked between items, also on the worker threads
    let cancel = crate::cancel::Current::get();
    let map = |i: usize, x: I| {
        cancel.check()?;
        map(i, x)
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let batch = in_flight.div_ceil(2).max(1);
        let mut source = source.enumerate();
        // Items read before an error are processed first, so that an
        // earlier failure of `map` is reported before a later read error.
        let read = |src: &mut std::iter::Enumerate<S>| {
            let mut items = Vec::with_capacity(batch);
            for (i, r) in src.by_ref().take(batch) {
                match r {
                    Ok(x) => items.push((i, x)),
                    Err(e) => return (items, Some(e)),
                }
            }
            (items, None)
        };
        let (mut current, mut failed) = read(&mut source);
        loop {
            let done = failed.is_some() || current.len() < batch;
            let (next, results) = rayon::join(
                || if done { (Vec::new(), None) } else { read(&mut source) },
                || current.into_par_iter().map(|(i, x)| (i, map(i, x))).collect::<Vec<_>>(),
            );
            for (i, r) in results {
                sink(i, r?)?;
            }
            cancel.check()?;
            if let Some(e) = failed {
                return Err(e);
            }
            if done {
                return Ok(());
            }
            (current, failed) = next;
        }
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = in_flight;
        for (i, r) in source.enumerate() {
            let t = map(i, r?)?;
            sink(i, t)?;
        }
        Ok(())
    }
}

/// `f(0), ..., f(n - 1)` in order, computed in parallel with the `rayon`
/// feature.
pub(crate) fn map_images<T: Send, F>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> T + Sync + Send,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..n).map(f).collect()
    }
}

/// Run `f` on images `0..n` (in parallel with the `rayon` feature) and
/// collect the results in order; the error of the lowest failing index wins,
/// tagged with that index.
pub(crate) fn for_each_image<T: Send, F>(n: usize, f: F) -> Result<Vec<T>>
where
    F: Fn(usize) -> Result<T> + Sync + Send,
{
    let cancel = crate::cancel::Current::get();
    map_images(n, |i| {
        cancel.check()?;
        f(i)
    })
    .into_iter()
    .enumerate()
    .map(|(i, r)| r.map_err(|e| e.in_image(i)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn bad(i: usize) -> Error {
        Error::InvalidParameter { name: "item", value: i.to_string(), reason: "bad".into() }
    }

    #[test]
    fn results_arrive_in_order_with_bounded_reads() {
        for in_flight in [1usize, 2, 3, 8] {
            for n in [0, 1, 5, 17] {
                let read = AtomicUsize::new(0);
                let done = AtomicUsize::new(0);
                let src = (0..n).map(|x| {
                    let r = read.fetch_add(1, Ordering::SeqCst);
                    // never more than two batches ahead of the sink
                    assert!(r < done.load(Ordering::SeqCst) + 2 * in_flight.div_ceil(2).max(1));
                    Ok(x)
                });
                let mut out = Vec::new();
                stream(
                    src,
                    in_flight,
                    |i, x| Ok((i, x * 2)),
                    |_, y| {
                        done.fetch_add(1, Ordering::SeqCst);
                        out.push(y);
                        Ok(())
                    },
                )
                .unwrap();
                assert_eq!(out, (0..n).map(|x| (x, 2 * x)).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn the_first_error_in_source_order_wins() {
        // map fails at 3, the source at 5: map's error comes first
        let src = (0..10).map(|x| if x == 5 { Err(bad(100)) } else { Ok(x) });
        let mut seen = Vec::new();
        let e = stream(
            src,
            4,
            |_, x| if x == 3 { Err(bad(x)) } else { Ok(x) },
            |_, y| {
                seen.push(y);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(e, bad(3));
        assert_eq!(seen, vec![0, 1, 2]);
        // a read error after good items: the items before it are delivered
        let src = (0..10).map(|x| if x == 5 { Err(bad(100)) } else { Ok(x) });
        let mut seen = Vec::new();
        let e = stream(
            src,
            4,
            |_, x| Ok(x),
            |_, y| {
                seen.push(y);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(e, bad(100));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
