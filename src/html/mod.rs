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

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use ndarray::{ArrayD, Axis, IxDyn};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::calibrate::Calibration;
use crate::error::{Error, FileProblem, Result};
use crate::evaluate::Report;
use crate::image::{Affine, Spacing};
use crate::levels::Guarantee;
use crate::pipeline::{Extras, Reader, Summary};
use crate::plot::{Figure, INNER, OUTER, TRUTH};
use crate::quantile::{Side, Threshold, Thresholds};
use crate::sets::{ConfidenceSets, Coverage, SetMeasures, Sets};
use crate::transform::Transform;

/// The most images a montage shows by default.
pub const DEFAULT_SUBJECTS: usize = 8;
/// The most images a montage may show (each panel is a few tens of kB).
pub const MAX_SUBJECTS: usize = 200;
/// Slices per 3-D image by default.
pub const DEFAULT_SLICES: usize = 3;
/// The most slices per 3-D image.
pub const MAX_SLICES: usize = 12;
/// Panels are drawn this many pixels across their longer side.
const PANEL_PX: f64 = 256.0;
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

/// The report page: sections appended in order, written as one
/// self-contained HTML file.
///
/// ```
/// use confseg::html::Page;
/// let mut page = Page::new("Conformal sets");
/// page.note("Nothing predicted yet.");
/// let html = page.html();
/// assert!(html.starts_with("<!DOCTYPE html>") && html.contains("Nothing predicted yet."));
/// assert!(!html.contains("src=\"http"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Page {
    title: String,
    body: String,
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;margin:24px auto;max-width:1180px;\
color:#222;background:#fff;line-height:1.45}h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;\
border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:30px}table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:14px}th{background:#f2f2f2}\
td.l,th.l{text-align:left}.note{color:#555;font-style:italic}.inf{color:#b00;font-weight:bold}\
.legend span{display:inline-block;margin-right:18px}.sw{display:inline-block;width:26px;height:0;\
border-top:4px solid;vertical-align:middle;margin-right:6px}.figure{max-width:100%;border:1px solid #eee}\
.montage{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:10px}h3{font-size:16px;margin:14px 0 4px}.panel{margin:0;font-size:12px}\
.frame{display:grid;grid-template-columns:16px auto 16px;grid-template-rows:16px auto 16px;align-items:center;\
justify-items:center;font-weight:bold;font-size:13px;color:#333}.panel img{display:block;image-rendering:pixelated}\
.panel figcaption{max-width:300px}.ok{color:#080}.miss{color:#b00;font-weight:bold}";

impl Page {
    /// An empty page with this title.
    #[must_use]
    pub fn new(title: &str) -> Self {
        Page { title: title.to_owned(), body: String::new() }
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) {
        let _ = writeln!(self.body, "<h2>{}</h2>", escape(text));
    }

    /// A paragraph of plain text.
    pub fn paragraph(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    /// A note (in italics) of plain text.
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    /// The guarantee of `sets` and their thresholds in words; `source`
    /// says where the calibration came from (e.g. the file's name).
    pub fn guarantee<TI: Transform, TO: Transform>(&mut self, sets: &ConfidenceSets<TI, TO>, source: &str) {
        let g = sets.guarantee();
        let n = sets.n();
        self.heading("Guarantee and thresholds");
        let _ = writeln!(
            self.body,
            "<p>Calibrated on <b>n = {n}</b> labelled images ({}), levels: {}.</p>",
            escape(source),
            escape(&g.levels())
        );
        let _ = writeln!(self.body, "<p><b>Guarantee:</b> {}.</p>", escape(&format!("{g:#}")));
        let words = match g {
            Guarantee::Conformal(m) => match m.joint_alpha() {
                Some(a) => format!(
                    "For a new image exchangeable with the calibration images, with probability at least \
                     {}% the inner set lies inside the true object and the object lies inside the outer set.",
                    percent(1.0 - a.get())
                ),
                None => format!(
                    "For a new image exchangeable with the calibration images, the inner set lies inside the \
                     object with probability at least {}%, and the object lies inside the outer set with \
                     probability at least {}% (each on its own).",
                    percent(1.0 - m.inner_alpha().get()),
                    percent(1.0 - m.outer_alpha().get())
                ),
            },
            Guarantee::RiskControl(_) => "Risk control bounds an expected share of the object, not the \
                                          probability of containing it; there is no inner set."
                .to_owned(),
        };
        let _ = writeln!(self.body, "<p>{}</p>", escape(&words));
        let _ = writeln!(
            self.body,
            "<table><tr><th class=\"l\">set</th><th class=\"l\">rule</th><th class=\"l\">transform</th>\
             <th>α</th><th class=\"l\">threshold</th></tr>"
        );
        let t = sets.thresholds();
        for (side, transform, rule) in [
            (Side::Inner, sets.inner_transform().describe(), "I = {v : f_I(v) > λ_I}"),
            (Side::Outer, sets.outer_transform().describe(), "O = {v : −f_O(v) ≤ λ_O}"),
        ] {
            let th = t.side(side);
            let l = side.letter();
            let value = format!("λ_{l} = {}", number(th.value()));
            let how = match th {
                Threshold::OrderStatistic { k, .. } => format!(" (the {} smallest of {n})", ordinal(k)),
                Threshold::TooFewImages { needed, .. } => {
                    format!(" (too few images: {needed} are needed for a finite threshold)")
                }
                Threshold::RiskControl { .. } => " (risk control)".to_owned(),
            };
            let cell = match threshold_words(side, &th) {
                Some(w) => format!("<span class=\"inf\">{}: {w}</span>{}", escape(&value), escape(&how)),
                None => format!("{}{}", escape(&value), escape(&how)),
            };
            let _ = writeln!(
                self.body,
                "<tr><td class=\"l\">{side}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td>\
                 <td class=\"l\">{cell}</td></tr>",
                escape(rule),
                escape(&transform),
                g.alpha(side).get()
            );
        }
        self.body.push_str("</table>\n");
    }

    /// Histograms of the calibration statistics `τ_i` (inner) and `γ_i`
    /// (outer), with the thresholds marked when given (an infinite one
    /// marked at the edge and said in words); without statistics, a note
    /// saying why and how to get them (`missing`).
    pub fn statistics(
        &mut self,
        statistics: Option<&Calibration>,
        thresholds: Option<&Thresholds>,
        missing: &str,
    ) {
        self.heading("Calibration statistics");
        let Some(c) = statistics else {
            self.note(&format!("The histograms of the calibration statistics are unavailable: {missing}"));
            return;
        };
        let _ = writeln!(
            self.body,
            "<p>One pair per calibration image ({} images): τ_i, the largest inner score outside the true \
             object, and γ_i, the largest negated outer score inside it. The inner set of an image contains no \
             background exactly when its τ ≤ λ_I, and the outer set contains the whole object exactly when its \
             γ ≤ λ_O.</p>",
            c.len()
        );
        for (side, values) in [(Side::Inner, c.tau()), (Side::Outer, c.gamma())] {
            let fig = Histogram::new(side, values, thresholds.map(|t| t.side(side).value()));
            let alt = format!("histogram of the {side} statistics");
            let _ = writeln!(self.body, "{}", figure_img(&fig, &alt));
            if let Some(note) = fig.infinite_note() {
                self.note(&note);
            }
        }
    }

    /// Coverage of the guaranteed events on the labelled images of a
    /// prediction run (`summary`, e.g. from `predict --masks`) with exact
    /// 95% (Clopper–Pearson) intervals, against the nominal levels of
    /// `guarantee`.
    pub fn coverage(&mut self, summary: &Summary, guarantee: &Guarantee) {
        self.heading("Coverage on these images");
        let n = summary.labelled;
        if n == 0 {
            self.note(
                "No true masks were given, so coverage was not checked (give the true masks: --masks).",
            );
            return;
        }
        let nominal = nominal_levels(guarantee);
        let mut rows = Vec::new();
        let _ = writeln!(
            self.body,
            "<table><tr><th class=\"l\">event</th><th>images met</th><th>coverage</th><th>95% interval</th>\
             <th>nominal</th></tr>"
        );
        for ((event, k), nominal) in
            ["I ⊆ Y (inner)", "Y ⊆ O (outer)", "I ⊆ Y ⊆ O (joint)"].iter().zip(summary.covered).zip(nominal)
        {
            let (lo, hi) = crate::evaluate::clopper_pearson(k, n, 0.95).unwrap_or((0.0, 1.0));
            let share = k as f64 / n as f64;
            rows.push((share, lo, hi, nominal));
            let _ = writeln!(
                self.body,
                "<tr><td class=\"l\">{}</td><td>{k} of {n}</td><td>{share:.3}</td><td>[{lo:.3}, {hi:.3}]</td>\
                 <td>{}</td></tr>",
                escape(event),
                nominal.map_or_else(|| "—".to_owned(), |x| format!("≥ {x:.3}"))
            );
        }
        self.body.push_str("</table>\n");
        let _ = writeln!(
            self.body,
            "{}",
            figure_img(&CoverageBars { rows }, "coverage against the nominal levels")
        );
        self.note(
            "Dots: observed coverage; bars: exact 95% binomial intervals; black ticks: the guaranteed level. \
             The guarantee is over new images and calibration sets; on few images the interval is wide.",
        );
    }

    /// Set sizes of the images of a prediction run: the share of each
    /// image in the inner and the outer set, and a table per image
    /// (`rows`: the image's name, its measures and its coverage).
    pub fn set_sizes(&mut self, rows: &[(String, SetMeasures, Option<Coverage>)]) {
        self.heading("Set sizes");
        if rows.is_empty() {
            self.note("No images were predicted.");
            return;
        }
        let whole = rows.iter().filter(|r| r.1.whole_outer()).count();
        let empty = rows.iter().filter(|r| r.1.empty_inner()).count();
        let _ = writeln!(
            self.body,
            "<p>{}; the inner set is empty in {empty} and the outer set is the whole image in {whole}.</p>",
            images(rows.len())
        );
        let fig = SizeFigure {
            shares: rows
                .iter()
                .map(|r| {
                    let v = r.1.voxels.max(1) as f64;
                    (r.1.inner_voxels as f64 / v, r.1.outer_voxels as f64 / v)
                })
                .collect(),
        };
        let _ = writeln!(self.body, "{}", figure_img(&fig, "inner and outer set sizes per image"));
        let checked = rows.iter().any(|r| r.2.is_some());
        let _ = write!(
            self.body,
            "<table><tr><th class=\"l\">image</th><th>inner voxels</th><th>band voxels</th><th>outer voxels</th>\
             <th>inner mL</th><th>outer mL</th><th>band mean width</th>"
        );
        if checked {
            self.body.push_str("<th>I ⊆ Y</th><th>Y ⊆ O</th>");
        }
        self.body.push_str("</tr>\n");
        for (id, m, c) in rows.iter().take(MAX_TABLE_ROWS) {
            let _ = write!(
                self.body,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td>",
                escape(id),
                m.inner_voxels,
                m.band_voxels,
                m.outer_voxels,
                m.inner_volume() / 1000.0,
                m.outer_volume() / 1000.0,
                m.band_width.map_or_else(|| "—".to_owned(), |w| format!("{:.2}", w.mean))
            );
            if let Some(c) = c {
                let _ = write!(self.body, "<td>{}</td><td>{}</td>", tick(c.inner), tick(c.outer));
            } else if checked {
                self.body.push_str("<td></td><td></td>");
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
        if rows.len() > MAX_TABLE_ROWS {
            self.note(&format!("The table shows the first {MAX_TABLE_ROWS} of {} images.", rows.len()));
        }
        self.note("Volumes take the spacing in mm (1 mL = 1000 mm³); the band is the outer set minus the inner set.");
    }

    /// Coverage against the nominal level `1 - α` and set sizes of the
    /// methods of a validation (`reports`, one per method and level), one
    /// fixed colour per method; levels where some splits had too few
    /// calibration images (infinite thresholds) are marked.
    pub fn validation(&mut self, reports: &[Report]) {
        self.heading("Coverage against the level");
        if reports.is_empty() {
            self.note("No validation results.");
            return;
        }
        let methods = method_names(reports);
        let legend: String = methods
            .iter()
            .map(|m| {
                let (r, g, b) = method_colour(m);
                format!(
                    "<span><i class=\"sw\" style=\"border-color:{}\"></i>{}</span>",
                    css(RGBColor(r, g, b)),
                    escape(m)
                )
            })
            .collect();
        let _ = writeln!(self.body, "<p class=\"legend\">{legend}</p>");
        for (kind, title) in [
            (0, "joint coverage P(I ⊆ Y ⊆ O)"),
            (1, "inner coverage P(I ⊆ Y)"),
            (2, "outer coverage P(Y ⊆ O)"),
        ] {
            let fig = LevelFigure { reports, methods: &methods, what: LevelWhat::Coverage(kind), title };
            let _ = writeln!(self.body, "{}", figure_img(&fig, title));
        }
        let fig = LevelFigure { reports, methods: &methods, what: LevelWhat::Sizes, title: "set sizes" };
        let _ = writeln!(self.body, "{}", figure_img(&fig, "set sizes against the level"));
        self.note(
            "Coverage: mean over the splits; the gray diagonal is the nominal level. Set sizes: mean share of the \
             image in the outer set (circles, solid) and the inner set (crosses, thin). A ring with ∞ marks a level \
             at which some splits had too few calibration images: their thresholds were +∞ (inner set empty, \
             outer set the whole image).",
        );
        let _ = writeln!(
            self.body,
            "<table><tr><th class=\"l\">method</th><th>α</th><th>inner</th><th>outer</th><th>joint</th>\
             <th>inner share</th><th>outer share</th><th>splits with +∞</th><th>n_cal</th><th>n_test</th>\
             <th>splits</th></tr>"
        );
        for r in reports {
            let inf = if r.too_few_images > 0.0 {
                format!("<span class=\"inf\">{:.0}%</span>", 100.0 * r.too_few_images)
            } else {
                "0".to_owned()
            };
            let _ = writeln!(
                self.body,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.4}</td>\
                 <td>{:.4}</td><td>{inf}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.method),
                r.alpha,
                r.inner_coverage,
                r.outer_coverage,
                r.joint_coverage,
                r.efficiency.inner_share,
                r.efficiency.outer_share,
                r.n_cal,
                r.n_test,
                r.splits
            );
        }
        self.body.push_str("</table>\n");
    }

    /// The montage's panels, with the legend of the contours.
    pub fn montage(&mut self, montage: &Montage) {
        self.heading("Slices");
        let mut legend = vec![(OUTER, "outer set O")];
        if montage.truth {
            legend.push((TRUTH, "true mask Y"));
        }
        legend.push((INNER, "inner set I"));
        let legend: String = legend
            .iter()
            .map(|(c, l)| format!("<span><i class=\"sw\" style=\"border-color:{}\"></i>{l}</span>", css(*c)))
            .collect();
        let _ = writeln!(self.body, "<p class=\"legend\">{legend}</p>");
        let _ = writeln!(
            self.body,
            "<p class=\"note\">Contours over the score map (gray: low to high). {} Letters at the edges give the \
             anatomical direction from the image's affine (R/L, A/P, S/I) when it has one; the white bar is the \
             scale.</p>",
            if montage.truth {
                "The true contour is drawn where true masks were given."
            } else {
                "No true masks were given."
            }
        );
        if montage.panels.is_empty() {
            self.note("No image could be drawn (only 2-D and 3-D images are).");
        }
        let mut row = false;
        for p in &montage.panels {
            if row && p.block {
                self.body.push_str("</div>\n");
                row = false;
            }
            if !row && !p.block {
                self.body.push_str("<div class=\"montage\">\n");
                row = true;
            }
            self.body.push_str(&p.html);
        }
        if row {
            self.body.push_str("</div>\n");
        }
        if montage.skipped > 0 {
            self.note(&format!(
                "{} more images are not shown (the montage shows the first {}; raise it with --subjects).",
                montage.skipped, montage.max_subjects
            ));
        }
    }

    /// The page as one HTML document.
    #[must_use]
    pub fn html(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"generator\" content=\"confseg {}\"><title>{}</title><style>{STYLE}</style></head>\n\
             <body>\n<h1>{}</h1>\n<p class=\"note\">Conformal inner and outer sets (confseg {}). This file is \
             self-contained: its pictures are embedded.</p>\n{}</body></html>\n",
            env!("CARGO_PKG_VERSION"),
            escape(&self.title),
            escape(&self.title),
            env!("CARGO_PKG_VERSION"),
            self.body
        )
    }

    /// The page written into an unpublished [`Output`](crate::output::Output)
    /// for `path` (to be published with a run's other outputs).
    ///
    /// # Errors
    /// [`Error::File`] if the file cannot be created or written.
    pub fn output(&self, path: impl AsRef<Path>) -> Result<crate::output::Output> {
        let path = path.as_ref();
        let mut out = crate::output::Output::create(path)?;
        std::io::Write::write_all(&mut out, self.html().as_bytes()).map_err(|e| Error::File {
            path: path.to_path_buf(),
            problem: FileProblem::Write { message: e.to_string().replace(['\n', '\r'], " ") },
        })?;
        Ok(out)
    }

    /// Write the page to `path`, atomically (all or nothing).
    ///
    /// # Errors
    /// As [`Page::output`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        self.output(path)?.commit()
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

type DrawResult = std::result::Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A histogram of one side's statistics with its threshold.
struct Histogram {
    side: Side,
    finite: Vec<f64>,
    neg_inf: usize,
    pos_inf: usize,
    threshold: Option<f64>,
}

impl Histogram {
    fn new(side: Side, values: &[f64], threshold: Option<f64>) -> Self {
        Histogram {
            side,
            finite: values.iter().copied().filter(|v| v.is_finite()).collect(),
            neg_inf: values.iter().filter(|&&v| v == f64::NEG_INFINITY).count(),
            pos_inf: values.iter().filter(|&&v| v == f64::INFINITY).count(),
            threshold,
        }
    }

    fn symbol(&self) -> &'static str {
        match self.side {
            Side::Inner => "τ",
            Side::Outer => "γ",
        }
    }

    fn infinite_note(&self) -> Option<String> {
        let s = self.symbol();
        let mut parts = Vec::new();
        if self.neg_inf > 0 {
            parts.push(format!(
                "{} {s} = −∞ (an empty region: never breaks the {} set)",
                with_verb(self.neg_inf),
                self.side
            ));
        }
        if self.pos_inf > 0 {
            parts.push(format!(
                "{} {s} = +∞ (e.g. an empty prediction: only an infinite threshold covers it)",
                with_verb(self.pos_inf)
            ));
        }
        (!parts.is_empty()).then(|| format!("Not drawn: {}.", parts.join("; ")))
    }
}

impl Figure for Histogram {
    fn size(&self) -> (u32, u32) {
        (560, 300)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let colour = match self.side {
            Side::Inner => INNER,
            Side::Outer => OUTER,
        };
        let l = self.side.letter();
        let finite_t = self.threshold.filter(|t| t.is_finite());
        let (mut lo, mut hi) = self
            .finite
            .iter()
            .chain(finite_t.iter())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let pad = (hi - lo) * 0.04;
        let (lo, hi) = (lo - pad, hi + pad);
        let bins = 30usize;
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0usize; bins];
        for &v in &self.finite {
            let k = (((v - lo) / width) as usize).min(bins - 1);
            counts[k] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.15;
        let title = format!(
            "{} statistics {} (n = {})",
            self.side,
            self.symbol(),
            self.finite.len() + self.neg_inf + self.pos_inf
        );
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.symbol())
            .y_desc("images")
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.1))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(k, &c)| {
                let x0 = lo + k as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], colour.mix(0.45).filled())
            }))
            .map_err(err)?;
        match self.threshold {
            Some(t) if t.is_finite() => {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        [(t, 0.0), (t, top)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err)?;
                let x = if t > lo + 0.6 * (hi - lo) { t - 0.3 * (hi - lo) } else { t + 0.015 * (hi - lo) };
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("λ_{l} = {}", short(t)),
                        (x, top * 0.95),
                        ("sans-serif", 14).into_font(),
                    )))
                    .map_err(err)?;
            }
            Some(t) => {
                // infinite: an arrow at the edge it lies beyond
                let at = if t > 0.0 { hi - 0.01 * (hi - lo) } else { lo + 0.01 * (hi - lo) };
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        [(at, 0.0), (at, top)],
                        colour.stroke_width(3),
                    )))
                    .map_err(err)?;
                let text =
                    if t > 0.0 { format!("λ_{l} = +∞ →") } else { format!("← λ_{l} = −∞") };
                let x = if t > 0.0 { hi - 0.3 * (hi - lo) } else { lo + 0.02 * (hi - lo) };
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x, top * 0.95),
                        ("sans-serif", 15).into_font().color(&colour),
                    )))
                    .map_err(err)?;
            }
            None => {}
        }
        Ok(())
    }
}

