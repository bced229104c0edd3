//! The split-conformal quantile (METHOD.md §3) and the types around it.
//!
//! For calibration statistics `z_1..z_n` and a level `alpha` in (0, 1),
//!
//! ```text
//! k = ceil((1 - alpha) * (n + 1))
//! lambda(alpha) = the k-th smallest z   if k <= n
//!               = +inf                  if k > n  (too few images)
//! ```
//!
//! No interpolation: an interpolated percentile is not finite-sample valid.
//! If `z_{n+1}` is exchangeable with `z_1..z_n`, then
//! `P(z_{n+1} <= lambda) >= 1 - alpha`, and, when the `z` are almost surely
//! distinct, `P(z_{n+1} <= lambda) <= 1 - alpha + 1/(n+1)`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A validated miscoverage level: a number strictly between 0 and 1.
///
/// ```
/// use confseg::Alpha;
/// assert!(Alpha::new(0.1).is_ok());
/// assert!(Alpha::new(1.0).is_err());
/// assert!(Alpha::new(f64::NAN).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "f64", into = "f64"))]
pub struct Alpha(f64);

impl Alpha {
    /// Validate a level.
    ///
    /// # Errors
    /// [`Error::InvalidAlpha`] unless `0 < alpha < 1`.
    pub fn new(alpha: f64) -> Result<Self> {
        Self::named("alpha", alpha)
    }

    /// Validate a level, naming it in the error (`"alpha_inner"`, ...).
    ///
    /// # Errors
    /// [`Error::InvalidAlpha`] unless `0 < value < 1`.
    pub fn named(name: &'static str, value: f64) -> Result<Self> {
        if value > 0.0 && value < 1.0 {
            Ok(Alpha(value))
        } else {
            Err(Error::InvalidAlpha { name, value })
        }
    }

    /// The level as a number in (0, 1).
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }

    /// The rank `k = ceil((1 - alpha)(n + 1))` of the conformal quantile among
    /// `n` statistics (may exceed `n`).
    ///
    /// `alpha * (n + 1)` is rounded to the nearest integer when it is within
    /// floating-point error of one (relative 1e-12), so that e.g.
    /// `alpha = 0.1, n = 9` gives `k = 9` exactly as the decimal arithmetic says.
    #[must_use]
    pub fn rank(self, n: usize) -> usize {
        let m = n as f64 + 1.0;
        let x = self.0 * m;
        let r = x.round();
        // Relative tolerance: far above the rounding error of one product,
        // far below the distance to an integer of any level a user types.
        let floor = if (x - r).abs() <= 1e-12 * x.max(1.0) { r } else { x.floor() };
        // ceil((1 - a) m) = m - floor(a m) for integer m; floor(a m) <= n since a < 1.
        (n - (floor as usize).min(n)).saturating_add(1)
    }

    /// The smallest number of calibration images for which the threshold is
    /// finite: `ceil(1/alpha) - 1`.
    ///
    /// ```
    /// use confseg::Alpha;
    /// assert_eq!(Alpha::new(0.1)?.min_calibration_size(), 9);
    /// assert_eq!(Alpha::new(0.05)?.min_calibration_size(), 19);
    /// assert_eq!(Alpha::new(0.3)?.min_calibration_size(), 3);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn min_calibration_size(self) -> usize {
        // Start from the closed form and correct for rounding so that the
        // answer is consistent with `rank` by construction.
        let closed = (1.0 / self.0).ceil() - 1.0;
        if closed >= 2f64.powi(52) {
            // Beyond exact integer arithmetic in f64 (alpha < 2^-52): the
            // closed form is as good as it gets (saturating at usize::MAX).
            return closed as usize;
        }
        let mut n = closed as usize;
        while n > 0 && self.rank(n - 1) < n {
            n -= 1;
        }
        while self.rank(n) > n {
            n += 1;
        }
        n
    }
}

