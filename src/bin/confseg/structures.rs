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
use confseg::calibrate::StructureCalibration;
use confseg::io::{NpyWriter, Precision, Publication, ReadFloat};
use confseg::pipeline::structures::{read_output, StructureAxis, StructureInputs, StructureRequest};
use confseg::pipeline::{Fitted, Reader, Record};
use confseg::sets::StructureSets;
use confseg::stream::{default_in_flight, stream, Lazy, Load};
use confseg::{Side, Spacing};
use indicatif::ProgressBar;
use ndarray::IxDyn;

use crate::cli::inputs::CalibrationInputs;
use crate::cli::report::{self, outln, usage};

/// The calibration file of several structures.
pub type StructuresFile = Fitted<StructureSets>;

/// Open a structures calibration or validation, with a progress bar.
///
/// # Errors
/// As the library's `StructureRequest::open`.
fn open(args: &CalibrationInputs) -> Result<(StructureInputs, ProgressBar)> {
    let s = &args.structures;
    let axis = StructureAxis::new(args.options.class_axis, s.class_labels.clone(), s.structure_axis)?;
    let mut request = args.request()?;
    request.class_axis = None;
    let inputs = StructureRequest { request, structures: s.structures.clone(), axis }.open()?;
    let bar = report::progress("calibrating", inputs.images.len(), inputs.reader.scores.voxels_per_image());
    Ok((inputs.with_tick(report::tick(&bar)), bar))
}

/// Every selected image's statistics.
fn calibration(inputs: &StructureInputs, bar: &ProgressBar) -> Result<StructureCalibration> {
    let cal = inputs.calibrate();
    bar.finish_and_clear();
    Ok(cal?)
}

/// `calibrate --structure ...`.
///
/// # Errors
/// As [`open`]; writing the file.
pub fn calibrate(args: &crate::cli::calibrate::Args) -> Result<()> {
    if args.groups.groups.is_some() || args.groups.strata.is_some() || args.groups.pool_small_groups {
        usage!("--groups, --strata and --pool-small-groups are for one structure, not --structure");
    }
    let (setup, bar) = open(&args.inputs)?;
    if setup.images.is_empty() {
        anyhow::bail!("no calibration images selected");
    }
    let mode = args.levels.levels().joint(setup.calibrator.structures().len())?;
    let cal = calibration(&setup, &bar)?;
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
                reader.items(all, move |r, i| read_output::<A>(r, axis, i)),
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
    let (setup, bar) = open(&args.inputs)?;
    let cal = calibration(&setup, &bar)?;
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
