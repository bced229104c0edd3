//! Coverage levels: `--alpha A --mode marginal|bonferroni|max|risk-control [--weights 1:4]`
//! or `--alpha-inner A1 --alpha-outer A2`, `--delta D`, and for risk control
//! `--risk recall|precision --bound B --grid START:STOP:STEP`, turned into the
//! library's [`Levels`] request (the library validates it).

use confseg::levels::ModeKind;
use confseg::risk::{Bound, Grid, Risk};
use confseg::Levels;

/// Split weights `I:O` (e.g. `1:4`).
pub fn parse_weights(s: &str) -> Result<(f64, f64), String> {
    let (i, o) = s.split_once(':').ok_or_else(|| format!("expected INNER:OUTER such as 1:4, got {s:?}"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && *w > 0.0)
            .ok_or_else(|| format!("weights must be positive numbers, got {x:?} in {s:?}"))
    };
    Ok((parse(i)?, parse(o)?))
}

/// A level in (0, 1).
pub fn parse_level(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if x > 0.0 && x < 1.0 {
        Ok(x)
    } else {
        Err(format!("{} is outside (0, 1)", s.trim()))
    }
}

/// A name the library parses (`--mode`, `--method`, ...).
pub fn parse_name<T: std::str::FromStr<Err = confseg::Error>>(s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|e| e.to_string())
}

/// The options every subcommand that fits thresholds shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ModeArgs {
    /// Which guarantee: marginal (per set), bonferroni or max (joint), or risk-control (a bound on
    /// an expected loss: --risk recall, the missed fraction of the object, outer set only; --risk
    /// precision, the false share of the inner set, inner set only).
    #[arg(long, value_name = "MODE", default_value = "marginal", value_parser = parse_name::<ModeKind>)]
    pub mode: ModeKind,
    /// Bonferroni split weights INNER:OUTER (default 1:1; the paper uses 1:4).
    #[arg(allow_hyphen_values = true, long, value_name = "I:O", value_parser = parse_weights)]
    pub weights: Option<(f64, f64)>,
    /// Training-conditional guarantee: with probability >= 1 - D over the calibration set, the coverage
    /// of new images is at least the nominal level (exact binomial rank); for risk-control, the
    /// expected loss given the calibration set is at most alpha (RCPS or Learn-then-Test).
    #[arg(allow_hyphen_values = true, long, value_name = "D", value_parser = parse_level)]
    pub delta: Option<f64>,
    /// Risk-control: the loss bounded, recall (missed fraction of the object; default) or precision
    /// (false share of the inner set; needs --delta).
    #[arg(long, value_name = "RISK", value_parser = parse_name::<Risk>)]
    pub risk: Option<Risk>,
    /// Risk-control with --delta: the bound, hoeffding, bernstein or wsr (recall; default wsr) or
    /// hoeffding-bentkus (precision, Learn-then-Test).
    #[arg(long, value_name = "BOUND", value_parser = parse_name::<Bound>)]
    pub bound: Option<Bound>,
    /// Risk-control: search the threshold on the grid START:STOP:STEP (ends included; 0:0.99:0.01
    /// is MAPIE's default, whose choice it reproduces) instead of exactly over the data's scores.
    #[arg(allow_hyphen_values = true, long, value_name = "START:STOP:STEP", value_parser = parse_name::<Grid>)]
    pub grid: Option<Grid>,
}

/// Level options, flattened into subcommands that fit thresholds.
#[derive(Debug, Clone, clap::Args)]
pub struct LevelArgs {
    /// Miscoverage level in (0, 1): 0.1 for 90% coverage.
    #[arg(allow_hyphen_values = true, long, value_name = "A", value_parser = parse_level, required_unless_present = "alpha_inner")]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Level of the inner set (with --alpha-outer; instead of --weights).
    #[arg(allow_hyphen_values = true, long, value_name = "A1", value_parser = parse_level, requires = "alpha_outer")]
    pub alpha_inner: Option<f64>,
    /// Level of the outer set (with --alpha-inner).
    #[arg(allow_hyphen_values = true, long, value_name = "A2", value_parser = parse_level, requires = "alpha_inner")]
    pub alpha_outer: Option<f64>,
}

impl ModeArgs {
    /// The request without a level (validation brings its grid of levels).
    pub fn levels(&self) -> Levels {
        Levels {
            mode: self.mode,
            weights: self.weights,
            delta: self.delta,
            risk: self.risk,
            bound: self.bound,
            grid: self.grid,
            ..Levels::default()
        }
    }
}

impl LevelArgs {
    /// The library's request; the library validates it.
    pub fn levels(&self) -> Levels {
        Levels {
            alpha: self.alpha,
            alpha_inner: self.alpha_inner,
            alpha_outer: self.alpha_outer,
            ..self.mode.levels()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        assert_eq!(parse_weights("1:4").unwrap(), (1.0, 4.0));
        assert!(parse_weights("1").is_err());
        assert!(parse_weights("0:1").is_err());
        assert!(parse_weights("-1:1").is_err());
        assert!(parse_level("1.5").is_err());
        assert!(parse_level("0").is_err());
        assert!(parse_level("x").is_err());
        assert_eq!(parse_name::<ModeKind>("max").unwrap(), ModeKind::Max);
        assert!(parse_name::<ModeKind>("maximum").unwrap_err().contains("bonferroni"));
    }
}
