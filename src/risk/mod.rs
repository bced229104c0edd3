//! Risk control (METHOD.md §4.3, §4.5): which per-image loss is bounded,
//! how, and where its threshold is searched.
//!
//! A [`RiskControl`] promises a bound `alpha`
//! on the expected loss of a new image, `E[loss] <= alpha`:
//!
//! * in expectation over the calibration set too (conformal risk control,
//!   no `delta`), or
//! * with probability at least `1 - delta` over the calibration set
//!   (conditionally on it), from an upper confidence [`Bound`] on the mean
//!   loss (RCPS) or a p-value per threshold (Learn-then-Test).
//!
//! The loss is the [`Risk`]: the missed share of the object by the outer
//! set ([`Risk::Recall`]) or the false share of the inner set
//! ([`Risk::Precision`]). The threshold is searched exactly over the
//! calibration data's distinct scores ([`Search::Exact`]) or over a fixed
//! [`Grid`], where the choice is MAPIE 1.6's
//! (`SemanticSegmentationController`).
//!
//! Every name parses with [`FromStr`] and prints with
//! [`Display`](fmt::Display), as the other level types do:
//!
//! ```
//! use confseg::risk::{Bound, Grid, Risk};
//! assert_eq!("precision".parse::<Risk>()?, Risk::Precision);
//! assert_eq!("wsr".parse::<Bound>()?.to_string(), "wsr");
//! let g: Grid = "0:0.99:0.01".parse()?;
//! assert_eq!(g.len(), 100);
//! assert_eq!(g.values()[7], 7.0 * 0.01); // as NumPy's arange(0, 1, 0.01)
//! assert!("0.5:0.1:0.01".parse::<Grid>().is_err());
//! # Ok::<(), confseg::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, LevelsError, Result};
use crate::quantile::{Alpha, Delta, Side, Thresholds};

pub(crate) mod bounds;
pub(crate) mod select;

/// The per-image loss risk control bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Risk {
    /// The missed share of the object by the outer set, `|Y \ O| / |Y|`
    /// (0 for an empty object). Nondecreasing in the threshold, so the
    /// monotone methods apply: conformal risk control and RCPS.
    #[default]
    Recall,
    /// The false share of the inner set, `|I \ Y| / |I|` (for an empty
    /// inner set see [`Search`]). Not monotone in the threshold: only
    /// Learn-then-Test applies.
    Precision,
}

impl Risk {
    /// Both risks.
    pub const ALL: [Risk; 2] = [Risk::Recall, Risk::Precision];

    /// `"recall"` or `"precision"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Risk::Recall => "recall",
            Risk::Precision => "precision",
        }
    }

    /// The set the risk is about: the outer set for recall, the inner set
    /// for precision (the other side is trivial: no inner set, or an outer
    /// set that is the whole image).
    #[must_use]
    pub fn side(self) -> Side {
        match self {
            Risk::Recall => Side::Outer,
            Risk::Precision => Side::Inner,
        }
    }

    /// The bounds that apply to this risk: the RCPS bounds for the
    /// monotone recall risk, Hoeffding–Bentkus p-values (Learn-then-Test)
    /// for precision.
    #[must_use]
    pub fn bounds(self) -> &'static [Bound] {
        match self {
            Risk::Recall => &[Bound::Hoeffding, Bound::Bernstein, Bound::Wsr],
            Risk::Precision => &[Bound::HoeffdingBentkus],
        }
    }

    /// The bound used when `delta` is given without one: WSR for recall
    /// (as MAPIE), Hoeffding–Bentkus for precision.
    #[must_use]
    pub fn default_bound(self) -> Bound {
        self.bounds()[self.bounds().len() - 1]
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Risk {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        Risk::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| Error::UnknownName {
            what: "risk",
            name: s.to_owned(),
            known: "recall, precision",
        })
    }
}

