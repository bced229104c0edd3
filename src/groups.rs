//! Group-conditional (Mondrian) calibration (METHOD.md §4.6).
//!
//! Each calibration image carries a [`Group`] (a site, a scanner, a
//! difficulty stratum fixed before calibration). The statistics are
//! computed once, as for one group; grouping only partitions them
//! ([`Calibration::partition`]), and every group is fitted alone by the
//! single-group fit, so every mode, tolerance and `delta` works unchanged.
//! For every group `g` with enough images,
//!
//! ```text
//! P(I ⊆ Y ⊆ O | group g) >= 1 - alpha
//! ```
//!
//! (for the joint modes; the marginal mode's two promises likewise hold
//! within each group). A group with fewer images than its level needs
//! gets infinite thresholds and a warning naming it; with
//! [`SmallGroups::Pool`] such groups are pooled into one fit, whose
//! guarantee holds marginally over the pooled groups only.
//!
//! ```
//! use confseg::groups::{Group, SmallGroups};
//! use confseg::{Alpha, Calibrator, Identity, Mode};
//! use confseg::synthetic::Synthetic;
//!
//! let (easy, hard) = (Synthetic::new([16, 16]).seed(1), Synthetic::new([16, 16]).seed(2).noise(2.0)?);
//! let calibrator = Calibrator::new(Identity, Identity);
//! let pairs: Vec<_> = easy.pairs(0..60).chain(hard.pairs(0..60)).collect();
//! let cal = calibrator.calibrate_stream(pairs.into_iter().map(Ok))?;
//! let groups: Vec<Group> = (0..120).map(|i| Group::from(i64::from(i >= 60))).collect();
//! let sets = calibrator.fit_groups(&cal, &groups, Mode::max(Alpha::new(0.1)?), SmallGroups::Infinite)?;
//! assert_eq!(sets.sizes(), vec![(Group::from(0), 60), (Group::from(1), 60)]);
//! let p = sets.predict(&Group::from(1), &hard.pair(500).0)?;
//! assert!(sets.predict(&Group::from(2), &hard.pair(500).0).is_err()); // an unknown group
//! # let _ = p;
//! # Ok::<(), confseg::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::calibrate::{Calibration, Calibrator, RiskCalibration};
use crate::error::{Error, Result, Warning};
use crate::image::AsImage;
use crate::levels::Mode;
use crate::risk::RiskControl;
use crate::sets::{ConfidenceSets, Sets};
use crate::transform::{ScoreTransform, Transform};

/// The longest group name.
pub const MAX_GROUP_NAME: usize = 64;

/// The most groups a calibration may have (a bound on what a file or a
/// label array can make the fit allocate).
pub const MAX_GROUPS: usize = 100_000;

/// A group label: an integer (from a `.npy` array of labels) or a name
/// (from a manifest column). A name that reads as an integer is that
/// integer, so `"3"` and `3` are one group.
///
/// ```
/// use confseg::groups::Group;
/// assert_eq!("3".parse::<Group>()?, Group::from(3));
/// assert_eq!("site-A".parse::<Group>()?.to_string(), "site-A");
/// assert!("".parse::<Group>().is_err());
/// assert!("a\nb".parse::<Group>().is_err());
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// An integer label.
    Id(i64),
    /// A name: 1 to [`MAX_GROUP_NAME`] characters, no control characters,
    /// no surrounding spaces, not an integer.
    Name(String),
}

impl From<i64> for Group {
    fn from(id: i64) -> Self {
        Group::Id(id)
    }
}

impl FromStr for Group {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Ok(id) = s.parse::<i64>() {
            return Ok(Group::Id(id));
        }
        let bad = |reason: &str| Error::InvalidParameter {
            name: "group",
            value: crate::error::one_line(s),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(bad("a group label is an integer or a non-empty name"));
        }
        if s.chars().count() > MAX_GROUP_NAME {
            return Err(bad(&format!("a group name has at most {MAX_GROUP_NAME} characters")));
        }
        if s.chars().any(char::is_control) {
            return Err(bad("a group name has no control characters"));
        }
        if s.trim() != s {
            return Err(bad("a group name has no leading or trailing spaces"));
        }
        Ok(Group::Name(s.to_owned()))
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Id(id) => write!(f, "{id}"),
            Group::Name(name) => f.write_str(name),
        }
    }
}

