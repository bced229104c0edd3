//! Several structures of a label map (`--structure NAME=LABELS`, repeated)
//! through `calibrate`, `predict` and `validate`, with one joint guarantee.
//!
//! The network's output keeps its class axis (`--class-axis K`: a softmax
//! over the classes, each structure's score the sum of its classes'
//! probabilities, `--class-labels` naming each class's label) or has one
//! channel per structure (`--structure-axis K`). The calibration file is
//! the library's `Fitted<StructureSets>` (sets and pipeline record).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use confseg::calibrate::{StructureCalibration, StructureCalibrator};
use confseg::io::{NpyWriter, Precision, Publication, ReadFloat};
use confseg::pipeline::{resolve_axis, Fitted, MaskSource, Reader, Record};
use confseg::sets::StructureSets;
use confseg::stream::{default_in_flight, stream, Lazy, Load};
use confseg::transform::StructureScores;
use confseg::{Calibrator, ScoreTransform, Side, Spacing};
use indicatif::ProgressBar;
use ndarray::{ArrayD, IxDyn};

use crate::cli::inputs::CalibrationInputs;
use crate::cli::report::{self, outln, usage};

/// The calibration file of several structures.
pub type StructuresFile = Fitted<StructureSets>;

/// Opened inputs of a structures command.
pub struct Setup {
    reader: Arc<Reader>,
    calibrator: StructureCalibrator<ScoreTransform, ScoreTransform>,
    images: Vec<usize>,
    /// The class axis of one image (the output's), to drop from a header spacing.
    axis: usize,
    precision: Precision,
    bar: ProgressBar,
}

/// The axis of one image from `--class-axis`/`--structure-axis` (0 is the
/// first axis of an image; negative from the end), for outputs with `ndim`
/// axes per image.
fn image_axis(k: i64, ndim: usize, what: &str) -> Result<usize> {
    match resolve_axis(k, ndim, "axis") {
        Ok(a) => Ok(a),
        Err(_) => {
            usage!("{what} {k} is outside the {ndim} axes of an image (0..{ndim}, or negative from the end)")
        }
    }
}

/// The structures' score maps and the calibrator, for outputs whose first
/// image has shape `shape` (with its class or channel axis).
fn calibrator(
    args: &CalibrationInputs,
    shape: &[usize],
    probabilities: bool,
) -> Result<(StructureCalibrator<ScoreTransform, ScoreTransform>, usize)> {
    let s = &args.structures;
    let (scores, axis) = match (args.options.class_axis, s.structure_axis) {
        (Some(k), None) => {
            let axis = image_axis(k, shape.len(), "--class-axis")?;
            let c = shape[axis];
            let class_labels = s.class_labels.clone().unwrap_or_else(|| (0..c as i64).collect());
            if class_labels.len() != c {
                usage!("--class-labels names {} classes, the class axis has {c}", class_labels.len());
            }
            if probabilities {
                (StructureScores::Probabilities { axis, class_labels }, axis)
            } else {
                (StructureScores::Softmax { axis, class_labels }, axis)
            }
        }
        (None, Some(k)) => {
            let axis = image_axis(k, shape.len(), "--structure-axis")?;
            (StructureScores::Channels { axis }, axis)
        }
        _ => usage!("with --structure, give --class-axis K (a softmax over classes) or --structure-axis K"),
    };
    let (inner, outer) = args.request()?.transforms;
    let with_threshold = |t: ScoreTransform| match args.options.mask_threshold {
        Some(x) => t.with_mask_threshold(x),
        None => Ok(t),
    };
    let single = Calibrator::new(with_threshold(inner)?, with_threshold(outer)?)
        .with_spacing(args.options.spacing.spacing.clone().unwrap_or_default())
        .with_tolerances(args.tolerances());
    let calibrator = StructureCalibrator::new(single, s.structures.clone(), scores)?
        .with_ignore_label(args.masks.ignore_label)?;
    Ok((calibrator, axis))
}