/// Observed coverage with its interval against the nominal level, per event.
struct CoverageBars {
    /// (observed, low, high, nominal) for inner, outer, joint
    rows: Vec<(f64, f64, f64, Option<f64>)>,
}

impl Figure for CoverageBars {
    fn size(&self) -> (u32, u32) {
        (560, 300)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let y_lo = self.rows.iter().flat_map(|r| [r.1, r.3.unwrap_or(1.0)]).fold(1.0_f64, f64::min).min(0.9);
        let y_lo = ((y_lo - 0.05) * 20.0).floor() / 20.0;
        let y_lo = y_lo.max(0.0);
        let mut chart = ChartBuilder::on(root)
            .caption("coverage on these images", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..3.0, y_lo..1.005)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("share of images")
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.1))
            .draw()
            .map_err(err)?;
        let colours = [INNER, OUTER, RGBColor(110, 40, 150)];
        for (k, ((obs, lo, hi, nominal), name)) in
            self.rows.iter().zip(["inner", "outer", "joint"]).enumerate()
        {
            let x = k as f64 + 0.5;
            let c = colours[k];
            chart
                .draw_series(std::iter::once(PathElement::new([(x, *lo), (x, *hi)], c.stroke_width(3))))
                .map_err(err)?;
            chart.draw_series(std::iter::once(Circle::new((x, *obs), 6, c.filled()))).map_err(err)?;
            if let Some(n) = nominal {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        [(x - 0.25, *n), (x + 0.25, *n)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_owned(),
                    (x - 0.12, y_lo + 0.02 * (1.0 - y_lo)),
                    ("sans-serif", 15).into_font(),
                )))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// Inner and outer share of each image, sorted by the outer share.