impl TryFrom<f64> for Alpha {
    type Error = Error;
    fn try_from(value: f64) -> Result<Self> {
        Alpha::new(value)
    }
}

impl From<Alpha> for f64 {
    fn from(a: Alpha) -> f64 {
        a.0
    }
}

impl std::fmt::Display for Alpha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// A validated confidence level `delta` in (0, 1) of a training-conditional
/// guarantee: with probability at least `1 - delta` over the calibration
/// set, the coverage of future images is at least `1 - alpha`.
///
/// ```
/// use confseg::quantile::Delta;
/// assert!(Delta::new(0.05).is_ok());
/// assert!(Delta::new(0.0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "f64", into = "f64"))]
pub struct Delta(f64);

impl Delta {
    /// Validate a level.
    ///
    /// # Errors
    /// [`Error::InvalidAlpha`] (named `"delta"`) unless `0 < delta < 1`.
    pub fn new(delta: f64) -> Result<Self> {
        if delta > 0.0 && delta < 1.0 {
            Ok(Delta(delta))
        } else {
            Err(Error::InvalidAlpha { name: "delta", value: delta })
        }
    }

    /// The level as a number in (0, 1).
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Delta {
    type Error = Error;
    fn try_from(value: f64) -> Result<Self> {
        Delta::new(value)
    }
}

impl From<Delta> for f64 {
    fn from(d: Delta) -> f64 {
        d.0
    }
}

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// `ln(e^a + e^b)` without overflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

impl Alpha {
    /// The rank of a training-conditional (`alpha`, `delta`) threshold
    /// among `n` statistics: the smallest `k` with
    /// `P(Binomial(n, 1 - alpha) <= k - 1) >= 1 - delta` (exact binomial
    /// tail, summed in log space from the top), `n + 1` if no `k <= n` works.
    /// Then, for exchangeable continuous statistics, with probability at
    /// least `1 - delta` over the calibration set the `k`-th smallest
    /// statistic is at least the `(1 - alpha)` quantile of their
    /// distribution (Vovk 2012).
    ///
    /// ```
    /// use confseg::quantile::{Alpha, Delta};
    /// let a = Alpha::new(0.1)?;
    /// // n = 100: the marginal rank is 91; with delta = 0.1 it is 95
    /// assert_eq!(a.rank(100), 91);
    /// assert_eq!(a.rank_conditional(100, Delta::new(0.1)?), 95);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn rank_conditional(self, n: usize, delta: Delta) -> usize {
        let (p, q) = (1.0 - self.0, self.0);
        let ln_delta = delta.0.ln();
        // log P(X = n) and the upper tail T(k) = P(X >= k), from k = n down
        let mut lp = n as f64 * p.ln();
        let mut tail = lp;
        if tail > ln_delta {
            return n.saturating_add(1);
        }
        let step = q.ln() - p.ln();
        for j in (1..=n).rev() {
            // P(X = j - 1) = P(X = j) * j / (n - j + 1) * q / p
            lp += (j as f64).ln() - ((n - j + 1) as f64).ln() + step;
            let t = log_add_exp(tail, lp);
            if t > ln_delta {
                return j;
            }
            tail = t;
        }
        1
    }
}

/// How the rank of the conformal quantile is chosen (METHOD.md §3, §3.1):
/// the strategy passed to the one function that turns statistics into a
/// threshold ([`conformal_quantile`]), so that no path can forget `delta`.
///
/// * [`Rank::Marginal`]: `k = ceil((1 - alpha)(n + 1))`; the coverage of a
///   new image is at least `1 - alpha` on average over calibration sets.
/// * [`Rank::Conditional`]: the smallest `k` with
///   `P(Binomial(n, 1 - alpha) <= k - 1) >= 1 - delta`; with probability at
///   least `1 - delta` over the calibration set, the coverage of future
///   images is at least `1 - alpha`.
///
/// ```
/// use confseg::quantile::{Alpha, Delta, Rank};
/// let a = Alpha::new(0.1)?;
/// assert_eq!(Rank::Marginal.of(a, 100), 91);
/// assert_eq!(Rank::Conditional(Delta::new(0.1)?).of(a, 100), 95);
/// assert_eq!(Rank::Conditional(Delta::new(0.05)?).min_calibration_size(a), 29);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Rank {
    /// `k = ceil((1 - alpha)(n + 1))` ([`Alpha::rank`]).
    #[default]
    Marginal,
    /// The training-conditional rank at confidence `1 - delta`
    /// ([`Alpha::rank_conditional`]).
    Conditional(Delta),
}

