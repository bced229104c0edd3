//! Figures (feature `plot`): coverage curves and set overlays, as PNG or
//! SVG (chosen by the file extension).
//!
//! * [`coverage_plot`]: observed coverage against the nominal level
//!   `1 - alpha`, with the diagonal, one line per method or transform — the
//!   paper's validation figure. [`coverage_series`] turns validation
//!   [`Report`]s into its lines.
//! * [`overlay`]: the paper's Figure 1 — the outer set, the true mask and
//!   the inner set drawn over the image (or the score map) of one image;
//!   [`overlay_slice`] does the same for a slice of a 3-D volume.
//!
//! Text is rendered with DejaVu Sans, bundled with the crate
//! (`assets/fonts`, Bitstream Vera license), so no system font library is
//! needed. Figures are drawn in memory and written through an atomic
//! [`Output`](crate::output::Output), so a failure never leaves a
//! half-written figure and a file planted at a predictable name is never
//! followed.

use std::path::Path;

use image::ImageEncoder;
use std::sync::Once;

use ndarray::{ArrayRef, Axis, Ix2, Ix3};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, FileProblem, Result};
use crate::evaluate::Report;
use crate::float::Float;
use crate::mask::MaskValue;
use crate::sets::Sets;

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        // The bundled font is valid; if registration failed anyway, text
        // drawing reports the missing font as a write error.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Which coverage a curve shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoverageKind {
    /// `P(I ⊆ Y)`.
    Inner,
    /// `P(Y ⊆ O)`.
    Outer,
    /// `P(I ⊆ Y ⊆ O)`.
    Joint,
}

impl CoverageKind {
    /// Lower-case name (`"inner"`, `"outer"`, `"joint"`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CoverageKind::Inner => "inner",
            CoverageKind::Outer => "outer",
            CoverageKind::Joint => "joint",
        }
    }
}

/// One line of a coverage plot: `(nominal 1 - alpha, observed coverage)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSeries {
    /// Legend text.
    pub label: String,
    /// Points, in any order (drawn sorted by nominal level).
    pub points: Vec<(f64, f64)>,
}

/// One line per method of `reports` (in order of first appearance), with
/// the chosen coverage against `1 - alpha`.
#[must_use]
pub fn coverage_series(reports: &[Report], kind: CoverageKind) -> Vec<CurveSeries> {
    let mut out: Vec<CurveSeries> = Vec::new();
    for r in reports {
        let y = match kind {
            CoverageKind::Inner => r.inner_coverage,
            CoverageKind::Outer => r.outer_coverage,
            CoverageKind::Joint => r.joint_coverage,
        };
        let p = (1.0 - r.alpha, y);
        match out.iter_mut().find(|s| s.label == r.method) {
            Some(s) => s.points.push(p),
            None => out.push(CurveSeries { label: r.method.clone(), points: vec![p] }),
        }
    }
    out
}

fn write_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File { path: path.to_path_buf(), problem: FileProblem::Write { message: message.to_string() } }
}

enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(write_error(path, "unknown figure format: use a .png or .svg file name")),
    }
}

/// Figure drawing that works on any plotters backend.
pub(crate) trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
}

fn save<F: Figure>(path: &Path, figure: &F) -> Result<()> {
    render(path, figure)?.commit()
}

/// The figure drawn into an unpublished [`Output`](crate::io::Output) for `path`.
fn render<F: Figure>(path: &Path, figure: &F) -> Result<crate::output::Output> {
    register_font();
    let format = format_of(path)?;
    // Drawn in memory, then written through an atomic `Output` (a random,
    // exclusively created temporary file renamed over the destination): the
    // drawing backends never open a file themselves.
    let bytes = match format {
        Format::Png => png(figure).map_err(|e| write_error(path, e))?,
        Format::Svg => {
            let (w, h) = figure.size();
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                figure.draw(&root).and_then(|()| root.present().map_err(|e| e.to_string()))
            }
            .map_err(|e| write_error(path, one_line(&e)))?;
            svg.into_bytes()
        }
    };
    let mut out = crate::output::Output::create(path)?;
    std::io::Write::write_all(&mut out, &bytes).map_err(|e| write_error(path, one_line(&e.to_string())))?;
    Ok(out)
}

