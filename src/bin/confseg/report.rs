//! Human-readable output: calibration summaries, warnings about infinite
//! thresholds, progress bars, and the usage-error type (exit code 2).

use std::fmt;
use std::io::IsTerminal;

use confseg::levels::Guarantee;
use confseg::{ConfidenceSets, Side, Threshold, Transform};
use indicatif::{ProgressBar, ProgressStyle};

/// A command-line usage error detected after parsing (conflicting or
/// incomplete options). `main` exits with code 2 for it, like clap does.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Standard output went away (e.g. `| head -1`): the command stops and
/// exits quietly, with status 0.
#[derive(Debug)]
pub struct ReaderGone;

impl fmt::Display for ReaderGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for ReaderGone {}

/// Print to standard output; a closed pipe becomes [`ReaderGone`] instead
/// of a panic.
///
/// # Errors
/// [`ReaderGone`] if the reader went away; another write error as is.
pub fn out(s: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(ReaderGone)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// `println!` through [`out`]: returns early when the reader went away.
macro_rules! outln {
    () => {
        $crate::cli::report::out("\n")?
    };
    ($($t:tt)*) => {
        $crate::cli::report::out(&format!("{}\n", format_args!($($t)*)))?
    };
}
pub(crate) use outln;

/// Return early with a [`UsageError`].
macro_rules! usage {
    ($($t:tt)*) => {
        return Err(anyhow::Error::new($crate::cli::report::UsageError(format!($($t)*))))
    };
}
pub(crate) use usage;

/// Work (images × voxels) above which a progress bar is shown.
const PROGRESS_MIN_VOXELS: usize = 1 << 26;

/// A progress bar over `images` images on stderr, shown only when stderr
/// is a terminal and the work (`images * voxels_per_image`) is large.
pub fn progress(what: &str, images: usize, voxels_per_image: usize) -> ProgressBar {
    progress_in(what, "images", images, voxels_per_image)
}

/// A progress bar over `n` units (`"images"`, `"splits"`, ...) of
/// `work_per_unit` voxels each, as [`progress`].
pub fn progress_in(what: &str, unit: &str, n: usize, work_per_unit: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() || n.saturating_mul(work_per_unit) < PROGRESS_MIN_VOXELS {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(&template(unit))
        .map_or_else(|_| ProgressStyle::default_bar(), |s| s.progress_chars("=> "));
    ProgressBar::new(n as u64).with_style(style).with_message(what.to_owned())
}

/// The progress bar's template, counting `unit`.
fn template(unit: &str) -> String {
    format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}} left)")
}

/// A threshold as the JSON writes it: a number, `inf` or `-inf` (and `0`
/// for a negative zero, which thresholds like `-0` as `0`).
pub fn number(x: f64) -> String {
    if x == f64::INFINITY {
        "inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else if x == 0.0 {
        "0".into()
    } else {
        format!("{x}")
    }
}

fn threshold_line(t: &Threshold, n: usize) -> String {
    match t {
        Threshold::OrderStatistic { k, value } => format!("{} (rank {k} of {n})", number(*value)),
        Threshold::TooFewImages { needed, .. } => format!("inf (too few images: {needed} needed)"),
        Threshold::RiskControl { value } => format!("{} (risk control)", number(*value)),
    }
}

/// The human summary of fitted sets, one fact per line.
pub fn summary<TI: Transform, TO: Transform>(sets: &ConfidenceSets<TI, TO>) -> String {
    summary_with(sets, &sets.inner_transform().describe(), &sets.outer_transform().describe())
}