impl Rank {
    /// The rank `k` among `n` statistics at level `alpha` (`n + 1` or more
    /// when no order statistic qualifies).
    #[must_use]
    pub fn of(self, alpha: Alpha, n: usize) -> usize {
        match self {
            Rank::Marginal => alpha.rank(n),
            Rank::Conditional(d) => alpha.rank_conditional(n, d),
        }
    }

    /// The smallest number of calibration images for which the threshold
    /// is finite: [`Alpha::min_calibration_size`], or for the conditional
    /// rank `ceil(ln delta / ln(1 - alpha))` (the rank `n` needs
    /// `(1 - alpha)^n <= delta`).
    #[must_use]
    pub fn min_calibration_size(self, alpha: Alpha) -> usize {
        let Rank::Conditional(d) = self else { return alpha.min_calibration_size() };
        let lp = (1.0 - alpha.get()).ln();
        if lp == 0.0 {
            return usize::MAX;
        }
        let closed = (d.get().ln() / lp).ceil();
        // NaN or beyond exact integers in f64: as large as it gets
        if closed.is_nan() || closed >= 2f64.powi(52) {
            return usize::MAX;
        }
        let mut n = (closed as usize).max(1);
        while n > 1 && alpha.rank_conditional(n - 1, d) < n {
            n -= 1;
        }
        while alpha.rank_conditional(n, d) > n {
            n += 1;
        }
        n
    }

    /// The smallest level, rounded up to 4 significant digits, whose
    /// threshold among `n` statistics is finite (`1 / (n + 1)` for the
    /// marginal rank, `1 - delta^(1/n)` for the conditional one), or `None`
    /// if no level below 1 is (`n = 0`). What a user with `n` images can ask for.
    ///
    /// ```
    /// use confseg::quantile::Rank;
    /// assert_eq!(Rank::Marginal.smallest_alpha(39), Some(0.025));
    /// assert_eq!(Rank::Marginal.smallest_alpha(0), None);
    /// ```
    #[must_use]
    pub fn smallest_alpha(self, n: usize) -> Option<f64> {
        if n == 0 {
            return None;
        }
        let closed = match self {
            Rank::Marginal => 1.0 / (n as f64 + 1.0),
            Rank::Conditional(d) => 1.0 - d.get().powf(1.0 / n as f64),
        };
        if !(closed > 0.0 && closed < 1.0) {
            return None;
        }
        // 4 significant digits, rounded up, then checked against the rank itself
        let unit = 10f64.powi(closed.log10().floor() as i32 - 3);
        let mut a = (closed / unit - 1e-9).ceil() * unit;
        for _ in 0..10 {
            let alpha = Alpha::new(a).ok()?;
            if self.of(alpha, n) <= n {
                return Some((a / unit).round() * unit);
            }
            a += unit;
        }
        None
    }

    /// The confidence level `delta` of the conditional rank.
    #[must_use]
    pub fn delta(self) -> Option<Delta> {
        match self {
            Rank::Marginal => None,
            Rank::Conditional(d) => Some(d),
        }
    }

