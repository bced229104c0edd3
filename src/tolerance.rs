//! Tolerances: how many voxels a set may get wrong and still count as
//! covering (METHOD.md §4.4).
//!
//! The paper's event is containment, `I ⊆ Y ⊆ O`: not one voxel wrong. A
//! [`Tolerance`] relaxes one side to "at most `m` voxels wrong", "at most a
//! share `ε` wrong" or "at most `V` mm³ wrong":
//!
//! | side  | tolerance        | event                                 |
//! |-------|------------------|---------------------------------------|
//! | outer | `5vox`           | `\|Y \ O\| <= 5`                      |
//! | outer | `0.01` (a share) | `\|Y \ O\| <= ⌊0.01 \|Y\|⌋` (recall ≥ 0.99) |
//! | outer | `12.5mm3`        | `vol(Y \ O) <= 12.5 mm³`              |
//! | inner | `5vox`           | `\|I \ Y\| <= 5`                      |
//! | inner | `0.05` (a share) | `\|I \ Y\| <= 0.05 \|I\|` (false discovery proportion) |
//! | inner | `12.5mm3`        | `vol(I \ Y) <= 12.5 mm³`              |
//!
//! The per-image statistic becomes the smallest threshold at which the
//! image's event holds, and the conformal quantile of those gives
//! `P(event) >= 1 - alpha` exactly as the maximum does for containment
//! (which is tolerance 0). The statistics are computed by
//! [`Calibrator`](crate::Calibrator)s given these tolerances
//! ([`Calibrator::with_tolerances`](crate::Calibrator::with_tolerances)).
//!
//! ```
//! use confseg::tolerance::{Tolerance, Tolerances};
//! let t: Tolerances = Tolerances::new("5vox".parse()?, "0.01".parse()?);
//! assert_eq!(t.inner, Tolerance::Voxels(5));
//! // a share is applied to the object's size as written: 1% of 250 voxels is 2
//! assert_eq!(t.outer.allowed(250, 1.0), 2);
//! # Ok::<(), confseg::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How much of one side's event may go wrong in one image.
///
/// `Tolerance::Voxels(0)` (the default, written `0`) is the paper's
/// containment. A share is written as a decimal below 1 (`0.05`) or a
/// percentage (`5%`), a count with `vox` (`5vox`), a physical volume with
/// `mm3` (`12.5mm3`, using each image's voxel spacing).
///
/// ```
/// use confseg::tolerance::Tolerance;
/// for text in ["0", "5vox", "0.05", "12.5mm3"] {
///     assert_eq!(text.parse::<Tolerance>()?.to_string(), text);
/// }
/// assert_eq!("5%".parse::<Tolerance>()?, "0.05".parse()?);
/// assert!("5".parse::<Tolerance>().unwrap_err().to_string().contains("5vox"));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// At most this many voxels wrong (0: containment).
    Voxels(u64),
    /// At most this share of the relevant region wrong: of the object
    /// `|Y|` on the outer side, of the inner set `|I|` on the inner side.
    Share(Share),
    /// At most this physical volume (mm³, from each image's spacing) wrong.
    Volume(Volume),
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Voxels(0)
    }
}

impl Tolerance {
    /// Containment: no voxel wrong.
    pub const NONE: Tolerance = Tolerance::Voxels(0);

    /// Whether this is containment (the paper's event): no voxel may be
    /// wrong, whatever the image.
    #[must_use]
    pub fn is_none(&self) -> bool {
        match *self {
            Tolerance::Voxels(m) => m == 0,
            Tolerance::Share(s) => s.get() == 0.0,
            Tolerance::Volume(_) => false,
        }
    }

    /// The number of voxels that may be wrong in a region of `n` voxels
    /// (the object on the outer side; for a count or a volume, any region)
    /// whose voxels each have volume `voxel_volume` (mm³).
    ///
    /// A share `ε` allows `⌊ε n⌋` voxels, computed exactly for `ε` as
    /// written in decimal (the shortest decimal that reads back as the
    /// same `f64`): `0.1` of 10 voxels is 1, `0.29` of 100 is 29 (in
    /// floating point `0.29 * 100 = 28.999…`). A volume `V` allows
    /// `⌊V / voxel_volume⌋` voxels, a quotient within `1e-9` (relative) of
    /// an integer counting as that integer (so that `1.5 mm³` of
    /// `0.5 × 0.5 × 2 mm` voxels is 3 whatever the rounding of the
    /// product).
    #[must_use]
    pub fn allowed(&self, n: u64, voxel_volume: f64) -> u64 {
        self.allowed_in(n, voxel_volume)
    }