/// How the mean loss of the calibration images is turned into a statement
/// that holds with probability `1 - delta` (Bates et al. 2021, RCPS;
/// Angelopoulos et al. 2021, Learn-then-Test). Formulas in METHOD.md §4.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Bound {
    /// Hoeffding's upper bound `R + sqrt(ln(1/delta) / (2n))` (RCPS).
    Hoeffding,
    /// The empirical Bernstein bound (Maurer and Pontil)
    /// `R + sigma sqrt(2 ln(2/delta) / n) + 7 ln(2/delta) / (3(n - 1))` (RCPS).
    Bernstein,
    /// The Waudby-Smith–Ramdas betting bound (RCPS).
    Wsr,
    /// Hoeffding–Bentkus p-values, a test per threshold (Learn-then-Test).
    HoeffdingBentkus,
}

impl Bound {
    /// Every bound.
    pub const ALL: [Bound; 4] = [Bound::Hoeffding, Bound::Bernstein, Bound::Wsr, Bound::HoeffdingBentkus];

    /// `"hoeffding"`, `"bernstein"`, `"wsr"` or `"hoeffding-bentkus"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Bound::Hoeffding => "hoeffding",
            Bound::Bernstein => "bernstein",
            Bound::Wsr => "wsr",
            Bound::HoeffdingBentkus => "hoeffding-bentkus",
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bound {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        Bound::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| Error::UnknownName {
            what: "bound",
            name: s.to_owned(),
            known: "hoeffding, bernstein, wsr, hoeffding-bentkus",
        })
    }
}

/// A fixed grid of thresholds `START:STOP:STEP` (both ends included), with
/// the values NumPy's `arange(START, STOP + STEP/2, STEP)` computes:
/// `START`, `START + STEP`, then `START + i * d` with
/// `d = (START + STEP) - START`. `0:0.99:0.01` is MAPIE's default
/// `np.arange(0, 1, 0.01)`.
///
/// At most [`Grid::MAX_LEN`] values; `START <= STOP`, `STEP > 0`, all finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    start: f64,
    stop: f64,
    step: f64,
    len: usize,
}

impl Grid {
    /// The largest number of grid values.
    pub const MAX_LEN: usize = 100_000;

    /// A validated grid.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (named `"grid"`) for non-finite values,
    /// `START > STOP`, `STEP <= 0` or more than [`Grid::MAX_LEN`] values.
    pub fn new(start: f64, stop: f64, step: f64) -> Result<Self> {
        let bad = |reason: String| Error::InvalidParameter {
            name: "grid",
            value: format!("{start}:{stop}:{step}"),
            reason,
        };
        if !(start.is_finite() && stop.is_finite() && step.is_finite()) {
            return Err(bad("START, STOP and STEP must be finite numbers".into()));
        }
        if !(step > 0.0 && start <= stop) {
            return Err(bad("needs START <= STOP and STEP > 0".into()));
        }
        // (the same tolerance as the validation grid of levels)
        let steps = ((stop - start) / step + 1e-9).floor();
        // (a NaN count fails too)
        if steps.partial_cmp(&(Self::MAX_LEN as f64)) != Some(std::cmp::Ordering::Less) {
            return Err(bad(format!("{} values; at most {}", steps + 1.0, Self::MAX_LEN)));
        }
        Ok(Grid { start, stop, step, len: steps as usize + 1 })
    }

    /// Number of values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a grid holds at least its start.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `(START, STOP, STEP)` as given.
    #[must_use]
    pub fn bounds(&self) -> (f64, f64, f64) {
        (self.start, self.stop, self.step)
    }

    /// The values, ascending (as NumPy's `arange` fills them).
    #[must_use]
    pub fn values(&self) -> Vec<f64> {
        let d = (self.start + self.step) - self.start;
        (0..self.len)
            .map(|i| match i {
                0 => self.start,
                1 => self.start + self.step,
                _ => self.start + i as f64 * d,
            })
            .collect()
    }

    /// Whether every value lies in `[0, 1]` (where a grid can double as
    /// the candidate risk levels of MAPIE's WSR bound).
    fn in_unit_interval(&self) -> bool {
        let v = self.values();
        v.first().is_some_and(|&x| x >= 0.0) && v.last().is_some_and(|&x| x <= 1.0)
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.stop, self.step)
    }
}

