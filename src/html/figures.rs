//! The charts a page embeds, each a [`Figure`] drawn with `plotters` and
//! embedded as PNG: the histogram of one side's calibration statistics,
//! coverage against the nominal levels, set sizes per image, and coverage
//! or set sizes of validated methods against the level.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{method_colour, short, with_verb};
use crate::evaluate::Report;
use crate::plot::{Figure, INNER, OUTER};
use crate::quantile::Side;

type DrawResult = std::result::Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A histogram of one side's statistics with its threshold.
pub(super) struct Histogram {
    side: Side,
    finite: Vec<f64>,
    neg_inf: usize,
    pos_inf: usize,
    threshold: Option<f64>,
}

impl Histogram {
    pub(super) fn new(side: Side, values: &[f64], threshold: Option<f64>) -> Self {
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

    pub(super) fn infinite_note(&self) -> Option<String> {
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
pub(super) struct CoverageBars {
    /// (observed, low, high, nominal) for inner, outer, joint
    pub(super) rows: Vec<(f64, f64, f64, Option<f64>)>,
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
pub(super) struct SizeFigure {
    pub(super) shares: Vec<(f64, f64)>,
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

pub(super) enum LevelWhat {
    /// 0 joint, 1 inner, 2 outer
    Coverage(usize),
    Sizes,
}

/// A validation's coverage or set sizes against `1 - α`, per method.
pub(super) struct LevelFigure<'a> {
    pub(super) reports: &'a [Report],
    pub(super) methods: &'a [String],
    pub(super) what: LevelWhat,
    pub(super) title: &'a str,
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
