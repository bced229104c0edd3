//! What a guarantee asks for (METHOD.md §3–4.3): the vocabulary every
//! shell speaks.
//!
//! A caller describes the levels it wants in a [`Levels`] request — the
//! mode, `alpha`, Bonferroni weights or an explicit split, `delta` — built
//! from command-line flags, Python keywords or Rust code, unchecked. The
//! library validates it once, into
//!
//! * a [`Guarantee`] for one structure: conformal levels ([`Mode`]) or
//!   risk control ([`RiskControl`], in expectation or with `delta`);
//! * a [`JointMode`] for several structures;
//! * for validation over a grid of levels, a [`Guarantee`] at each `alpha`
//!   ([`Levels::at`]);
//!
//! and the [`Thresholds`](crate::quantile::Thresholds) calibration fits for them.
//!
//! Every name a user types (`"bonferroni"`, `"inner"`) parses with
//! [`FromStr`] and prints with [`Display`](fmt::Display) here, so no shell
//! decides anything by name.
//!
//! ```
//! use confseg::levels::{Guarantee, Levels, ModeKind};
//! let request = Levels::bonferroni(1.0, 4.0).with_alpha(0.1);
//! let Guarantee::Conformal(mode) = request.guarantee()? else { unreachable!() };
//! assert!((mode.outer_alpha().get() - 0.08).abs() < 1e-12);
//! assert_eq!(mode.guarantee().to_string(), "P(I ⊆ Y ⊆ O) >= 0.9");
//! // weights with another mode are refused, whatever shell asked
//! let bad = Levels { mode: "max".parse()?, weights: Some((1.0, 4.0)), ..Levels::new(ModeKind::Max).with_alpha(0.1) };
//! assert!(bad.guarantee().is_err());
//! # Ok::<(), confseg::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, LevelsError, Result};
use crate::quantile::{Alpha, Delta, Rank, Side};
use crate::risk::{Bound, Grid, Risk, RiskControl};
use crate::tolerance::Tolerances;

/// The kind of guarantee a user asks for, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ModeKind {
    /// Each set at its own level: `P(I ⊆ Y) >= 1 - alpha_I`, `P(Y ⊆ O) >= 1 - alpha_O`.
    #[default]
    Marginal,
    /// Both marginal thresholds with `alpha_I + alpha_O = alpha`:
    /// `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
    Bonferroni,
    /// One threshold from `max(tau, gamma)` at level `alpha`, used for both sets:
    /// `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
    Max,
    /// Risk control of a per-image loss (the missed fraction of the object
    /// by the outer set, or the false share of the inner set; one set only):
    /// `E[loss] <= alpha`, in expectation or with probability `1 - delta`
    /// over the calibration set ([`RiskControl`]); fitted from per-voxel
    /// scores ([`RiskCalibration`](crate::calibrate::RiskCalibration)).
    #[cfg_attr(feature = "serde", serde(rename = "risk-control"))]
    RiskControl,
}

impl ModeKind {
    /// Every kind, in the order of the docs.
    pub const ALL: [ModeKind; 4] =
        [ModeKind::Marginal, ModeKind::Bonferroni, ModeKind::Max, ModeKind::RiskControl];

    /// Lower-case name (`"marginal"`, `"bonferroni"`, `"max"`, `"risk-control"`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ModeKind::Marginal => "marginal",
            ModeKind::Bonferroni => "bonferroni",
            ModeKind::Max => "max",
            ModeKind::RiskControl => "risk-control",
        }
    }

    /// Whether the guarantee is on `I ⊆ Y ⊆ O` jointly (Bonferroni, max).
    #[must_use]
    pub fn is_joint(self) -> bool {
        matches!(self, ModeKind::Bonferroni | ModeKind::Max)
    }
}

impl fmt::Display for ModeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModeKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        ModeKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| Error::UnknownName {
            what: "mode",
            name: s.to_owned(),
            known: "marginal, bonferroni, max, risk-control",
        })
    }
}

/// Validated conformal levels for one structure (METHOD.md §4): which
/// levels, whether the guarantee is per set or joint, and the rank
/// strategy ([`Rank`]).
///
/// Built by [`Levels`] or by the constructors here, which validate: a
/// `Mode` always holds levels in (0, 1), a Bonferroni split never exceeds
/// its joint level, and it is never risk control (that is a
/// [`RiskControl`]).
///
/// ```
/// use confseg::{Alpha, Mode};
/// // The paper's 90% joint sets, split 1:4 between inner and outer.
/// let m = Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?;
/// assert!((m.inner_alpha().get() - 0.02).abs() < 1e-12);
/// assert!((m.outer_alpha().get() - 0.08).abs() < 1e-12);
/// assert_eq!(m.joint_alpha().map(|a| a.get()), Some(0.1));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mode {
    kind: ModeKind,
    inner: Alpha,
    outer: Alpha,
    joint: Option<Alpha>,
    rank: Rank,
    tolerances: Tolerances,
}