/// `a, b, c` for a list of groups.
fn list<'a>(groups: impl IntoIterator<Item = &'a Group>) -> String {
    groups.into_iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// What the fit does with a group that has too few images for finite
/// thresholds at its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmallGroups {
    /// Fit it alone: its thresholds are `+inf` (empty inner sets, whole
    /// outer sets), valid but uninformative, and a warning names it.
    #[default]
    Infinite,
    /// Pool all such groups into one fit: their sets are informative, but
    /// the guarantee for them is marginal over the pooled groups.
    Pool,
}

impl FromStr for SmallGroups {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "infinite" => Ok(SmallGroups::Infinite),
            "pool" => Ok(SmallGroups::Pool),
            _ => Err(Error::InvalidParameter {
                name: "small groups",
                value: crate::error::one_line(s),
                reason: "expected \"infinite\" or \"pool\"".into(),
            }),
        }
    }
}

impl fmt::Display for SmallGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmallGroups::Infinite => "infinite",
            SmallGroups::Pool => "pool",
        })
    }
}

/// The unit of predicted-volume edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VolumeUnit {
    /// Voxels (`vox`, the default).
    #[default]
    Voxels,
    /// Cubic millimetres (`mm3`): voxels times the image's voxel volume
    /// (the product of its spacing).
    Mm3,
}

/// Strictly increasing finite edges, at least one: `k` edges make `k + 1`
/// strata `(-inf, e_1), [e_1, e_2), ..., [e_k, inf)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edges(Vec<f64>);

impl Edges {
    /// Validate edges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless they are finite, strictly
    /// increasing and at least one (at most [`MAX_GROUPS`]` - 1`).
    pub fn new(edges: Vec<f64>) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidParameter {
            name: "strata edges",
            value: format!("{edges:?}"),
            reason: reason.to_owned(),
        };
        if edges.is_empty() || edges.len() >= MAX_GROUPS {
            return Err(bad(&format!("give 1 to {} edges", MAX_GROUPS - 1)));
        }
        if edges.iter().any(|e| !e.is_finite()) {
            return Err(bad("edges are finite numbers"));
        }
        if edges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("edges are strictly increasing"));
        }
        Ok(Edges(edges))
    }

    /// The edges.
    #[must_use]
    pub fn get(&self) -> &[f64] {
        &self.0
    }

    /// The stratum of `value`: its index `j` (the number of edges `<= value`).
    #[must_use]
    pub fn index(&self, value: f64) -> usize {
        self.0.partition_point(|&x| x <= value)
    }

    /// The stratum of `value` as a label that sorts in the strata's order:
    /// `j: NAME < e_1`, `j: NAME in [e_j, e_j+1)`, `j: NAME >= e_k`.
    fn label(&self, name: &str, value: f64, unit: &str) -> Group {
        let e = &self.0;
        let j = self.index(value);
        let width = (e.len() + 1).to_string().len();
        let text = if j == 0 {
            format!("{j:0width$}: {name} < {}{unit}", e[0])
        } else if j == e.len() {
            format!("{j:0width$}: {name} >= {}{unit}", e[j - 1])
        } else {
            format!("{j:0width$}: {name} in [{}, {}){unit}", e[j - 1], e[j])
        };
        Group::Name(text)
    }
}