impl FromStr for Grid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let num = |x: &str| {
            x.trim().parse::<f64>().map_err(|_| Error::InvalidParameter {
                name: "grid",
                value: s.to_owned(),
                reason: format!("{x:?} is not a number; expected START:STOP:STEP such as 0:0.99:0.01"),
            })
        };
        match s.split(':').collect::<Vec<_>>()[..] {
            [a, b, c] => Grid::new(num(a)?, num(b)?, num(c)?),
            _ => Err(Error::InvalidParameter {
                name: "grid",
                value: s.to_owned(),
                reason: "expected START:STOP:STEP such as 0:0.99:0.01".into(),
            }),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Grid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Grid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the threshold is searched.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Search {
    /// Over every distinct score of the calibration images: the threshold
    /// the method certifies, exactly. Recall: the largest `t` with every
    /// outer set `{f_O >= t'}`, `t' <= t`, certified (the smallest outer
    /// set). Precision: the smallest `l` with every inner set
    /// `{f_I > l'}`, `l' >= l`, certified (fixed-sequence testing from the
    /// empty inner set down; an empty inner set has loss 0).
    #[default]
    Exact,
    /// Over a fixed grid `l_1 < ... < l_m`, with sets `{f > l}` for both
    /// risks, choosing as MAPIE 1.6's `SemanticSegmentationController`
    /// does (METHOD.md §4.5): recall, the largest `l_k` with `l_1..l_k`
    /// all certified; precision, Learn-then-Test with Holm's procedure over
    /// the grid and the smallest certified `l`, where an empty inner set
    /// counts as loss 1 when the image has an object (MAPIE's convention).
    Grid(Grid),
}

impl fmt::Display for Search {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Search::Exact => f.write_str("exact"),
            Search::Grid(g) => write!(f, "grid {g}"),
        }
    }
}

/// Validated risk control (METHOD.md §4.3, §4.5): a bound `alpha` on the
/// expected loss of a new image, for the [`Risk`] (the missed share of the
/// object by the outer set, or the false share of the inner set), in
/// expectation (conformal risk control) or with probability `1 - delta`
/// over the calibration set (a [`Bound`]), the threshold searched exactly
/// or on a [`Grid`] ([`Search`]).
///
/// ```
/// use confseg::risk::RiskControl;
/// use confseg::Alpha;
/// let r = RiskControl::new(Alpha::new(0.1)?);
/// assert_eq!(r.min_calibration_size(), 9); // alpha >= 1 / (n + 1)
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskControl {
    pub(crate) alpha: Alpha,
    pub(crate) risk: Risk,
    /// `None`: in expectation (conformal risk control).
    pub(crate) confidence: Option<(Delta, Bound)>,
    pub(crate) search: Search,
}

impl RiskControl {
    /// Conformal risk control of the missed fraction at level `alpha`:
    /// `E[|Y \ O| / |Y|] <= alpha`, threshold searched exactly.
    #[must_use]
    pub fn new(alpha: Alpha) -> Self {
        RiskControl { alpha, risk: Risk::Recall, confidence: None, search: Search::Exact }
    }

    /// The bound on the expected loss.
    #[must_use]
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }
}

impl fmt::Display for RiskControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f)
    }
}