struct SizeFigure {
    shares: Vec<(f64, f64)>,
}

impl Figure for SizeFigure {
    fn size(&self) -> (u32, u32) {
        (760, 300)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let mut s = self.shares.clone();
        s.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
        let n = s.len().max(1) as f64;
        let top = s.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-3) * 100.0 * 1.08;
        let mut chart = ChartBuilder::on(root)
            .caption("share of each image in the sets (images sorted by outer set)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..n, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("image (sorted)")
            .y_desc("% of the image")
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.1))
            .draw()
            .map_err(err)?;
        let w = (700.0 / n).clamp(1.0, 12.0) as u32;
        chart
            .draw_series(s.iter().enumerate().map(|(k, &(_, o))| {
                let x = k as f64 + 0.5;
                PathElement::new([(x, 0.0), (x, o * 100.0)], OUTER.mix(0.55).stroke_width(w))
            }))
            .map_err(err)?;
        chart
            .draw_series(s.iter().enumerate().map(|(k, &(i, _))| {
                let x = k as f64 + 0.5;
                PathElement::new([(x, 0.0), (x, i * 100.0)], INNER.stroke_width(w))
            }))
            .map_err(err)?;
        Ok(())
    }
}

enum LevelWhat {
    /// 0 joint, 1 inner, 2 outer
    Coverage(usize),
    Sizes,
}