    /// The threshold among `n` statistics: the `k`-th smallest, read by
    /// `kth(k)`, or [`Threshold::TooFewImages`] when `k > n`. Every
    /// conformal threshold of the crate is made here.
    fn threshold(self, alpha: Alpha, n: usize, kth: impl FnOnce(usize) -> f64) -> Threshold {
        let k = self.of(alpha, n);
        if k > n || k == 0 {
            Threshold::TooFewImages { n, needed: self.min_calibration_size(alpha) }
        } else {
            Threshold::OrderStatistic { k, value: kth(k) }
        }
    }
}

/// A calibrated threshold: either an order statistic of the calibration
/// statistics, or `+inf` on purpose because there were too few images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// The `k`-th smallest of the `n` statistics. `value` may itself be
    /// `-inf` (e.g. every calibration image had an empty region) or `+inf`
    /// (infinite scores).
    OrderStatistic {
        /// The 1-based rank `k`.
        k: usize,
        /// The statistic at that rank.
        value: f64,
    },
    /// `k > n`: the threshold is `+inf`, the inner set empty and the outer
    /// set everything. Valid, but uninformative.
    TooFewImages {
        /// Number of calibration images available.
        n: usize,
        /// Number needed for a finite threshold at this level.
        needed: usize,
    },
    /// A threshold fitted by conformal risk control (not an order
    /// statistic; see [`RiskCalibration`](crate::calibrate::RiskCalibration)); `+inf`
    /// for the absent inner set.
    RiskControl {
        /// The threshold.
        value: f64,
    },
}

impl Threshold {
    /// The threshold as a number (`+inf` for [`Threshold::TooFewImages`]).
    #[must_use]
    pub fn value(&self) -> f64 {
        match *self {
            Threshold::OrderStatistic { value, .. } | Threshold::RiskControl { value } => value,
            Threshold::TooFewImages { .. } => f64::INFINITY,
        }
    }

    /// The rank `k`, if the threshold is an order statistic.
    #[must_use]
    pub fn rank(&self) -> Option<usize> {
        match *self {
            Threshold::OrderStatistic { k, .. } => Some(k),
            Threshold::TooFewImages { .. } | Threshold::RiskControl { .. } => None,
        }
    }

    /// Whether the threshold is a finite number.
    #[must_use]
    pub fn is_finite(&self) -> bool {
        self.value().is_finite()
    }
}

/// The conformal quantile of `values` at level `alpha` with the rank
/// strategy `rank` (METHOD.md §3, §3.1): the `k`-th smallest value, `k`
/// from [`Rank::of`], or `+inf` ([`Threshold::TooFewImages`]) when `k > n`.
///
/// Runs in expected O(n) time (selection, not sorting).
///
/// ```
/// use confseg::quantile::{conformal_quantile, Alpha, Delta, Rank, Threshold};
/// let z = [0.3, -1.0, 2.5, 0.7];
/// // n = 4, alpha = 0.2: k = ceil(0.8 * 5) = 4, the largest value.
/// let t = conformal_quantile(&z, Alpha::new(0.2)?, Rank::Marginal)?;
/// assert_eq!(t, Threshold::OrderStatistic { k: 4, value: 2.5 });
/// // alpha = 0.1 needs n >= 9.
/// let t = conformal_quantile(&z, Alpha::new(0.1)?, Rank::Marginal)?;
/// assert_eq!(t, Threshold::TooFewImages { n: 4, needed: 9 });
/// // the training-conditional rank at delta = 0.1 among 100 values is 95
/// let z: Vec<f64> = (1..=100).map(f64::from).collect();
/// let t = conformal_quantile(&z, Alpha::new(0.1)?, Rank::Conditional(Delta::new(0.1)?))?;
/// assert_eq!(t, Threshold::OrderStatistic { k: 95, value: 95.0 });
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if a value is NaN.
pub fn conformal_quantile(values: &[f64], alpha: Alpha, rank: Rank) -> Result<Threshold> {
    if let Some(i) = values.iter().position(|v| v.is_nan()) {
        return Err(Error::InvalidParameter {
            name: "calibration statistic",
            value: format!("NaN at position {i}"),
            reason: "statistics must not be NaN".into(),
        });
    }
    Ok(rank.threshold(alpha, values.len(), |k| {
        let mut work = values.to_vec();
        *work.select_nth_unstable_by(k - 1, f64::total_cmp).1
    }))
}

