//! Coverage levels: `--alpha A --mode marginal|bonferroni|max|risk-control [--weights 1:4]`
//! or `--alpha-inner A1 --alpha-outer A2`, turned into a [`Mode`].

use anyhow::Result;
use clap::ValueEnum;
use confseg::quantile::Delta;
use confseg::{Alpha, Mode};

use crate::cli::report::usage;

/// The `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Each set at its own level: P(I ⊆ Y) >= 1 - alpha_I, P(Y ⊆ O) >= 1 - alpha_O.
    Marginal,
    /// Joint P(I ⊆ Y ⊆ O) >= 1 - alpha, alpha split between the sides by --weights.
    Bonferroni,
    /// Joint P(I ⊆ Y ⊆ O) >= 1 - alpha, one threshold on max(tau, gamma).
    Max,
    /// Conformal risk control: outer set only, expected missed fraction of the object <= alpha
    /// (a weaker promise than coverage of the whole object).
    RiskControl,
}

/// Split weights `I:O` (e.g. `1:4`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of the inner side.
    pub inner: f64,
    /// Weight of the outer side.
    pub outer: f64,
}

pub fn parse_weights(s: &str) -> Result<Weights, String> {
    let (i, o) = s.split_once(':').ok_or_else(|| format!("expected INNER:OUTER such as 1:4, got {s:?}"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && *w > 0.0)
            .ok_or_else(|| format!("weights must be positive numbers, got {x:?} in {s:?}"))
    };
    Ok(Weights { inner: parse(i)?, outer: parse(o)? })
}

fn parse_alpha(s: &str) -> Result<Alpha, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    Alpha::new(x).map_err(|_| format!("{x} is outside (0, 1)"))
}

/// Level options, flattened into subcommands that fit thresholds.
#[derive(Debug, Clone, clap::Args)]
pub struct LevelArgs {
    /// Miscoverage level in (0, 1): 0.1 for 90% coverage.
    #[arg(allow_hyphen_values = true, long, value_name = "A", value_parser = parse_alpha, required_unless_present = "alpha_inner")]
    pub alpha: Option<Alpha>,
    /// Which guarantee: per set (marginal), joint (bonferroni, max), or the expected missed fraction
    /// (risk-control).
    #[arg(long, value_enum, default_value = "marginal")]
    pub mode: ModeArg,
    /// Bonferroni split weights INNER:OUTER (default 1:1; the paper uses 1:4).
    #[arg(allow_hyphen_values = true, long, value_name = "I:O", value_parser = parse_weights)]
    pub weights: Option<Weights>,
    /// Level of the inner set (with --alpha-outer; instead of --weights).
    #[arg(allow_hyphen_values = true, long, value_name = "A1", value_parser = parse_alpha, requires = "alpha_outer")]
    pub alpha_inner: Option<Alpha>,
    /// Level of the outer set (with --alpha-inner).
    #[arg(allow_hyphen_values = true, long, value_name = "A2", value_parser = parse_alpha, requires = "alpha_inner")]
    pub alpha_outer: Option<Alpha>,
    /// Training-conditional guarantee: with probability >= 1 - D over the calibration set, the coverage
    /// of new images is at least the nominal level (exact binomial rank).
    #[arg(allow_hyphen_values = true, long, value_name = "D", value_parser = parse_delta)]
    pub delta: Option<Delta>,
}

pub fn parse_delta(s: &str) -> Result<Delta, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    Delta::new(x).map_err(|_| format!("{x} is outside (0, 1)"))
}

impl LevelArgs {
    /// The validated [`Mode`].
    ///
    /// * `--alpha A --mode marginal`: both sides at `A`;
    /// * `--alpha A --mode bonferroni [--weights I:O]`: `A` split by the weights;
    /// * `--alpha A --mode bonferroni --alpha-inner A1 --alpha-outer A2`:
    ///   explicit split, `A1 + A2 <= A`;
    /// * `--alpha A --mode max`: one threshold on `max(tau, gamma)`;
    /// * `--alpha-inner A1 --alpha-outer A2` (marginal): each side at its level;
    /// * `--alpha A --mode risk-control`: outer set with expected missed
    ///   fraction at most `A` (no `--delta`).
    ///
    /// # Errors
    /// A [`UsageError`](crate::cli::report::UsageError) for combinations that do
    /// not fit; the library's error for a split exceeding `A`.
    pub fn mode(&self) -> Result<Mode> {
        let split = self.alpha_inner.zip(self.alpha_outer);
        if self.weights.is_some() && self.mode != ModeArg::Bonferroni {
            usage!("--weights applies to --mode bonferroni only");
        }
        if self.weights.is_some() && split.is_some() {
            usage!("give either --weights or --alpha-inner/--alpha-outer, not both");
        }
        let mode = self.mode_without_delta()?;
        if self.mode == ModeArg::RiskControl && self.delta.is_some() {
            usage!("--mode risk-control bounds an expected missed fraction; it has no --delta version");
        }
        Ok(match self.delta {
            Some(d) => mode.with_delta(d),
            None => mode,
        })
    }

    fn mode_without_delta(&self) -> Result<Mode> {
        let split = self.alpha_inner.zip(self.alpha_outer);
        Ok(match (self.mode, self.alpha, split) {
            (ModeArg::Marginal, None, Some((i, o))) => Mode::marginal_split(i, o),
            (ModeArg::Marginal, Some(a), None) => Mode::marginal(a),
            (ModeArg::Marginal, Some(_), Some(_)) => {
                usage!("--mode marginal takes --alpha or --alpha-inner/--alpha-outer, not both")
            }
            (ModeArg::Bonferroni, Some(a), None) => {
                let w = self.weights.unwrap_or(Weights { inner: 1.0, outer: 1.0 });
                Mode::bonferroni(a, w.inner, w.outer)?
            }
            (ModeArg::Bonferroni, Some(a), Some((i, o))) => Mode::bonferroni_split(a, i, o)?,
            (ModeArg::Max, Some(a), None) => Mode::max(a),
            (ModeArg::Max, _, Some(_)) => usage!("--mode max uses one level: give --alpha only"),
            (ModeArg::RiskControl, Some(a), None) => Mode::risk_control(a),
            (ModeArg::RiskControl, _, Some(_)) => {
                usage!("--mode risk-control has no inner set: give --alpha only")
            }
            (_, None, _) => usage!("--mode {} needs the joint level --alpha", self.mode_name()),
        })
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            ModeArg::Marginal => "marginal",
            ModeArg::Bonferroni => "bonferroni",
            ModeArg::Max => "max",
            ModeArg::RiskControl => "risk-control",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        assert_eq!(parse_weights("1:4").unwrap(), Weights { inner: 1.0, outer: 4.0 });
        assert!(parse_weights("1").is_err());
        assert!(parse_weights("0:1").is_err());
        assert!(parse_weights("-1:1").is_err());
        assert!(parse_alpha("1.5").is_err());
        assert!(parse_alpha("0").is_err());
        assert!(parse_alpha("x").is_err());
    }
}