/// A validation's coverage or set sizes against `1 - α`, per method.
struct LevelFigure<'a> {
    reports: &'a [Report],
    methods: &'a [String],
    what: LevelWhat,
    title: &'a str,
}

impl Figure for LevelFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (560, 380)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let value = |r: &Report| match self.what {
            LevelWhat::Coverage(0) => (r.joint_coverage, None),
            LevelWhat::Coverage(1) => (r.inner_coverage, None),
            LevelWhat::Coverage(_) => (r.outer_coverage, None),
            LevelWhat::Sizes => (100.0 * r.efficiency.outer_share, Some(100.0 * r.efficiency.inner_share)),
        };
        let xs = self.reports.iter().map(|r| 1.0 - r.alpha);
        let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((x_hi - x_lo) * 0.06).max(0.01);
        let (x_lo, x_hi) = ((x_lo - pad).max(0.0), (x_hi + pad).min(1.0));
        let (y_lo, y_hi) = match self.what {
            LevelWhat::Coverage(_) => {
                let m =
                    self.reports.iter().map(|r| value(r).0).filter(|v| v.is_finite()).fold(x_lo, f64::min);
                ((m - 0.03).max(0.0), 1.005)
            }
            LevelWhat::Sizes => {
                let m = self.reports.iter().map(|r| value(r).0).filter(|v| v.is_finite()).fold(0.0, f64::max);
                (0.0, (m * 1.1).max(1e-3))
            }
        };
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("nominal level 1 − α")
            .y_desc(match self.what {
                LevelWhat::Coverage(_) => "observed coverage",
                LevelWhat::Sizes => "% of the image",
            })
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.1))
            .draw()
            .map_err(err)?;
        if matches!(self.what, LevelWhat::Coverage(_)) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(x_lo, x_lo), (x_hi, x_hi)],
                    BLACK.mix(0.4).stroke_width(1),
                )))
                .map_err(err)?;
        }
        for m in self.methods {
            let (r, g, b) = method_colour(m);
            let c = RGBColor(r, g, b);
            let mut pts: Vec<(f64, f64, Option<f64>, bool)> = self
                .reports
                .iter()
                .filter(|r| &r.method == m)
                .map(|r| {
                    let (v, w) = value(r);
                    (1.0 - r.alpha, v, w, r.too_few_images > 0.0)
                })
                .filter(|p| p.1.is_finite())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), c.stroke_width(2)))
                .map_err(err)?;
            chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 4, c.filled()))).map_err(err)?;
            let inner: Vec<(f64, f64)> = pts.iter().filter_map(|p| p.2.map(|w| (p.0, w))).collect();
            if !inner.is_empty() {
                chart.draw_series(LineSeries::new(inner.clone(), c.stroke_width(1))).map_err(err)?;
                chart.draw_series(inner.iter().map(|&p| Cross::new(p, 4, c.stroke_width(2)))).map_err(err)?;
            }
            for p in pts.iter().filter(|p| p.3) {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (p.0, p.1),
                        9,
                        RGBColor(200, 0, 0).stroke_width(2),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        "∞",
                        (p.0, p.1),
                        ("sans-serif", 16).into_font().color(&RGBColor(200, 0, 0)),
                    )))
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Slices through images with the contours of their sets: one panel per
/// 2-D image, a few per 3-D image.
#[derive(Debug, Clone)]
pub struct Montage {
    max_subjects: usize,
    slices: usize,
    panels: Vec<Panel>,
    shown: usize,
    skipped: usize,
    truth: bool,
}