impl Mode {
    /// Marginal sets, each at `alpha`.
    #[must_use]
    pub fn marginal(alpha: Alpha) -> Self {
        Self::marginal_split(alpha, alpha)
    }

    /// Marginal sets at separate levels. Joint coverage is then at least
    /// `1 - alpha_inner - alpha_outer` by the union bound.
    #[must_use]
    pub fn marginal_split(inner: Alpha, outer: Alpha) -> Self {
        Mode {
            kind: ModeKind::Marginal,
            inner,
            outer,
            joint: None,
            rank: Rank::Marginal,
            tolerances: Tolerances::NONE,
        }
    }

    /// Joint coverage `1 - alpha` by a weighted Bonferroni split:
    /// `alpha_I = alpha * w_I / (w_I + w_O)`, `alpha_O = alpha * w_O / (w_I + w_O)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless both weights are positive and
    /// finite; [`Error::InvalidAlpha`] if a share underflows to 0.
    pub fn bonferroni(alpha: Alpha, inner_weight: f64, outer_weight: f64) -> Result<Self> {
        let shares = split(alpha, &[inner_weight, outer_weight])?;
        let inner = Alpha::named("alpha_inner", shares[0])?;
        let outer = Alpha::named("alpha_outer", shares[1])?;
        Ok(Mode {
            kind: ModeKind::Bonferroni,
            inner,
            outer,
            joint: Some(alpha),
            rank: Rank::Marginal,
            tolerances: Tolerances::NONE,
        })
    }

    /// Joint coverage `1 - alpha` from explicit inner and outer levels.
    ///
    /// # Errors
    /// [`Error::SplitExceedsAlpha`] if `inner + outer > alpha`.
    pub fn bonferroni_split(alpha: Alpha, inner: Alpha, outer: Alpha) -> Result<Self> {
        if inner.get() + outer.get() > alpha.get() * (1.0 + 1e-12) {
            return Err(Error::SplitExceedsAlpha {
                alpha: alpha.get(),
                inner: inner.get(),
                outer: outer.get(),
            });
        }
        Ok(Mode {
            kind: ModeKind::Bonferroni,
            inner,
            outer,
            joint: Some(alpha),
            rank: Rank::Marginal,
            tolerances: Tolerances::NONE,
        })
    }

    /// Joint coverage `1 - alpha` from one threshold on `max(tau, gamma)`.
    #[must_use]
    pub fn max(alpha: Alpha) -> Self {
        Mode {
            kind: ModeKind::Max,
            inner: alpha,
            outer: alpha,
            joint: Some(alpha),
            rank: Rank::Marginal,
            tolerances: Tolerances::NONE,
        }
    }

