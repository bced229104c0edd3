//! One self-contained HTML report (feature `plot`): what the fitted sets
//! promise and what they did, for people to look at.
//!
//! A [`Page`] is built section by section and written as one HTML file
//! whose pictures are embedded (PNG as `data:` URIs) and whose style is
//! inline: nothing is loaded from elsewhere, so the file can be mailed,
//! archived or opened offline.
//!
//! * [`Page::guarantee`]: the guarantee and the thresholds in words, an
//!   infinite threshold said as what it does ("λ_O = +∞: the outer set is
//!   the whole image");
//! * [`Page::statistics`]: histograms of the calibration statistics `τ_i`
//!   (inner) and `γ_i` (outer) with the thresholds marked, or a note saying
//!   why they are unavailable and how to get them;
//! * [`Page::coverage`]: coverage of the guaranteed events on labelled
//!   images with exact 95% intervals against the nominal levels, and the
//!   set sizes of every image;
//! * [`Page::validation`]: coverage against `1 - α` and set sizes of the
//!   methods of a validation, one fixed colour per method;
//! * [`Page::montage`]: slices through each shown image with the contours
//!   of the true mask, the inner and the outer set, orientation letters
//!   and a scale bar ([`Montage`]).
//!
//! [`prediction_page`] runs a prediction through a [`Reader`] (the
//! reader `predict` uses) and builds the whole page.
//!
//! Colours are fixed: inner set red, outer set blue, true mask yellow; each
//! validation method has its own colour ([`method_colour`]).
//!
//! **Where things are.** `page` holds the [`Page`] and its sections (the
//! HTML and the words); `figures` the charts a section embeds (histograms,
//! coverage bars, set sizes, levels), drawn with `plotters`; `montage` the
//! slices with their contours, orientation letters and scale bar. This
//! file holds the text helpers they share and the two whole pages,
//! [`prediction_page`] and [`validation_page`].

// the page and its sections
mod page;
// the charts they embed
mod figures;
// the slices with their contours
mod montage;

use std::sync::Arc;

use plotters::prelude::*;

use crate::calibrate::Calibration;
use crate::error::Result;
use crate::evaluate::Report;
use crate::image::Spacing;
use crate::levels::Guarantee;
use crate::pipeline::{Extras, Reader, Summary};
use crate::plot::Figure;
use crate::quantile::{Side, Threshold};
use crate::sets::ConfidenceSets;
use crate::transform::Transform;

pub use montage::Montage;
pub use page::Page;

/// The most images a montage shows by default.
pub const DEFAULT_SUBJECTS: usize = 8;
/// The most images a montage may show (each panel is a few tens of kB).
pub const MAX_SUBJECTS: usize = 200;
/// Slices per 3-D image by default.
pub const DEFAULT_SLICES: usize = 3;
/// The most slices per 3-D image.
pub const MAX_SLICES: usize = 12;
/// Rows of the per-image table, at most.
const MAX_TABLE_ROWS: usize = 2000;

/// A colour as CSS `#rrggbb`.
fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// The fixed colour of a validation method, by its name
/// ([`Report::method`]): conformal sets blue, risk control orange, the
/// pixel-wise baseline green, the morphological baselines purple (full
/// footprint) and brown (face footprint); another name gray.
#[must_use]
pub fn method_colour(method: &str) -> (u8, u8, u8) {
    let c = if method.starts_with("conformal") {
        RGBColor(31, 119, 180)
    } else if method.starts_with("risk") {
        RGBColor(255, 127, 14)
    } else if method.starts_with("pixelwise") {
        RGBColor(44, 160, 44)
    } else if method.starts_with("morphological full") {
        RGBColor(148, 103, 189)
    } else if method.starts_with("morphological") {
        RGBColor(140, 86, 75)
    } else {
        RGBColor(127, 127, 127)
    };
    (c.0, c.1, c.2)
}

/// Text for HTML (`&`, `<`, `>`, `"` and `'` escaped).
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An `<img>` of PNG bytes, embedded.
fn img(png: &[u8], alt: &str, class: &str) -> String {
    format!("<img class=\"{class}\" alt=\"{}\" src=\"data:image/png;base64,{}\">", escape(alt), base64(png))
}