/// [`conformal_quantile`] of values already sorted ascending (by
/// `f64::total_cmp`, no NaN): the `k`-th smallest is then read by index.
/// For repeated thresholds of one calibration set (validation splits).
#[must_use]
pub(crate) fn conformal_quantile_sorted(sorted: &[f64], alpha: Alpha, rank: Rank) -> Threshold {
    rank.threshold(alpha, sorted.len(), |k| sorted[k - 1])
}

/// A side of the sets: the inner set `I` (where the object surely is) or
/// the outer set `O` (outside which it surely is not).
///
/// ```
/// use confseg::Side;
/// assert_eq!("outer".parse::<Side>()?, Side::Outer);
/// assert_eq!(Side::Inner.to_string(), "inner");
/// assert_eq!(Side::Outer.letter(), 'O');
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The inner set `I = {f_I > lambda_I}`.
    Inner,
    /// The outer set `O = {-f_O <= lambda_O}`.
    Outer,
}

impl Side {
    /// Both sides, inner first.
    pub const BOTH: [Side; 2] = [Side::Inner, Side::Outer];

    /// `"inner"` or `"outer"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Side::Inner => "inner",
            Side::Outer => "outer",
        }
    }

    /// `'I'` or `'O'`, as in `lambda_I`, `lambda_O`.
    #[must_use]
    pub fn letter(self) -> char {
        match self {
            Side::Inner => 'I',
            Side::Outer => 'O',
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Side {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "inner" => Ok(Side::Inner),
            "outer" => Ok(Side::Outer),
            other => Err(Error::UnknownName { what: "side", name: other.to_owned(), known: "inner, outer" }),
        }
    }
}

/// The calibrated thresholds `lambda_I`, `lambda_O`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `lambda_I`: the inner set is `{v : f_I(v) > lambda_I}`.
    pub inner: Threshold,
    /// `lambda_O`: the outer set is `{v : -f_O(v) <= lambda_O}`.
    pub outer: Threshold,
}