    /// The same levels with another rank strategy: with
    /// [`Rank::Conditional`], the guarantee holds with probability at least
    /// `1 - delta` over the calibration set (instead of on average over
    /// calibration sets).
    ///
    /// ```
    /// use confseg::quantile::{Delta, Rank};
    /// use confseg::{Alpha, Mode};
    /// let m = Mode::marginal(Alpha::new(0.1)?).with_rank(Rank::Conditional(Delta::new(0.05)?));
    /// assert_eq!(m.min_calibration_size(), 29);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn with_rank(mut self, rank: Rank) -> Self {
        self.rank = rank;
        self
    }

    /// The same levels for the events of these tolerances: what fitted
    /// sets record from the calibrator that computed their statistics.
    #[must_use]
    pub(crate) fn with_tolerances(mut self, tolerances: Tolerances) -> Self {
        self.tolerances = tolerances;
        self
    }

    /// The tolerance of each side's event (containment unless the sets were
    /// calibrated for a tolerance, [`crate::tolerance`]).
    #[must_use]
    pub fn tolerances(&self) -> &Tolerances {
        &self.tolerances
    }

    /// Which kind of guarantee (marginal, Bonferroni or max; never risk control).
    #[must_use]
    pub fn kind(&self) -> ModeKind {
        self.kind
    }

    /// Level of the inner threshold (for [`ModeKind::Max`], the joint level).
    #[must_use]
    pub fn inner_alpha(&self) -> Alpha {
        self.inner
    }

    /// Level of the outer threshold (for [`ModeKind::Max`], the joint level).
    #[must_use]
    pub fn outer_alpha(&self) -> Alpha {
        self.outer
    }

    /// The level of one side.
    #[must_use]
    pub fn alpha(&self, side: Side) -> Alpha {
        match side {
            Side::Inner => self.inner,
            Side::Outer => self.outer,
        }
    }

    /// The joint level `alpha` with `P(I ⊆ Y ⊆ O) >= 1 - alpha`, for the joint modes.
    #[must_use]
    pub fn joint_alpha(&self) -> Option<Alpha> {
        self.joint
    }

    /// The rank strategy of the thresholds.
    #[must_use]
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// The confidence level `delta` of a training-conditional guarantee.
    #[must_use]
    pub fn delta(&self) -> Option<Delta> {
        self.rank.delta()
    }

    /// The smallest number of calibration images for a finite threshold on `side`.
    #[must_use]
    pub fn min_calibration_size_for(&self, side: Side) -> usize {
        self.rank.min_calibration_size(self.alpha(side))
    }

    /// The smallest number of calibration images for finite thresholds on both sides.
    #[must_use]
    pub fn min_calibration_size(&self) -> usize {
        Side::BOTH.map(|s| self.min_calibration_size_for(s)).into_iter().max().unwrap_or(0)
    }

    /// What these levels promise.
    #[must_use]
    pub fn guarantee(self) -> Guarantee {
        Guarantee::Conformal(self)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ModeKind::Bonferroni => write!(
                f,
                "joint by Bonferroni split (alpha = {}: inner {}, outer {})",
                self.joint.unwrap_or(self.inner),
                self.inner,
                self.outer
            )?,
            ModeKind::Max => write!(f, "joint by max (alpha = {})", self.inner)?,
            ModeKind::Marginal | ModeKind::RiskControl => {
                write!(f, "marginal (alpha_inner = {}, alpha_outer = {})", self.inner, self.outer)?;
            }
        }
        if let Some(d) = self.delta() {
            write!(f, " with probability {} over the calibration set", 1.0 - d.get())?;
        }
        Ok(())
    }
}

/// What fitted sets promise: conformal levels or risk control.
///
/// `Display` states the promise in symbols (`P(I ⊆ Y ⊆ O) >= 0.9`); the
/// alternate form (`{:#}`) in words (`P(inner ⊆ truth ⊆ outer) >= 0.9`).
/// Both say when it holds with probability `1 - delta` over the
/// calibration set.
///
/// ```
/// use confseg::quantile::{Delta, Rank};
/// use confseg::{Alpha, Mode};
/// let g = Mode::max(Alpha::new(0.1)?).with_rank(Rank::Conditional(Delta::new(0.05)?)).guarantee();
/// assert_eq!(
///     format!("{g:#}"),
///     "P(inner ⊆ truth ⊆ outer) >= 0.9, conditionally on the calibration set, with probability >= 0.95 over it"
/// );
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guarantee {
    /// Conformal sets (METHOD.md §4).
    Conformal(Mode),
    /// Risk control of a per-image loss (METHOD.md §4.3, §4.5).
    RiskControl(RiskControl),
}

impl Guarantee {
    /// The kind, by name.
    #[must_use]
    pub fn kind(&self) -> ModeKind {
        match self {
            Guarantee::Conformal(m) => m.kind(),
            Guarantee::RiskControl(_) => ModeKind::RiskControl,
        }
    }

    /// The conformal levels, if these are conformal sets.
    #[must_use]
    pub fn mode(&self) -> Option<&Mode> {
        match self {
            Guarantee::Conformal(m) => Some(m),
            Guarantee::RiskControl(_) => None,
        }
    }

    /// The level of one side: for risk control, its level on the outer
    /// side and on the (absent) inner side alike.
    #[must_use]
    pub fn alpha(&self, side: Side) -> Alpha {
        match self {
            Guarantee::Conformal(m) => m.alpha(side),
            Guarantee::RiskControl(r) => r.alpha(),
        }
    }

    /// The overall level: the joint `alpha` of a joint mode, the bound of
    /// risk control, `None` for marginal sets.
    #[must_use]
    pub fn overall_alpha(&self) -> Option<Alpha> {
        match self {
            Guarantee::Conformal(m) => m.joint_alpha(),
            Guarantee::RiskControl(r) => Some(r.alpha()),
        }
    }

    /// The confidence level `delta` of a training-conditional guarantee.
    #[must_use]
    pub fn delta(&self) -> Option<Delta> {
        match self {
            Guarantee::Conformal(m) => m.delta(),
            Guarantee::RiskControl(r) => r.delta(),
        }
    }