/// Groups computed from each image's own prediction, by edges fixed
/// before calibration: the predicted volume `|{s > t}|` (voxels or mm3),
/// or the largest score. `calibrate` computes each calibration image's
/// stratum in the pass that computes its statistics, and `predict`
/// recomputes it for each new image, so no labels are needed.
///
/// ```
/// use confseg::groups::Strata;
/// let s: Strata = "predicted-volume=0,500,5000".parse()?;
/// assert_eq!(s.to_string(), "predicted-volume=0,500,5000");
/// assert_eq!("predicted-volume=10.5,20mm3".parse::<Strata>()?.to_string(), "predicted-volume=10.5,20mm3");
/// assert_eq!("max-score=0.99".parse::<Strata>()?.to_string(), "max-score=0.99");
/// assert!("max-score=0.9,0.5".parse::<Strata>().is_err()); // not increasing
/// assert!("predicted-volume=".parse::<Strata>().is_err());
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Strata {
    /// Strata of the predicted volume `|{s > t}|`.
    PredictedVolume {
        /// The edges.
        edges: Edges,
        /// Voxels or mm3.
        unit: VolumeUnit,
    },
    /// Strata of the largest score of the image.
    MaxScore {
        /// The edges.
        edges: Edges,
    },
}

impl FromStr for Strata {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidParameter {
            name: "strata",
            value: crate::error::one_line(s),
            reason,
        };
        let usage = "expected predicted-volume=E1,E2,...[vox|mm3] or max-score=E1,E2,...";
        let (kind, list) = s.split_once('=').ok_or_else(|| bad(usage.into()))?;
        let (list, unit) = match list.strip_suffix("mm3") {
            Some(l) => (l, VolumeUnit::Mm3),
            None => (list.strip_suffix("vox").unwrap_or(list), VolumeUnit::Voxels),
        };
        let values = list
            .split(',')
            .map(|x| x.trim().parse::<f64>().map_err(|_| bad(format!("{x:?} is not a number; {usage}"))))
            .collect::<Result<Vec<f64>>>()?;
        let edges = Edges::new(values).map_err(|e| bad(e.to_string()))?;
        match (kind.trim(), unit) {
            ("predicted-volume", unit) => Ok(Strata::PredictedVolume { edges, unit }),
            ("max-score", VolumeUnit::Voxels) if !s.ends_with("vox") => Ok(Strata::MaxScore { edges }),
            ("max-score", _) => Err(bad("max-score edges are scores, without a unit".into())),
            _ => Err(bad(usage.into())),
        }
    }
}

impl fmt::Display for Strata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |e: &Edges| e.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        match self {
            Strata::PredictedVolume { edges, unit } => write!(
                f,
                "predicted-volume={}{}",
                list(edges),
                if *unit == VolumeUnit::Mm3 { "mm3" } else { "" }
            ),
            Strata::MaxScore { edges } => write!(f, "max-score={}", list(edges)),
        }
    }
}

impl Strata {
    /// The stratum of one image from its scores (after the class axis,
    /// before the transforms): the predicted mask is `scores > mask_threshold`;
    /// `spacing` (the image's own, else the default) turns voxels into mm3.
    ///
    /// # Errors
    /// [`Error::NanScore`] for a NaN score; [`Error::EmptyImage`];
    /// [`Error::InvalidSpacing`] for mm3 with a spacing of another
    /// dimensionality.
    pub fn stratum<A: crate::float::Float, D: ndarray::Dimension>(
        &self,
        scores: &ndarray::ArrayRef<A, D>,
        mask_threshold: f64,
        spacing: &crate::image::Spacing,
    ) -> Result<Group> {
        crate::image::check_nonempty(scores.shape())?;
        crate::image::check_nan("scores", scores)?;
        Ok(match self {
            Strata::PredictedVolume { edges, unit } => {
                let count = scores.iter().filter(|&&x| x.to_f64_lossless() > mask_threshold).count() as f64;
                let (value, u) = match unit {
                    VolumeUnit::Voxels => (count, "vox"),
                    VolumeUnit::Mm3 => {
                        (count * spacing.for_ndim(scores.ndim())?.iter().product::<f64>(), "mm3")
                    }
                };
                edges.label("predicted volume", value, &format!(" {u}"))
            }
            Strata::MaxScore { edges } => {
                let max = scores.iter().map(|x| x.to_f64_lossless()).fold(f64::NEG_INFINITY, f64::max);
                edges.label("max score", max, "")
            }
        })
    }
}

