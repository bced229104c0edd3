//! How the spatial transforms run their loops: the same units of work
//! (chunks of lines, column ranges of strided blocks) one after the other,
//! or with the `rayon` feature on the current thread pool; and loops that
//! vectorise, on the widest SIMD the processor has ([`widest`]). Every unit
//! computes its outputs with the same arithmetic whoever runs it and
//! whatever the SIMD width, so the result depends on neither.

use ndarray::{ArrayViewMut2, Axis};

/// Images with fewer elements than this are transformed on one thread:
/// splitting them costs more than it saves.
pub(crate) const MIN_PARALLEL: usize = 1 << 15;

/// Whether work on `len` elements is worth splitting across threads.
pub(crate) fn worth_splitting(len: usize) -> bool {
    len >= MIN_PARALLEL && threads() > 1
}

/// Threads of the current pool (1 without the `rayon` feature).
fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

/// `f(state, i, chunk)` for the `i`-th chunk of `chunk` elements of
/// `data` (the last one may be shorter), in parallel if `parallel`; each
/// worker makes its own `state` with `init`.
pub(crate) fn for_each_chunk<T, S, I, F>(data: &mut [T], chunk: usize, parallel: bool, init: I, f: F)
where
    T: Send,
    I: Fn() -> S + Send + Sync,
    F: Fn(&mut S, usize, &mut [T]) + Send + Sync,
{
    let chunk = chunk.max(1);
    #[cfg(feature = "rayon")]
    if parallel {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk).enumerate().for_each_init(init, |s, (i, c)| f(s, i, c));
        return;
    }
    let _ = parallel;
    let mut s = init();
    for (i, c) in data.chunks_mut(chunk).enumerate() {
        f(&mut s, i, c);
    }
}

/// `f(state, b, c0, view)` for every block `b` of a row-major array seen
/// as `outer` blocks of `n` rows of `inner` elements, and every range of
/// `width` columns starting at `c0` (the last one may be narrower): `view`
/// is that `n x width` part of the block, whose rows are contiguous.
pub(crate) fn for_each_column_range<T, S, I, F>(
    data: &mut [T],
    (n, inner): (usize, usize),
    width: usize,
    parallel: bool,
    init: I,
    f: F,
) where
    T: Send + Sync,
    I: Fn() -> S + Send + Sync,
    F: Fn(&mut S, usize, usize, ArrayViewMut2<'_, T>) + Send + Sync,
{
    let width = width.max(1);
    let block = n * inner;
    if block == 0 {
        return;
    }
    let run = |s: &mut S, b: usize, blk: &mut [T], parallel: bool| {
        let mut v = block_view(blk, n, inner);
        #[cfg(feature = "rayon")]
        if parallel {
            use ndarray::parallel::prelude::*;
            let cols = v.axis_chunks_iter_mut(Axis(1), width).into_par_iter().enumerate();
            cols.for_each_init(&init, |s, (c, v)| f(s, b, c * width, v));
            return;
        }
        let _ = parallel;
        for (c, v) in v.axis_chunks_iter_mut(Axis(1), width).enumerate() {
            f(s, b, c * width, v);
        }
    };
    let outer = data.len() / block;
    // Enough blocks: split by blocks; otherwise split each block's columns.
    let by_blocks = parallel && outer >= 8;
    let inside = parallel && !by_blocks;
    for_each_chunk(data, block, by_blocks, &init, |s, b, blk| run(s, b, blk, inside));
}

/// A block of `n` rows of `inner` elements as a 2-D view.
fn block_view<T>(blk: &mut [T], n: usize, inner: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((n, inner), blk)
        .unwrap_or_else(|_| unreachable!("a block holds n rows of inner elements"))
}

/// A loop body compiled twice, for the baseline target and for AVX2
/// (x86-64 v3), and run by [`widest`] on the wider one where the processor
/// has it. [`Wide::run`] and what it calls must be inlined into it
/// (`#[inline(always)]`, or small and generic) to be compiled for the
/// chosen target. Vector and scalar IEEE operations round alike and Rust
/// does not fuse multiplies and adds, so the results do not depend on the
/// choice.
pub(crate) trait Wide {
    type Output;
    fn run(self) -> Self::Output;
}

/// Run `w` compiled for the widest SIMD this processor has, chosen at run
/// time by `pulp`'s safe dispatch (no `unsafe` in this crate).
pub(crate) fn widest<W: Wide>(w: W) -> W::Output {
    struct Op<W>(W);
    impl<W: Wide> pulp::WithSimd for Op<W> {
        type Output = W::Output;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> W::Output {
            self.0.run()
        }
    }
    pulp::Arch::new().dispatch(Op(w))
}