#[derive(Debug, Clone)]
struct Panel {
    html: String,
    /// A subject's own block (a heading and its slices), not one panel of
    /// a shared row.
    block: bool,
}

/// How a slice is laid out on screen.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Image axis down the rows, and whether the rows run backwards (top =
    /// last index).
    rows: (usize, bool),
    /// Image axis across the columns.
    cols: usize,
}

impl Montage {
    /// A montage of at most `max_subjects` images, `slices` slices per 3-D
    /// image.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `1 <= max_subjects <=`
    /// [`MAX_SUBJECTS`] and `1 <= slices <=` [`MAX_SLICES`].
    pub fn new(max_subjects: usize, slices: usize) -> Result<Self> {
        if !(1..=MAX_SUBJECTS).contains(&max_subjects) {
            return Err(Error::InvalidParameter {
                name: "subjects",
                value: max_subjects.to_string(),
                reason: format!("the montage shows 1 to {MAX_SUBJECTS} images"),
            });
        }
        if !(1..=MAX_SLICES).contains(&slices) {
            return Err(Error::InvalidParameter {
                name: "slices",
                value: slices.to_string(),
                reason: format!("give 1 to {MAX_SLICES} slices per 3-D image"),
            });
        }
        Ok(Montage { max_subjects, slices, panels: Vec::new(), shown: 0, skipped: 0, truth: false })
    }

    /// Whether another image would be shown (else it is only counted).
    #[must_use]
    pub fn wants_more(&self) -> bool {
        self.shown < self.max_subjects
    }