impl RiskControl {
    /// High-probability risk control of `risk` at level `alpha`: with
    /// probability at least `1 - delta` over the calibration set,
    /// `E[loss | calibration set] <= alpha`, from `bound` (RCPS for
    /// recall, Learn-then-Test with [`Bound::HoeffdingBentkus`] for
    /// precision). The search is exact ([`RiskControl::with_search`]).
    ///
    /// ```
    /// use confseg::risk::RiskControl;
    /// use confseg::quantile::Delta;
    /// use confseg::risk::{Bound, Risk};
    /// use confseg::Alpha;
    /// let r = RiskControl::with_confidence(Risk::Recall, Alpha::new(0.1)?, Delta::new(0.1)?, Bound::Wsr)?;
    /// assert_eq!(r.delta().map(|d| d.get()), Some(0.1));
    /// // precision is not monotone: RCPS bounds do not apply
    /// let e = RiskControl::with_confidence(Risk::Precision, Alpha::new(0.1)?, Delta::new(0.1)?, Bound::Wsr);
    /// assert!(e.unwrap_err().to_string().contains("hoeffding-bentkus"));
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`LevelsError::BoundForRisk`] for a bound that does not apply to
    /// the risk.
    pub fn with_confidence(risk: Risk, alpha: Alpha, delta: Delta, bound: Bound) -> Result<Self> {
        if !risk.bounds().contains(&bound) {
            return Err(LevelsError::BoundForRisk {
                bound: bound.name(),
                risk: risk.name(),
                allowed: match risk {
                    Risk::Recall => "hoeffding, bernstein or wsr (RCPS)",
                    Risk::Precision => "hoeffding-bentkus (Learn-then-Test)",
                },
            }
            .into());
        }
        Ok(RiskControl { alpha, risk, confidence: Some((delta, bound)), search: Search::Exact })
    }

    /// Learn-then-Test control of the precision risk with Hoeffding–Bentkus
    /// p-values: with probability at least `1 - delta`, the expected false
    /// share of the inner set is at most `alpha`.
    #[must_use]
    pub fn precision(alpha: Alpha, delta: Delta) -> Self {
        RiskControl {
            alpha,
            risk: Risk::Precision,
            confidence: Some((delta, Bound::HoeffdingBentkus)),
            search: Search::Exact,
        }
    }

    /// The same control with the threshold searched by `search`.
    ///
    /// # Errors
    /// [`LevelsError::WsrGrid`] for the WSR bound on a grid outside
    /// `[0, 1]` (MAPIE's WSR takes its candidate risk levels from the grid).
    pub fn with_search(mut self, search: Search) -> Result<Self> {
        if let (Search::Grid(g), Some((_, Bound::Wsr))) = (search, self.confidence) {
            if !g.in_unit_interval() {
                return Err(LevelsError::WsrGrid.into());
            }
        }
        self.search = search;
        Ok(self)
    }

    /// The request of a shell, validated: mode risk-control at `alpha`
    /// with the given `delta`, risk (default recall), bound (default
    /// [`Risk::default_bound`] when `delta` is given) and grid.
    pub(crate) fn request(
        alpha: Alpha,
        delta: Option<f64>,
        risk: Option<Risk>,
        bound: Option<Bound>,
        grid: Option<Grid>,
    ) -> Result<Self> {
        let risk = risk.unwrap_or_default();
        let control = match (delta, bound) {
            (None, Some(b)) => return Err(LevelsError::BoundNeedsDelta { bound: b.name() }.into()),
            (None, None) if risk == Risk::Precision => return Err(LevelsError::PrecisionNeedsDelta.into()),
            (None, None) => RiskControl::new(alpha),
            (Some(d), b) => {
                Self::with_confidence(risk, alpha, Delta::new(d)?, b.unwrap_or_else(|| risk.default_bound()))?
            }
        };
        control.with_search(grid.map_or(Search::Exact, Search::Grid))
    }

    /// The loss bounded.
    #[must_use]
    pub fn risk(&self) -> Risk {
        self.risk
    }

    /// The confidence level: `delta` of a high-probability guarantee,
    /// `None` for conformal risk control (in expectation).
    #[must_use]
    pub fn delta(&self) -> Option<Delta> {
        self.confidence.map(|(d, _)| d)
    }

    /// The bound of a high-probability guarantee.
    #[must_use]
    pub fn bound(&self) -> Option<Bound> {
        self.confidence.map(|(_, b)| b)
    }

    /// Where the threshold is searched.
    #[must_use]
    pub fn search(&self) -> Search {
        self.search
    }

    /// The confidence the guarantee holds with, `1 - delta`; for MAPIE's
    /// WSR statistic on a grid (the product of the running maxima of two
    /// halves, METHOD.md §4.5) `1 - delta (1 + ln(1/delta))`, which is
    /// what Ville's inequality gives for it.
    #[must_use]
    pub fn confidence(&self) -> Option<f64> {
        let (d, b) = self.confidence?;
        let d = d.get();
        Some(match (b, self.search) {
            (Bound::Wsr, Search::Grid(_)) => (1.0 - d * (1.0 + (1.0 / d).ln())).max(0.0),
            _ => 1.0 - d,
        })
    }

    /// The method's name: conformal risk control, RCPS with its bound, or
    /// Learn-then-Test.
    #[must_use]
    pub fn method(&self) -> String {
        match (self.confidence, self.search) {
            (None, _) => "conformal risk control".into(),
            (Some((_, Bound::HoeffdingBentkus)), Search::Exact) => {
                "Learn-then-Test, Hoeffding-Bentkus p-values, fixed sequence".into()
            }
            (Some((_, Bound::HoeffdingBentkus)), Search::Grid(_)) => {
                "Learn-then-Test, Hoeffding-Bentkus p-values, Holm".into()
            }
            (Some((_, b)), _) => format!("RCPS, {b} bound"),
        }
    }

    /// The set the thresholds give, in words (`O = {f_O >= 0.41}`,
    /// `O = {f_O > 0.35}`, `I = {f_I > 0.7}`).
    #[must_use]
    pub fn set_rule(&self, thresholds: &Thresholds) -> String {
        match self.risk {
            Risk::Precision => format!("I = {{f_I > {}}}", number(thresholds.inner.value())),
            Risk::Recall => {
                let t = -thresholds.outer.value();
                match self.search {
                    // {f_O >= next_up(l)} = {f_O > l}
                    Search::Grid(_) if t.is_finite() => format!("O = {{f_O > {}}}", number(t.next_down())),
                    _ => format!("O = {{f_O >= {}}}", number(t)),
                }
            }
        }
    }

    /// The smallest number of calibration images for which risk control
    /// can certify an informative threshold: a calibration set whose
    /// losses are all 0 then certifies one (for conformal risk control,
    /// `alpha >= 1/(n+1)`).
    #[must_use]
    pub fn min_calibration_size(&self) -> usize {
        select::min_calibration_size(self)
    }

    /// The levels in words (`mode` line of summaries).
    pub(crate) fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.confidence.is_none() && self.search == Search::Exact && self.risk == Risk::Recall {
            return write!(
                f,
                "risk control (expected missed fraction of the object <= {}; outer set only)",
                self.alpha
            );
        }
        let what = match self.risk {
            Risk::Recall => "expected missed fraction of the object",
            Risk::Precision => "expected false share of the inner set",
        };
        write!(f, "risk control ({what} <= {}", self.alpha)?;
        if let Some(c) = self.confidence() {
            write!(f, " with probability {} over the calibration set", level(c))?;
        }
        write!(f, "; {}; {} search", self.method(), self.search)?;
        match self.risk {
            Risk::Recall => f.write_str("; outer set only)"),
            Risk::Precision => f.write_str("; inner set only)"),
        }
    }

    /// What is promised (the `Display` of the guarantee), in symbols or,
    /// with `{:#}`, in words.
    pub(crate) fn promise(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = f.alternate();
        let (i, y, o) = if words { ("inner", "truth", "outer") } else { ("I", "Y", "O") };
        let (loss, what, empty) = match (self.risk, self.search) {
            (Risk::Recall, _) => (
                format!("|{y} \\ {o}| / |{y}|"),
                "expected missed fraction of the object",
                "0 for an empty object",
            ),
            (Risk::Precision, Search::Exact) => (
                format!("|{i} \\ {y}| / |{i}|"),
                "expected false share of the inner set",
                "0 for an empty inner set",
            ),
            (Risk::Precision, Search::Grid(_)) => (
                format!("|{i} \\ {y}| / |{i}|"),
                "expected false share of the inner set",
                "an empty inner set counting 1 when the image has an object, as MAPIE",
            ),
        };
        let rest = match (self.risk, self.search) {
            (Risk::Recall, _) => "no inner set, and no promise that the whole object is covered",
            (Risk::Precision, Search::Exact) => {
                "the outer set is the whole image, and no promise that the inner set is inside the object"
            }
            (Risk::Precision, Search::Grid(_)) => {
                "the outer set is the whole image, and no promise that the inner set is inside the object; \
                 if no grid value is certified the inner set is empty, which this does not cover"
            }
        };
        match self.confidence() {
            None => write!(f, "risk control: E[{loss}] <= {} ({what}, {empty}; {rest})", self.alpha),
            Some(c) => write!(
                f,
                "risk control: E[{loss} | calibration set] <= {} with probability >= {} over the calibration set \
                 ({what}, {empty}; {}; {rest})",
                self.alpha,
                level(c),
                self.method()
            ),
        }
    }
}

