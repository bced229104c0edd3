//! The report page and its sections: each method of [`Page`] appends one
//! section (the guarantee in words, the statistics, coverage, set sizes,
//! a validation, the montage) as HTML; [`Page::html`] wraps them in one
//! self-contained document with its style inline.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::figures::{CoverageBars, Histogram, LevelFigure, LevelWhat, SizeFigure};
use super::montage::Montage;
use super::{
    css, escape, figure_img, images, method_colour, method_names, nominal_levels, number, ordinal, percent,
    threshold_words, tick, MAX_TABLE_ROWS,
};
use crate::calibrate::Calibration;
use crate::error::{Error, FileProblem, Result};
use crate::evaluate::Report;
use crate::levels::Guarantee;
use crate::pipeline::Summary;
use crate::plot::{INNER, OUTER, TRUTH};
use crate::quantile::{Side, Threshold, Thresholds};
use crate::sets::{ConfidenceSets, Coverage, SetMeasures};
use crate::transform::Transform;

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
