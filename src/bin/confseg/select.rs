//! `confseg select`: choose the transforms and the alpha split on a
//! learning set (METHOD.md §6).

use std::path::PathBuf;

use anyhow::{Context, Result};
use confseg::evaluate::Splits;
use confseg::pipeline::Request;
use confseg::tolerance::{Tolerance, Tolerances};
use confseg::{Alpha, ScoreTransform, Side};

use crate::cli::inputs::{MaskArgs, ScoreFiles, Selection, SubjectArgs, TransformOptions};
use crate::cli::report::{outln, usage};

fn parse_alpha(s: &str) -> Result<Alpha, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    Alpha::new(x).map_err(|_| format!("{} is outside (0, 1)", s.trim()))
}

/// Rank candidate transforms on a learning set and suggest the Bonferroni
/// weights; prints the `calibrate` options to use.
///
/// Inner candidates are ranked by the mean share of the image in the inner
/// set (largest first), outer candidates by the share in the outer set
/// (smallest first), each at the marginal level --alpha over random
/// internal splits; the weights minimize the mean share (|O| - |I|) / |V|
/// left undecided at the joint level --alpha.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Example:\n  \
    confseg select --masks M.npy --scores S.npy --indices learning_idx.npy \\\n    \
    --inner-candidates identity,gaussian:2 --outer-candidates identity,distance,distance:chessboard \\\n    \
    --alpha 0.1 --json selection.json")]
pub struct Args {
    #[command(flatten)]
    pub masks: MaskArgs,
    /// Raw scores of the learning images: a stack (N, spatial...) .npy, or per-subject files (folder,
    /// quoted glob) paired with --masks by ID.
    #[arg(long, value_name = "S", required_unless_present = "manifest")]
    pub scores: Option<PathBuf>,
    #[command(flatten)]
    pub subjects: SubjectArgs,
    /// Inner transforms to compare (names as for `calibrate --inner`).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", default_value = "identity")]
    pub inner_candidates: Vec<String>,
    /// Outer transforms to compare (names as for `calibrate --outer`).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", default_value = "identity")]
    pub outer_candidates: Vec<String>,
    #[command(flatten)]
    pub options: TransformOptions,
    /// Rank the candidates for this inner tolerance (as `calibrate --inner-tolerance`).
    #[arg(long, value_name = "T", default_value = "0")]
    pub inner_tolerance: Tolerance,
    /// Rank the candidates for this outer tolerance (as `calibrate --outer-tolerance`).
    #[arg(long, value_name = "T", default_value = "0")]
    pub outer_tolerance: Tolerance,
    /// The learning images (e.g. --indices learning_idx.npy).
    #[command(flatten)]
    pub selection: Selection,
    /// Level at which set sizes are compared.
    #[arg(allow_hyphen_values = true, long, value_parser = parse_alpha)]
    pub alpha: Alpha,
    /// Calibration images per internal split (default: two thirds of the learning set).
    #[arg(allow_hyphen_values = true, long)]
    pub n_cal: Option<usize>,
    /// Number of internal random splits.
    #[arg(allow_hyphen_values = true, long, default_value_t = 200)]
    pub repeats: usize,
    /// Seed of the internal splits.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the selection as JSON to this file (atomically).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
}

/// Run `select`.
pub fn run(args: Args) -> Result<()> {
    if args.options.class_axis.is_some() {
        usage!("--class-axis is not supported by select; reduce the logits first (confseg transform)");
    }
    let parse = |names: &[String], side| -> Result<Vec<ScoreTransform>> {
        names.iter().map(|n| args.options.apply(ScoreTransform::parse_for(side, n)?)).collect()
    };
    let inner = parse(&args.inner_candidates, Side::Inner)?;
    let outer = parse(&args.outer_candidates, Side::Outer)?;
    let files =
        ScoreFiles { scores: args.scores.clone(), subjects: args.subjects.clone(), ..ScoreFiles::default() };
    if args.masks.masks.is_none() && args.subjects.manifest.is_none() {
        usage!("give --masks (or a --manifest with a mask column)");
    }
    let mut request =
        Request::new(files.request()?, args.masks.masks.as_ref().map(|m| m.to_string_lossy().into_owned()));
    request.labels = args.masks.selection();
    request.ignore_label = args.masks.ignore_label;
    request.spacing = args.options.spacing.source();
    request.selection = args.selection.clone().into();
    request.tolerances = Tolerances::new(args.inner_tolerance, args.outer_tolerance);
    let inputs = request.open()?;
    let images = &inputs.images;
    if images.len() < 2 {
        usage!("select needs at least 2 learning images, {} selected", images.len());
    }
    let n_cal = args.n_cal.unwrap_or((images.len() * 2 / 3).max(1));
    let splits = Splits::new(n_cal, args.repeats, args.seed).context("--n-cal/--repeats")?;
    let s = inputs.select(&inner, &outer, args.alpha, splits)?;
    outln!(
        "{} learning images, {} internal splits of {n_cal} calibration images, alpha = {}",
        images.len(),
        args.repeats,
        args.alpha
    );
    outln!("\ninner candidates (largest inner set first):");
    outln!("  {:<28} {:>9} {:>9} {:>9}", "transform", "|I|/|V|", "|I|/|Y|", "coverage");
    for r in &s.inner_ranking {
        let ratio = r.size_ratio.map_or("-".into(), |x| format!("{x:.4}"));
        outln!("  {:<28} {:>9.4} {:>9} {:>9.4}", r.transform, r.share, ratio, r.coverage);
    }
    outln!("\nouter candidates (smallest outer set first):");
    outln!("  {:<28} {:>9} {:>9} {:>9}", "transform", "|O|/|V|", "|O|/|Y|", "coverage");
    for r in &s.outer_ranking {
        let ratio = r.size_ratio.map_or("-".into(), |x| format!("{x:.4}"));
        outln!("  {:<28} {:>9.4} {:>9} {:>9.4}", r.transform, r.share, ratio, r.coverage);
    }
    outln!("\nBonferroni weights at joint alpha = {} (criterion: mean (|O| - |I|)/|V|):", args.alpha);
    for w in &s.weights {
        let mark =
            if w.inner_weight == s.inner_weight && w.outer_weight == s.outer_weight { "  <-" } else { "" };
        let trivial = if w.too_few_images > 0.0 { "  (too few images: trivial sets)" } else { "" };
        outln!(
            "  {}:{:<6} undecided {:.4}  joint coverage {:.4}{mark}{trivial}",
            w.inner_weight,
            w.outer_weight,
            w.undecided_share,
            w.joint_coverage
        );
    }
    let mut options = String::new();
    if let Some(sp) = &args.options.spacing.spacing {
        options += &format!(" --spacing {sp}");
    }
    if let Some(f) = &args.options.spacing.spacing_file {
        options += &format!(" --spacing-file {}", f.display());
    }
    if let confseg::io::Labels::Select(_) = args.masks.selection() {
        options += &format!(" --labels {}", args.masks.selection());
    }
    outln!(
        "\nsuggested: confseg calibrate --inner {} --outer {} --mode bonferroni --weights {}:{} --alpha {}{options}",
        s.inner_transform,
        s.outer_transform,
        s.inner_weight,
        s.outer_weight,
        args.alpha
    );
    if let Some(path) = &args.json {
        let mut json = serde_json::to_string_pretty(&s).context("cannot serialize the selection")?;
        json.push('\n');
        confseg::io::write_atomic(path, |w| w.write_all(json.as_bytes()))?;
        outln!("wrote {}", path.display());
    }
    Ok(())
}