    /// Whether `wrong` voxels of a region of `n` are within the tolerance
    /// (the event the calibration guarantees; a share is compared exactly,
    /// `wrong <= ε n`).
    #[must_use]
    pub fn holds(&self, wrong: u64, n: u64, voxel_volume: f64) -> bool {
        match *self {
            Tolerance::Share(share) => share.allows(wrong, n),
            t => wrong <= t.allowed_in(n, voxel_volume),
        }
    }

    fn allowed_in(&self, n: u64, voxel_volume: f64) -> u64 {
        match *self {
            Tolerance::Voxels(m) => m,
            Tolerance::Share(s) => s.of(n),
            Tolerance::Volume(v) => {
                let q = v.get() / voxel_volume;
                if !q.is_finite() {
                    return u64::MAX;
                }
                let r = q.round();
                let q = if (q - r).abs() <= 1e-9 * r.max(1.0) { r } else { q.floor() };
                // saturating: a tolerance of more voxels than any image has
                q as u64
            }
        }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Voxels(0) => write!(f, "0"),
            Tolerance::Voxels(m) => write!(f, "{m}vox"),
            Tolerance::Share(s) => write!(f, "{}", s.get()),
            Tolerance::Volume(v) => write!(f, "{}mm3", v.get()),
        }
    }
}

fn bad(value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidParameter { name: "tolerance", value: value.to_owned(), reason: reason.into() }
}

impl FromStr for Tolerance {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let number = |x: &str| x.trim().parse::<f64>().map_err(|_| ());
        if let Some(count) = t.strip_suffix("voxels").or_else(|| t.strip_suffix("vox")) {
            return count
                .trim()
                .parse::<u64>()
                .map(Tolerance::Voxels)
                .map_err(|_| bad(s, "a count of voxels is a whole number: write 5vox"));
        }
        if let Some(v) = t.strip_suffix("mm3") {
            let v = number(v).map_err(|_| bad(s, "a volume is a number of mm³: write 12.5mm3"))?;
            return Volume::new(v).map(Tolerance::Volume);
        }
        if let Some(p) = t.strip_suffix('%') {
            let p = number(p).map_err(|_| bad(s, "a percentage is a number: write 5%"))?;
            return Share::new(p / 100.0).map(Tolerance::Share);
        }
        let x = number(t).map_err(|_| {
            bad(s, "write a share below 1 (0.05), a percentage (5%), a count (5vox) or a volume (12.5mm3)")
        })?;
        if x == 0.0 {
            return Ok(Tolerance::NONE);
        }
        if x >= 1.0 && x.fract() == 0.0 {
            return Err(bad(s, format!("a share is below 1; for a count of voxels write {x}vox")));
        }
        Share::new(x).map(Tolerance::Share)
    }
}

/// A share `ε` in `[0, 1)`: the part of a region that may be wrong.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Share(f64);

impl Share {
    /// A share in `[0, 1)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for NaN, a negative share or one of 1
    /// or more (which would allow the whole region to be wrong).
    pub fn new(eps: f64) -> Result<Self> {
        if (0.0..1.0).contains(&eps) {
            Ok(Share(eps))
        } else {
            Err(bad(&eps.to_string(), "a share is at least 0 and below 1 (0.05 allows 5% of the region)"))
        }
    }