    /// The levels in words (`"joint by max (alpha = 0.1)"`, ...).
    #[must_use]
    pub fn levels(&self) -> String {
        match self {
            Guarantee::Conformal(m) => m.to_string(),
            Guarantee::RiskControl(r) => r.to_string(),
        }
    }

    /// The smallest number of calibration images for an informative
    /// threshold on `side`.
    #[must_use]
    pub fn min_calibration_size_for(&self, side: Side) -> usize {
        match self {
            Guarantee::Conformal(m) => m.min_calibration_size_for(side),
            Guarantee::RiskControl(r) => r.min_calibration_size(),
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = f.alternate();
        match self {
            Guarantee::RiskControl(r) => return r.promise(f),
            Guarantee::Conformal(m) => {
                let t = m.tolerances();
                match m.joint_alpha() {
                    Some(a) => write!(f, "P({}) >= {}", t.joint_event(words), 1.0 - a.get())?,
                    None => write!(
                        f,
                        "P({}) >= {} and P({}) >= {}",
                        t.inner_event(words),
                        1.0 - m.inner_alpha().get(),
                        t.outer_event(words),
                        1.0 - m.outer_alpha().get()
                    )?,
                }
            }
        }
        match self.delta() {
            Some(d) if words => write!(
                f,
                ", conditionally on the calibration set, with probability >= {} over it",
                1.0 - d.get()
            ),
            Some(d) => write!(
                f,
                " with probability >= {} over the calibration set (training-conditional)",
                1.0 - d.get()
            ),
            None => Ok(()),
        }
    }
}

/// Levels for several structures and the guarantee they give (METHOD.md §4.1):
///
/// * [`JointMode::marginal`]: each structure and side at its own level;
/// * [`JointMode::max`]: one threshold `lambda`, the conformal quantile of
///   `Z_i = max_k max(tau_ik, gamma_ik)`; then
///   `P(for every k: I_k ⊆ Y_k ⊆ O_k) >= 1 - alpha`;
/// * [`JointMode::bonferroni`]: `alpha` split over the `2K` (structure,
///   side) pairs by weights; the same joint guarantee by the union bound.
///
/// ```
/// use confseg::levels::JointMode;
/// use confseg::Alpha;
/// // 90% that all three structures are covered on both sides, split 1:4 per structure
/// let m = JointMode::bonferroni(Alpha::new(0.1)?, &[(1.0, 4.0); 3])?;
/// let sum: f64 = m.modes().iter().map(|m| m.inner_alpha().get() + m.outer_alpha().get()).sum();
/// assert!(sum <= 0.1);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JointMode {
    kind: ModeKind,
    alpha: Alpha,
    modes: Vec<Mode>,
}

impl JointMode {
    /// Each structure's sets at `alpha` on each side (no joint statement).
    #[must_use]
    pub fn marginal(alpha: Alpha, structures: usize) -> Self {
        JointMode { kind: ModeKind::Marginal, alpha, modes: vec![Mode::marginal(alpha); structures] }
    }

    /// Joint coverage `1 - alpha` by one threshold on the per-image maximum
    /// over structures and sides.
    #[must_use]
    pub fn max(alpha: Alpha, structures: usize) -> Self {
        JointMode { kind: ModeKind::Max, alpha, modes: vec![Mode::max(alpha); structures] }
    }