/// Open a structures calibration or validation.
///
/// # Errors
/// Usage errors, file errors, shapes that do not fit.
pub fn open(args: &CalibrationInputs) -> Result<Setup> {
    if args.files.inner_scores.is_some() {
        usage!("--structure needs the network's output (--scores), not transformed scores");
    }
    if args.masks.masks.is_none() && args.files.subjects.manifest.is_none() {
        usage!("give --masks (label maps) or a --manifest with a mask column");
    }
    let mask_arg = args.masks.masks.clone().unwrap_or_default();
    let (scores, masks) = args.files.open(Some(&mask_arg), None)?;
    let Some(masks) = masks else { usage!("give --masks (label maps)") };
    let first: Vec<usize> = match (scores.cohort(), scores.stack_shape()) {
        (_, Some(s)) => s,
        (Some(cohort), None) => cohort.info(0)?.shape,
        _ => Vec::new(),
    };
    let (calibrator, axis) = calibrator(args, &first, scores.holds_probabilities())?;
    if let (MaskSource::Stack(m), Some(image)) = (&masks, scores.stack_shape()) {
        let mut want = vec![scores.n_images()];
        want.extend(image.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &n)| n));
        if m.info().shape != want {
            anyhow::bail!(
                "shape mismatch: label maps {} have shape {:?}; the scores {} without their class axis have {:?}",
                m.path().display(),
                m.info().shape,
                scores.describe(),
                want
            );
        }
    }
    let ndim = first.len() - 1;
    if let Some(s) = &args.options.spacing.spacing {
        s.for_ndim(ndim).context("--spacing")?;
    }
    let spacings = args.options.spacing.source().per_image(scores.n_images(), ndim)?;
    let images = args.selection.resolve(scores.n_images())?;
    let precision = scores.precision()?;
    let bar = report::progress("calibrating", images.len(), scores.voxels_per_image());
    let reader = Arc::new(Reader {
        spacings: spacings.map(Arc::from),
        cohort_spacing: args.options.spacing.spacing.is_some(),
        masks: Some((masks, confseg::io::Labels::Binary.into())),
        tick: Some(report::tick(&bar)),
        ..Reader::new(scores)
    });
    Ok(Setup { reader, calibrator, images, axis, precision, bar })
}

/// One image's output and its own spacing (of the spatial axes).
fn output<A: ReadFloat>(r: &Reader, axis: usize, i: usize) -> confseg::Result<(ArrayD<A>, Option<Spacing>)> {
    let (a, geometry) = r.scores.read_raw::<A>(i)?;
    let spacing = match (&r.spacings, geometry) {
        (Some(sp), _) => Some(sp[i].clone()),
        (None, Some(g)) if !r.cohort_spacing => {
            // a header spacing counts the class axis too (e.g. a 4-D NIfTI): drop it
            match g.spacing().as_slice().map(<[f64]>::len) {
                Some(len) if len == a.ndim() => Some(g.without_axis(axis)?.spacing().clone()),
                Some(len) if len + 1 == a.ndim() => Some(g.spacing().clone()),
                _ => None,
            }
        }
        _ => None,
    };
    Ok((a, spacing))
}

impl Setup {
    fn statistics<A: ReadFloat>(&self) -> Result<StructureCalibration> {
        let axis = self.axis;
        let items = self.reader.items(&self.images, move |r, i| {
            let (a, sp) = output::<A>(r, axis, i)?;
            Ok((a, sp, r.label_map(i)?))
        });
        let cal = self.calibrator.calibrate_stream(items);
        self.bar.finish_and_clear();
        Ok(cal.map_err(|e| self.reader.blame(e, &self.images))?)
    }

    /// Every selected image's statistics, in the files' precision.
    ///
    /// # Errors
    /// As the library's `StructureCalibrator::calibrate_stream`, naming the file.
    pub fn calibration(&self) -> Result<StructureCalibration> {
        match self.precision {
            Precision::F32 => self.statistics::<f32>(),
            Precision::F64 => self.statistics::<f64>(),
        }
    }
}

