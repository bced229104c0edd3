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

use crate::calibrate::{Calibration, Calibrator};
use crate::error::{Error, Result, Warning};
use crate::image::AsImage;
use crate::levels::Mode;
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
    /// use confseg::{Calibration, ImageStatistics};
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
        check_labels(groups, self.len(), "the calibration")?;
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
        members.into_iter().map(|(g, idx)| Ok((g.clone(), self.select(&idx)?))).collect()
    }
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
        if parts.is_empty() {
            return Err(Error::NoCalibrationData);
        }
        let needed = mode.min_calibration_size();
        let mut own = Vec::with_capacity(parts.len());
        let mut small: Vec<(Group, usize)> = Vec::new();
        let mut pool = Calibration::new();
        for (g, cal) in parts {
            if small_groups == SmallGroups::Pool && cal.len() < needed {
                small.push((g, cal.len()));
                pool.merge(&cal)?;
            } else {
                own.push((g, self.fit(&cal, mode)?));
            }
        }
        let pooled = if small.is_empty() {
            None
        } else {
            Some(Pooled { groups: small, sets: self.fit(&pool, mode)? })
        };
        Ok(GroupedSets { own, pooled, small_groups })
    }
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
            let out = GroupedSets { own, pooled, small_groups: r.small_groups };
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
