//! `confseg select`: choose the transforms and the alpha split on a
//! learning set (METHOD.md §6).

use std::path::PathBuf;

use anyhow::{Context, Result};
use confseg::evaluate::select::{select_stream, Selection as Selected};
use confseg::evaluate::Splits;
use confseg::io::{Labels, NpyStack, Precision, ReadFloat};
use confseg::{Alpha, Image, ScoreTransform, Spacing};

use crate::cli::inputs::{
    blame, parse_transform, MaskArgs, ScoreFiles, ScoreSource, Selection, Side, TransformOptions,
};
use crate::cli::report::{outln, usage};

fn parse_alpha(s: &str) -> Result<Alpha, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    Alpha::new(x).map_err(|_| format!("{x} is outside (0, 1)"))
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
    /// Raw score stack (N, spatial...) of the learning images.
    #[arg(long, value_name = "S.npy")]
    pub scores: PathBuf,
    /// Inner transforms to compare (names as for `calibrate --inner`).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", default_value = "identity")]
    pub inner_candidates: Vec<String>,
    /// Outer transforms to compare (names as for `calibrate --outer`).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", default_value = "identity")]
    pub outer_candidates: Vec<String>,
    #[command(flatten)]
    pub options: TransformOptions,
    /// The learning images (e.g. --indices learning_idx.npy).
    #[command(flatten)]
    pub selection: Selection,
    /// Level at which set sizes are compared.
    #[arg(long, value_parser = parse_alpha)]
    pub alpha: Alpha,
    /// Calibration images per internal split (default: two thirds of the learning set).
    #[arg(long)]
    pub n_cal: Option<usize>,
    /// Number of internal random splits.
    #[arg(long, default_value_t = 200)]
    pub repeats: usize,
    /// Seed of the internal splits.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the selection as JSON to this file (atomically).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
}

/// The learning images, opened.
struct Learning<'a> {
    source: &'a ScoreSource,
    masks: &'a NpyStack,
    labels: Labels,
    images: &'a [usize],
    spacings: Option<&'a [Spacing]>,
    spacing: &'a Spacing,
}

impl Learning<'_> {
    /// Select, streaming the learning images in the float type `A` (read
    /// once per candidate).
    fn select<A: ReadFloat>(
        &self,
        inner: &[ScoreTransform],
        outer: &[ScoreTransform],
        alpha: Alpha,
        splits: Splits,
    ) -> Result<Selected> {
        let pairs = || {
            let idx = self.images.to_vec();
            self.source.raw::<A>(idx.clone()).zip(self.masks.masks(idx, self.labels.clone()))
        };
        let blame = |e| blame(e, self.images, self.source, Some(self.masks.path()));
        match self.spacings {
            None => select_stream(
                inner,
                outer,
                || pairs().map(|(s, m)| Ok((s?, m?))),
                self.spacing,
                alpha,
                splits,
            ),
            Some(sp) => {
                let own = || self.images.iter().map(|&i| sp[i].clone());
                select_stream(
                    inner,
                    outer,
                    || pairs().zip(own()).map(|((s, m), sp)| Ok((Image::new(s?, sp)?, m?))),
                    self.spacing,
                    alpha,
                    splits,
                )
            }
        }
        .map_err(blame)
    }
}

/// Run `select`.
pub fn run(args: Args) -> Result<()> {
    if args.options.class_axis.is_some() {
        usage!("--class-axis is not supported by select; reduce the logits first (confseg transform)");
    }
    let parse = |names: &[String], side| -> Result<Vec<ScoreTransform>> {
        names.iter().map(|n| args.options.apply(parse_transform(n, Some(side))?)).collect()
    };
    let inner = parse(&args.inner_candidates, Side::Inner)?;
    let outer = parse(&args.outer_candidates, Side::Outer)?;
    let masks = args.masks.open()?;
    let files = ScoreFiles { scores: Some(args.scores.clone()), inner_scores: None, outer_scores: None };
    let source = ScoreSource::open(&files, None)?;
    let mut shape = vec![source.n_images()];
    shape.extend(source.image_shape());
    if masks.info().shape != shape {
        anyhow::bail!(
            "shape mismatch: masks {} have shape {:?}, scores {} have shape {:?}",
            masks.path().display(),
            masks.info().shape,
            args.scores.display(),
            shape
        );
    }
    let images = args.selection.resolve(source.n_images())?;
    if images.len() < 2 {
        usage!("select needs at least 2 learning images, {} selected", images.len());
    }
    let n_cal = args.n_cal.unwrap_or(images.len() * 2 / 3).max(1);
    let splits = Splits::new(n_cal, args.repeats, args.seed).context("--n-cal/--repeats")?;
    let spacing = args.options.spacing.spacing();
    spacing.for_ndim(shape.len() - 1).context("--spacing")?;
    let spacings = args.options.spacing.spacings(source.n_images(), shape.len() - 1)?;
    let input = Learning {
        source: &source,
        masks: &masks,
        labels: args.masks.selection(),
        images: &images,
        spacings: spacings.as_deref(),
        spacing: &spacing,
    };
    let s = match source.precision() {
        Precision::F32 => input.select::<f32>(&inner, &outer, args.alpha, splits),
        Precision::F64 => input.select::<f64>(&inner, &outer, args.alpha, splits),
    }?;

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
        outln!(
            "  {}:{:<6} undecided {:.4}  joint coverage {:.4}{mark}",
            w.inner_weight,
            w.outer_weight,
            w.undecided_share,
            w.joint_coverage
        );
    }
    outln!(
        "\nsuggested: confseg calibrate --inner {} --outer {} --mode bonferroni --weights {}:{} --alpha {}",
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
