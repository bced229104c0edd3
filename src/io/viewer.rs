//! Colour tables that name the labels of [`Sets::label_map`](crate::Sets::label_map)
//! in the viewers clinicians use: ITK-SNAP's label description file and
//! 3D Slicer's colour table, so that a label map opens over the scan with
//! the band and the inner set named and coloured.
//!
//! Written by hand: both are short, documented text formats no crate
//! writes.

/// The labels of a sets label map: value, one-word name, description, RGB
/// colour and opacity.
pub const LABELS: [(u8, &str, &str, [u8; 3], f64); 3] = [
    (0, "outside", "outside the outer set", [0, 0, 0], 0.0),
    (1, "band", "band: outer set minus inner set", [65, 105, 225], 0.4),
    (2, "inner", "inner set", [220, 20, 60], 0.6),
];

/// ITK-SNAP's label description file (`Segmentation > Import Label
/// Descriptions`): one line per label, `IDX R G B A VIS MSH "LABEL"`.
///
/// ```
/// let text = confseg::io::viewer::itk_snap_labels();
/// assert!(text.contains("    2   220   20   60        0.6  1  1    \"inner set\""));
/// ```
#[must_use]
pub fn itk_snap_labels() -> String {
    let mut out = String::from(
        "################################################\n\
         # ITK-SnAP Label Description File (confseg sets)\n\
         # File format:\n\
         # IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL\n\
         ################################################\n",
    );
    for (v, _, name, [r, g, b], a) in LABELS {
        let vis = u8::from(v != 0);
        out.push_str(&format!("{v:>5} {r:>5} {g:>4} {b:>4} {a:>10}  {vis}  {vis}    \"{name}\"\n"));
    }
    out
}

/// 3D Slicer's colour table (`.ctbl`: load it, then set it as the label
/// map's colour node): `value name R G B A` with A in 0..255.
///
/// ```
/// let text = confseg::io::viewer::slicer_color_table();
/// assert!(text.lines().any(|l| l == "1 band 65 105 225 102"));
/// ```
#[must_use]
pub fn slicer_color_table() -> String {
    let mut out = String::from("# Color table file (confseg sets)\n# 3 values\n");
    for (v, word, _, [r, g, b], a) in LABELS {
        out.push_str(&format!("{v} {word} {r} {g} {b} {}\n", (a * 255.0).round() as u8));
    }
    out
}

/// The colour tables' file names: ITK-SNAP's label description file and
/// 3D Slicer's colour table.
pub const TABLES: [&str; 2] = ["confseg_sets.itksnap.txt", "confseg_sets.ctbl"];

/// Stage both colour tables ([`TABLES`]) in `dir`, next to label maps.
///
/// # Errors
/// A table that cannot be staged.
pub fn stage_tables(dir: &std::path::Path, run: &mut crate::output::Publication) -> crate::Result<()> {
    for (name, text) in TABLES.iter().zip([itk_snap_labels(), slicer_color_table()]) {
        run.stage_text(dir.join(name), &text)?;
    }
    Ok(())
}