    /// The share.
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }

    /// `⌊ε n⌋` for `ε` as written in decimal (see [`Tolerance::allowed`]).
    ///
    /// Written by hand: the product in floating point is off by one just
    /// below integers, and no crate computes the floor of a decimal times
    /// an integer exactly without pulling in a big-number type.
    #[must_use]
    pub fn of(self, n: u64) -> u64 {
        // the shortest decimal that reads back as `self.0` (Rust's `Display`
        // of an f64 never uses an exponent): "0.29" -> 29 / 10^2
        let text = self.0.to_string();
        let frac = text.split_once('.').map_or("", |(_, f)| f);
        // at most 17 significant digits, so more than 38 digits after the
        // point means eps < 1e-21 and eps * n < 1 for every u64 n
        if frac.len() > 38 {
            return 0;
        }
        let num = if frac.is_empty() { 0 } else { frac.parse::<u128>().unwrap_or(0) };
        let den = 10u128.pow(frac.len() as u32);
        // num < 10^17 < 2^57 and n < 2^64: the product fits in u128
        (num * u128::from(n) / den) as u64
    }

    /// Whether `wrong` voxels out of `n` are within the share:
    /// `wrong <= ε n`, exactly.
    #[must_use]
    pub fn allows(self, wrong: u64, n: u64) -> bool {
        wrong <= self.of(n)
    }
}

/// A physical volume in mm³: positive and finite.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Volume(f64);

impl Volume {
    /// A volume in mm³.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless positive and finite.
    pub fn new(mm3: f64) -> Result<Self> {
        if mm3.is_finite() && mm3 > 0.0 {
            Ok(Volume(mm3))
        } else {
            Err(bad(&format!("{mm3}mm3"), "a volume is positive and finite"))
        }
    }

    /// The volume in mm³.
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }
}

/// The tolerance of each side: what event the calibrated sets promise
/// (containment on both sides by default).
///
/// `Display` states the event in symbols (`|I \ Y| <= 5 voxels and Y ⊆ O`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerances {
    /// Of the inner set: false positives `I \ Y`.
    pub inner: Tolerance,
    /// Of the outer set: misses `Y \ O`.
    pub outer: Tolerance,
}

impl Tolerances {
    /// Containment on both sides.
    pub const NONE: Tolerances = Tolerances { inner: Tolerance::NONE, outer: Tolerance::NONE };

    /// These tolerances per side.
    #[must_use]
    pub fn new(inner: Tolerance, outer: Tolerance) -> Self {
        Tolerances { inner, outer }
    }

    /// Whether both sides are containment.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.inner.is_none() && self.outer.is_none()
    }

    /// The inner side's event, in symbols (`words = false`: `I`, `Y`) or
    /// words (`inner`, `truth`): `I ⊆ Y`, `|I \ Y| <= 5 voxels`, ...
    #[must_use]
    pub fn inner_event(&self, words: bool) -> String {
        let (i, y) = if words { ("inner", "truth") } else { ("I", "Y") };
        event(self.inner, &format!("{i} ⊆ {y}"), &format!("{i} \\ {y}"), |e| format!("{e} |{i}|"))
    }

    /// The outer side's event: `Y ⊆ O`, `|Y \ O| <= ⌊0.01 |Y|⌋`, ...
    #[must_use]
    pub fn outer_event(&self, words: bool) -> String {
        let (y, o) = if words { ("truth", "outer") } else { ("Y", "O") };
        event(self.outer, &format!("{y} ⊆ {o}"), &format!("{y} \\ {o}"), |e| format!("⌊{e} |{y}|⌋"))
    }

    /// Both sides' events joined (`I ⊆ Y ⊆ O` when both are containment).
    #[must_use]
    pub fn joint_event(&self, words: bool) -> String {
        if self.is_none() {
            return if words { "inner ⊆ truth ⊆ outer".into() } else { "I ⊆ Y ⊆ O".into() };
        }
        format!("{} and {}", self.inner_event(words), self.outer_event(words))
    }
}

/// One side's event: `contained` for no tolerance, else the bound on
/// `|wrong|`; `share` writes the bound a share `ε` gives.
fn event(t: Tolerance, contained: &str, wrong: &str, share: impl Fn(f64) -> String) -> String {
    match t {
        t if t.is_none() => contained.to_owned(),
        Tolerance::Voxels(m) => format!("|{wrong}| <= {m} voxel{}", if m == 1 { "" } else { "s" }),
        Tolerance::Volume(v) => format!("vol({wrong}) <= {} mm3", v.get()),
        Tolerance::Share(s) => format!("|{wrong}| <= {}", share(s.get())),
    }
}