/// A figure embedded as an `<img>`, or a note if it could not be drawn.
fn figure_img<F: Figure>(figure: &F, alt: &str) -> String {
    match crate::plot::png(figure) {
        Ok(png) => img(&png, alt, "figure"),
        Err(e) => format!("<p class=\"note\">(the figure could not be drawn: {})</p>", escape(&e)),
    }
}

/// A number as the fitted file writes it: shortest round trip, `+∞`/`−∞`.
fn number(x: f64) -> String {
    if x == f64::INFINITY {
        "+∞".into()
    } else if x == f64::NEG_INFINITY {
        "−∞".into()
    } else if x == 0.0 {
        "0".into()
    } else {
        format!("{x}")
    }
}

/// What a threshold does to its set, in words (for infinite thresholds and
/// thresholds no voxel can pass).
fn threshold_words(side: Side, t: &Threshold) -> Option<&'static str> {
    let v = t.value();
    match (side, v == f64::INFINITY, v == f64::NEG_INFINITY) {
        (Side::Inner, true, _) => Some("the inner set is empty"),
        (Side::Outer, true, _) => Some("the outer set is the whole image"),
        (Side::Inner, _, true) => Some("the inner set holds every voxel of finite score"),
        (Side::Outer, _, true) => Some("the outer set holds only voxels of infinite outer score"),
        _ => None,
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, `21st`, ...
fn ordinal(k: usize) -> String {
    let suffix = match (k % 10, k % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{k}{suffix}")
}

/// `1 image`, `2 images`.
fn images(n: usize) -> String {
    if n == 1 {
        "1 image".into()
    } else {
        format!("{n} images")
    }
}

/// `1 image has`, `2 images have`.
fn with_verb(n: usize) -> String {
    format!("{} {}", images(n), if n == 1 { "has" } else { "have" })
}

/// A number with 4 significant digits, for labels in figures.
fn short(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return number(x);
    }
    let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.digits$}")
}

fn tick(met: bool) -> &'static str {
    if met {
        "<span class=\"ok\">yes</span>"
    } else {
        "<span class=\"miss\">no</span>"
    }
}

fn percent(x: f64) -> String {
    let p = 100.0 * x;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{}", (p * 1000.0).round() / 1000.0)
    }
}

/// Nominal levels of the inner, outer and joint events: `1 - α` of each
/// side and of a joint mode (the union bound `1 - α_I - α_O` for
/// marginal sets); none for risk control.
fn nominal_levels(g: &Guarantee) -> [Option<f64>; 3] {
    match g {
        Guarantee::Conformal(m) => {
            let (i, o) = (m.inner_alpha().get(), m.outer_alpha().get());
            let joint = m.joint_alpha().map_or((1.0 - i - o).max(0.0), |a| 1.0 - a.get());
            [Some(1.0 - i), Some(1.0 - o), Some(joint)]
        }
        Guarantee::RiskControl(_) => [None, None, None],
    }
}

/// Method names in order of first appearance.
fn method_names(reports: &[Report]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in reports {
        if !out.contains(&r.method) {
            out.push(r.method.clone());
        }
    }
    out
}

/// What a prediction report shows, beyond the sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// The page's title.
    pub title: String,
    /// Where the calibration came from (e.g. its file), said with the guarantee.
    pub calibration: String,
    /// The most images in the montage ([`DEFAULT_SUBJECTS`]).
    pub subjects: usize,
    /// Slices per 3-D image ([`DEFAULT_SLICES`]).
    pub slices: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            title: "Conformal segmentation report".into(),
            calibration: "the calibration file".into(),
            subjects: DEFAULT_SUBJECTS,
            slices: DEFAULT_SLICES,
        }
    }
}