    /// Joint coverage `1 - alpha` by a weighted Bonferroni split over the
    /// structures and sides: `weights[k] = (w_I, w_O)` of structure `k`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless every weight is positive and
    /// finite and there is at least one structure; [`Error::InvalidAlpha`]
    /// if a share underflows to 0.
    pub fn bonferroni(alpha: Alpha, weights: &[(f64, f64)]) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::InvalidParameter {
                name: "weights",
                value: "[]".into(),
                reason: "one (inner, outer) weight pair per structure is needed".into(),
            });
        }
        let flat: Vec<f64> = weights.iter().flat_map(|&(a, b)| [a, b]).collect();
        let shares = split(alpha, &flat)?;
        let modes = shares
            .chunks(2)
            .map(|p| {
                Ok(Mode::marginal_split(
                    Alpha::named("alpha_inner", p[0])?,
                    Alpha::named("alpha_outer", p[1])?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JointMode { kind: ModeKind::Bonferroni, alpha, modes })
    }

    /// From the per-structure modes as stored (checked for consistency).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the modes do not make the joint mode.
    #[cfg(feature = "serde")]
    pub(crate) fn from_parts(kind: ModeKind, alpha: Alpha, modes: Vec<Mode>) -> Result<Self> {
        let bad =
            |reason: String| Error::InvalidParameter { name: "joint mode", value: kind.to_string(), reason };
        match kind {
            ModeKind::RiskControl => {
                return Err(bad("risk control has no joint version over structures".into()));
            }
            ModeKind::Max if modes.iter().any(|m| m.kind() != ModeKind::Max || m.inner_alpha() != alpha) => {
                return Err(bad(format!("every structure must use mode max at alpha = {alpha}")));
            }
            ModeKind::Bonferroni => {
                let sum: f64 = modes.iter().map(|m| m.inner_alpha().get() + m.outer_alpha().get()).sum();
                if sum > alpha.get() * (1.0 + 1e-12) {
                    return Err(bad(format!(
                        "the structures' levels add up to {sum}, more than alpha = {alpha}"
                    )));
                }
            }
            _ => {}
        }
        Ok(JointMode { kind, alpha, modes })
    }

    /// The same levels with the rank strategy `rank` for every structure
    /// (for the max mode, the joint threshold takes it).
    #[must_use]
    pub fn with_rank(mut self, rank: Rank) -> Self {
        self.modes = self.modes.into_iter().map(|m| m.with_rank(rank)).collect();
        self
    }

    /// The kind: marginal, Bonferroni or max.
    #[must_use]
    pub fn kind(&self) -> ModeKind {
        self.kind
    }

    /// The level `alpha` (joint for Bonferroni and max; each set's for marginal).
    #[must_use]
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// The rank strategy of the thresholds.
    #[must_use]
    pub fn rank(&self) -> Rank {
        self.modes.first().map_or(Rank::Marginal, Mode::rank)
    }

    /// Each structure's levels.
    #[must_use]
    pub fn modes(&self) -> &[Mode] {
        &self.modes
    }

    /// What these levels promise, in symbols
    /// (`P(for every structure: I ⊆ Y ⊆ O) >= 0.9`).
    #[must_use]
    pub fn guarantee(&self) -> String {
        let c = 1.0 - self.alpha.get();
        let g = match self.kind {
            ModeKind::Marginal => format!("for each structure: P(I ⊆ Y) >= {c} and P(Y ⊆ O) >= {c}"),
            _ => format!("P(for every structure: I ⊆ Y ⊆ O) >= {c}"),
        };
        match self.rank().delta() {
            Some(d) => format!(
                "{g}, conditionally on the calibration set, with probability >= {} over it",
                1.0 - d.get()
            ),
            None => g,
        }
    }
}

impl fmt::Display for JointMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.modes.len();
        match self.kind {
            ModeKind::Bonferroni => {
                write!(f, "joint over {k} structures by Bonferroni split (alpha = {})", self.alpha)?;
            }
            ModeKind::Max => write!(f, "joint over {k} structures by max (alpha = {})", self.alpha)?,
            ModeKind::Marginal | ModeKind::RiskControl => {
                write!(f, "marginal per structure (alpha = {} each)", self.alpha)?;
            }
        }
        if let Some(d) = self.rank().delta() {
            write!(f, " with probability {} over the calibration set", 1.0 - d.get())?;
        }
        Ok(())
    }
}

/// `alpha` split in proportion to `weights`, never summing to more than
/// `alpha` (rounding is taken off the largest share).
fn split(alpha: Alpha, weights: &[f64]) -> Result<Vec<f64>> {
    for &w in weights {
        if !(w.is_finite() && w > 0.0) {
            return Err(Error::InvalidParameter {
                name: "weight",
                value: w.to_string(),
                reason: "weights must be positive and finite".into(),
            });
        }
    }
    // normalized by the largest weight: no overflow in the total
    let top = weights.iter().copied().fold(0.0_f64, f64::max);
    let total: f64 = weights.iter().map(|&w| w / top).sum();
    let a = alpha.get();
    let mut shares: Vec<f64> = weights.iter().map(|&w| a * (w / top) / total).collect();
    while shares.iter().sum::<f64>() > a {
        let i = (0..shares.len()).max_by(|&x, &y| shares[x].total_cmp(&shares[y])).unwrap_or(0);
        if shares[i] <= 0.0 {
            break;
        }
        shares[i] = shares[i].next_down();
    }
    Ok(shares)
}

