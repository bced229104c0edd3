//! Prediction over opened score files: every image's sets, streamed in
//! the files' native precision and handed to a sink in order, with the
//! counts a run reports and the warnings they imply.

use std::sync::Arc;

use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::calibrate::Transformed;
use crate::error::{Error, Result, Warning};
use crate::groups::{Group, GroupedSets};
use crate::image::{AsImage, Image, Spacing};
use crate::io::{Precision, ReadFloat};
use crate::sets::{ConfidenceSets, Sets};
use crate::stream::{default_in_flight, stream, Load};
use crate::transform::Transform;

use super::source::Reader;

/// Which sets an image gets: from its position among the images predicted
/// and, for raw scores, the image.
type Pick<'s, A, TI, TO> =
    dyn Fn(usize, Option<&Image<'static, A, IxDyn>>) -> Result<&'s ConfidenceSets<TI, TO>> + Sync + 's;

/// One image's prediction, as the sink receives it.
#[derive(Debug)]
pub struct Prediction {
    /// The inner and outer sets.
    pub sets: Sets<IxDyn>,
    /// The scores the sets were computed from (raw scores after the class
    /// axis, or the inner transformed scores) and the image's own spacing,
    /// when asked for (to draw overlays), in `f32`.
    pub scores: Option<(ArrayD<f32>, Option<Spacing>)>,
}

/// Voxel and image counts over a prediction run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Images predicted.
    pub images: usize,
    /// Voxels in all images.
    pub voxels: usize,
    /// Voxels in inner sets.
    pub inner_voxels: usize,
    /// Voxels in outer sets.
    pub outer_voxels: usize,
    /// Images whose inner set is empty.
    pub empty_inner: usize,
    /// Images whose outer set is the whole image.
    pub whole_outer: usize,
}

impl Summary {
    fn add(&mut self, s: &Sets<IxDyn>) {
        let (ni, no) = (s.inner.iter().filter(|&&b| b).count(), s.outer.iter().filter(|&&b| b).count());
        self.images += 1;
        self.voxels += s.outer.len();
        self.inner_voxels += ni;
        self.outer_voxels += no;
        self.empty_inner += usize::from(ni == 0);
        self.whole_outer += usize::from(no == s.outer.len());
    }

    /// Warnings the counts imply for sets fitted with `sets`' thresholds: a
    /// finite inner threshold that left every inner set empty, a finite
    /// outer threshold that made every outer set the whole image.
    #[must_use]
    pub fn warnings<TI, TO>(&self, sets: &ConfidenceSets<TI, TO>) -> Vec<Warning> {
        let (li, lo) = (sets.thresholds().inner.value(), sets.thresholds().outer.value());
        let n = self.images;
        let mut out = Vec::new();
        if n > 0 && self.empty_inner == n && li.is_finite() {
            out.push(Warning::InnerAlwaysEmpty { images: n, lambda: li });
        }
        if n > 0 && self.whole_outer == n && lo.is_finite() {
            out.push(Warning::OuterAlwaysEverything { images: n, lambda: lo });
        }
        out
    }
}

impl Reader {
    /// The sets of every image at `images`, given to `sink(i, prediction)`
    /// in order (`i` a position in `images`); `keep_scores` also hands over
    /// the scores. Raw scores go through the sets' transforms with each
    /// image's spacing (see [`Reader::image`]); already transformed scores
    /// are used as they are.
    ///
    /// # Errors
    /// A read, transform or shape error, naming the file and the image;
    /// whatever `sink` returns.
    pub fn predict<TI, TO, K>(
        self: &Arc<Self>,
        sets: &ConfidenceSets<TI, TO>,
        images: &[usize],
        keep_scores: bool,
        sink: K,
    ) -> Result<Summary>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        K: FnMut(usize, Prediction) -> Result<()>,
    {
        match self.scores.precision()? {
            Precision::F32 => self.predict_in::<f32, _, _, _>(&|_, _| Ok(sets), images, keep_scores, sink),
            Precision::F64 => self.predict_in::<f64, _, _, _>(&|_, _| Ok(sets), images, keep_scores, sink),
        }
    }