impl fmt::Display for Tolerances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.joint_event(f.alternate()))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Tolerance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Tolerance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Tolerances {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Tolerances", 2)?;
        st.serialize_field("inner", &self.inner)?;
        st.serialize_field("outer", &self.outer)?;
        st.end()
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Tolerances {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            inner: Tolerance,
            #[serde(default)]
            outer: Tolerance,
        }
        let r = Raw::deserialize(d)?;
        Ok(Tolerances { inner: r.inner, outer: r.outer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_applied_as_written() {
        let s = |e: f64| Share::new(e).unwrap();
        assert_eq!(s(0.1).of(10), 1);
        assert_eq!(s(0.29).of(100), 29);
        assert_eq!(0.29_f64 * 100.0, 28.999_999_999_999_996); // what a float floor would see
        assert_eq!(s(0.07).of(100), 7);
        assert_eq!(s(0.57).of(100), 57);
        assert_eq!(s(0.1).of(9), 0);
        assert_eq!(s(0.0).of(u64::MAX), 0);
        assert_eq!(s(0.5).of(u64::MAX), u64::MAX / 2);
        assert_eq!(s(1e-30).of(u64::MAX), 0);
        assert_eq!(s(0.999_999_999_999_999_8).of(10), 9); // the largest f64 below 1
                                                          // every ε = k/1000 against exact integer arithmetic
        for k in 0..1000u64 {
            let e: f64 = format!("0.{k:03}").parse().unwrap();
            for n in [0, 1, 7, 10, 100, 999, 1000, 12_345, 1 << 40] {
                assert_eq!(s(e).of(n), k * n / 1000, "ε = {e}, n = {n}");
                assert!(s(e).allows(k * n / 1000, n) && !s(e).allows(k * n / 1000 + 1, n));
            }
        }
    }

    #[test]
    fn volumes_count_whole_voxels() {
        let v = |x: f64| Tolerance::Volume(Volume::new(x).unwrap());
        assert_eq!(v(1.5).allowed(0, 0.5 * 0.5 * 2.0), 3);
        assert_eq!(v(1.4).allowed(0, 0.5), 2);
        // 0.1 * 3 = 0.30000000000000004: 0.3 mm³ of 0.1 mm³ voxels is 3 voxels
        assert_eq!(v(0.3).allowed(0, 0.1), 3);
        assert_eq!(v(0.3 - 1e-6).allowed(0, 0.1), 2);
        assert_eq!(v(12.5).allowed(0, 0.0), u64::MAX);
        assert_eq!(v(1e300).allowed(0, 1e-300), u64::MAX);
    }

    #[test]
    fn parsing_names_what_is_wrong() {
        let p = |s: &str| s.parse::<Tolerance>();
        assert_eq!(p("0").unwrap(), Tolerance::NONE);
        assert!(p("0").unwrap().is_none() && p("0.0").unwrap().is_none() && p("0vox").unwrap().is_none());
        assert!(!p("1vox").unwrap().is_none() && !p("1mm3").unwrap().is_none());
        assert_eq!(p("7 voxels").unwrap(), Tolerance::Voxels(7));
        assert_eq!(p("2.5%").unwrap(), Tolerance::Share(Share::new(0.025).unwrap()));
        for (text, needle) in [
            ("5", "5vox"),
            ("1", "1vox"),
            ("1.5", "below 1"),
            ("-0.1", "at least 0"),
            ("NaN", "at least 0"),
            ("2.5vox", "whole number"),
            ("-3mm3", "positive"),
            ("infmm3", "positive"),
            ("abc", "5vox"),
            ("100%", "below 1"),
        ] {
            let e = p(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("tolerance"), "{text}: {e}");
        }
    }

    #[test]
    fn events_read_as_promised() {
        let t = Tolerances::new("5vox".parse().unwrap(), "0.01".parse().unwrap());
        assert_eq!(t.to_string(), "|I \\ Y| <= 5 voxels and |Y \\ O| <= ⌊0.01 |Y|⌋");
        assert_eq!(format!("{t:#}"), "|inner \\ truth| <= 5 voxels and |truth \\ outer| <= ⌊0.01 |truth|⌋");
        assert_eq!(Tolerances::NONE.to_string(), "I ⊆ Y ⊆ O");
        let t = Tolerances::new("0.05".parse().unwrap(), Tolerance::NONE);
        assert_eq!(t.inner_event(false), "|I \\ Y| <= 0.05 |I|");
        assert_eq!(t.outer_event(false), "Y ⊆ O");
    }
}
