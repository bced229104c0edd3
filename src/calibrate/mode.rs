//! What the thresholds promise (METHOD.md §4): the [`Mode`] (levels, and
//! whether the guarantee is per set or joint) and the fitted [`Thresholds`].

use std::fmt;

use crate::error::{Error, Result};
use crate::quantile::{Alpha, Delta, Threshold};

/// What the thresholds promise (METHOD.md §4): which levels, and whether the
/// guarantee is per set or joint.
///
/// Constructed through validated constructors, so a `Mode` always holds
/// levels in (0, 1) and a Bonferroni split never exceeds its joint level.
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
    delta: Option<Delta>,
}

/// The kind of a [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ModeKind {
    /// Each set at its own level: `P(I ⊆ Y) >= 1 - alpha_I`, `P(Y ⊆ O) >= 1 - alpha_O`.
    Marginal,
    /// Both marginal thresholds with `alpha_I + alpha_O = alpha`:
    /// `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
    Bonferroni,
    /// One threshold from `max(tau, gamma)` at level `alpha`, used for both sets:
    /// `P(I ⊆ Y ⊆ O) >= 1 - alpha`.
    Max,
    /// Conformal risk control of the missed fraction, outer set only:
    /// `E[|Y \ O| / |Y|] <= alpha` (no inner set). Fitted from per-voxel
    /// losses ([`RiskCalibration`](crate::RiskCalibration)), not from the
    /// per-image statistics.
    #[cfg_attr(feature = "serde", serde(rename = "risk-control"))]
    RiskControl,
}

impl ModeKind {
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
}

impl fmt::Display for ModeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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
        Mode { kind: ModeKind::Marginal, inner, outer, joint: None, delta: None }
    }

    /// Joint coverage `1 - alpha` by a weighted Bonferroni split:
    /// `alpha_I = alpha * w_I / (w_I + w_O)`, `alpha_O = alpha * w_O / (w_I + w_O)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless both weights are positive and finite.
    pub fn bonferroni(alpha: Alpha, inner_weight: f64, outer_weight: f64) -> Result<Self> {
        for (name, w) in [("inner weight", inner_weight), ("outer weight", outer_weight)] {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::InvalidParameter {
                    name,
                    value: w.to_string(),
                    reason: "weights must be positive and finite".into(),
                });
            }
        }
        // Shares as 1 / (1 + ratio): no overflow for huge weights.
        let a = alpha.get();
        let a_inner = a / (1.0 + outer_weight / inner_weight);
        let mut a_outer = a / (1.0 + inner_weight / outer_weight);
        // Rounding (or subnormal levels) must never let the split exceed alpha.
        if a_inner + a_outer > a {
            a_outer = a - a_inner; // within one ulp of the exact difference
            while a_inner + a_outer > a && a_outer > 0.0 {
                a_outer = a_outer.next_down();
            }
        }
        let inner = Alpha::named("alpha_inner", a_inner)?;
        let outer = Alpha::named("alpha_outer", a_outer)?;
        Ok(Mode { kind: ModeKind::Bonferroni, inner, outer, joint: Some(alpha), delta: None })
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
        Ok(Mode { kind: ModeKind::Bonferroni, inner, outer, joint: Some(alpha), delta: None })
    }

    /// Joint coverage `1 - alpha` from one threshold on `max(tau, gamma)`.
    #[must_use]
    pub fn max(alpha: Alpha) -> Self {
        Mode { kind: ModeKind::Max, inner: alpha, outer: alpha, joint: Some(alpha), delta: None }
    }

    /// Conformal risk control of the missed fraction at `alpha`: an outer
    /// set with `E[|Y \ O| / |Y|] <= alpha`, no inner set. Fitted by
    /// [`Calibrator::fit_risk_control`](crate::Calibrator::fit_risk_control).
    #[must_use]
    pub fn risk_control(alpha: Alpha) -> Self {
        Mode { kind: ModeKind::RiskControl, inner: alpha, outer: alpha, joint: None, delta: None }
    }

    /// Which kind of guarantee.
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

    /// The joint level `alpha` with `P(I ⊆ Y ⊆ O) >= 1 - alpha`, for the joint modes.
    #[must_use]
    pub fn joint_alpha(&self) -> Option<Alpha> {
        self.joint
    }

    /// The same levels with a training-conditional guarantee: with
    /// probability at least `1 - delta` over the calibration set, the
    /// coverage of future images is at least the nominal level (instead of
    /// at least it on average over calibration sets). Thresholds then take
    /// the rank of [`Alpha::rank_conditional`].
    ///
    /// ```
    /// use confseg::{quantile::Delta, Alpha, Mode};
    /// let m = Mode::marginal(Alpha::new(0.1)?).with_delta(Delta::new(0.05)?);
    /// assert_eq!(m.min_calibration_size(), 29);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    #[must_use]
    pub fn with_delta(mut self, delta: Delta) -> Self {
        self.delta = Some(delta);
        self
    }

    /// The confidence level `delta` of a training-conditional guarantee.
    #[must_use]
    pub fn delta(&self) -> Option<Delta> {
        self.delta
    }

    /// The smallest number of calibration images for finite thresholds on both sides.
    #[must_use]
    pub fn min_calibration_size(&self) -> usize {
        if self.kind == ModeKind::RiskControl {
            return super::risk_min_calibration_size(self.outer);
        }
        self.inner.min_calibration_size_with(self.delta).max(self.outer.min_calibration_size_with(self.delta))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_levels(f)?;
        if let Some(d) = self.delta {
            write!(f, " with probability {} over the calibration set", 1.0 - d.get())?;
        }
        Ok(())
    }
}

impl Mode {
    fn fmt_levels(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ModeKind::Marginal => {
                write!(f, "marginal (alpha_inner = {}, alpha_outer = {})", self.inner, self.outer)
            }
            ModeKind::Bonferroni => write!(
                f,
                "joint by Bonferroni split (alpha = {}: inner {}, outer {})",
                self.joint.unwrap_or(self.inner),
                self.inner,
                self.outer
            ),
            ModeKind::Max => write!(f, "joint by max (alpha = {})", self.inner),
            ModeKind::RiskControl => write!(
                f,
                "risk control (expected missed fraction of the object <= {}; outer set only)",
                self.outer
            ),
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