/// How groups were computed from the predictions: the strata and the
/// predicted-mask threshold, saved with the fitted sets so that prediction
/// recomputes each new image's group the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Stratification {
    /// The strata.
    pub strata: Strata,
    /// The predicted mask is `scores > mask_threshold`.
    pub mask_threshold: f64,
}

/// Check a list of labels against the number of images it labels.
///
/// # Errors
/// [`Error::InvalidParameter`] if the lengths differ or there are more
/// than [`MAX_GROUPS`] distinct groups.
pub fn check_labels(groups: &[Group], images: usize, what: &str) -> Result<()> {
    if groups.len() != images {
        return Err(Error::InvalidParameter {
            name: "groups",
            value: format!("{} labels", groups.len()),
            reason: format!("{what} has {images} images: one group label per image is needed"),
        });
    }
    Ok(())
}

impl Calibration {
    /// The statistics split by group: for every distinct label (in sorted
    /// order) the state holding that group's images, in their order, with
    /// this state's provenance. No statistic is recomputed.
    ///
    /// ```
    /// use confseg::groups::Group;
    /// use confseg::Calibration;
    /// use confseg::calibrate::ImageStatistics;
    /// let cal: Calibration = (0..5).map(|i| ImageStatistics { tau: f64::from(i), gamma: 0.0 }).collect();
    /// let groups: Vec<Group> = [1, 0, 1, 0, 1].map(Group::from).to_vec();
    /// let parts = cal.partition(&groups)?;
    /// assert_eq!(parts[0].0, Group::from(0));
    /// assert_eq!(parts[0].1.tau(), &[1.0, 3.0]);
    /// assert_eq!(parts[1].1.tau(), &[0.0, 2.0, 4.0]);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`check_labels`]: not one label per image, or too many groups.
    pub fn partition(&self, groups: &[Group]) -> Result<Vec<(Group, Calibration)>> {
        members(groups, self.len(), "the calibration")?
            .into_iter()
            .map(|(g, idx)| Ok((g, self.select(&idx)?)))
            .collect()
    }
}

impl RiskCalibration {
    /// The risk statistics split by group, as [`Calibration::partition`]
    /// splits the conformal ones.
    ///
    /// # Errors
    /// As [`check_labels`]: not one label per image, or too many groups.
    pub fn partition(&self, groups: &[Group]) -> Result<Vec<(Group, RiskCalibration)>> {
        members(groups, self.len(), "the risk calibration")?
            .into_iter()
            .map(|(g, idx)| Ok((g, self.select(&idx)?)))
            .collect()
    }
}

/// The images of each distinct group (sorted), in order.
fn members(groups: &[Group], images: usize, what: &str) -> Result<Vec<(Group, Vec<usize>)>> {
    check_labels(groups, images, what)?;
    let mut members: BTreeMap<&Group, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
        if members.len() > MAX_GROUPS {
            return Err(Error::InvalidParameter {
                name: "groups",
                value: format!("more than {MAX_GROUPS} distinct labels"),
                reason: "a group needs enough images for a threshold; are these labels per image?".into(),
            });
        }
    }
    Ok(members.into_iter().map(|(g, idx)| (g.clone(), idx)).collect())
}

/// Sets fitted per group: each group's [`ConfidenceSets`] (its own
/// thresholds and size), or, for groups pooled under
/// [`SmallGroups::Pool`], one shared fit. Built by
/// [`Calibrator::fit_groups`]; with the `serde` feature it round-trips
/// through JSON, and a file whose parts disagree is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedSets<TI = ScoreTransform, TO = ScoreTransform> {
    /// Groups fitted alone, sorted by group.
    own: Vec<(Group, ConfidenceSets<TI, TO>)>,
    /// Groups pooled together and their fit.
    pooled: Option<Pooled<TI, TO>>,
    small_groups: SmallGroups,
    /// How the groups were computed from the predictions, if they were.
    strata: Option<Stratification>,
}