    /// Images drawn so far.
    #[must_use]
    pub fn shown(&self) -> usize {
        self.shown
    }

    /// Add one image: its `name`, the score map drawn as the background,
    /// its sets, its true mask if known (0/1 or any nonzero object),
    /// spacing (`None`: unknown, the scale bar counts voxels), affine (for
    /// orientation letters) and coverage. Beyond the montage's size the
    /// image is only counted. 2-D images give one panel; 3-D images
    /// [`slices`](Montage::new) panels across the axis of the coarsest
    /// spacing (the last on ties): the slice where the object (the true
    /// mask, else the outer set unless it is everything, else the inner
    /// set) is largest and slices spread over its extent. Other
    /// dimensionalities and images of no voxels are only counted.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the sets or the mask do not have the
    /// background's shape.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        name: &str,
        background: &ArrayD<f32>,
        sets: &Sets<IxDyn>,
        truth: Option<&ArrayD<u8>>,
        spacing: Option<&[f64]>,
        affine: Option<&Affine>,
        coverage: Option<Coverage>,
    ) -> Result<()> {
        crate::image::check_shape("inner set vs background", background, &sets.inner)?;
        crate::image::check_shape("outer set vs background", background, &sets.outer)?;
        if let Some(t) = truth {
            crate::image::check_shape("true mask vs background", background, t)?;
        }
        if !self.wants_more() {
            self.skipped += 1;
            return Ok(());
        }
        self.shown += 1;
        self.truth |= truth.is_some();
        let nd = background.ndim();
        let spacing: Option<Vec<f64>> = spacing
            .filter(|s| s.len() == nd && s.iter().all(|x| x.is_finite() && *x > 0.0))
            .map(<[f64]>::to_vec);
        let truth_bool = truth.map(|t| t.mapv(|x| x != 0));
        let caption_cov = coverage
            .map_or_else(String::new, |c| format!("<br>I ⊆ Y: {} · Y ⊆ O: {}", tick(c.inner), tick(c.outer)));
        match nd {
            // an image of no voxels has nothing to draw
            _ if background.is_empty() => {
                self.shown -= 1;
                self.skipped += 1;
            }
            2 => {
                let layout = Layout { rows: (0, false), cols: 1 };
                let html = panel(
                    &escape(name),
                    background.view(),
                    sets.inner.view(),
                    sets.outer.view(),
                    truth_bool.as_ref().map(|t| t.view()),
                    layout,
                    spacing.as_deref(),
                    affine,
                    &caption_cov,
                );
                self.panels.push(Panel { html, block: false });
            }
            3 => {
                let sp = spacing.clone().unwrap_or_else(|| vec![1.0; 3]);
                let axis = (0..3).rev().max_by(|&a, &b| sp[a].total_cmp(&sp[b])).unwrap_or(2);
                let object = match &truth_bool {
                    Some(t) if t.iter().any(|&b| b) => t.clone(),
                    _ if sets.outer.iter().any(|&b| !b) && sets.outer.iter().any(|&b| b) => {
                        sets.outer.clone()
                    }
                    _ => sets.inner.clone(),
                };
                let picks = pick_slices(&object, axis, self.slices);
                let (a, b) = match axis {
                    0 => (1, 2),
                    1 => (0, 2),
                    _ => (0, 1),
                };
                // with an affine (NIfTI: x, y, z) the first in-plane axis runs
                // across and the second up, as viewers show it; without, as arrays print
                let layout = if affine.is_some() {
                    Layout { rows: (b, true), cols: a }
                } else {
                    Layout { rows: (a, false), cols: b }
                };
                let n = background.shape()[axis];
                let mut block = format!("<h3>{}</h3><div class=\"montage\">\n", escape(name));
                for k in picks {
                    let take = |x: &ArrayD<bool>| x.index_axis(Axis(axis), k).to_owned();
                    let in_plane = |l: Layout| Layout {
                        rows: (if l.rows.0 > axis { l.rows.0 - 1 } else { l.rows.0 }, l.rows.1),
                        cols: if l.cols > axis { l.cols - 1 } else { l.cols },
                    };
                    let spacing2 = spacing.as_ref().map(|s| {
                        let mut v = s.clone();
                        v.remove(axis);
                        v
                    });
                    let affine2 = affine.map(|af| drop_column(af, axis));
                    let t2 = truth_bool.as_ref().map(take);
                    let html = panel(
                        &format!("slice {k} of {n} across axis {axis}"),
                        background.index_axis(Axis(axis), k),
                        take(&sets.inner).view(),
                        take(&sets.outer).view(),
                        t2.as_ref().map(|t| t.view()),
                        in_plane(layout),
                        spacing2.as_deref(),
                        affine2.as_ref(),
                        &caption_cov,
                    );
                    block.push_str(&html);
                }
                block.push_str("</div>\n");
                self.panels.push(Panel { html: block, block: true });
            }
            _ => {
                self.shown -= 1;
                self.skipped += 1;
            }
        }
        Ok(())
    }
}

/// The affine of a slice: column `axis` dropped (the remaining voxel axes
/// keep their world directions).
fn drop_column(af: &Affine, axis: usize) -> Affine {
    let mut out = [[0.0; 4]; 4];
    for (r, row) in af.iter().enumerate() {
        let mut c2 = 0;
        for (c, &v) in row.iter().enumerate() {
            if c == axis {
                continue;
            }
            out[r][c2] = v;
            c2 += 1;
        }
    }
    out
}

