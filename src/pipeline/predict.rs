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
use crate::sets::{ConfidenceSets, Coverage, SetMeasures, Sets};
use crate::stream::{default_in_flight, stream, Load};
use crate::transform::Transform;

use super::source::Reader;

/// Which sets an image gets: from its position among the images predicted
/// and, for raw scores, the image.
type Pick<'s, A, TI, TO> =
    dyn Fn(usize, Option<&Image<'static, A, IxDyn>>) -> Result<&'s ConfidenceSets<TI, TO>> + Sync + 's;

/// What a prediction hands to the sink beyond the sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extras {
    /// The scores the sets were computed from, in `f32`, with the image's
    /// own spacing (to draw overlays).
    pub scores: bool,
    /// The sets' volumes and band width ([`Sets::measures`]), computed on
    /// the worker threads with the image's spacing.
    pub measures: bool,
}

/// One image's prediction, as the sink receives it.
#[derive(Debug)]
pub struct Prediction {
    /// The inner and outer sets.
    pub sets: Sets<IxDyn>,
    /// The sets' volumes and band width, when asked for: with the image's
    /// own spacing, else the run's spacing, else the spacing the sets were
    /// fitted with.
    pub measures: Option<SetMeasures>,
    /// With true masks (the reader's masks): whether the sets meet the
    /// guaranteed events on this image ([`Sets::events`]).
    pub coverage: Option<Coverage>,
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
    /// Images checked against true masks.
    pub labelled: usize,
    /// Of those, images whose sets meet the inner, the outer and both events.
    pub covered: [usize; 3],
}

impl Summary {
    /// Add an image's sets, counted as `measures` count them when given
    /// (which leave out the voxels a true mask ignores).
    fn add(&mut self, s: &Sets<IxDyn>, measures: Option<&SetMeasures>) {
        let (n, ni, no) = match measures {
            Some(m) => (m.voxels, m.inner_voxels, m.outer_voxels),
            None => (
                s.outer.len(),
                s.inner.iter().filter(|&&b| b).count(),
                s.outer.iter().filter(|&&b| b).count(),
            ),
        };
        self.images += 1;
        self.voxels += n;
        self.inner_voxels += ni;
        self.outer_voxels += no;
        self.empty_inner += usize::from(ni == 0);
        self.whole_outer += usize::from(no == n);
    }

    fn add_coverage(&mut self, c: Coverage) {
        self.labelled += 1;
        for (k, met) in self.covered.iter_mut().zip([c.inner, c.outer, c.joint()]) {
            *k += usize::from(met);
        }
    }

    /// Coverage on the labelled images, one line per event (inner, outer,
    /// joint): the share met and its exact 95% binomial (Clopper–Pearson)
    /// interval; `None` without labelled images.
    #[must_use]
    pub fn coverage_lines(&self) -> Option<Vec<String>> {
        let n = self.labelled;
        (n > 0).then(|| {
            ["inner", "outer", "joint"]
                .iter()
                .zip(self.covered)
                .map(|(name, k)| {
                    let (lo, hi) = crate::evaluate::clopper_pearson(k, n, 0.95).unwrap_or((0.0, 1.0));
                    format!(
                        "{name:<5} {k:>6} of {n} = {:.3}  95% interval [{lo:.3}, {hi:.3}]",
                        k as f64 / n as f64
                    )
                })
                .collect()
        })
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
    /// in order (`i` a position in `images`), with the [`Extras`] asked
    /// for. Raw scores go through the sets' transforms with each image's
    /// spacing (see [`Reader::image`]); already transformed scores are used
    /// as they are.
    ///
    /// # Errors
    /// A read, transform or shape error, naming the file and the image;
    /// whatever `sink` returns.
    pub fn predict<TI, TO, K>(
        self: &Arc<Self>,
        sets: &ConfidenceSets<TI, TO>,
        images: &[usize],
        extras: Extras,
        sink: K,
    ) -> Result<Summary>
    where
        TI: Transform + Sync,
        TO: Transform + Sync,
        K: FnMut(usize, Prediction) -> Result<()>,
    {
        match self.scores.precision()? {
            Precision::F32 => self.predict_in::<f32, _, _, _>(&|_, _| Ok(sets), images, extras, sink),
            Precision::F64 => self.predict_in::<f64, _, _, _>(&|_, _| Ok(sets), images, extras, sink),
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
        extras: Extras,
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
                self.predict_in::<f32, _, _, _>(&|pos, _| Ok(picked[pos]), images, extras, sink)
            }
            Precision::F64 => {
                self.predict_in::<f64, _, _, _>(&|pos, _| Ok(picked[pos]), images, extras, sink)
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
        extras: Extras,
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
                extras,
                sink,
            ),
            Precision::F64 => self.predict_in::<f64, _, _, _>(
                &|pos, image| stratum_sets(sets, st, image, &default, images[pos]),
                images,
                extras,
                sink,
            ),
        }
    }