/// The figure drawn in memory as PNG bytes (the font registered); a
/// drawing or encoding error as one line of text.
pub(crate) fn png<F: Figure>(figure: &F) -> std::result::Result<Vec<u8>, String> {
    register_font();
    let (w, h) = figure.size();
    let mut rgb = vec![0u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(|e| e.to_string()))
    }
    .map_err(|e| one_line(&e))?;
    encode_png(&rgb, w, h)
}

/// RGB pixels (`w * h * 3` bytes, row-major) encoded as PNG.
pub(crate) fn encode_png(rgb: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, String> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| one_line(&e.to_string()))?;
    Ok(png)
}

/// A drawing error's text on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

struct CoverageFigure<'a> {
    series: &'a [CurveSeries],
    title: &'a str,
}

impl Figure for CoverageFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let (plot_area, legend_area) = root.split_horizontally(640);
        // x: the nominal levels; y: down to the lowest observed coverage, up to 1
        let finite = |v: &f64| v.is_finite();
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(finite);
        let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        let (x_lo, x_hi) = if x_lo <= x_hi { (x_lo, x_hi) } else { (0.0, 1.0) };
        let y_min =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(finite).fold(x_lo, f64::min);
        let pad = ((x_hi - x_lo) * 0.05).max(0.01);
        let (x_lo, x_hi) = ((x_lo - pad).max(0.0), (x_hi + pad).min(1.0));
        let y_lo = (y_min - pad).max(0.0);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, y_lo..1.0)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("nominal level 1 - alpha")
            .y_desc("observed coverage")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(e)?;
        let diagonal = BLACK.mix(0.6);
        chart
            .draw_series(LineSeries::new([(x_lo, x_lo), (x_hi, x_hi)], diagonal.stroke_width(1)))
            .map_err(e)?;
        let mut legend: Vec<(String, RGBAColor)> = vec![("nominal (diagonal)".into(), diagonal)];
        for (k, s) in self.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mut pts: Vec<(f64, f64)> =
                s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(e)?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(e)?;
            legend.push((s.label.clone(), color.to_rgba()));
        }
        // legend in its own panel, so it never hides a curve
        for (k, (label, color)) in legend.iter().enumerate() {
            let y = 60 + 26 * k as i32;
            legend_area
                .draw(&PathElement::new([(4, y), (30, y)], color.stroke_width(if k == 0 { 1 } else { 3 })))
                .map_err(e)?;
            legend_area
                .draw(&Text::new(label.clone(), (38, y - 8), ("sans-serif", 15).into_font()))
                .map_err(e)?;
        }
        Ok(())
    }
}