/// Small groups fitted together ([`SmallGroups::Pool`]): their guarantee is
/// marginal over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled<TI = ScoreTransform, TO = ScoreTransform> {
    /// The pooled groups with their calibration sizes, sorted by group.
    pub groups: Vec<(Group, usize)>,
    /// Their shared fit (on the union of their images).
    pub sets: ConfidenceSets<TI, TO>,
}

impl<TI: Transform + Clone, TO: Transform + Clone> Calibrator<TI, TO> {
    /// Fit thresholds per group for `mode`: the statistics of `calibration`
    /// are partitioned by `groups` (one label per image, in order) and each
    /// group is fitted by [`Calibrator::fit`] alone. A group with fewer
    /// than [`Mode::min_calibration_size`] images gets infinite thresholds
    /// ([`SmallGroups::Infinite`]) or joins the pooled fit
    /// ([`SmallGroups::Pool`]).
    ///
    /// # Errors
    /// As [`Calibration::partition`] and [`Calibrator::fit`].
    pub fn fit_groups(
        &self,
        calibration: &Calibration,
        groups: &[Group],
        mode: Mode,
        small_groups: SmallGroups,
    ) -> Result<GroupedSets<TI, TO>> {
        let parts = calibration.partition(groups)?;
        fit_parts(
            parts,
            mode.min_calibration_size(),
            small_groups,
            Calibration::len,
            |c| self.fit(c, mode),
            Calibration::merge,
        )
    }

    /// Fit risk control per group: as [`Calibrator::fit_groups`], each
    /// group's images fitted by [`Calibrator::fit_risk_control`] alone, so
    /// that the risk is controlled conditionally on every group (with
    /// probability `1 - delta` over each group's calibration images when
    /// `level` has a confidence). A group with fewer than
    /// [`RiskControl::min_calibration_size`] images gets the conservative
    /// threshold or joins the pooled fit.
    ///
    /// # Errors
    /// As [`RiskCalibration::partition`] and [`Calibrator::fit_risk_control`].
    pub fn fit_groups_risk_control(
        &self,
        calibration: &RiskCalibration,
        groups: &[Group],
        level: RiskControl,
        small_groups: SmallGroups,
    ) -> Result<GroupedSets<TI, TO>> {
        let parts = calibration.partition(groups)?;
        fit_parts(
            parts,
            level.min_calibration_size(),
            small_groups,
            RiskCalibration::len,
            |c| self.fit_risk_control(c, level),
            RiskCalibration::merge,
        )
    }
}

/// Each group's statistics fitted alone, or (under [`SmallGroups::Pool`],
/// with fewer than `needed` images) merged into one pooled fit.
fn fit_parts<C: Default, TI, TO>(
    parts: Vec<(Group, C)>,
    needed: usize,
    small_groups: SmallGroups,
    len: impl Fn(&C) -> usize,
    fit: impl Fn(&C) -> Result<ConfidenceSets<TI, TO>>,
    merge: impl Fn(&mut C, &C) -> Result<()>,
) -> Result<GroupedSets<TI, TO>> {
    if parts.is_empty() {
        return Err(Error::NoCalibrationData);
    }
    let mut own = Vec::with_capacity(parts.len());
    let mut small: Vec<(Group, usize)> = Vec::new();
    let mut pool = C::default();
    for (g, part) in parts {
        if small_groups == SmallGroups::Pool && len(&part) < needed {
            small.push((g, len(&part)));
            merge(&mut pool, &part)?;
        } else {
            own.push((g, fit(&part)?));
        }
    }
    let pooled = if small.is_empty() { None } else { Some(Pooled { groups: small, sets: fit(&pool)? }) };
    Ok(GroupedSets { own, pooled, small_groups, strata: None })
}