impl fmt::Display for Levels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The levels a caller asks for, unchecked: what the shells build from
/// their arguments (`--alpha 0.1 --mode bonferroni --weights 1:4`,
/// `fit(alpha=0.1, mode="bonferroni", weights=(1, 4))`). Validated by
/// [`Levels::guarantee`] (one structure), [`Levels::joint`] (several) and
/// [`Levels::at`] (validation over a grid of levels).
///
/// * `alpha` with mode marginal: both sides at `alpha`; with `alpha_inner`
///   and `alpha_outer` instead: each side at its level;
/// * mode bonferroni: `alpha` split by `weights` (default 1:1) or by
///   `alpha_inner + alpha_outer <= alpha`;
/// * mode max: one threshold on `max(tau, gamma)` at `alpha`;
/// * mode risk-control: the expected loss of the `risk` (default recall,
///   the missed fraction) at most `alpha`, with `delta` and a `bound` with
///   probability `1 - delta` over the calibration set, the threshold on a
///   `grid` if one is given;
/// * `delta`: the training-conditional rank ([`Rank::Conditional`]) for
///   every conformal mode.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    /// The kind of guarantee.
    pub mode: ModeKind,
    /// The level (joint for the joint modes).
    pub alpha: Option<f64>,
    /// Bonferroni weights `(w_I, w_O)`.
    pub weights: Option<(f64, f64)>,
    /// An explicit inner level.
    pub alpha_inner: Option<f64>,
    /// An explicit outer level.
    pub alpha_outer: Option<f64>,
    /// The confidence level of a training-conditional guarantee (for risk
    /// control: with probability `1 - delta` over the calibration set).
    pub delta: Option<f64>,
    /// Risk control: the risk (default recall).
    pub risk: Option<Risk>,
    /// Risk control: the bound used with `delta`.
    pub bound: Option<Bound>,
    /// Risk control: a grid of thresholds (default: exact search).
    pub grid: Option<Grid>,
}

impl Levels {
    /// A request for `mode`, without its level yet.
    #[must_use]
    pub fn new(mode: ModeKind) -> Self {
        Levels { mode, ..Levels::default() }
    }

    /// A request for a Bonferroni split weighted `w_I : w_O`.
    #[must_use]
    pub fn bonferroni(inner_weight: f64, outer_weight: f64) -> Self {
        Levels {
            mode: ModeKind::Bonferroni,
            weights: Some((inner_weight, outer_weight)),
            ..Levels::default()
        }
    }

    /// The same request at level `alpha`.
    #[must_use]
    pub fn with_alpha(self, alpha: f64) -> Self {
        Levels { alpha: Some(alpha), ..self }
    }

    /// The same request with the training-conditional rank at `delta`.
    #[must_use]
    pub fn with_delta(self, delta: f64) -> Self {
        Levels { delta: Some(delta), ..self }
    }

    /// The request as the shells would spell it: the mode, Bonferroni
    /// weights (`bonferroni 1:4`), then the levels given
    /// (`max alpha=0.1 delta=0.05`).
    fn describe(&self) -> String {
        let mut s = self.mode.to_string();
        if self.mode == ModeKind::Bonferroni && self.alpha_inner.is_none() {
            let (wi, wo) = self.weights.unwrap_or((1.0, 1.0));
            s += &format!(" {wi}:{wo}");
        }
        for (name, v) in [
            ("alpha", self.alpha),
            ("alpha_inner", self.alpha_inner),
            ("alpha_outer", self.alpha_outer),
            ("delta", self.delta),
        ] {
            if let Some(v) = v {
                s += &format!(" {name}={v}");
            }
        }
        for (name, v) in [
            ("risk", self.risk.map(|r| r.to_string())),
            ("bound", self.bound.map(|b| b.to_string())),
            ("grid", self.grid.map(|g| g.to_string())),
        ] {
            if let Some(v) = v {
                s += &format!(" {name}={v}");
            }
        }
        s
    }

    /// The rank strategy `delta` asks for.
    ///
    /// # Errors
    /// [`Error::InvalidAlpha`] (named `"delta"`) unless `0 < delta < 1`.
    pub fn rank(&self) -> Result<Rank> {
        match self.delta {
            None => Ok(Rank::Marginal),
            Some(d) => Ok(Rank::Conditional(Delta::new(d)?)),
        }
    }

    /// Risk, bound and grid only with mode risk-control.
    fn check_risk_options(&self) -> Result<()> {
        if self.mode != ModeKind::RiskControl
            && (self.risk.is_some() || self.bound.is_some() || self.grid.is_some())
        {
            return Err(LevelsError::RiskOptionsNeedRiskControl { mode: self.mode.name() }.into());
        }
        Ok(())
    }

