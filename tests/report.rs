//! `confseg report` and `validate --report`: one self-contained HTML file.
//! Its content is checked against the calibration file and `predict
//! --masks`, each option against its absence, and the page is rendered in
//! a real headless browser (Chromium from Debian's packages) whose
//! screenshot must show the embedded pictures.
//!
//! The browser test is skipped when `chromium` is absent, unless
//! `CONFSEG_REQUIRE_CHROMIUM=1` (CI), which makes it fail instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use confseg::image::Geometry;
use confseg::io::nifti::{write_labels, write_scores, NiftiHeader};
use confseg::synthetic::Synthetic;
use confseg::Spacing;
use ndarray::Array3;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "confseg {args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> &'static str {
        Box::leak(self.p(name).to_string_lossy().into_owned().into_boxed_str())
    }
}

const SHAPE: [usize; 3] = [24, 20, 9];
const SPACING: [f64; 3] = [0.8, 0.9, 2.5];

/// A header with an LPS-like affine: voxel axis 0 points left, axis 1
/// posterior, axis 2 superior.
fn header() -> NiftiHeader {
    let [a, b, c] = SPACING;
    let affine = [[-a, 0.0, 0.0, 10.0], [0.0, -b, 0.0, 12.0], [0.0, 0.0, c, -5.0], [0.0, 0.0, 0.0, 1.0]];
    let g = Geometry::new(Spacing::new(SPACING.to_vec()).unwrap()).with_affine(affine).unwrap();
    NiftiHeader::new(&SHAPE, &g).unwrap()
}

/// `n` subjects from `first` in `dir`: logits `ID_prob.nii.gz` and masks `ID_seg.nii.gz`.
fn cohort(dir: &Path, first: usize, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let data = Synthetic::new(SHAPE).seed(11);
    for i in first..first + n {
        let (s, m) = data.pair(i);
        let id = format!("sub-{i:04}");
        write_scores(dir.join(format!("{id}_prob.nii.gz")), &s.mapv(|x| x as f32), &header()).unwrap();
        let labels: Array3<u8> = m.mapv(u8::from);
        write_labels(dir.join(format!("{id}_seg.nii.gz")), &labels, &header()).unwrap();
    }
}

/// A calibration of 40 subjects and 5 new labelled subjects.
fn setup(levels: &[&str]) -> Dir {
    let d = Dir(tempfile::tempdir().unwrap());
    cohort(&d.p("cal"), 0, 40);
    cohort(&d.p("new"), 1000, 5);
    let mut args = vec![
        "calibrate",
        "--scores",
        d.s("cal"),
        "--masks",
        d.s("cal"),
        "--scores-suffix",
        "_prob",
        "--masks-suffix",
        "_seg",
        "--inner",
        "identity",
        "--outer",
        "distance",
        "-o",
        d.s("cal.json"),
    ];
    args.extend_from_slice(levels);
    ok(&args);
    d
}

fn new_scores(d: &Dir) -> Vec<&'static str> {
    vec!["--scores", d.s("new"), "--scores-suffix", "_prob"]
}

fn truth(d: &Dir) -> Vec<&'static str> {
    vec!["--masks", d.s("new"), "--masks-suffix", "_seg"]
}

fn report(d: &Dir, extra: &[&str], out: &str) -> String {
    let mut args = vec!["report", "--calibration", d.s("cal.json")];
    args.extend(new_scores(d));
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", d.s(out)]);
    ok(&args);
    std::fs::read_to_string(d.p(out)).unwrap()
}

/// Nothing is loaded from elsewhere: every picture is a data URI, no
/// script, link, frame or CSS URL.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    for bad in ["src=\"http", "href=", "<script", "<link", "<iframe", "url(", "@import", "src=\"file"] {
        assert!(!html.contains(bad), "the report holds {bad}");
    }
    let images = html.matches("<img ").count();
    assert!(images > 0);
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), images);
}

