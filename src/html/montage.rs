//! The montage: slices through each shown image drawn as pixels, with the
//! contours of the outer set, the true mask and the inner set, the
//! anatomical letters an affine gives, and a scale bar. A 3-D image shows
//! a few slices through its object across the axis of coarsest spacing.

use ndarray::{ArrayD, Axis, IxDyn};
use plotters::prelude::*;

use super::{escape, img, number, tick, MAX_SLICES, MAX_SUBJECTS};
use crate::error::{Error, Result};
use crate::image::Affine;
use crate::plot::{INNER, OUTER, TRUTH};
use crate::sets::{Coverage, Sets};

/// Panels are drawn this many pixels across their longer side.
const PANEL_PX: f64 = 256.0;

/// Slices through images with the contours of their sets: one panel per
/// 2-D image, a few per 3-D image.
#[derive(Debug, Clone)]
pub struct Montage {
    pub(super) max_subjects: usize,
    slices: usize,
    pub(super) panels: Vec<Panel>,
    shown: usize,
    pub(super) skipped: usize,
    pub(super) truth: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Panel {
    pub(super) html: String,
    /// A subject's own block (a heading and its slices), not one panel of
    /// a shared row.
    pub(super) block: bool,
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

#[cfg(test)]
mod tests {
    use super::super::Page;
    use super::*;

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