    fn predict_in<'s, A, TI, TO, K>(
        self: &Arc<Self>,
        pick: &Pick<'s, A, TI, TO>,
        images: &[usize],
        extras: Extras,
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
            summary.add(&p.sets, p.measures.as_ref());
            if let Some(c) = p.coverage {
                summary.add_coverage(c);
            }
            sink(i, p)
        };
        let to_f32 = |a: &ArrayRef<A, IxDyn>| a.mapv(|x| x.to_f32().unwrap_or(f32::NAN));
        let keep = extras.scores;
        // the image's own spacing, else the run's, else the sets'
        let measure = |i: usize,
                       fitted: &ConfidenceSets<TI, TO>,
                       s: &Sets<IxDyn>,
                       own: Option<&Spacing>|
         -> Result<(Option<SetMeasures>, Option<Coverage>)> {
            let run = self.spacings.as_ref().map(|sp| &sp[images[i]]);
            let spacing = own.or(run).unwrap_or(fitted.spacing());
            let truth = self.masks.as_ref().map(|_| self.mask(images[i])).transpose()?;
            // with a true mask, its ignored voxels are in no volume
            let measures = match &truth {
                Some(y) => extras.measures.then(|| s.measures_within(spacing, y)),
                None => extras.measures.then(|| s.measures(spacing)),
            };
            let measures = measures.transpose().map_err(|e| e.in_image(i))?;
            let coverage = match &truth {
                Some(truth) => {
                    let voxel_volume: f64 = spacing.for_ndim(truth.ndim())?.iter().product();
                    Some(s.events(truth, &fitted.tolerances(), voxel_volume).map_err(|e| e.in_image(i))?)
                }
                None => None,
            };
            Ok((measures, coverage))
        };
        let result = if self.scores.is_transformed() {
            stream(
                self.items(images, |r, i| r.scores.read_transformed::<A>(i)),
                default_in_flight(),
                |i, item| {
                    let t = item.load()?;
                    let (fi, fo) = t.sides();
                    let fitted = pick(i, None)?;
                    let s = fitted.predict_transformed(fi, fo).map_err(|e| e.in_image(i))?;
                    let scores = keep.then(|| match &t {
                        Transformed::Shared(a) | Transformed::Separate { inner: a, .. } => (to_f32(a), None),
                    });
                    let (measures, coverage) = measure(i, fitted, &s, None)?;
                    Ok(Prediction { sets: s, measures, coverage, scores })
                },
                &mut counted,
            )
        } else {
            stream(
                self.items(images, |r, i| r.image::<A>(i)),
                default_in_flight(),
                |i, item| {
                    let image = item.load()?;
                    let fitted = pick(i, Some(&image))?;
                    let s = fitted.predict(&image).map_err(|e| e.in_image(i))?;
                    let scores = keep.then(|| (to_f32(image.scores()), image.spacing().cloned()));
                    let (measures, coverage) = measure(i, fitted, &s, image.spacing())?;
                    Ok(Prediction { sets: s, measures, coverage, scores })
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

/// One row per image of a prediction run: the sets' volumes and band width
/// (`predict --summary subjects.csv`), as CSV.
///
/// Columns: `id` (the subject ID, or the image's position in a stack);
/// voxel counts `inner_voxels`, `band_voxels`, `outer_voxels`; volumes
/// `inner_ml`, `band_ml`, `outer_ml` (taking the spacing in mm, as NIfTI
/// headers give it: 1 mL = 1000 mm³; 6 decimals, a thousandth of a mm³);
/// the band's width from the outer contour to the inner set,
/// `band_mean_width_mm` and `band_max_width_mm` (4 decimals)
/// (empty when undefined: an empty inner set, or an outer set that is empty
/// or the whole image); `empty_inner` and `whole_outer` (0/1); with true
/// masks, `inner_covered`, `outer_covered`, `joint_covered` (0/1: the
/// guaranteed events on this image).
///
/// ```
/// use confseg::pipeline::predict::SubjectTable;
/// use confseg::{Sets, Spacing};
/// use ndarray::array;
/// let sets = Sets { inner: array![false, false, true, false, false], outer: array![false, true, true, true, false] };
/// let mut table = SubjectTable::default();
/// table.push("case_01", sets.measures(&Spacing::new(vec![10.0])?)?, None);
/// let csv = table.to_csv();
/// assert!(csv.starts_with("id,inner_voxels,band_voxels,outer_voxels,inner_ml"));
/// assert_eq!(csv.lines().nth(1), Some("case_01,1,2,3,0.010000,0.020000,0.030000,10.0000,10.0000,0,0"));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectTable {
    rows: Vec<(String, SetMeasures, Option<Coverage>)>,
}

impl SubjectTable {
    /// The CSV header line (without the line end).
    pub const HEADER: &'static str = "id,inner_voxels,band_voxels,outer_voxels,inner_ml,band_ml,outer_ml,\
                                      band_mean_width_mm,band_max_width_mm,empty_inner,whole_outer";

    /// Add an image's row (with its coverage when it has a true mask).
    pub fn push(&mut self, id: impl Into<String>, measures: SetMeasures, coverage: Option<Coverage>) {
        self.rows.push((id.into(), measures, coverage));
    }

    /// The rows, in order.
    #[must_use]
    pub fn rows(&self) -> &[(String, SetMeasures, Option<Coverage>)] {
        &self.rows
    }

    /// The table as CSV text (IDs quoted when they hold a comma, a quote or
    /// a line end).
    #[must_use]
    pub fn to_csv(&self) -> String {
        use std::fmt::Write as _;
        let checked = self.rows.iter().any(|r| r.2.is_some());
        let mut s = String::from(Self::HEADER);
        if checked {
            s.push_str(",inner_covered,outer_covered,joint_covered");
        }
        s.push('\n');
        let width = |w: Option<f64>| w.map_or_else(String::new, |x| format!("{x:.4}"));
        for (id, m, coverage) in &self.rows {
            let id = if id.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", id.replace('"', "\"\""))
            } else {
                id.clone()
            };
            let _ = write!(
                s,
                "{id},{},{},{},{:.6},{:.6},{:.6},{},{},{},{}",
                m.inner_voxels,
                m.band_voxels,
                m.outer_voxels,
                m.inner_volume() / 1000.0,
                m.band_volume() / 1000.0,
                m.outer_volume() / 1000.0,
                width(m.band_width.map(|w| w.mean)),
                width(m.band_width.map(|w| w.max)),
                u8::from(m.empty_inner()),
                u8::from(m.whole_outer()),
            );
            match coverage {
                Some(c) => {
                    let _ =
                        writeln!(s, ",{},{},{}", u8::from(c.inner), u8::from(c.outer), u8::from(c.joint()));
                }
                None if checked => s.push_str(",,,\n"),
                None => s.push('\n'),
            }
        }
        s
    }
}
