//! Human-readable output: calibration summaries, warnings about infinite
//! thresholds, progress bars, and the usage-error type (exit code 2).

use std::fmt;
use std::io::IsTerminal;

use confseg::{ConfidenceSets, ModeKind, Threshold, Transform};
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
    if !std::io::stderr().is_terminal() || images.saturating_mul(voxels_per_image) < PROGRESS_MIN_VOXELS {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images ({eta} left)")
        .map_or_else(|_| ProgressStyle::default_bar(), |s| s.progress_chars("=> "));
    ProgressBar::new(images as u64).with_style(style).with_message(what.to_owned())
}

/// A threshold as the JSON writes it: a number, `inf` or `-inf`.
pub fn number(x: f64) -> String {
    if x == f64::INFINITY {
        "inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{x}")
    }
}

fn threshold_line(t: &Threshold, n: usize) -> String {
    match t {
        Threshold::OrderStatistic { k, value } => format!("{} (rank {k} of {n})", number(*value)),
        Threshold::TooFewImages { needed, .. } => format!("inf (too few images: {needed} needed)"),
    }
}

/// The human summary of fitted sets, one fact per line.
pub fn summary<TI: Transform, TO: Transform, C>(sets: &ConfidenceSets<TI, TO, C>) -> String {
    summary_with(sets, &sets.inner_transform().describe(), &sets.outer_transform().describe())
}

/// [`summary`] with the transforms described by the caller (e.g. the
/// files of pre-transformed scores).
pub fn summary_with<TI, TO, C>(sets: &ConfidenceSets<TI, TO, C>, f_inner: &str, f_outer: &str) -> String {
    let mode = sets.mode();
    let n = sets.n();
    let t = sets.thresholds();
    let mut out = String::new();
    let guarantee = match mode.kind() {
        ModeKind::Marginal => format!(
            "P(I ⊆ Y) >= {} and P(Y ⊆ O) >= {}",
            1.0 - mode.inner_alpha().get(),
            1.0 - mode.outer_alpha().get()
        ),
        ModeKind::Bonferroni | ModeKind::Max => {
            format!("P(I ⊆ Y ⊆ O) >= {}", 1.0 - mode.joint_alpha().map_or(f64::NAN, |a| a.get()))
        }
    };
    out += &format!("calibration images: n = {n}\n");
    out += &format!("mode: {mode}\n");
    out += &format!("guarantee: {guarantee}\n");
    out += &format!(
        "inner: f_I = {f_inner}, alpha_I = {}, lambda_I = {}\n",
        mode.inner_alpha(),
        threshold_line(&t.inner, n)
    );
    out += &format!(
        "outer: f_O = {f_outer}, alpha_O = {}, lambda_O = {}\n",
        mode.outer_alpha(),
        threshold_line(&t.outer, n)
    );
    out
}

/// Warnings for infinite thresholds: too few images (with the minimum n),
/// or an infinite order statistic.
pub fn threshold_warnings<TI, TO, C>(sets: &ConfidenceSets<TI, TO, C>) -> Vec<String> {
    let mode = sets.mode();
    let t = sets.thresholds();
    let mut out = Vec::new();
    let sides = [
        ("inner", "lambda_I", mode.inner_alpha(), t.inner, "the inner set is empty for every image"),
        ("outer", "lambda_O", mode.outer_alpha(), t.outer, "the outer set is the whole image"),
    ];
    for (side, name, alpha, threshold, consequence) in sides {
        match threshold {
            Threshold::TooFewImages { n, needed } => out.push(format!(
                "only n = {n} calibration images; alpha_{side} = {alpha} needs at least {needed} for a finite \
                 threshold, so {name} = inf and {consequence} (valid but uninformative)"
            )),
            Threshold::OrderStatistic { k, value } if value == f64::INFINITY => out.push(format!(
                "{name} = inf: the calibration statistic of rank {k} is infinite, so {consequence}"
            )),
            Threshold::OrderStatistic { .. } => {}
        }
    }
    if mode.kind() == ModeKind::Max && out.len() == 2 && out[0].contains("only n =") {
        out.truncate(1);
        out[0] = out[0].replace(
            "the inner set is empty for every image",
            "the inner set is empty and the outer set the whole image",
        );
    }
    out
}

/// Print the warnings to stderr.
pub fn warn_thresholds<TI, TO, C>(sets: &ConfidenceSets<TI, TO, C>) {
    for w in threshold_warnings(sets) {
        eprintln!("warning: {w}");
    }
}