    /// The request checked for one structure.
    ///
    /// # Errors
    /// [`Error::Levels`] for options that do not fit together (weights
    /// with a mode other than Bonferroni, a half split, no `alpha`, ...);
    /// [`Error::InvalidAlpha`] for a level outside (0, 1);
    /// [`Error::SplitExceedsAlpha`]; invalid weights.
    pub fn guarantee(&self) -> Result<Guarantee> {
        let split = self.split()?;
        let alpha = self.alpha.map(|a| Alpha::named("alpha", a)).transpose()?;
        self.check_weights(split.is_some())?;
        self.check_risk_options()?;
        let rank = self.rank()?;
        let mode = match (self.mode, alpha, split) {
            (ModeKind::Marginal, None, Some((i, o))) => Mode::marginal_split(i, o),
            (ModeKind::Marginal, Some(a), None) => Mode::marginal(a),
            (ModeKind::Marginal, Some(_), Some(_)) => return Err(LevelsError::AlphaAndSplit.into()),
            (ModeKind::Bonferroni, Some(a), None) => {
                let (wi, wo) = self.weights.unwrap_or((1.0, 1.0));
                Mode::bonferroni(a, wi, wo)?
            }
            (ModeKind::Bonferroni, Some(a), Some((i, o))) => Mode::bonferroni_split(a, i, o)?,
            (ModeKind::Max | ModeKind::RiskControl, _, Some(_)) => {
                return Err(LevelsError::OneLevel { mode: self.mode.name() }.into())
            }
            (ModeKind::Max, Some(a), None) => Mode::max(a),
            (ModeKind::RiskControl, Some(a), None) => {
                let r = RiskControl::request(a, self.delta, self.risk, self.bound, self.grid)?;
                return Ok(Guarantee::RiskControl(r));
            }
            (_, None, _) => return Err(LevelsError::MissingAlpha { mode: self.mode.name() }.into()),
        };
        Ok(Guarantee::Conformal(mode.with_rank(rank)))
    }

    /// The request at the level `alpha` of a validation grid (its own
    /// `alpha` is replaced; an explicit split does not fit a grid).
    ///
    /// # Errors
    /// As [`Levels::guarantee`]; [`LevelsError::SplitOnGrid`] for an
    /// explicit split.
    pub fn at(&self, alpha: Alpha) -> Result<Guarantee> {
        if self.alpha_inner.is_some() || self.alpha_outer.is_some() {
            return Err(LevelsError::SplitOnGrid.into());
        }
        Levels { alpha: Some(alpha.get()), ..*self }.guarantee()
    }

    /// The request checked for `structures` structures calibrated together.
    ///
    /// # Errors
    /// As [`Levels::guarantee`]; [`LevelsError::NotJoint`] for risk
    /// control; [`LevelsError::SplitPerStructure`] for an explicit split.
    pub fn joint(&self, structures: usize) -> Result<JointMode> {
        if self.mode == ModeKind::RiskControl {
            return Err(LevelsError::NotJoint { mode: self.mode.name() }.into());
        }
        if self.alpha_inner.is_some() || self.alpha_outer.is_some() {
            return Err(LevelsError::SplitPerStructure.into());
        }
        self.check_weights(false)?;
        self.check_risk_options()?;
        let rank = self.rank()?;
        let Some(a) = self.alpha else {
            return Err(LevelsError::MissingAlpha { mode: self.mode.name() }.into());
        };
        let alpha = Alpha::named("alpha", a)?;
        let mode = match self.mode {
            ModeKind::Marginal => JointMode::marginal(alpha, structures),
            ModeKind::Max => JointMode::max(alpha, structures),
            ModeKind::Bonferroni | ModeKind::RiskControl => {
                JointMode::bonferroni(alpha, &vec![self.weights.unwrap_or((1.0, 1.0)); structures])?
            }
        };
        Ok(mode.with_rank(rank))
    }

    /// As [`Levels::joint`] with a Bonferroni weight pair `(w_I, w_O)` per
    /// structure (instead of one pair for all).
    ///
    /// # Errors
    /// As [`Levels::joint`]; [`LevelsError::WeightsNeedBonferroni`] for
    /// another mode; [`Error::InvalidParameter`] unless there is one pair
    /// per structure.
    pub fn joint_weighted(&self, weights: &[(f64, f64)]) -> Result<JointMode> {
        if self.mode != ModeKind::Bonferroni {
            return Err(LevelsError::WeightsNeedBonferroni { mode: self.mode.name() }.into());
        }
        // every other option as for one pair
        let mode = Levels { weights: None, ..*self }.joint(weights.len())?;
        Ok(JointMode::bonferroni(mode.alpha(), weights)?.with_rank(mode.rank()))
    }