/// Coverage against the nominal level, with the diagonal, one line per series.
///
/// ```no_run
/// use confseg::plot::{coverage_plot, CurveSeries};
/// let s = CurveSeries { label: "max".into(), points: vec![(0.8, 0.81), (0.9, 0.905)] };
/// coverage_plot("coverage.png", &[s], "Joint coverage")?;
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::File`] if the extension is neither `.png` nor `.svg` or the
/// file cannot be written.
pub fn coverage_plot(path: impl AsRef<Path>, series: &[CurveSeries], title: &str) -> Result<()> {
    save(path.as_ref(), &CoverageFigure { series, title })
}

/// Colours of the overlay (the paper's Figure 1 uses a similar scheme).
pub(crate) const OUTER: RGBColor = RGBColor(30, 100, 255);
pub(crate) const TRUTH: RGBColor = RGBColor(255, 215, 0);
pub(crate) const INNER: RGBColor = RGBColor(230, 20, 20);

struct OverlayFigure<'a> {
    /// background intensities in [0, 1], row-major, `rows x cols`
    gray: Vec<f64>,
    truth: Option<Vec<bool>>,
    inner: Vec<bool>,
    outer: Vec<bool>,
    rows: usize,
    cols: usize,
    /// Pixel width and height on screen (physical aspect ratio).
    cell: (u32, u32),
    title: &'a str,
}

const LEGEND_H: u32 = 56;
const TITLE_H: u32 = 34;

impl OverlayFigure<'_> {
    /// Pixel edges where `set` changes, as line segments in figure coordinates.
    fn contour(&self, set: &[bool]) -> Vec<[(i32, i32); 2]> {
        let (r, c) = (self.rows, self.cols);
        let (sw, sh) = (self.cell.0 as i32, self.cell.1 as i32);
        let at = |i: isize, j: isize| -> bool {
            i >= 0 && j >= 0 && (i as usize) < r && (j as usize) < c && set[i as usize * c + j as usize]
        };
        let y0 = TITLE_H as i32;
        let mut segs = Vec::new();
        for i in 0..=r as isize {
            for j in 0..=c as isize {
                // horizontal edge above pixel (i, j)
                if j < c as isize && at(i - 1, j) != at(i, j) {
                    let (x, y) = (j as i32 * sw, y0 + i as i32 * sh);
                    segs.push([(x, y), (x + sw, y)]);
                }
                // vertical edge left of pixel (i, j)
                if i < r as isize && at(i, j - 1) != at(i, j) {
                    let (x, y) = (j as i32 * sw, y0 + i as i32 * sh);
                    segs.push([(x, y), (x, y + sh)]);
                }
            }
        }
        segs
    }
}

impl Figure for OverlayFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let w = (self.cols as u32 * self.cell.0).max(360);
        (w, self.rows as u32 * self.cell.1 + TITLE_H + LEGEND_H)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let (sw, sh) = (self.cell.0 as i32, self.cell.1 as i32);
        let y0 = TITLE_H as i32;
        root.draw(&Text::new(self.title.to_owned(), (6, 8), ("sans-serif", 18).into_font())).map_err(e)?;
        for i in 0..self.rows {
            for j in 0..self.cols {
                let k = i * self.cols + j;
                let g = (self.gray[k] * 255.0).round().clamp(0.0, 255.0) as u8;
                let mut col = RGBColor(g, g, g);
                // translucent tints: outer set blue, inner set red
                let tint = |c: RGBColor, t: RGBColor, a: f64| {
                    let m = |x: u8, y: u8| (f64::from(x) * (1.0 - a) + f64::from(y) * a).round() as u8;
                    RGBColor(m(c.0, t.0), m(c.1, t.1), m(c.2, t.2))
                };
                if self.outer[k] {
                    col = tint(col, OUTER, 0.25);
                }
                if self.inner[k] {
                    col = tint(col, INNER, 0.35);
                }
                let (x, y) = (j as i32 * sw, y0 + i as i32 * sh);
                root.draw(&Rectangle::new([(x, y), (x + sw, y + sh)], col.filled())).map_err(e)?;
            }
        }
        let mut layers = vec![(&self.outer, OUTER, 3)];
        layers.extend(self.truth.as_ref().map(|t| (t, TRUTH, 2)));
        layers.push((&self.inner, INNER, 3));
        for (set, color, width) in layers {
            for seg in self.contour(set) {
                root.draw(&PathElement::new(seg.to_vec(), color.stroke_width(width))).map_err(e)?;
            }
        }
        // legend
        let ly = y0 + self.rows as i32 * sh + 14;
        let mut x = 8;
        let mut entries = vec![("outer set", OUTER)];
        if self.truth.is_some() {
            entries.push(("true mask", TRUTH));
        }
        entries.push(("inner set", INNER));
        for (label, color) in entries {
            root.draw(&Rectangle::new([(x, ly), (x + 22, ly + 14)], color.stroke_width(3))).map_err(e)?;
            root.draw(&Text::new(label.to_owned(), (x + 28, ly), ("sans-serif", 15).into_font()))
                .map_err(e)?;
            x += 118;
        }
        Ok(())
    }
}

/// The paper's Figure 1 for one 2-D image: `background` (the image or the
/// score map, scaled to gray from its finite minimum to maximum) with the
/// outer set (blue), the true mask (yellow) and the inner set (red) drawn
/// as tinted regions and pixel-exact contours.
///
/// ```no_run
/// use confseg::{synthetic::Synthetic, Alpha, Calibration, Calibrator, Identity, Mode};
/// let data = Synthetic::new([40, 40]).seed(1);
/// let cal = Calibrator::new(Identity, Identity);
/// let mut c = Calibration::new();
/// for (s, m) in data.pairs(0..100) { cal.observe(&mut c, &s, &m)?; }
/// let sets = cal.fit(&c, Mode::max(Alpha::new(0.1)?))?;
/// let (scores, truth) = data.pair(1000);
/// confseg::plot::overlay("figure1.png", &scores, &truth, &sets.predict(&scores)?, "image 1000")?;
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] if the shapes differ, [`Error::NonBinaryMask`]
/// for a mask value other than 0/1, [`Error::File`] if the file cannot be
/// written or its extension is neither `.png` nor `.svg`.
pub fn overlay<A: Float, M: MaskValue>(
    path: impl AsRef<Path>,
    background: &ArrayRef<A, Ix2>,
    truth: &ArrayRef<M, Ix2>,
    sets: &Sets<Ix2>,
    title: &str,
) -> Result<()> {
    crate::image::check_shape("true mask vs background", background, truth)?;
    crate::mask::check_mask(truth)?;
    draw_overlay(
        path.as_ref(),
        background,
        Some(truth.iter().map(|m| m.is_object()).collect()),
        sets,
        title,
        [1.0, 1.0],
    )?
    .commit()
}