impl<TI, TO> GroupedSets<TI, TO> {
    /// The groups and their calibration sizes, sorted by group.
    #[must_use]
    pub fn sizes(&self) -> Vec<(Group, usize)> {
        let mut out: Vec<(Group, usize)> = self.own.iter().map(|(g, s)| (g.clone(), s.n())).collect();
        if let Some(p) = &self.pooled {
            out.extend(p.groups.iter().cloned());
        }
        out.sort();
        out
    }

    /// The groups fitted alone, with their sets, sorted by group.
    #[must_use]
    pub fn own(&self) -> &[(Group, ConfidenceSets<TI, TO>)] {
        &self.own
    }

    /// The pooled groups (with their sizes) and their shared fit, if any.
    #[must_use]
    pub fn pooled(&self) -> Option<&Pooled<TI, TO>> {
        self.pooled.as_ref()
    }

    /// What the fit did with small groups.
    #[must_use]
    pub fn small_groups(&self) -> SmallGroups {
        self.small_groups
    }

    /// Record that the groups are strata of the predictions (so that
    /// prediction recomputes them).
    #[must_use]
    pub fn with_strata(self, strata: Stratification) -> Self {
        GroupedSets { strata: Some(strata), ..self }
    }

    /// How the groups were computed from the predictions, if they were.
    #[must_use]
    pub fn strata(&self) -> Option<&Stratification> {
        self.strata.as_ref()
    }

    /// Every fit: the groups' own, then the pooled one.
    pub fn fits(&self) -> impl Iterator<Item = &ConfidenceSets<TI, TO>> {
        self.own.iter().map(|(_, s)| s).chain(self.pooled.as_ref().map(|p| &p.sets))
    }

    /// The sets of `group` (its own, or the pooled fit).
    ///
    /// # Errors
    /// [`Error::UnknownGroup`] naming the known groups.
    pub fn sets(&self, group: &Group) -> Result<&ConfidenceSets<TI, TO>> {
        if let Ok(i) = self.own.binary_search_by(|(g, _)| g.cmp(group)) {
            return Ok(&self.own[i].1);
        }
        match &self.pooled {
            Some(p) if p.groups.iter().any(|(g, _)| g == group) => Ok(&p.sets),
            _ => Err(Error::UnknownGroup {
                image: None,
                group: group.to_string(),
                known: list(self.sizes().iter().map(|(g, _)| g)),
            }),
        }
    }

    /// Whether `group` shares the pooled fit.
    #[must_use]
    pub fn is_pooled(&self, group: &Group) -> bool {
        self.pooled.as_ref().is_some_and(|p| p.groups.iter().any(|(g, _)| g == group))
    }

    /// What the sets promise, in one line: conditional on each group
    /// fitted alone, marginal over the pooled groups.
    #[must_use]
    pub fn guarantee_text(&self) -> String {
        let g = self.fits().next().map(|s| s.guarantee().to_string()).unwrap_or_default();
        let own = list(self.own.iter().map(|(g, _)| g));
        let mut out = format!("{g}, conditionally on the group, for each of the groups {own}");
        if let Some(p) = &self.pooled {
            out += &format!(
                "; for the pooled groups {} only marginally over them (too few images each)",
                list(p.groups.iter().map(|(g, _)| g))
            );
        }
        out
    }

    /// Warnings of every fit, each prefixed by its group (or the pooled
    /// groups), and one naming the pooled groups.
    #[must_use]
    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        for (g, s) in &self.own {
            out.extend(
                s.warnings()
                    .into_iter()
                    .map(|w| Warning::InGroup { group: format!("group {g}"), warning: Box::new(w) }),
            );
        }
        if let Some(p) = &self.pooled {
            let groups = list(p.groups.iter().map(|(g, _)| g));
            out.push(Warning::PooledGroups { groups: groups.clone(), n: p.sets.n() });
            out.extend(p.sets.warnings().into_iter().map(|w| Warning::InGroup {
                group: format!("pooled groups {groups}"),
                warning: Box::new(w),
            }));
        }
        out
    }
}