/// `calibrate --structure ...`.
///
/// # Errors
/// As [`open`]; writing the file.
pub fn calibrate(args: &crate::cli::calibrate::Args) -> Result<()> {
    if args.groups.groups.is_some() || args.groups.strata.is_some() || args.groups.pool_small_groups {
        usage!("--groups, --strata and --pool-small-groups are for one structure, not --structure");
    }
    let setup = open(&args.inputs)?;
    if setup.images.is_empty() {
        anyhow::bail!("no calibration images selected");
    }
    let mode = args.levels.levels().joint(setup.calibrator.structures().len())?;
    let cal = setup.calibration()?;
    let sets = setup.calibrator.fit(&cal, mode)?;
    let source = args.inputs.request()?.provenance(setup.reader.scores.n_images());
    let file = StructuresFile::new(
        sets,
        Record { source, ignore_label: args.inputs.masks.ignore_label, ..Record::default() },
    );
    let mode = file.sets.mode();
    let mut summary =
        format!("calibration images: n = {}\nmode: {mode}\nguarantee: {}\n", cal.len(), mode.guarantee());
    for (s, sets) in file.sets.structures().iter().zip(file.sets.sets()) {
        let t = sets.thresholds();
        summary += &format!(
            "{s}: alpha_I = {}, lambda_I = {}; alpha_O = {}, lambda_O = {}\n",
            sets.guarantee().alpha(Side::Inner),
            report::number(t.inner.value()),
            sets.guarantee().alpha(Side::Outer),
            report::number(t.outer.value())
        );
    }
    match &args.output {
        Some(path) => {
            file.write(path)?;
            report::out(&summary)?;
            outln!("wrote {}", path.display());
        }
        None => {
            report::out(&file.to_json()?)?;
            eprint!("{summary}");
        }
    }
    for (name, w) in cal.warnings(&file.sets) {
        eprintln!("warning: {name}: {w}");
    }
    Ok(())
}

/// `path` with `_name` inserted before its extension (`inner.npy` -> `inner_WT.npy`).
fn with_name(path: &Path, name: &str) -> PathBuf {
    let stem = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let ext = path.extension().map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    path.with_file_name(format!("{stem}_{name}{ext}"))
}