/// [`overlay`] without a true mask (e.g. for new images): the outer set
/// (blue) and the inner set (red) over the image or score map.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the shapes differ, [`Error::File`] if the
/// file cannot be written or its extension is neither `.png` nor `.svg`.
pub fn overlay_sets<A: Float>(
    path: impl AsRef<Path>,
    background: &ArrayRef<A, Ix2>,
    sets: &Sets<Ix2>,
    title: &str,
) -> Result<()> {
    draw_overlay(path.as_ref(), background, None, sets, title, [1.0, 1.0])?.commit()
}

/// [`overlay_sets`] for pixels of physical size `spacing` (rows, columns):
/// drawn with the physical aspect ratio (e.g. a sagittal slice of a volume
/// with 2.5 mm slices and 0.8 mm pixels).
///
/// # Errors
/// As [`overlay_sets`]; [`Error::InvalidSpacing`] unless both entries are
/// positive and finite.
pub fn overlay_sets_spaced<A: Float>(
    path: impl AsRef<Path>,
    background: &ArrayRef<A, Ix2>,
    sets: &Sets<Ix2>,
    title: &str,
    spacing: [f64; 2],
) -> Result<()> {
    overlay_sets_output(path, background, sets, title, spacing)?.commit()
}

/// [`overlay_sets_spaced`] drawn into an unpublished output, to be
/// published with a run's other outputs ([`Publication`](crate::io::Publication)).
///
/// # Errors
/// As [`overlay_sets_spaced`].
pub fn overlay_sets_output<A: Float>(
    path: impl AsRef<Path>,
    background: &ArrayRef<A, Ix2>,
    sets: &Sets<Ix2>,
    title: &str,
    spacing: [f64; 2],
) -> Result<crate::output::Output> {
    crate::image::Spacing::new(spacing.to_vec())?;
    draw_overlay(path.as_ref(), background, None, sets, title, spacing)
}

fn draw_overlay<A: Float>(
    path: &Path,
    background: &ArrayRef<A, Ix2>,
    truth: Option<Vec<bool>>,
    sets: &Sets<Ix2>,
    title: &str,
    spacing: [f64; 2],
) -> Result<crate::output::Output> {
    crate::image::check_shape("inner set vs background", background, &sets.inner)?;
    crate::image::check_shape("outer set vs background", background, &sets.outer)?;
    let (rows, cols) = background.dim();
    let vals: Vec<f64> = background.iter().map(|x| x.to_f64_lossless()).collect();
    let (lo, hi) = vals
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let range = if hi > lo { hi - lo } else { 1.0 };
    let gray = vals
        .iter()
        .map(|&v| {
            if v.is_nan() {
                0.0
            } else if v == f64::INFINITY {
                1.0
            } else if v == f64::NEG_INFINITY || !lo.is_finite() {
                0.0
            } else {
                // keep away from pure black/white so the tints stay visible
                0.1 + 0.8 * (v - lo) / range
            }
        })
        .collect();
    // square pixels of up to 24 on a 640 canvas, stretched to the physical aspect
    let cell = (640 / rows.max(cols).max(1)).clamp(2, 24) as f64;
    let (row_h, col_w) = (spacing[0], spacing[1]);
    let scale = cell / row_h.min(col_w);
    let cell =
        ((col_w * scale).round().clamp(1.0, 96.0) as u32, (row_h * scale).round().clamp(1.0, 96.0) as u32);
    let fig = OverlayFigure {
        gray,
        truth,
        inner: sets.inner.iter().copied().collect(),
        outer: sets.outer.iter().copied().collect(),
        rows,
        cols,
        cell,
        title,
    };
    render(path, &fig)
}