/// [`summary`] with the transforms described by the caller (e.g. the
/// files of pre-transformed scores).
pub fn summary_with<TI, TO>(sets: &ConfidenceSets<TI, TO>, f_inner: &str, f_outer: &str) -> String {
    let g = sets.guarantee();
    let n = sets.n();
    let t = sets.thresholds();
    let mut out = String::new();
    out += &format!("calibration images: n = {n}\n");
    out += &format!("mode: {}\n", g.levels());
    out += &format!("guarantee: {g}\n");
    for (side, transform) in [(Side::Inner, f_inner), (Side::Outer, f_outer)] {
        let l = side.letter();
        out += &format!(
            "{side}: f_{l} = {transform}, alpha_{l} = {}, lambda_{l} = {}\n",
            g.alpha(side),
            threshold_line(&t.side(side), n)
        );
    }
    if let Guarantee::RiskControl(r) = g {
        out += &format!("set: {}\n", r.set_rule(t));
    }
    out
}

/// The human summary of sets fitted per group: the guarantee, then one
/// line per group with its size and thresholds.
pub fn grouped_summary<TI: Transform, TO: Transform>(sets: &confseg::groups::GroupedSets<TI, TO>) -> String {
    let sizes = sets.sizes();
    let n: usize = sizes.iter().map(|(_, n)| n).sum();
    let mut out = format!("calibration images: n = {n} in {} groups\n", sizes.len());
    if let Some(first) = sets.fits().next() {
        out += &format!("mode: {}\n", first.guarantee().levels());
        out += &format!(
            "f_I = {}, f_O = {}\n",
            first.inner_transform().describe(),
            first.outer_transform().describe()
        );
    }
    out += &format!("guarantee: {}\n", sets.guarantee_text());
    if let Some(st) = sets.strata() {
        out += &format!(
            "groups: strata {} of the predictions (scores > {}), recomputed by predict\n",
            st.strata,
            number(st.mask_threshold)
        );
    }
    let line = |s: &ConfidenceSets<TI, TO>| {
        let t = s.thresholds();
        format!(
            "lambda_I = {}, lambda_O = {}",
            threshold_line(&t.inner, s.n()),
            threshold_line(&t.outer, s.n())
        )
    };
    for (g, n) in &sizes {
        if sets.is_pooled(g) {
            out += &format!("group {g}: n = {n}, pooled\n");
        } else if let Ok(s) = sets.sets(g) {
            out += &format!("group {g}: n = {n}, {}\n", line(s));
        }
    }
    if let Some(p) = sets.pooled() {
        let names: Vec<String> = p.groups.iter().map(|(g, _)| g.to_string()).collect();
        out += &format!("pooled groups {}: n = {}, {}\n", names.join(", "), p.sets.n(), line(&p.sets));
    }
    out
}

/// Lines saying what the calibration computed with: image dimensionality,
/// precision, spacing, labels.
pub fn provenance_lines<TI: Transform, TO: Transform>(
    sets: &ConfidenceSets<TI, TO>,
    record: &confseg::pipeline::Record,
    precision: confseg::io::Precision,
) -> String {
    let mut out = String::new();
    if let Some(nd) = sets.ndim() {
        out += &format!("images: {nd}-D, computed in {}\n", precision.name());
    }
    let spacing_matters = sets.inner_transform().uses_spacing() || sets.outer_transform().uses_spacing();
    if sets.per_image_spacing() {
        out += "spacing: each image's own";
        if let Some(p) = &record.source.spacing_file {
            out += &format!(" (from {})", p.display());
        }
        out += "\n";
    } else if spacing_matters || !sets.spacing().is_unit() {
        out += &format!("spacing: {} for every image\n", sets.spacing());
    }
    if let confseg::io::Labels::Select(_) = &record.labels {
        out += &format!("structure: labels {} of the masks\n", record.labels);
    }
    out
}

/// Print warnings to stderr, one line each.
pub fn warn(warnings: &[confseg::Warning]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// A library tick that advances `bar` by one image.
pub fn tick(bar: &ProgressBar) -> confseg::pipeline::Tick {
    let bar = bar.clone();
    std::sync::Arc::new(move || {
        bar.inc(1);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_counts_its_unit() {
        assert_eq!(super::template("splits"), "{msg} [{bar:40}] {pos}/{len} splits ({eta} left)");
        assert!(indicatif::ProgressStyle::with_template(&super::template("sets")).is_ok());
    }
}