    /// [`Reader::predict`] with each image's sets those of its group:
    /// `groups` holds one label per image of `images`. Every group is
    /// checked before any image is read.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`] naming the
    /// first image (its position in the files, and for per-subject files
    /// the file) whose group was not calibrated; a label count other than
    /// the images'; as [`Reader::predict`].
    pub fn predict_grouped<TI, TO, K>(
        self: &Arc<Self>,
        sets: &GroupedSets<TI, TO>,
        groups: &[Group],
        images: &[usize],
        keep_scores: bool,
        sink: K,
    ) -> Result<Summary>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        K: FnMut(usize, Prediction) -> Result<()>,
    {
        crate::groups::check_labels(groups, images.len(), "the prediction")?;
        let picked = images
            .iter()
            .zip(groups)
            .map(|(&i, g)| {
                sets.sets(g).map_err(|e| match e {
                    Error::UnknownGroup { group, known, .. } => {
                        let e = Error::UnknownGroup { image: Some(i), group, known };
                        match self.scores.cohort() {
                            Some(_) => Error::InFile { path: self.scores.path_of(i), error: Box::new(e) },
                            None => e,
                        }
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        match self.scores.precision()? {
            Precision::F32 => {
                self.predict_in::<f32, _, _, _>(&|pos, _| Ok(picked[pos]), images, keep_scores, sink)
            }
            Precision::F64 => {
                self.predict_in::<f64, _, _, _>(&|pos, _| Ok(picked[pos]), images, keep_scores, sink)
            }
        }
    }

    /// [`Reader::predict`] with sets fitted per stratum of the predictions
    /// ([`GroupedSets::strata`]): each image's stratum is recomputed from
    /// its scores as the calibration computed it, and its sets are that
    /// stratum's.
    ///
    /// # Errors
    /// [`Error::Options`] if the sets were not fitted per stratum, or for
    /// already transformed scores; [`Error::UnknownGroup`] for an image in a
    /// stratum the calibration had no image of; as [`Reader::predict`].
    pub fn predict_strata<TI, TO, K>(
        self: &Arc<Self>,
        sets: &GroupedSets<TI, TO>,
        images: &[usize],
        keep_scores: bool,
        sink: K,
    ) -> Result<Summary>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        K: FnMut(usize, Prediction) -> Result<()>,
    {
        let Some(st) = sets.strata() else {
            return Err(Error::Options {
                reason: "these sets were fitted per group label, not per stratum".into(),
            });
        };
        if self.scores.is_transformed() {
            return Err(Error::Options {
                reason: "strata are recomputed from raw scores: predict on raw scores".into(),
            });
        }
        let default = sets.fits().next().map(|f| f.spacing().clone()).unwrap_or_else(Spacing::unit);
        match self.scores.precision()? {
            Precision::F32 => self.predict_in::<f32, _, _, _>(
                &|pos, image| stratum_sets(sets, st, image, &default, images[pos]),
                images,
                keep_scores,
                sink,
            ),
            Precision::F64 => self.predict_in::<f64, _, _, _>(
                &|pos, image| stratum_sets(sets, st, image, &default, images[pos]),
                images,
                keep_scores,
                sink,
            ),
        }
    }

    fn predict_in<'s, A, TI, TO, K>(
        self: &Arc<Self>,
        pick: &Pick<'s, A, TI, TO>,
        images: &[usize],
        keep: bool,
        mut sink: K,
    ) -> Result<Summary>
    where
        A: ReadFloat,
        TI: Transform + Sync,
        TO: Transform + Sync,
        K: FnMut(usize, Prediction) -> Result<()>,
    {
        let mut summary = Summary::default();
        let mut counted = |i: usize, p: Prediction| {
            summary.add(&p.sets);
            sink(i, p)
        };
        let to_f32 = |a: &ArrayRef<A, IxDyn>| a.mapv(|x| x.to_f32().unwrap_or(f32::NAN));
        let result = if self.scores.is_transformed() {
            stream(
                self.items(images, |r, i| r.scores.read_transformed::<A>(i)),
                default_in_flight(),
                |i, item| {
                    let t = item.load()?;
                    let (fi, fo) = t.sides();
                    let s = pick(i, None)?.predict_transformed(fi, fo).map_err(|e| e.in_image(i))?;
                    let scores = keep.then(|| match &t {
                        Transformed::Shared(a) | Transformed::Separate { inner: a, .. } => (to_f32(a), None),
                    });
                    Ok(Prediction { sets: s, scores })
                },
                &mut counted,
            )
        } else {
            stream(
                self.items(images, |r, i| r.image::<A>(i)),
                default_in_flight(),
                |i, item| {
                    let image = item.load()?;
                    let s = pick(i, Some(&image))?.predict(&image).map_err(|e| e.in_image(i))?;
                    let scores = keep.then(|| (to_f32(image.scores()), image.spacing().cloned()));
                    Ok(Prediction { sets: s, scores })
                },
                &mut counted,
            )
        };
        result.map_err(|e| self.blame(e, images))?;
        Ok(summary)
    }
}

/// The sets of an image's stratum; `file` is its position in the files.
fn stratum_sets<'s, A: ReadFloat, TI, TO>(
    sets: &'s GroupedSets<TI, TO>,
    st: &crate::groups::Stratification,
    image: Option<&Image<'static, A, IxDyn>>,
    default: &Spacing,
    file: usize,
) -> Result<&'s ConfidenceSets<TI, TO>> {
    let Some(image) = image else {
        return Err(Error::Options {
            reason: "strata are recomputed from raw scores: predict on raw scores".into(),
        });
    };
    let g = st.strata.stratum(image.scores(), st.mask_threshold, image.spacing().unwrap_or(default))?;
    sets.sets(&g).map_err(|e| match e {
        Error::UnknownGroup { group, known, .. } => Error::UnknownGroup { image: Some(file), group, known },
        other => other,
    })
}