/// `predict` with a structures calibration file: one inner and one outer
/// output per structure (`I_NAME.npy`, or `ID_NAME_inner` per subject).
///
/// # Errors
/// As `predict`.
pub fn predict(args: &crate::cli::predict::Args, file: &StructuresFile) -> Result<()> {
    if args.files.inner_scores.is_some() {
        usage!("a structures calibration takes the network's output (--scores)");
    }
    let (source, _) = args.files.open(None, None)?;
    let subjects = source.cohort().is_some();
    if subjects != args.out_dir.is_some() {
        usage!("per-subject scores are written with --out-dir DIR; a stack with --inner-out/--outer-out");
    }
    let axis = file.sets.scores().axis();
    let n = source.n_images();
    let names: Vec<String> = file.sets.structures().iter().map(|s| s.name().to_owned()).collect();
    let shape: Option<Vec<usize>> = source
        .stack_shape()
        .map(|s| s.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &x)| x).collect());
    let mut writers: Vec<(Option<NpyWriter>, Option<NpyWriter>)> = Vec::new();
    if let Some(shape) = &shape {
        for name in &names {
            let create = |p: &Option<PathBuf>| {
                p.as_ref().map(|p| NpyWriter::create::<u8>(with_name(p, name), n, shape)).transpose()
            };
            writers.push((create(&args.inner_out)?, create(&args.outer_out)?));
        }
    }
    if let (Some(dir), Some(cohort)) = (&args.out_dir, source.cohort()) {
        cohort.check_output_folder(dir)?;
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let ndim = source.ndim()?.saturating_sub(1);
    let spacings = args.spacing.source().per_image(n, ndim)?;
    let bar = report::progress("predicting", n, source.voxels_per_image());
    let reader = Arc::new(Reader {
        spacings: spacings.map(Arc::from),
        cohort_spacing: args.spacing.spacing.is_some(),
        tick: Some(report::tick(&bar)),
        ..Reader::new(source.clone())
    });
    let cohort_spacing = args.spacing.spacing.clone();
    let all: Vec<usize> = (0..n).collect();
    let sets = &file.sets;
    // every output of the run is published at the end, all of them or none
    let mut publication = Publication::new();
    let mut run = |precision| -> confseg::Result<()> {
        fn go<A: ReadFloat>(
            reader: &Arc<Reader>,
            all: &[usize],
            axis: usize,
            sets: &StructureSets,
            cohort: Option<&Spacing>,
            sink: impl FnMut(usize, Vec<confseg::Sets<IxDyn>>) -> confseg::Result<()>,
        ) -> confseg::Result<()> {
            stream(
                reader.items(all, move |r, i| output::<A>(r, axis, i)),
                default_in_flight(),
                |i, item: Lazy<_>| {
                    let (out, sp) = item.load()?;
                    sets.predict(&out, sp.as_ref().or(cohort)).map_err(|e| e.in_image(i))
                },
                sink,
            )
        }
        let mut sink = |i: usize, per: Vec<confseg::Sets<IxDyn>>| -> confseg::Result<()> {
            match (source.cohort(), &args.out_dir) {
                (Some(cohort), Some(dir)) => {
                    let mut outs = Vec::new();
                    for (name, s) in names.iter().zip(&per) {
                        for (side, set) in [("inner", &s.inner), ("outer", &s.outer)] {
                            let path = cohort.output_path(i, dir, &format!("_{name}_{side}"))?;
                            outs.push(cohort.mask_output(i, &path, &set.mapv(u8::from))?);
                        }
                    }
                    publication.stage_all(outs)
                }
                _ => Ok(()),
            }
        };
        let mut written = |i: usize, per: Vec<confseg::Sets<IxDyn>>| -> confseg::Result<()> {
            if shape.is_some() {
                for ((wi, wo), s) in writers.iter_mut().zip(&per) {
                    if let Some(w) = wi {
                        w.push(&s.inner.mapv(u8::from))?;
                    }
                    if let Some(w) = wo {
                        w.push(&s.outer.mapv(u8::from))?;
                    }
                }
                Ok(())
            } else {
                sink(i, per)
            }
        };
        match precision {
            Precision::F32 => go::<f32>(&reader, &all, axis, sets, cohort_spacing.as_ref(), &mut written),
            Precision::F64 => go::<f64>(&reader, &all, axis, sets, cohort_spacing.as_ref(), &mut written),
        }
    };
    run(source.precision()?).map_err(|e| reader.blame(e, &all))?;
    bar.finish_and_clear();
    let outputs: Vec<confseg::io::Output> = writers
        .into_iter()
        .flat_map(|(a, b)| [a, b])
        .flatten()
        .map(NpyWriter::into_output)
        .collect::<confseg::Result<_>>()?;
    publication.stage_all(outputs)?;
    publication.publish()?;
    outln!("{n} images: sets of {} structures ({})", names.len(), names.join(", "));
    for w in sets.warnings() {
        eprintln!("warning: {}: {}", w.0, w.1);
    }
    Ok(())
}

/// `validate --structure ...`: per-structure and joint coverage over splits.
///
/// # Errors
/// As [`open`] and the library's validation.
pub fn validate(args: &crate::cli::validate::Args) -> Result<()> {
    if args.by_stratum {
        usage!("--by-stratum is for one structure, not --structure");
    }
    let setup = open(&args.inputs)?;
    let cal = setup.calibration()?;
    let mut splits =
        confseg::evaluate::Splits::new(args.n_cal, args.repeats, args.seed).context("--n-cal/--repeats")?;
    if let Some(t) = args.n_test {
        splits = splits.with_n_test(t).context("--n-test")?;
    }
    let reports =
        confseg::evaluate::structures::validate_structures(&cal, &args.mode.levels(), &args.alpha.0, splits)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reports).context("cannot serialize the results")?);
        return Ok(());
    }
    outln!(
        "{} images; {} splits into {} calibration images (seed {})",
        cal.len(),
        args.repeats,
        args.n_cal,
        args.seed
    );
    outln!("{:>6}  {:>8} {:>6}  per structure (inner / outer)", "alpha", "joint", "sd");
    for r in &reports {
        let per: Vec<String> =
            r.structures.iter().map(|(n, i, o)| format!("{n} {:.3}/{:.3}", i.mean, o.mean)).collect();
        outln!("{:>6}  {:>8.4} {:>6.4}  {}", r.alpha, r.joint.mean, r.joint.sd, per.join("  "));
    }
    Ok(())
}