/// [`overlay`] for slice `index` along `axis` of a 3-D volume.
///
/// # Errors
/// As [`overlay`], and [`Error::InvalidParameter`] if `axis` or `index` is
/// out of range.
pub fn overlay_slice<A: Float, M: MaskValue>(
    path: impl AsRef<Path>,
    background: &ArrayRef<A, Ix3>,
    truth: &ArrayRef<M, Ix3>,
    sets: &Sets<Ix3>,
    axis: Axis,
    index: usize,
    title: &str,
) -> Result<()> {
    crate::image::check_shape("true mask vs background", background, truth)?;
    crate::image::check_shape("inner set vs background", background, &sets.inner)?;
    crate::image::check_shape("outer set vs background", background, &sets.outer)?;
    if axis.index() >= 3 || index >= background.len_of(axis) {
        return Err(Error::InvalidParameter {
            name: "slice",
            value: format!("axis {} index {index}", axis.index()),
            reason: format!("volume has shape {:?}", background.shape()),
        });
    }
    let slice = Sets {
        inner: sets.inner.index_axis(axis, index).to_owned(),
        outer: sets.outer.index_axis(axis, index).to_owned(),
    };
    overlay(path, &background.index_axis(axis, index), &truth.index_axis(axis, index), &slice, title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn series_group_by_method() {
        let mk = |m: &str, a: f64, c: f64| Report {
            method: m.into(),
            alpha: a,
            inner_coverage: c,
            outer_coverage: c,
            joint_coverage: c,
            inner: crate::evaluate::Spread::of(&[c], None),
            outer: crate::evaluate::Spread::of(&[c], None),
            joint: crate::evaluate::Spread::of(&[c], None),
            too_few_images: 0.0,
            efficiency: crate::evaluate::Efficiency::default(),
            n_cal: 1,
            n_test: 1,
            splits: 1,
            recorded: Vec::new(),
        };
        let r = [mk("a", 0.1, 0.9), mk("b", 0.1, 0.8), mk("a", 0.2, 0.81)];
        let s = coverage_series(&r, CoverageKind::Joint);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].points, vec![(0.9, 0.9), (0.8, 0.81)]);
        assert_eq!(CoverageKind::Outer.name(), "outer");
    }

    #[test]
    fn contour_of_one_pixel_is_its_four_edges() {
        let mut set = vec![false; 9];
        set[4] = true;
        let fig = OverlayFigure {
            gray: vec![0.5; 9],
            truth: Some(set.clone()),
            inner: set.clone(),
            outer: set.clone(),
            rows: 3,
            cols: 3,
            cell: (10, 10),
            title: "",
        };
        let mut segs = fig.contour(&set);
        segs.sort();
        let y = TITLE_H as i32;
        assert_eq!(
            segs,
            vec![
                [(10, y + 10), (10, y + 20)],
                [(10, y + 10), (20, y + 10)],
                [(10, y + 20), (20, y + 20)],
                [(20, y + 10), (20, y + 20)]
            ]
        );
    }

    #[test]
    fn bad_extension_and_shapes_are_errors() {
        let a = Array2::<f64>::zeros((3, 3));
        let m = Array2::<u8>::zeros((3, 3));
        let sets = Sets { inner: Array2::from_elem((3, 3), false), outer: Array2::from_elem((3, 3), true) };
        let dir = std::env::temp_dir();
        assert!(matches!(overlay(dir.join("x.jpg"), &a, &m, &sets, "t"), Err(Error::File { .. })));
        let bad = Sets { inner: Array2::from_elem((2, 3), false), outer: Array2::from_elem((3, 3), true) };
        assert!(matches!(overlay(dir.join("x.png"), &a, &m, &bad, "t"), Err(Error::ShapeMismatch { .. })));
        let mut m2 = m.clone();
        m2[[1, 1]] = 3;
        assert!(matches!(overlay(dir.join("x.png"), &a, &m2, &sets, "t"), Err(Error::NonBinaryMask { .. })));
    }
}