/// A threshold as files write it (`inf`, `-inf`, the number).
fn number(x: f64) -> String {
    if x.is_infinite() {
        (if x > 0.0 { "inf" } else { "-inf" }).to_owned()
    } else {
        format!("{x}")
    }
}

/// A confidence level: as given when it has few digits (`0.9`), else
/// rounded to 6 decimals.
fn level(x: f64) -> String {
    let short = format!("{x}");
    if short.len() <= 8 {
        return short;
    }
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Risk>();
        check::<Bound>();
        check::<Grid>();
        check::<Search>();
        check::<RiskControl>();
        check::<crate::calibrate::RiskCalibration>();
    }

    #[test]
    fn names_round_trip() {
        for r in Risk::ALL {
            assert_eq!(r.to_string().parse::<Risk>().unwrap(), r);
        }
        for b in Bound::ALL {
            assert_eq!(b.to_string().parse::<Bound>().unwrap(), b);
        }
        let e = "bentkus".parse::<Bound>().unwrap_err().to_string();
        assert!(e.contains("hoeffding-bentkus"), "{e}");
        let g: Grid = " 0.05:0.95:0.05".parse().unwrap();
        assert_eq!(g.to_string().parse::<Grid>().unwrap(), g);
        assert_eq!(g.len(), 19);
    }

    #[test]
    fn grids_are_numpy_aranges() {
        // np.arange(0, 1, 0.01)[[1, 3, 7, 29, 57, 99]]: i * 0.01 in floating point
        let v = "0:0.99:0.01".parse::<Grid>().unwrap().values();
        assert_eq!(v.len(), 100);
        for i in [1usize, 3, 7, 29, 57, 99] {
            assert_eq!(v[i], i as f64 * 0.01, "{i}");
        }
        assert_eq!(v[29], 0.29); // 29 * 0.01 = 0.29 exactly in f64
                                 // np.arange(0.1, 0.35, 0.05).tolist() (NumPy 2.4)
        let v = "0.1:0.3:0.05".parse::<Grid>().unwrap().values();
        assert_eq!(
            v,
            vec![0.1, 0.15000000000000002, 0.20000000000000004, 0.25000000000000006, 0.30000000000000004]
        );
        for bad in ["0:1", "1:0:0.1", "0:1:0", "0:1:-0.1", "0:inf:0.1", "a:1:0.1", "0:1:1e-7"] {
            assert!(bad.parse::<Grid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_refuse_what_does_not_fit() {
        let a = Alpha::new(0.1).unwrap();
        let msg = |r: Result<RiskControl>| r.unwrap_err().to_string();
        assert!(msg(RiskControl::request(a, None, Some(Risk::Precision), None, None)).contains("delta"));
        assert!(msg(RiskControl::request(a, None, None, Some(Bound::Wsr), None)).contains("delta"));
        assert!(msg(RiskControl::request(a, Some(0.1), None, Some(Bound::HoeffdingBentkus), None))
            .contains("recall"));
        let logits: Grid = "-5:5:0.5".parse().unwrap();
        assert!(msg(RiskControl::request(a, Some(0.1), None, None, Some(logits))).contains("[0, 1]"));
        assert!(RiskControl::request(a, Some(0.1), None, Some(Bound::Hoeffding), Some(logits)).is_ok());
        let r = RiskControl::request(a, Some(0.1), Some(Risk::Precision), None, None).unwrap();
        assert_eq!(r.bound(), Some(Bound::HoeffdingBentkus));
        assert_eq!(RiskControl::request(a, Some(0.1), None, None, None).unwrap().bound(), Some(Bound::Wsr));
        assert_eq!(RiskControl::request(a, None, None, None, None).unwrap(), RiskControl::new(a));
    }
}