impl<TI, TO> GroupedSets<TI, TO> {
    /// [`GroupedSets::warnings`] with what each group's statistics show
    /// ([`Calibration::warnings`]), for the `calibration` and `groups`
    /// these sets were fitted from.
    ///
    /// # Errors
    /// As [`Calibration::partition`].
    pub fn calibration_warnings(&self, calibration: &Calibration, groups: &[Group]) -> Result<Vec<Warning>> {
        let mut out = Vec::new();
        let mut pooled = Calibration::new();
        for (g, cal) in calibration.partition(groups)? {
            if self.is_pooled(&g) {
                pooled.merge(&cal)?;
                continue;
            }
            if let Ok(sets) = self.sets(&g) {
                out.extend(
                    cal.warnings(sets)
                        .into_iter()
                        .map(|w| Warning::InGroup { group: format!("group {g}"), warning: Box::new(w) }),
                );
            }
        }
        if let Some(p) = &self.pooled {
            let groups = list(p.groups.iter().map(|(g, _)| g));
            out.push(Warning::PooledGroups { groups: groups.clone(), n: p.sets.n() });
            out.extend(pooled.warnings(&p.sets).into_iter().map(|w| Warning::InGroup {
                group: format!("pooled groups {groups}"),
                warning: Box::new(w),
            }));
        }
        Ok(out)
    }
}

impl<TI: Transform, TO: Transform> GroupedSets<TI, TO> {
    /// The sets of a new image of `group`, with its group's thresholds.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`]; as [`ConfidenceSets::predict`].
    pub fn predict<I: AsImage + ?Sized>(&self, group: &Group, scores: &I) -> Result<Sets<I::Dim>> {
        self.sets(group)?.predict(scores)
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    //! JSON shape: `{groups: [{group, n, sets | pooled: true}],
    //! pooled: sets | absent, small_groups, guarantee}` with `sets` the
    //! single-group fitted sets. Reading checks that sizes, pooling and
    //! the fits agree.

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Group, GroupedSets, Pooled, SmallGroups, MAX_GROUPS};
    use crate::sets::ConfidenceSets;