/// Up to `count` slices along `axis`: where `object` is largest, then
/// spread over its extent (the middle slice if it is empty), in order.
fn pick_slices(object: &ArrayD<bool>, axis: usize, count: usize) -> Vec<usize> {
    let n = object.shape()[axis];
    if n == 0 {
        return Vec::new();
    }
    let area: Vec<usize> =
        (0..n).map(|k| object.index_axis(Axis(axis), k).iter().filter(|&&b| b).count()).collect();
    let present: Vec<usize> = (0..n).filter(|&k| area[k] > 0).collect();
    let (Some(&first), Some(&last)) = (present.first(), present.last()) else {
        return vec![n / 2];
    };
    let best = (0..n).max_by_key(|&k| (area[k], std::cmp::Reverse(k))).unwrap_or(n / 2);
    let mut picks = vec![best];
    for j in 1..=count {
        if picks.len() >= count {
            break;
        }
        // evenly spread over the extent, skipping slices already chosen
        let k = first + (last - first) * j / (count + 1);
        if !picks.contains(&k) {
            picks.push(k);
        }
    }
    for k in first..=last {
        if picks.len() >= count {
            break;
        }
        if !picks.contains(&k) {
            picks.push(k);
        }
    }
    picks.sort_unstable();
    picks
}

/// The anatomical letter a voxel axis points to (RAS+ world of NIfTI), or
/// its opposite.
fn axis_letter(af: &Affine, axis: usize, towards: bool) -> Option<char> {
    let col = [af[0][axis], af[1][axis], af[2][axis]];
    let k = (0..3).max_by(|&a, &b| col[a].abs().total_cmp(&col[b].abs()))?;
    if col[k] == 0.0 {
        return None;
    }
    let positive = (col[k] > 0.0) == towards;
    Some(match (k, positive) {
        (0, true) => 'R',
        (0, false) => 'L',
        (1, true) => 'A',
        (1, false) => 'P',
        (2, true) => 'S',
        _ => 'I',
    })
}