    /// The explicit split, both sides or neither.
    fn split(&self) -> Result<Option<(Alpha, Alpha)>> {
        match (self.alpha_inner, self.alpha_outer) {
            (Some(i), Some(o)) => {
                Ok(Some((Alpha::named("alpha_inner", i)?, Alpha::named("alpha_outer", o)?)))
            }
            (None, None) => Ok(None),
            _ => Err(LevelsError::HalfSplit.into()),
        }
    }

    /// Weights only with Bonferroni, and not with an explicit split.
    fn check_weights(&self, split: bool) -> Result<()> {
        if self.weights.is_none() {
            return Ok(());
        }
        if self.mode != ModeKind::Bonferroni {
            return Err(LevelsError::WeightsNeedBonferroni { mode: self.mode.name() }.into());
        }
        if split {
            return Err(LevelsError::WeightsAndSplit.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(x: f64) -> Alpha {
        Alpha::new(x).unwrap()
    }

    #[test]
    fn modes() {
        assert!(matches!(
            Mode::bonferroni_split(a(0.1), a(0.05), a(0.06)),
            Err(Error::SplitExceedsAlpha { .. })
        ));
        assert!(Mode::bonferroni_split(a(0.1), a(0.02), a(0.08)).is_ok());
        assert!(Mode::bonferroni(a(0.1), 0.0, 1.0).is_err());
        assert!(Mode::bonferroni(a(0.1), f64::INFINITY, 1.0).is_err());
        // huge weights do not overflow into a zero level
        let m = Mode::bonferroni(a(0.1), 1e308, 1e308).unwrap();
        assert_eq!((m.inner_alpha().get(), m.outer_alpha().get()), (0.05, 0.05));
        // the split never exceeds alpha, down to subnormal levels (or it is refused)
        for alpha in [5e-324, 1e-320, 2.2e-308, 1e-300, 1e-17, 0.1, 0.3, 1.0 - 1e-16] {
            for (wi, wo) in [(1.0, 1.0), (1.0, 4.0), (3.0, 7.0), (1e-300, 1.0), (1.0, 1e300), (0.1, 0.2)] {
                if let Ok(m) = Mode::bonferroni(a(alpha), wi, wo) {
                    let (i, o) = (m.inner_alpha().get(), m.outer_alpha().get());
                    assert!(i + o <= alpha && i > 0.0 && o > 0.0, "{alpha} {wi}:{wo} -> {i} + {o}");
                }
            }
        }
        assert!(Mode::bonferroni(a(5e-324), 1.0, 1.0).is_err());
        let m = Mode::max(a(0.1));
        assert_eq!(m.kind(), ModeKind::Max);
        assert_eq!(Mode::marginal(a(0.05)).min_calibration_size(), 19);
    }

    #[test]
    fn bonferroni_over_structures_never_exceeds_alpha() {
        for alpha in [1e-300, 0.01, 0.1, 0.5] {
            for w in [vec![(1.0, 4.0); 3], vec![(1.0, 1.0)], vec![(1e300, 1.0), (1.0, 1e-300)]] {
                if let Ok(m) = JointMode::bonferroni(a(alpha), &w) {
                    let sum: f64 =
                        m.modes().iter().map(|m| m.inner_alpha().get() + m.outer_alpha().get()).sum();
                    assert!(sum <= alpha, "{alpha} {w:?}");
                }
            }
        }
        let m = JointMode::bonferroni(a(0.1), &[(1.0, 4.0), (1.0, 4.0)]).unwrap();
        assert!((m.modes()[1].outer_alpha().get() - 0.04).abs() < 1e-15);
    }

    #[test]
    fn risk_control_min_calibration_size_is_the_first_informative_n() {
        for x in [0.5, 0.3, 0.2, 0.1, 0.05, 0.01, 1.0 / 3.0] {
            let n = RiskControl::new(a(x)).min_calibration_size();
            assert!(x * (n as f64 + 1.0) >= 1.0, "a={x} n={n}");
            assert!(n == 1 || x * (n as f64) < 1.0, "a={x} n={n}");
        }
    }

    #[test]
    fn names_round_trip() {
        for k in ModeKind::ALL {
            assert_eq!(k.to_string().parse::<ModeKind>().unwrap(), k);
        }
        for s in Side::BOTH {
            assert_eq!(s.to_string().parse::<Side>().unwrap(), s);
        }
        let e = "maximum".parse::<ModeKind>().unwrap_err();
        assert!(matches!(&e, Error::UnknownName { what: "mode", .. }), "{e}");
        assert!(e.to_string().contains("maximum") && e.to_string().contains("bonferroni"), "{e}");
    }
}