impl Thresholds {
    /// The threshold of one side.
    #[must_use]
    pub fn side(&self, side: Side) -> Threshold {
        match side {
            Side::Inner => self.inner,
            Side::Outer => self.outer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(x: f64) -> Alpha {
        Alpha::new(x).unwrap()
    }

    #[test]
    fn rank_matches_exact_rational_arithmetic() {
        // Compare against integer arithmetic with alpha = p / 1000.
        for p in 1..1000u64 {
            let alpha = a(p as f64 / 1000.0);
            for n in 0..300u64 {
                // ceil((1000 - p)(n + 1) / 1000)
                let num = (1000 - p) * (n + 1);
                let k = num.div_ceil(1000);
                assert_eq!(alpha.rank(n as usize), k as usize, "p={p} n={n}");
            }
        }
    }

    #[test]
    fn min_size_is_the_first_finite_n() {
        for p in 1..1000 {
            let alpha = a(p as f64 / 1000.0);
            let m = alpha.min_calibration_size();
            assert!(alpha.rank(m) <= m);
            assert!(m == 0 || alpha.rank(m - 1) > m - 1);
            // closed form ceil(1/alpha) - 1, with 1/alpha = 1000/p exactly
            let closed = (1000usize).div_ceil(p) - 1;
            assert_eq!(m, closed, "p={p}");
        }
    }

    #[test]
    fn hand_computed_cases() {
        let z = [5.0, 1.0, 3.0, 2.0, 4.0, 9.0, 7.0, 8.0, 6.0];
        // n = 9, alpha = 0.1: k = ceil(0.9 * 10) = 9 -> 9.0
        assert_eq!(
            conformal_quantile(&z, a(0.1), Rank::Marginal).unwrap(),
            Threshold::OrderStatistic { k: 9, value: 9.0 }
        );
        // alpha = 0.25: k = ceil(0.75 * 10) = 8 -> 8.0
        assert_eq!(conformal_quantile(&z, a(0.25), Rank::Marginal).unwrap().value(), 8.0);
        // alpha = 0.5: k = 5 -> 5.0
        assert_eq!(conformal_quantile(&z, a(0.5), Rank::Marginal).unwrap().value(), 5.0);
        // alpha = 0.09: k = ceil(0.91 * 10) = 10 > 9 -> +inf
        let t = conformal_quantile(&z, a(0.09), Rank::Marginal).unwrap();
        assert_eq!(t, Threshold::TooFewImages { n: 9, needed: 11 });
        assert_eq!(t.value(), f64::INFINITY);
        assert!(!t.is_finite());
    }

    #[test]
    fn ties_and_infinities() {
        let z = [1.0, 1.0, 1.0, f64::NEG_INFINITY, f64::INFINITY];
        // n = 5, alpha = 0.5: k = 3 -> sorted [-inf, 1, 1, 1, inf] -> 1
        assert_eq!(conformal_quantile(&z, a(0.5), Rank::Marginal).unwrap().value(), 1.0);
        // alpha = 0.9: k = ceil(0.1 * 6) = 1 -> -inf (an order statistic, not "too few")
        let t = conformal_quantile(&z, a(0.9), Rank::Marginal).unwrap();
        assert_eq!(t, Threshold::OrderStatistic { k: 1, value: f64::NEG_INFINITY });
        // alpha = 1/6 + eps: k = 5 -> +inf from the data itself
        let t = conformal_quantile(&z, a(0.17), Rank::Marginal).unwrap();
        assert_eq!(t, Threshold::OrderStatistic { k: 5, value: f64::INFINITY });
    }

    #[test]
    fn extreme_levels_do_not_overflow() {
        for alpha in [f64::MIN_POSITIVE, 1e-300, 1e-17, 1e-15, 3.3e-13, 1e-9, 1.0 - 1e-16] {
            let a = a(alpha);
            let m = a.min_calibration_size();
            assert!(a.rank(usize::MAX) >= 1);
            assert!(a.rank(0) >= 1);
            if m < 1 << 40 {
                assert!(a.rank(m) <= m);
            }
        }
        assert_eq!(a(1e-300).min_calibration_size(), usize::MAX);
        assert_eq!(a(1.0 - 1e-16).min_calibration_size(), 1);
    }

    #[test]
    fn empty_and_nan() {
        assert_eq!(
            conformal_quantile(&[], a(0.5), Rank::Marginal).unwrap(),
            Threshold::TooFewImages { n: 0, needed: 1 }
        );
        assert!(matches!(
            conformal_quantile(&[1.0, f64::NAN], a(0.5), Rank::Marginal),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn smallest_alpha_is_the_boundary_of_a_finite_rank() {
        // rounded up to 4 significant digits: finite there, infinite one digit below
        for rank in [
            Rank::Marginal,
            Rank::Conditional(Delta::new(0.05).unwrap()),
            Rank::Conditional(Delta::new(0.2).unwrap()),
        ] {
            for n in 1..400 {
                let s = rank.smallest_alpha(n).unwrap();
                assert!(rank.of(a(s), n) <= n, "{rank:?} n={n} alpha={s}");
                let unit = 10f64.powi(s.log10().floor() as i32 - 3);
                if let Ok(below) = Alpha::new(s - unit) {
                    assert!(rank.of(below, n) > n, "{rank:?} n={n}: {} is finite too", s - unit);
                }
            }
        }
        assert_eq!(Rank::Marginal.smallest_alpha(49), Some(0.02));
        assert_eq!(Rank::Marginal.smallest_alpha(9), Some(0.1));
    }
}