    impl Serialize for Group {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Group::Id(id) => s.serialize_i64(*id),
                Group::Name(n) => s.serialize_str(n),
            }
        }
    }

    impl<'de> Deserialize<'de> for Group {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Repr {
                Id(i64),
                Name(String),
            }
            match Repr::deserialize(d)? {
                Repr::Id(id) => Ok(Group::Id(id)),
                Repr::Name(n) => n.parse().map_err(de::Error::custom),
            }
        }
    }

    impl Serialize for SmallGroups {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for SmallGroups {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            String::deserialize(d)?.parse().map_err(de::Error::custom)
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Entry<S> {
        group: Group,
        n: usize,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pooled: bool,
        #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
        sets: Option<S>,
    }

    #[derive(Serialize, Deserialize)]
    struct Repr<S> {
        groups: Vec<Entry<S>>,
        #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
        pooled: Option<S>,
        small_groups: SmallGroups,
        /// Strata of the predictions the groups are (absent: given labels).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strata: Option<String>,
        /// The predicted-mask threshold of the strata.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mask_threshold: Option<f64>,
        /// What the sets promise (written for the reader; not read back).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        guarantee: String,
    }

    impl<TI: Serialize + Clone, TO: Serialize + Clone> Serialize for GroupedSets<TI, TO> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut groups: Vec<Entry<&ConfidenceSets<TI, TO>>> = self
                .own
                .iter()
                .map(|(g, sets)| Entry { group: g.clone(), n: sets.n(), pooled: false, sets: Some(sets) })
                .collect();
            if let Some(p) = &self.pooled {
                groups.extend(p.groups.iter().map(|(g, n)| Entry {
                    group: g.clone(),
                    n: *n,
                    pooled: true,
                    sets: None,
                }));
            }
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            Repr {
                groups,
                pooled: self.pooled.as_ref().map(|p| &p.sets),
                small_groups: self.small_groups,
                strata: self.strata.as_ref().map(|s| s.strata.to_string()),
                mask_threshold: self.strata.as_ref().map(|s| s.mask_threshold),
                guarantee: self.guarantee_text(),
            }
            .serialize(s)
        }
    }

    impl<'de, TI, TO> Deserialize<'de> for GroupedSets<TI, TO>
    where
        TI: Deserialize<'de> + PartialEq,
        TO: Deserialize<'de> + PartialEq,
    {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r: Repr<ConfidenceSets<TI, TO>> = crate::json::one_line_errors(d)?;
            let err = |m: String| de::Error::custom(m);
            if r.groups.is_empty() {
                return Err(err("\"groups\" is empty: at least one group is needed".into()));
            }
            if r.groups.len() > MAX_GROUPS {
                return Err(err(format!("more than {MAX_GROUPS} groups")));
            }
            let mut own = Vec::new();
            let mut small = Vec::new();
            for (i, e) in r.groups.into_iter().enumerate() {
                let at = format!("groups[{i}] (group {})", e.group);
                match (e.pooled, e.sets) {
                    (false, Some(sets)) => {
                        if sets.n() != e.n {
                            return Err(err(format!("{at}: n = {} but its sets have n = {}", e.n, sets.n())));
                        }
                        own.push((e.group, sets));
                    }
                    (false, None) => return Err(err(format!("{at}: no \"sets\" and not pooled"))),
                    (true, Some(_)) => return Err(err(format!("{at}: a pooled group has no own \"sets\""))),
                    (true, None) => {
                        if e.n == 0 {
                            return Err(err(format!("{at}: n = 0")));
                        }
                        small.push((e.group, e.n));
                    }
                }
            }
            own.sort_by(|a, b| a.0.cmp(&b.0));
            small.sort();
            let mut all: Vec<&Group> =
                own.iter().map(|(g, _)| g).chain(small.iter().map(|(g, _)| g)).collect();
            all.sort();
            if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
                return Err(err(format!("group {} appears twice in \"groups\"", w[0])));
            }
            let pooled = match (small.is_empty(), r.pooled) {
                (true, None) => None,
                (true, Some(_)) => return Err(err("\"pooled\" sets but no group is pooled".into())),
                (false, None) => return Err(err("pooled groups but no \"pooled\" sets".into())),
                (false, Some(sets)) => {
                    if r.small_groups != SmallGroups::Pool {
                        return Err(err(format!(
                            "groups are pooled but small_groups is \"{}\", not \"pool\"",
                            r.small_groups
                        )));
                    }
                    let total: usize = small.iter().map(|(_, n)| n).sum();
                    if sets.n() != total {
                        return Err(err(format!(
                            "\"pooled\" sets have n = {} but the pooled groups have {total} images",
                            sets.n()
                        )));
                    }
                    Some(Pooled { groups: small, sets })
                }
            };
            let strata = match (r.strata, r.mask_threshold) {
                (None, None) => None,
                (Some(s), t) => {
                    let strata = s.parse().map_err(|e: crate::Error| err(format!("\"strata\": {e}")))?;
                    let mask_threshold = t.unwrap_or(0.0);
                    if !mask_threshold.is_finite() {
                        return Err(err("\"mask_threshold\" is not finite".into()));
                    }
                    Some(super::Stratification { strata, mask_threshold })
                }
                (None, Some(_)) => return Err(err("\"mask_threshold\" without \"strata\"".into())),
            };
            let out = GroupedSets { own, pooled, small_groups: r.small_groups, strata };
            let mut fits = out.fits();
            if let Some(first) = fits.next() {
                for other in fits.by_ref() {
                    if other.guarantee() != first.guarantee()
                        || other.transforms() != first.transforms()
                        || other.ndim() != first.ndim()
                        || other.per_image_spacing() != first.per_image_spacing()
                    {
                        return Err(err(
                            "the groups' sets differ in mode, levels, transforms or spacing: one fit per group \
                             of one calibration is needed"
                                .into(),
                        ));
                    }
                }
            }
            drop(fits);
            Ok(out)
        }
    }
}