/// A "nice" length (1, 2 or 5 times a power of ten) near `x`.
fn nice(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    let m = x / p;
    let m = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// One panel's HTML: the slice drawn with contours, the orientation
/// letters around it and a caption.
#[allow(clippy::too_many_arguments)]
fn panel(
    title: &str,
    background: ndarray::ArrayViewD<'_, f32>,
    inner: ndarray::ArrayViewD<'_, bool>,
    outer: ndarray::ArrayViewD<'_, bool>,
    truth: Option<ndarray::ArrayViewD<'_, bool>>,
    layout: Layout,
    spacing: Option<&[f64]>,
    affine: Option<&Affine>,
    caption: &str,
) -> String {
    let shape = background.shape();
    let (nr, nc) = (shape[layout.rows.0], shape[layout.cols]);
    let (sr, sc) = spacing.map_or((1.0, 1.0), |s| (s[layout.rows.0], s[layout.cols]));
    let (ph, pw) = (nr as f64 * sr, nc as f64 * sc);
    let scale = PANEL_PX / ph.max(pw).max(1e-12);
    let h = ((ph * scale).round() as usize).clamp(1, 4 * PANEL_PX as usize);
    let w = ((pw * scale).round() as usize).clamp(1, 4 * PANEL_PX as usize);
    // display pixel -> voxel (nearest)
    let voxel = |y: usize, x: usize| -> Vec<usize> {
        let mut r = (y * nr / h).min(nr.saturating_sub(1));
        if layout.rows.1 {
            r = nr - 1 - r;
        }
        let c = (x * nc / w).min(nc.saturating_sub(1));
        let mut idx = vec![0; 2];
        idx[layout.rows.0] = r;
        idx[layout.cols] = c;
        idx
    };
    let (lo, hi) = background
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let range = if hi > lo { hi - lo } else { 1.0 };
    let mut rgb = vec![0u8; w * h * 3];
    let mut masks = [vec![false; w * h], vec![false; w * h], vec![false; w * h]];
    for y in 0..h {
        for x in 0..w {
            let idx = voxel(y, x);
            let v = background[idx.as_slice()];
            let g = if v.is_nan() {
                0.0
            } else if v == f32::INFINITY {
                1.0
            } else if v == f32::NEG_INFINITY || !lo.is_finite() {
                0.0
            } else {
                0.08 + 0.84 * (v - lo) / range
            };
            let g = (g * 255.0).round().clamp(0.0, 255.0) as u8;
            let p = (y * w + x) * 3;
            rgb[p..p + 3].copy_from_slice(&[g, g, g]);
            masks[0][y * w + x] = outer[idx.as_slice()];
            masks[1][y * w + x] = truth.as_ref().is_some_and(|t| t[idx.as_slice()]);
            masks[2][y * w + x] = inner[idx.as_slice()];
        }
    }
    let layers: Vec<(usize, RGBColor, usize)> = if truth.is_some() {
        vec![(0, OUTER, 3), (1, TRUTH, 2), (2, INNER, 2)]
    } else {
        vec![(0, OUTER, 3), (2, INNER, 2)]
    };
    for (m, colour, thick) in layers {
        let set = &masks[m];
        let t = thick as isize;
        for y in 0..h {
            for x in 0..w {
                if !set[y * w + x] {
                    continue;
                }
                // a set pixel within `thick` of a pixel outside the set (or the image's edge)
                let mut edge = false;
                'search: for dy in -t + 1..t {
                    for dx in -t + 1..t {
                        let (yy, xx) = (y as isize + dy, x as isize + dx);
                        if dy.abs() + dx.abs() >= t {
                            continue;
                        }
                        if yy < 0
                            || xx < 0
                            || yy >= h as isize
                            || xx >= w as isize
                            || !set[yy as usize * w + xx as usize]
                        {
                            edge = true;
                            break 'search;
                        }
                    }
                }
                if edge {
                    let p = (y * w + x) * 3;
                    rgb[p..p + 3].copy_from_slice(&[colour.0, colour.1, colour.2]);
                }
            }
        }
    }
    // scale bar: a nice length near a quarter of the width, bottom left
    let unit = if spacing.is_some() { "mm" } else { "voxels" };
    let length = nice(pw / 4.0);
    let bar = ((length * scale).round() as usize).clamp(1, w.saturating_sub(8).max(1));
    let (bx, by) = (6usize.min(w.saturating_sub(1)), h.saturating_sub(10));
    for y in by..(by + 4).min(h) {
        for x in bx.saturating_sub(1)..(bx + bar + 1).min(w) {
            let p = (y * w + x) * 3;
            let edge = y == by || y + 1 == (by + 4).min(h) || x + 1 == bx || x == bx + bar;
            let c = if edge { 0 } else { 255 };
            rgb[p..p + 3].copy_from_slice(&[c, c, c]);
        }
    }
    let png = crate::plot::encode_png(&rgb, w as u32, h as u32).unwrap_or_default();
    let letters = affine.map(|af| {
        let r = layout.rows.0;
        let c = layout.cols;
        // top shows the row axis' first index (last if backwards)
        let top = axis_letter(af, r, layout.rows.1);
        let bottom = axis_letter(af, r, !layout.rows.1);
        let left = axis_letter(af, c, false);
        let right = axis_letter(af, c, true);
        [top, bottom, left, right].map(|l| l.map_or_else(String::new, String::from))
    });
    let [top, bottom, left, right] = letters.unwrap_or_default();
    let orientation = if affine.is_some() { "" } else { "<br>orientation: array axes (no affine)" };
    format!(
        "<figure class=\"panel\"><div class=\"frame\"><span></span><span>{top}</span><span></span>\
         <span>{left}</span>{}<span>{right}</span><span></span><span>{bottom}</span><span></span></div>\
         <figcaption>{title}<br>scale bar: {} {unit}{orientation}{caption}</figcaption></figure>\n",
        img(&png, title, "slice"),
        number(length)
    )
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
/// As [`Reader::predict`]; [`Error::InvalidParameter`] for options out of
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
    fn orientation_letters_follow_the_affine() {
        let ras = [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        assert_eq!(axis_letter(&ras, 0, true), Some('R'));
        assert_eq!(axis_letter(&ras, 0, false), Some('L'));
        assert_eq!(axis_letter(&ras, 2, true), Some('S'));
        let mut lps = ras;
        lps[0][0] = -2.0;
        lps[1][1] = -2.0;
        assert_eq!(axis_letter(&lps, 0, true), Some('L'));
        assert_eq!(axis_letter(&lps, 1, true), Some('P'));
        // a slice across axis 2 keeps the directions of axes 0 and 1
        let s = drop_column(&lps, 2);
        assert_eq!((axis_letter(&s, 0, true), axis_letter(&s, 1, false)), (Some('L'), Some('A')));
    }

    #[test]
    fn slices_go_through_the_object() {
        let mut m = ArrayD::from_elem(IxDyn(&[4, 4, 20]), false);
        for k in 5..=15 {
            m[[1, 1, k]] = true;
        }
        m[[2, 2, 9]] = true;
        let p = pick_slices(&m, 2, 3);
        assert_eq!(p.len(), 3);
        assert!(p.contains(&9), "{p:?}");
        assert!(p.iter().all(|&k| (5..=15).contains(&k)), "{p:?}");
        assert_eq!(pick_slices(&ArrayD::from_elem(IxDyn(&[2, 2, 6]), false), 2, 3), vec![3]);
    }

    #[test]
    fn nice_lengths() {
        assert_eq!(nice(23.0), 20.0);
        assert_eq!(nice(0.8), 1.0);
        assert_eq!(nice(4.0), 5.0);
        assert_eq!(nice(80.0), 100.0);
    }

    #[test]
    fn infinite_thresholds_are_said_in_words() {
        let t = Threshold::TooFewImages { n: 5, needed: 19 };
        assert_eq!(threshold_words(Side::Outer, &t), Some("the outer set is the whole image"));
        assert_eq!(threshold_words(Side::Inner, &t), Some("the inner set is empty"));
        assert_eq!(threshold_words(Side::Inner, &Threshold::OrderStatistic { k: 3, value: 0.5 }), None);
    }

    #[test]
    fn montage_bounds_its_images_and_draws_the_truth() {
        let mut m = Montage::new(2, 3).unwrap();
        let bg = ArrayD::from_shape_fn(IxDyn(&[12, 10]), |i| i[0] as f32);
        let inner =
            ArrayD::from_shape_fn(IxDyn(&[12, 10]), |i| (4..8).contains(&i[0]) && (4..7).contains(&i[1]));
        let outer = ArrayD::from_shape_fn(IxDyn(&[12, 10]), |i| (2..10).contains(&i[0]));
        let sets = Sets { inner, outer };
        let truth = ArrayD::from_shape_fn(IxDyn(&[12, 10]), |i| u8::from((3..9).contains(&i[0])));
        for _ in 0..5 {
            m.add("x", &bg, &sets, Some(&truth), Some(&[1.0, 1.0]), None, None).unwrap();
        }
        assert_eq!((m.shown(), m.skipped, m.panels.len()), (2, 3, 2));
        let mut page = Page::new("t");
        page.montage(&m);
        assert!(page.html().contains("true mask Y") && page.html().contains("3 more images are not shown"));
        assert!(Montage::new(0, 3).is_err() && Montage::new(3, 0).is_err());
        // an image of no voxels is counted, not drawn
        let mut e = Montage::new(2, 3).unwrap();
        let none = Sets {
            inner: ArrayD::from_elem(IxDyn(&[0, 4]), false),
            outer: ArrayD::from_elem(IxDyn(&[0, 4]), false),
        };
        e.add("empty", &ArrayD::zeros(IxDyn(&[0, 4])), &none, None, None, None, None).unwrap();
        assert_eq!((e.shown(), e.skipped, e.panels.len()), (0, 1, 0));
        let bad = ArrayD::from_elem(IxDyn(&[3, 3]), 0u8);
        assert!(matches!(
            m.add("y", &bg, &sets, Some(&bad), None, None, None),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}