/// The number after `prefix` in `html`.
fn number_after(html: &str, prefix: &str) -> f64 {
    let i = html.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in the report")) + prefix.len();
    let text: String = html[i..].chars().take_while(|c| c.is_ascii_digit() || "+-.e".contains(*c)).collect();
    text.parse().unwrap_or_else(|_| panic!("{text:?} after {prefix:?}"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_report_states_the_file_and_the_predictions_coverage() {
    let d = setup(&["--alpha", "0.2", "--mode", "bonferroni", "--weights", "1:1"]);
    let cal = json(&d.p("cal.json"));
    // calibrate keeps the statistics, one pair per image
    assert_eq!(cal["statistics"]["tau"].as_array().unwrap().len(), 40);
    let html = report(&d, &truth(&d), "with.html");
    assert_self_contained(&html);
    // the thresholds printed are the file's
    for (side, key) in [("I", "inner"), ("O", "outer")] {
        let want = cal[key]["threshold"].as_f64().unwrap();
        assert_eq!(number_after(&html, &format!("λ_{side} = ")), want, "{key}");
    }
    assert!(html.contains("P(inner ⊆ truth ⊆ outer) &gt;= 0.8"), "the guarantee in words");
    // histograms of both sides, the coverage figure, set sizes, 5 subjects × 3 slices
    assert_eq!(html.matches("alt=\"histogram of the").count(), 2);
    assert_eq!(html.matches("class=\"slice\"").count(), 15);
    assert_eq!(html.matches("<h3>").count(), 5);
    // coverage: the same counts as predict --masks
    let mut args = vec!["predict", "--calibration", d.s("cal.json"), "--summary", d.s("s.csv")];
    args.extend(new_scores(&d));
    args.extend(truth(&d));
    let (out, _) = ok(&args);
    for (event, row) in
        [("inner", "I ⊆ Y (inner)"), ("outer", "Y ⊆ O (outer)"), ("joint", "I ⊆ Y ⊆ O (joint)")]
    {
        let line = out.lines().find(|l| l.trim_start().starts_with(event)).unwrap();
        let k: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(html.contains(&format!("<td class=\"l\">{row}</td><td>{k} of 5</td>")), "{event}: {line}");
    }
    // the true contour and per-subject coverage
    assert!(html.contains("true mask Y") && html.contains("I ⊆ Y: <span"));
    // orientation from the affine: voxel axis 1 points posterior and runs
    // upwards, so the top edge is P; axis 0 points left and runs
    // rightwards, so the right edge is L
    assert!(
        html.contains("<span></span><span>P</span><span></span><span>R</span><img"),
        "orientation letters"
    );
    assert!(html.contains("<span>L</span><span></span><span>A</span><span></span></div>"));
    // a scale bar in mm (the spacing is the header's)
    assert!(html.contains("scale bar: 5 mm"), "scale bar");

    // without masks: no truth, no coverage
    let html = report(&d, &[], "without.html");
    assert_self_contained(&html);
    assert!(!html.contains("true mask Y") && !html.contains(" of 5</td>"));
    assert!(html.contains("No true masks were given"));

    // --subjects and --slices bound the montage
    let html = report(&d, &["--subjects", "2", "--slices", "2", "--title", "Two <subjects>"], "small.html");
    assert_eq!(html.matches("class=\"slice\"").count(), 4);
    assert_eq!(html.matches("<h3>").count(), 2);
    assert!(html.contains("3 more images are not shown"));
    assert!(html.contains("<h1>Two &lt;subjects&gt;</h1>"));
}

#[test]
fn old_files_without_statistics_and_infinite_thresholds_are_said() {
    // 40 images at inner level 0.01 need 99: lambda_I = +inf
    let d = setup(&["--alpha", "0.11", "--mode", "bonferroni", "--weights", "1:10"]);
    let mut cal = json(&d.p("cal.json"));
    assert_eq!(cal["inner"]["threshold"], "inf");
    let html = report(&d, &[], "inf.html");
    assert!(html.contains("λ_I = +∞: the inner set is empty"), "infinite threshold in words");
    assert_eq!(html.matches("alt=\"histogram of the").count(), 2);
    // a file written before the statistics were kept still reports, and says how to get them
    cal.as_object_mut().unwrap().remove("statistics");
    std::fs::write(d.p("cal.json"), serde_json::to_string(&cal).unwrap()).unwrap();
    let mut args = vec!["report", "--calibration", d.s("cal.json")];
    args.extend(new_scores(&d));
    args.extend_from_slice(&["-o", d.s("old.html")]);
    let (_, stderr) = ok(&args);
    assert!(stderr.contains("keeps no calibration statistics"), "{stderr}");
    let html = std::fs::read_to_string(d.p("old.html")).unwrap();
    assert_eq!(html.matches("alt=\"histogram of the").count(), 0);
    assert!(html.contains("histograms of the calibration statistics are unavailable"));
    assert!(html.contains("Calibrate again"));
    // bad options are one-line errors, and no file is left behind
    let mut args = vec!["report", "--calibration", d.s("cal.json")];
    args.extend(new_scores(&d));
    args.extend_from_slice(&["-o", d.s("bad.html"), "--subjects", "0"]);
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.trim_end().lines().count() == 1, "{stderr}");
    assert!(stderr.contains("subjects"), "{stderr}");
    assert!(!d.p("bad.html").exists());
}

#[test]
fn validate_writes_a_report_with_fixed_method_colours() {
    let d = Dir(tempfile::tempdir().unwrap());
    let data = Synthetic::new([16, 16]).seed(3);
    let (s, m): (Vec<_>, Vec<_>) = (0..60).map(|i| data.pair(i)).unzip();
    let views: Vec<_> = s.iter().map(|a| a.view()).collect();
    let stack = ndarray::stack(ndarray::Axis(0), &views).unwrap().mapv(|x| x as f32);
    let views: Vec<_> = m.iter().map(|a| a.view()).collect();
    let masks = ndarray::stack(ndarray::Axis(0), &views).unwrap().mapv(u8::from);
    ndarray_npy::write_npy(d.p("s.npy"), &stack).unwrap();
    ndarray_npy::write_npy(d.p("m.npy"), &masks).unwrap();
    // n_cal 10 at alpha 0.05 needs 19 images: infinite thresholds, marked
    ok(&[
        "validate",
        "--scores",
        d.s("s.npy"),
        "--masks",
        d.s("m.npy"),
        "--n-cal",
        "10",
        "--repeats",
        "20",
        "--alpha",
        "0.05,0.2",
        "--mode",
        "max",
        "--method",
        "conformal,pixelwise",
        "--report",
        d.s("v.html"),
    ]);
    let html = std::fs::read_to_string(d.p("v.html")).unwrap();
    assert_self_contained(&html);
    let colour = |m: &str| {
        let (r, g, b) = confseg::html::method_colour(m);
        format!("border-color:#{r:02x}{g:02x}{b:02x}\"></i>{m}")
    };
    assert!(html.contains(&colour("conformal max")), "conformal's colour in the legend");
    assert!(html.contains(&colour("pixelwise")), "pixelwise's colour in the legend");
    assert_ne!(confseg::html::method_colour("conformal max"), confseg::html::method_colour("pixelwise"));
    // coverage, inner, outer and sizes figures; the pool's histograms
    assert_eq!(html.matches("class=\"figure\"").count(), 6);
    // the level with too few images is marked
    assert!(html.contains("<span class=\"inf\">100%</span>"), "infinite thresholds marked");
    assert!(html.contains("60 images; 20 random splits into 10 calibration and 50 test images"));
}

/// Chromium's path, or `None` (then the test is skipped unless required).
fn chromium() -> Option<PathBuf> {
    let required = std::env::var("CONFSEG_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    let found =
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists());
    assert!(found.is_some() || !required, "CONFSEG_REQUIRE_CHROMIUM=1 but chromium is not installed");
    if found.is_none() {
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// Run `command`, killed after `limit`.
fn run_with_timeout(command: &mut Command, limit: Duration) -> std::process::ExitStatus {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("chromium starts");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_report_renders_in_a_headless_browser() {
    let Some(browser) = chromium() else { return };
    let d = setup(&["--alpha", "0.2", "--mode", "max"]);
    report(&d, &truth(&d), "r.html");
    let shot = d.p("shot.png");
    let status = run_with_timeout(
        Command::new(browser).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", d.s("profile")),
            "--window-size=1280,2400",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", d.s("r.html")),
        ]),
        Duration::from_secs(120),
    );
    assert!(status.success(), "chromium failed: {status}");
    let img = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(img.dimensions(), (1280, 2400));
    let total = img.pixels().len();
    let non_white = img.pixels().filter(|p| p.0.iter().any(|&c| c < 245)).count();
    assert!(non_white * 25 > total, "the page is nearly blank: {non_white} of {total} pixels not white");
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 300, "only {} colours", colours.len());
    // the embedded slices rendered: their contours' colours (beyond the
    // legend's swatches of 104 pixels each)
    let near = |want: [u8; 3]| {
        img.pixels()
            .filter(|p| p.0.iter().zip(want).all(|(&a, b)| (i32::from(a) - i32::from(b)).abs() <= 6))
            .count()
    };
    for (what, rgb) in [("outer contour", [30, 100, 255]), ("true contour", [255, 215, 0])] {
        let n = near(rgb);
        assert!(n > 1000, "{n} {what} pixels in the screenshot: the slices did not render");
    }
}