/// The report of a prediction: `sets` predicted on every image of
/// `reader` (as [`Reader::predict`], with its masks when it has them: the
/// coverage is the prediction's own), the calibration `statistics` the
/// sets were fitted on (`None`: the page says the histograms are
/// unavailable and how to get them), and the montage of the first
/// `options.subjects` images. Returns the page and the run's summary.
///
/// # Errors
/// As [`Reader::predict`]; [`Error::InvalidParameter`](crate::Error::InvalidParameter) for options out of
/// range ([`Montage::new`]).
pub fn prediction_page<TI, TO>(
    reader: &Arc<Reader>,
    sets: &ConfidenceSets<TI, TO>,
    statistics: Option<&Calibration>,
    options: &ReportOptions,
) -> Result<(Page, Summary)>
where
    TI: Transform + Sync,
    TO: Transform + Sync,
{
    let mut montage = Montage::new(options.subjects, options.slices)?;
    let n = reader.scores.n_images();
    let images: Vec<usize> = (0..n).collect();
    let cohort = reader.scores.cohort().cloned();
    let name = |i: usize| {
        cohort
            .as_ref()
            .and_then(|c| c.subjects().get(i))
            .map_or_else(|| format!("image {i}"), |s| s.id.clone())
    };
    let mut rows = Vec::with_capacity(n.min(MAX_TABLE_ROWS));
    let fitted_spacing = (!sets.spacing().is_unit()).then(|| sets.spacing().clone());
    let extras = Extras { scores: true, measures: true };
    let summary = reader.predict(sets, &images, extras, |i, p| {
        let id = name(i);
        if let Some(m) = p.measures {
            rows.push((id.clone(), m, p.coverage));
        }
        if montage.wants_more() {
            if let Some((scores, own)) = &p.scores {
                let nd = scores.ndim();
                let spacing: Option<Spacing> = own
                    .clone()
                    .or_else(|| reader.spacings.as_ref().map(|s| s[i].clone()))
                    .or_else(|| fitted_spacing.clone());
                let spacing: Option<Vec<f64>> =
                    spacing.and_then(|s| s.for_ndim(nd).ok().map(std::borrow::Cow::into_owned));
                // the true contour of the object (ignored voxels drawn as background)
                let truth = match &reader.masks {
                    Some(_) => Some(reader.mask(i)?.mapv(|v| u8::from(v == crate::mask::Voxel::Object))),
                    None => None,
                };
                let affine = cohort
                    .as_ref()
                    .and_then(|c| c.info(i).ok())
                    .and_then(|info| info.geometry)
                    .and_then(|g| g.affine().copied());
                montage.add(
                    &id,
                    scores,
                    &p.sets,
                    truth.as_ref(),
                    spacing.as_deref(),
                    affine.as_ref(),
                    p.coverage,
                )?;
            }
        } else {
            montage.skipped += 1;
        }
        Ok(())
    })?;
    let mut page = Page::new(&options.title);
    page.paragraph(&format!("Sets predicted for {} images of {}.", n, reader.scores.describe()));
    page.guarantee(sets, &options.calibration);
    let missing = match sets.guarantee() {
        Guarantee::RiskControl(_) => {
            "risk control is fitted on every object voxel's score, not on one pair of statistics per image."
        }
        Guarantee::Conformal(_) => {
            "the calibration file does not keep them (files written before confseg kept its statistics, or \
             calibrations of more than 100000 images). Calibrate again with this version of confseg to get them."
        }
    };
    page.coverage(&summary, sets.guarantee());
    page.montage(&montage);
    page.statistics(statistics, Some(sets.thresholds()), missing);
    page.set_sizes(&rows);
    Ok((page, summary))
}

/// The report of a validation ([`Validation::run`](crate::evaluate::Validation::run)):
/// `about` (what was validated, in a sentence), coverage against
/// `1 - α` and set sizes per method ([`Page::validation`]), and the
/// histograms of the pool's calibration `statistics` (thresholds differ
/// from split to split, so none is marked).
#[must_use]
pub fn validation_page(reports: &[Report], statistics: &Calibration, about: &str) -> Page {
    let mut page = Page::new("Conformal segmentation: validation report");
    page.paragraph(about);
    page.validation(reports);
    page.statistics(Some(statistics), None, "");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn infinite_thresholds_are_said_in_words() {
        let t = Threshold::TooFewImages { n: 5, needed: 19 };
        assert_eq!(threshold_words(Side::Outer, &t), Some("the outer set is the whole image"));
        assert_eq!(threshold_words(Side::Inner, &t), Some("the inner set is empty"));
        assert_eq!(threshold_words(Side::Inner, &Threshold::OrderStatistic { k: 3, value: 0.5 }), None);
    }
}
