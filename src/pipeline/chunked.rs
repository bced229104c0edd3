//! Statistics of already transformed scores read from `.npy` stacks chunk
//! by chunk: the fast path for identity transforms and transformed inputs,
//! where no whole image is ever in memory.

use crate::calibrate::{ImageStatistics, RegionFold};
use crate::error::{Error, Result};
use crate::io::{NpyStack, ReadFloat};
use crate::mask::{Coding, Voxel};

/// Voxels per chunk of [`transformed_statistics`]: 16 Ki voxels, so that
/// the three buffers (64 KiB each for `f32`) stay in the L2 cache.
const CHUNK: usize = 1 << 14;

/// `(tau_i, gamma_i)` of image `i` from already transformed scores and a
/// mask stored in `.npy` stacks (`outer = None`: `f_O = f_I`, read once),
/// read in chunks of voxels through three small buffers and folded by the
/// fused kernel ([`RegionFold`]): no whole
/// image is ever in memory, and the buffers the file is read into stay in
/// the cache the kernel reads them from. `fold` makes the fold of an image
/// of the given shape (`|s| Ok(RegionFold::new(s))` for containment,
/// [`Calibrator::fold`](crate::Calibrator::fold) for a calibrator's
/// tolerances). Equal to [`region_statistics`](crate::calibrate::region_statistics)
/// (or [`Calibrator::transformed_statistics`](crate::Calibrator::transformed_statistics))
/// on the whole image.
///
/// # Errors
/// A read error or a value that does not fit (naming the file); NaN in the
/// scores or a mask value the labels do not accept (naming the voxel).
pub fn transformed_statistics<A: ReadFloat>(
    inner: &NpyStack,
    outer: Option<&NpyStack>,
    masks: &NpyStack,
    labels: impl Into<Coding>,
    i: usize,
    fold: impl FnOnce(&[usize]) -> Result<RegionFold<A>>,
) -> Result<ImageStatistics> {
    let labels = &labels.into();
    let shape = inner.image_shape();
    for other in outer.into_iter().chain([masks]) {
        if other.image_shape() != shape {
            return Err(Error::ShapeMismatch {
                what: "images of the stacks",
                image: Some(i),
                expected: shape.to_vec(),
                found: other.image_shape().to_vec(),
            });
        }
    }
    let total: usize = shape.iter().product();
    let mut fold = fold(shape)?;
    let (mut fi, mut fo, mut m, mut scratch) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut v: Vec<Voxel> = Vec::new();
    let mut start = 0;
    while start < total {
        let len = CHUNK.min(total - start);
        inner.read_scores_range::<A>(i, start, len, &mut fi, &mut scratch)?;
        if let Some(o) = outer {
            o.read_scores_range::<A>(i, start, len, &mut fo, &mut scratch)?;
        }
        masks.read_mask_range(i, start, len, labels, &mut m)?;
        if labels.ignore().is_some() {
            // every code is 0, 1 or 2 (ignored) here: the reader checked them
            v.clear();
            v.extend(m.iter().map(|&c| Voxel::from_code(c, true).unwrap_or_default()));
            fold.push(&fi, outer.map(|_| fo.as_slice()), &v)?;
        } else {
            fold.push(&fi, outer.map(|_| fo.as_slice()), &m)?;
        }
        start += len;
    }
    fold.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::Float;
    use crate::io::NpyStack;
    use ndarray::Axis;
    use ndarray_npy::write_npy as npy_write;

    fn plain<A: Float>(shape: &[usize]) -> Result<crate::calibrate::RegionFold<A>> {
        Ok(crate::calibrate::RegionFold::new(shape))
    }

    #[test]
    fn chunked_statistics_equal_whole_images() {
        use crate::calibrate::region_statistics;
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        // images larger than a chunk, so that runs and lanes cross chunk borders
        let shape = (3, 41, 23, 19);
        let fi = ndarray::Array4::from_shape_fn(shape, |(i, a, b, c)| {
            ((i * 7 + a * 31 + b * 17 + c * 5) % 97) as f32 - 48.5
        });
        let fo = fi.mapv(|x| x * 0.5 - 1.0);
        let m = ndarray::Array4::from_shape_fn(shape, |(_, a, b, c)| {
            u8::from(
                (a as i64 - 20).pow(2) + (b as i64 - 11).pow(2) + (c as i64 - 9).pow(2) < 80 || a % 7 == 0,
            )
        });
        npy_write(p("i.npy"), &fi).unwrap();
        npy_write(p("o.npy"), &fo).unwrap();
        npy_write(p("m.npy"), &m).unwrap();
        let (si, so, sm) = (
            NpyStack::open(p("i.npy"), "scores").unwrap(),
            NpyStack::open(p("o.npy"), "scores").unwrap(),
            NpyStack::open(p("m.npy"), "masks").unwrap(),
        );
        for i in 0..3 {
            let (a, b, y) = (fi.index_axis(Axis(0), i), fo.index_axis(Axis(0), i), m.index_axis(Axis(0), i));
            let want = region_statistics(&a, &b, &y).unwrap();
            assert_eq!(
                transformed_statistics::<f32>(&si, Some(&so), &sm, &Coding::default(), i, plain).unwrap(),
                want
            );
            let shared = region_statistics(&a, &a, &y).unwrap();
            assert_eq!(
                transformed_statistics::<f64>(&si, None, &sm, &Coding::default(), i, plain).unwrap(),
                shared
            );
            // tolerances folded chunk by chunk: the whole image's statistics
            for (ti, to) in [("300vox", "0.2"), ("0.9", "700vox"), ("100mm3", "50mm3")] {
                let t = crate::tolerance::Tolerances::new(ti.parse().unwrap(), to.parse().unwrap());
                let spacing = crate::Spacing::new(vec![0.5, 1.0, 0.5]).unwrap();
                let c = crate::Calibrator::new(crate::Identity, crate::Identity)
                    .with_tolerances(t)
                    .with_spacing(spacing);
                let want = c.transformed_statistics(&a, &b, &y, None).unwrap();
                let max = region_statistics(&a, &b, &y).unwrap();
                assert!(want.tau < max.tau && want.gamma < max.gamma, "{ti} {to}: {want:?} {max:?}");
                let got = transformed_statistics::<f32>(&si, Some(&so), &sm, &Coding::default(), i, |s| {
                    c.fold(s, None)
                });
                assert_eq!(got.unwrap(), want, "{ti} {to}");
            }
        }
        // a NaN and a bad mask value in the second chunk are named by their voxel
        let mut bad = fi.clone();
        bad[[1, 40, 22, 18]] = f32::NAN;
        npy_write(p("bad.npy"), &bad).unwrap();
        let sb = NpyStack::open(p("bad.npy"), "scores").unwrap();
        let e = transformed_statistics::<f32>(&sb, None, &sm, &Coding::default(), 1, plain).unwrap_err();
        assert_eq!(e, Error::NanScore { what: "inner scores", image: None, index: vec![40, 22, 18] });
        let mut m2 = m.clone();
        m2[[2, 39, 0, 3]] = 5;
        npy_write(p("m2.npy"), &m2).unwrap();
        let sm2 = NpyStack::open(p("m2.npy"), "masks").unwrap();
        let e = transformed_statistics::<f32>(&si, None, &sm2, &Coding::default(), 2, plain).unwrap_err();
        assert_eq!(e, Error::NonBinaryMask { image: None, index: vec![39, 0, 3], value: 5.0 });
    }
}
