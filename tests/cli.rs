//! End-to-end tests of the `confseg` command-line tool: the built binary on
//! `.npy` files written from synthetic data, checked against the library.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use confseg::calibrate::region_statistics;
use confseg::quantile::conformal_quantile;
use confseg::quantile::Rank;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibration, Calibrator, Mode, ScoreTransform, Spacing, Transform, TwoClassSoftmax};
use ndarray::{Array, Array3, Array4, Axis, Ix3};
use ndarray_npy::{read_npy, write_npy};
use serde_json::Value;

const SIZE: usize = 16;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

/// Run and require success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "confseg {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require failure with `code`, one `error:` line and no panic or
/// backtrace; returns stderr.
fn fail(args: &[&str], code: i32) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "confseg {args:?}: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    if code == 1 {
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    }
    stderr
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files { dir: tempfile::tempdir().unwrap() }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The path as a `&str` argument (leaked: a few bytes per test).
    fn s(&self, name: &str) -> &'static str {
        Box::leak(self.path(name).to_string_lossy().into_owned().into_boxed_str())
    }
}

fn data(range: std::ops::Range<usize>) -> (Array3<f64>, Array3<bool>) {
    Synthetic::new([SIZE, SIZE]).seed(42).stack(range)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(inner.threshold, outer.threshold)` parsed from the JSON text with
/// Rust's correctly rounded `f64` parser (exact, whatever serde_json's
/// float parsing features), `"inf"`/`"-inf"` included.
fn thresholds(text: &str) -> (f64, f64) {
    let side = |name: &str| {
        let start = text.find(&format!("\"{name}\": {{")).unwrap_or_else(|| panic!("no {name}: {text}"));
        let rest = &text[start..];
        let t = rest.find("\"threshold\":").unwrap() + "\"threshold\":".len();
        let value: String = rest[t..].chars().take_while(|&c| c != ',' && c != '\n' && c != '}').collect();
        value.trim().trim_matches('"').parse::<f64>().unwrap()
    };
    (side("inner"), side("outer"))
}

fn file_thresholds(path: &Path) -> (f64, f64) {
    thresholds(&std::fs::read_to_string(path).unwrap())
}

fn distance() -> ScoreTransform {
    "distance".parse().unwrap()
}

#[test]
fn calibrate_then_predict_equals_the_library() {
    let f = Files::new();
    let (s, m) = data(0..60);
    let (test, _) = data(100..110);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    write_npy(f.path("t.npy"), &test).unwrap();
    let stdout = ok(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--inner",
        "identity",
        "--outer",
        "distance",
        "--alpha",
        "0.1",
        "--mode",
        "bonferroni",
        "--weights",
        "1:4",
        "-o",
        f.s("cal.json"),
    ]);
    assert!(stdout.contains("n = 60") && stdout.contains("Bonferroni"), "{stdout}");

    let calibrator = Calibrator::new(ScoreTransform::Identity, distance());
    let cal = calibrator.calibrate_stack(&s, &m).unwrap();
    let mode = Mode::bonferroni(Alpha::new(0.1).unwrap(), 1.0, 4.0).unwrap();
    let sets = calibrator.fit(&cal, mode).unwrap();

    let j = json(&f.path("cal.json"));
    let (ti, to) = file_thresholds(&f.path("cal.json"));
    assert_eq!(j["n"], 60);
    assert_eq!(j["mode"], "bonferroni");
    assert_eq!(j["alpha"], 0.1);
    assert!((j["inner"]["alpha"].as_f64().unwrap() - 0.02).abs() < 1e-15);
    assert!((j["outer"]["alpha"].as_f64().unwrap() - 0.08).abs() < 1e-15);
    assert_eq!(ti, sets.thresholds().inner.value());
    assert_eq!(to, sets.thresholds().outer.value());
    assert_eq!(j["inner"]["rank"].as_u64().map(|k| k as usize), sets.thresholds().inner.rank());
    assert_eq!(j["outer"]["rank"].as_u64().map(|k| k as usize), sets.thresholds().outer.rank());
    assert_eq!(j["inner"]["transform"]["name"], "identity");
    assert_eq!(j["outer"]["transform"]["name"], "distance");
    assert_eq!(j["input"], "scores");
    assert_eq!(j["class_axis"], Value::Null);
    assert_eq!(j["source"]["images_in_files"], 60);
    assert!(j["confseg_version"].is_string());

    ok(&[
        "predict",
        "--calibration",
        f.s("cal.json"),
        "--scores",
        f.s("t.npy"),
        "--inner-out",
        f.s("i.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let want = sets.predict_stack(&test).unwrap();
    let inner: Array3<u8> = read_npy(f.path("i.npy")).unwrap();
    let outer: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
    assert_eq!(inner, want.inner.mapv(u8::from));
    assert_eq!(outer, want.outer.mapv(u8::from));
    assert!(want.outer.iter().any(|&b| b) && want.outer.iter().any(|&b| !b), "non-trivial sets");
}

#[test]
fn every_dtype_gives_the_same_thresholds() {
    let f = Files::new();
    let (s, m) = data(0..40);
    // Integer-valued scores, so every dtype holds them exactly.
    let ints = s.mapv(|x| (x * 10.0).round().clamp(-120.0, 120.0));
    let want = {
        let calibrator = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity);
        let cal = calibrator.calibrate_stack(&ints, &m).unwrap();
        calibrator.fit(&cal, Mode::max(Alpha::new(0.2).unwrap())).unwrap().thresholds().inner.value()
    };
    write_npy(f.path("i16.npy"), &ints.mapv(|x| x as i16)).unwrap();
    write_npy(f.path("i8.npy"), &ints.mapv(|x| x as i8)).unwrap();
    write_npy(f.path("f32.npy"), &ints.mapv(|x| x as f32)).unwrap();
    write_npy(f.path("f64.npy"), &ints).unwrap();
    // uint8: shift by 128 and compare with the shifted reference
    write_npy(f.path("u8.npy"), &ints.mapv(|x| (x + 128.0) as u8)).unwrap();
    write_npy(f.path("mb.npy"), &m).unwrap();
    write_npy(f.path("mu8.npy"), &m.mapv(u8::from)).unwrap();
    write_npy(f.path("mi64.npy"), &m.mapv(i64::from)).unwrap();
    write_npy(f.path("mf32.npy"), &m.mapv(|b| f32::from(u8::from(b)))).unwrap();
    let cases = [
        ("i16.npy", "mb.npy", 0.0),
        ("i8.npy", "mu8.npy", 0.0),
        ("f32.npy", "mi64.npy", 0.0),
        ("f64.npy", "mf32.npy", 0.0),
        ("u8.npy", "mb.npy", 128.0),
    ];
    for (scores, masks, shift) in cases {
        let out = f.path("c.json");
        ok(&[
            "calibrate",
            "--masks",
            f.s(masks),
            "--scores",
            f.s(scores),
            "--alpha",
            "0.2",
            "--mode",
            "max",
            "-o",
            &out.to_string_lossy(),
        ]);
        let (ti, _) = file_thresholds(&out);
        assert_eq!(ti, want + shift, "{scores} {masks}");
    }
    // f32 scores that are not integers are not rounded on the way
    let s32 = s.mapv(|x| x as f32);
    write_npy(f.path("s32.npy"), &s32).unwrap();
    ok(&[
        "calibrate",
        "--masks",
        f.s("mb.npy"),
        "--scores",
        f.s("s32.npy"),
        "--alpha",
        "0.2",
        "-o",
        f.s("c.json"),
    ]);
    let calibrator = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity);
    let cal = calibrator.calibrate_stack(&s32, &m).unwrap();
    let t = cal.thresholds(&Mode::marginal(Alpha::new(0.2).unwrap())).unwrap();
    let (ti, to) = file_thresholds(&f.path("c.json"));
    assert_eq!(ti, t.inner.value());
    assert_eq!(to, t.outer.value());
}

/// Library reference on pre-transformed scores for the images `idx`.
fn reference(inner: &Array3<f64>, outer: &Array3<f64>, m: &Array3<bool>, idx: &[usize]) -> Calibration {
    idx.iter()
        .map(|&i| {
            region_statistics(
                &inner.index_axis(Axis(0), i),
                &outer.index_axis(Axis(0), i),
                &m.index_axis(Axis(0), i),
            )
            .unwrap()
        })
        .collect()
}

fn transform_stack<A: confseg::float::Float>(t: &ScoreTransform, s: &Array3<A>) -> Array3<A> {
    let mut out = s.clone();
    for (i, mut o) in out.outer_iter_mut().enumerate() {
        o.assign(&t.apply(&s.index_axis(Axis(0), i), &Spacing::unit()).unwrap());
    }
    out
}

#[test]
fn pre_transformed_scores_with_exclude_and_indices() {
    let f = Files::new();
    let (s, m) = data(0..50);
    // float32 inner scores (read exactly), float64 outer scores
    let inner = s.mapv(|x| f64::from(x as f32));
    let outer = transform_stack(&distance(), &s);
    write_npy(f.path("a.npy"), &s.mapv(|x| x as f32)).unwrap();
    write_npy(f.path("b.npy"), &outer).unwrap();
    write_npy(f.path("m.npy"), &m.mapv(u8::from)).unwrap();
    let exclude: Vec<i64> = (0..50).filter(|i| i % 5 == 0).collect();
    write_npy(f.path("ex.npy"), &Array::from(exclude.clone())).unwrap();
    let indices = vec![7_i32, 3, 44, 12, 9, 30, 31, 32, 1, 2, 4, 6, 8, 11, 13];
    write_npy(f.path("idx.npy"), &Array::from(indices.clone())).unwrap();

    let a = |x| Alpha::new(x).unwrap();
    let base = [
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--inner-scores",
        f.s("a.npy"),
        "--outer-scores",
        f.s("b.npy"),
    ];
    // --exclude: the remaining 40 images
    let mut args = base.to_vec();
    let out = f.s("ex.json");
    args.extend(["--exclude", f.s("ex.npy"), "--alpha-inner", "0.1", "--alpha-outer", "0.2", "-o", out]);
    let stdout = ok(&args);
    assert!(
        stdout.contains("40 of 50") && stdout.contains("f_O = given in") && stdout.contains("b.npy"),
        "{stdout}"
    );
    let kept: Vec<usize> = (0..50).filter(|i| i % 5 != 0).collect();
    let t = reference(&inner, &outer, &m, &kept).thresholds(&Mode::marginal_split(a(0.1), a(0.2))).unwrap();
    let j = json(Path::new(out));
    let (ti, to) = file_thresholds(Path::new(out));
    assert_eq!(j["n"], 40);
    assert_eq!(j["mode"], "marginal");
    assert_eq!(j["alpha"], Value::Null);
    assert_eq!(j["inner"]["alpha"], 0.1);
    assert_eq!(j["outer"]["alpha"], 0.2);
    assert_eq!(j["input"], "transformed");
    assert_eq!(ti, t.inner.value());
    assert_eq!(to, t.outer.value());

    // --indices minus --exclude, max mode
    let mut args = base.to_vec();
    let out = f.s("idx.json");
    args.extend([
        "--indices",
        f.s("idx.npy"),
        "--exclude",
        f.s("ex.npy"),
        "--alpha",
        "0.25",
        "--mode",
        "max",
        "-o",
        out,
    ]);
    ok(&args);
    let sel: Vec<usize> = indices.iter().map(|&i| i as usize).filter(|i| i % 5 != 0).collect();
    let t = reference(&inner, &outer, &m, &sel).thresholds(&Mode::max(a(0.25))).unwrap();
    let j = json(Path::new(out));
    let (ti, to) = file_thresholds(Path::new(out));
    assert_eq!(j["n"], sel.len());
    assert_eq!(ti, t.inner.value());
    assert_eq!(to, t.outer.value());

    // predict on pre-transformed scores equals the library's sets
    ok(&[
        "predict",
        "--calibration",
        out,
        "--inner-scores",
        f.s("a.npy"),
        "--outer-scores",
        f.s("b.npy"),
        "--inner-out",
        f.s("i.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let lam = t.inner.value();
    let got_i: Array3<u8> = read_npy(f.path("i.npy")).unwrap();
    let got_o: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
    assert_eq!(got_i, inner.mapv(|x| u8::from(x > lam)));
    assert_eq!(got_o, outer.mapv(|x| u8::from(-x <= lam)));
    // raw scores cannot be used with a calibration on transformed scores
    let e =
        fail(&["predict", "--calibration", out, "--scores", f.s("a.npy"), "--inner-out", f.s("x.npy")], 2);
    assert!(e.contains("--inner-scores"), "{e}");
    assert!(!f.path("x.npy").exists());
}

#[test]
fn class_axis_logits_equal_precomputed_probabilities() {
    let f = Files::new();
    let (s, m) = data(0..30);
    // two-class logits (N, 2, H, W) with l1 - l0 = s
    let logits = Array4::from_shape_fn(
        (30, 2, SIZE, SIZE),
        |(i, c, y, x)| {
            if c == 1 {
                s[[i, y, x]] + 0.5
            } else {
                0.5
            }
        },
    );
    let probs: Array3<f64> =
        TwoClassSoftmax::new(Axis(1)).apply(&logits).unwrap().into_dimensionality::<Ix3>().unwrap();
    write_npy(f.path("l.npy"), &logits).unwrap();
    write_npy(f.path("p.npy"), &probs).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    let common = ["--masks", f.s("m.npy"), "--inner", "sigmoid", "--alpha", "0.2", "--mode", "bonferroni"];
    // the class axis counts one image's axes: 0 is the first axis of an image (axis 1 of the stack)
    let mut a = vec!["calibrate", "--scores", f.s("l.npy"), "--class-axis", "0", "-o", f.s("l.json")];
    a.extend(common);
    ok(&a);
    let mut b = vec!["calibrate", "--scores", f.s("p.npy"), "-o", f.s("p.json")];
    b.extend(common);
    ok(&b);
    let (jl, jp) = (json(&f.path("l.json")), json(&f.path("p.json")));
    assert_eq!(jl["class_axis"], 0);
    assert_eq!(jl["inner"]["threshold"], jp["inner"]["threshold"]);
    assert_eq!(jl["outer"]["threshold"], jp["outer"]["threshold"]);
    // -3 counts from the end: the same axis
    let mut c = vec!["calibrate", "--scores", f.s("l.npy"), "--class-axis", "-3", "-o", f.s("n.json")];
    c.extend(common);
    ok(&c);
    assert_eq!(json(&f.path("n.json"))["class_axis"], 0);
    // predict applies the recorded class axis
    ok(&["predict", "--calibration", f.s("l.json"), "--scores", f.s("l.npy"), "--outer-out", f.s("o1.npy")]);
    ok(&["predict", "--calibration", f.s("p.json"), "--scores", f.s("p.npy"), "--outer-out", f.s("o2.npy")]);
    let (o1, o2): (Array3<u8>, Array3<u8>) =
        (read_npy(f.path("o1.npy")).unwrap(), read_npy(f.path("o2.npy")).unwrap());
    assert_eq!(o1, o2);
    // the file read by the library: logits are refused (the file's sets are
    // of the 2-D probability maps), the probabilities give the CLI's sets
    let sets: confseg::ConfidenceSets =
        serde_json::from_str(&std::fs::read_to_string(f.path("l.json")).unwrap()).unwrap();
    let e = sets.predict(&logits.index_axis(Axis(0), 0)).unwrap_err();
    assert!(matches!(e, confseg::Error::DimensionMismatch { .. }), "{e}");
    assert_eq!(sets.predict_stack(&probs).unwrap().outer.mapv(u8::from), o1);
    // an axis outside an image, or one that does not hold two classes, is a usage error
    let mut d = vec!["calibrate", "--scores", f.s("l.npy"), "--class-axis", "3"];
    d.extend(common);
    assert!(fail(&d, 2).contains("outside the 3 axes of an image"));
    let mut d = vec!["calibrate", "--scores", f.s("l.npy"), "--class-axis", "1"];
    d.extend(common);
    assert!(fail(&d, 2).contains("length 2"));
}

#[test]
fn transform_writes_the_transformed_stack() {
    let f = Files::new();
    let (s, _) = data(0..6);
    let s32 = s.mapv(|x| x as f32);
    write_npy(f.path("s.npy"), &s32).unwrap();
    ok(&[
        "transform",
        "--scores",
        f.s("s.npy"),
        "--transform",
        "distance:chessboard",
        "--mask-threshold",
        "1.5",
        "-o",
        f.s("d.npy"),
    ]);
    let t: ScoreTransform =
        "distance:chessboard".parse::<ScoreTransform>().unwrap().with_mask_threshold(1.5).unwrap();
    let want = transform_stack(&t, &s32.mapv(f64::from)).mapv(|x| x as f32);
    let got: Array3<f32> = read_npy(f.path("d.npy")).unwrap();
    assert_eq!(got, want);
    ok(&[
        "transform",
        "--scores",
        f.s("s.npy"),
        "--transform",
        "sigmoid",
        "--dtype",
        "f64",
        "-o",
        f.s("p.npy"),
    ]);
    // float32 scores are transformed in float32 (native precision), then widened
    let got: Array3<f64> = read_npy(f.path("p.npy")).unwrap();
    assert_eq!(got, transform_stack(&ScoreTransform::Sigmoid, &s32).mapv(f64::from));
    let e = fail(&["transform", "--scores", f.s("s.npy"), "--transform", "nope", "-o", f.s("q.npy")], 1);
    assert!(e.contains("nope"), "{e}");
    assert!(!f.path("q.npy").exists());
}

#[test]
fn too_few_images_warn_and_write_inf() {
    let f = Files::new();
    let (s, m) = data(0..5);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    let out = run(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--alpha",
        "0.1",
        "-o",
        f.s("c.json"),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("n = 5") && stderr.contains("at least 9"),
        "{stderr}"
    );
    let j = json(&f.path("c.json"));
    assert_eq!(j["inner"]["threshold"], "inf");
    assert_eq!(j["outer"]["threshold"], "inf");
    assert_eq!(j["inner"]["rank"], Value::Null);
    // predict: empty inner sets, full outer sets
    ok(&[
        "predict",
        "--calibration",
        f.s("c.json"),
        "--scores",
        f.s("s.npy"),
        "--inner-out",
        f.s("i.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let (i, o): (Array3<u8>, Array3<u8>) =
        (read_npy(f.path("i.npy")).unwrap(), read_npy(f.path("o.npy")).unwrap());
    assert!(i.iter().all(|&v| v == 0) && o.iter().all(|&v| v == 1));
}

#[test]
fn bad_inputs_fail_cleanly_without_output() {
    let f = Files::new();
    let (s, m) = data(0..12);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    let out = f.s("out.json");
    std::fs::write(out, "previous").unwrap();
    let calibrate = |scores: &str, masks: &str, extra: &[&str], code: i32| {
        let mut a = vec!["calibrate", "--masks", masks, "--scores", scores, "-o", out];
        if !extra.iter().any(|x| x.starts_with("--alpha")) {
            a.extend(["--alpha", "0.1"]);
        }
        a.extend(extra);
        let e = fail(&a, code);
        assert_eq!(std::fs::read_to_string(out).unwrap(), "previous", "output untouched");
        e
    };
    let (sp, mp) = (f.s("s.npy"), f.s("m.npy"));

    // NaN score: file, image and voxel
    let mut nan = s.clone();
    nan[[3, 2, 5]] = f64::NAN;
    write_npy(f.path("nan.npy"), &nan).unwrap();
    let e = calibrate(f.s("nan.npy"), mp, &[], 1);
    assert!(e.contains("nan.npy") && e.contains("image 3") && e.contains("voxel [2, 5]"), "{e}");

    // shape mismatch: both shapes
    write_npy(f.path("narrow.npy"), &s.slice(ndarray::s![.., .., ..12]).to_owned()).unwrap();
    let e = calibrate(f.s("narrow.npy"), mp, &[], 1);
    assert!(e.contains("[12, 16, 16]") && e.contains("[12, 16, 12]"), "{e}");

    // non-binary mask: file, image, voxel and value
    let mut bad = m.mapv(u8::from);
    bad[[7, 1, 4]] = 2;
    write_npy(f.path("bad.npy"), &bad).unwrap();
    let e = calibrate(sp, f.s("bad.npy"), &[], 1);
    assert!(
        e.contains("bad.npy") && e.contains("image 7") && e.contains("[1, 4]") && e.contains("holds 2"),
        "{e}"
    );

    // levels
    let e = calibrate(sp, mp, &["--alpha", "1.5"], 2);
    assert!(e.contains("1.5") && e.contains("(0, 1)"), "{e}");
    let e = calibrate(sp, mp, &["--alpha", "0"], 2);
    assert!(e.contains("(0, 1)"), "{e}");
    let e = calibrate(
        sp,
        mp,
        &["--alpha", "0.1", "--mode", "bonferroni", "--alpha-inner", "0.05", "--alpha-outer", "0.08"],
        1,
    );
    assert!(e.contains("exceeds") && e.contains("0.1"), "{e}");
    calibrate(sp, mp, &["--mode", "bonferroni", "--weights", "0:1"], 2);
    calibrate(sp, mp, &["--mode", "max", "--weights", "1:4"], 2);

    // empty and truncated files
    std::fs::write(f.path("empty.npy"), b"").unwrap();
    let e = calibrate(f.s("empty.npy"), mp, &[], 1);
    assert!(e.contains("empty.npy") && e.contains("empty"), "{e}");
    let bytes = std::fs::read(f.path("s.npy")).unwrap();
    std::fs::write(f.path("trunc.npy"), &bytes[..bytes.len() - 100]).unwrap();
    let e = calibrate(f.s("trunc.npy"), mp, &[], 1);
    assert!(e.contains("trunc.npy") && e.contains("truncated"), "{e}");
    std::fs::write(f.path("hdr.npy"), &bytes[..30]).unwrap();
    assert!(calibrate(f.s("hdr.npy"), mp, &[], 1).contains("truncated"));
    let e = calibrate(f.s("missing.npy"), mp, &[], 1);
    assert!(e.contains("missing.npy"), "{e}");

    // index files
    write_npy(f.path("oob.npy"), &Array::from(vec![3_i64, 12])).unwrap();
    let e = calibrate(sp, mp, &["--exclude", f.s("oob.npy")], 1);
    assert!(e.contains("oob.npy") && e.contains("12") && e.contains("out of range"), "{e}");
    write_npy(f.path("dup.npy"), &Array::from(vec![3_i64, 4, 3])).unwrap();
    let e = calibrate(sp, mp, &["--indices", f.s("dup.npy")], 1);
    assert!(e.contains("dup.npy") && e.contains("twice"), "{e}");

    write_npy(f.path("none.npy"), &Array::<i64, _>::zeros(0)).unwrap();
    let e = calibrate(sp, mp, &["--indices", f.s("none.npy")], 1);
    assert!(e.contains("none.npy") && e.contains("lists no image index") && e.contains("0..12"), "{e}");

    // usage: transform options with pre-transformed scores
    let e = fail(
        &[
            "calibrate",
            "--masks",
            mp,
            "--inner-scores",
            sp,
            "--outer-scores",
            sp,
            "--inner",
            "sigmoid",
            "--alpha",
            "0.1",
            "-o",
            out,
        ],
        2,
    );
    assert!(e.contains("--inner"), "{e}");
    fail(&["calibrate", "--masks", mp, "--inner-scores", sp, "--alpha", "0.1"], 2);

    // predict: broken calibration file, nothing written
    std::fs::write(f.path("broken.json"), "{\"n\": 3").unwrap();
    let e = fail(
        &["predict", "--calibration", f.s("broken.json"), "--scores", sp, "--inner-out", f.s("i.npy")],
        1,
    );
    assert!(e.contains("broken.json"), "{e}");
    assert!(!f.path("i.npy").exists());
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn predict_accepts_sets_serialized_by_the_library() {
    let f = Files::new();
    let (s, m) = data(0..30);
    let calibrator = Calibrator::new(ScoreTransform::Sigmoid, distance());
    let cal = calibrator.calibrate_stack(&s, &m).unwrap();
    let sets = calibrator.fit(&cal, Mode::max(Alpha::new(0.2).unwrap())).unwrap();
    std::fs::write(f.path("lib.json"), serde_json::to_string(&sets).unwrap()).unwrap();
    let (test, _) = data(50..55);
    write_npy(f.path("t.npy"), &test).unwrap();
    ok(&["predict", "--calibration", f.s("lib.json"), "--scores", f.s("t.npy"), "--outer-out", f.s("o.npy")]);
    let got: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
    assert_eq!(got, sets.predict_stack(&test).unwrap().outer.mapv(u8::from));
}

#[test]
fn json_to_stdout_without_output_file() {
    let f = Files::new();
    let (s, m) = data(0..20);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    let stdout = ok(&["calibrate", "--masks", f.s("m.npy"), "--scores", f.s("s.npy"), "--alpha", "0.3"]);
    let j: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["n"], 20);
    let (ti, to) = thresholds(&stdout);
    let calibrator = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity);
    let cal = calibrator.calibrate_stack(&s, &m).unwrap();
    let a = Alpha::new(0.3).unwrap();
    assert_eq!(ti, conformal_quantile(cal.tau(), a, Rank::Marginal).unwrap().value());
    assert_eq!(to, conformal_quantile(cal.gamma(), a, Rank::Marginal).unwrap().value());
}

#[test]
fn demo_runs_and_reports_every_mode() {
    let stdout = ok(&["demo", "--n-cal", "100", "--n-test", "100", "--size", "20", "--splits", "20"]);
    // one row per guaranteed event: two for marginal, one for each joint mode
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("0.90 ") && l.contains('⊆')).collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    for (row, mode) in rows.iter().zip(["marginal", "", "bonferroni 1:4", "max", "bonf. 1:4 +dist"]) {
        assert!(row.starts_with(mode), "{mode}: {row}");
        // goal, held-out and mean coverage are shares in [0, 1]
        let nums: Vec<f64> = row.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let shares = if mode.is_empty() { &nums[..] } else { &nums[2..5] };
        assert!(shares.iter().all(|c| (0.0..=1.0).contains(c)), "{row}");
    }
    // it fits an 80-column terminal, explains its columns and ends with the next step
    assert!(stdout.lines().all(|l| l.chars().count() <= 80), "{stdout}");
    for column in ["lambda_I/_O", "held-out", "mean", "|I|/|Y|"] {
        assert!(stdout.lines().any(|l| l.starts_with(column)), "{column}: {stdout}");
    }
    assert!(stdout.trim_end().ends_with("--inner-out I.npy --outer-out O.npy"), "{stdout}");
}

#[test]
fn per_image_spacing_files_and_dimensionality() {
    let f = Files::new();
    let data3 = Synthetic::new([10, 9, 5]).seed(9);
    let (s, m) = data3.stack(0..30);
    let s32 = s.mapv(|x| x as f32);
    write_npy(f.path("s.npy"), &s32).unwrap();
    write_npy(f.path("m.npy"), &m.mapv(u8::from)).unwrap();
    let sp: Array<f64, _> = Array::from_shape_fn((30, 3), |(i, a)| [0.8, 0.7, 2.0 + 0.1 * (i % 5) as f64][a]);
    write_npy(f.path("sp.npy"), &sp).unwrap();
    let out = ok(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--outer",
        "distance",
        "--spacing-file",
        f.s("sp.npy"),
        "--alpha",
        "0.2",
        "-o",
        f.s("cal.json"),
    ]);
    assert!(out.contains("spacing: each image's own"), "{out}");
    assert!(out.contains("images: 3-D, computed in float32"), "{out}");
    let j = json(&f.path("cal.json"));
    assert_eq!(j["spacing"], "per-image");
    assert_eq!(j["ndim"], 3);
    // the library with each image's own spacing, in f32, gives the same thresholds
    let calibrator = Calibrator::new(ScoreTransform::Identity, distance());
    let mut cal = Calibration::new();
    for i in 0..30 {
        let spacing = Spacing::new(sp.row(i).to_vec()).unwrap();
        let img = confseg::Image::new(s32.index_axis(Axis(0), i), spacing).unwrap();
        calibrator.observe(&mut cal, &img, &m.index_axis(Axis(0), i)).unwrap();
    }
    let t = cal.thresholds(&Mode::marginal(Alpha::new(0.2).unwrap())).unwrap();
    assert_eq!(file_thresholds(&f.path("cal.json")), (t.inner.value(), t.outer.value()));
    // predict needs the new images' spacing: refused without, accepted with
    let e = fail(
        &["predict", "--calibration", f.s("cal.json"), "--scores", f.s("s.npy"), "--outer-out", f.s("o.npy")],
        1,
    );
    assert!(e.contains("spacing"), "{e}");
    assert!(!f.path("o.npy").exists());
    ok(&[
        "predict",
        "--calibration",
        f.s("cal.json"),
        "--scores",
        f.s("s.npy"),
        "--spacing-file",
        f.s("sp.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let o: Array4<u8> = read_npy(f.path("o.npy")).unwrap();
    let sets = calibrator.fit(&cal, Mode::marginal(Alpha::new(0.2).unwrap())).unwrap();
    for i in [0, 7, 29] {
        let img = confseg::Image::new(s32.index_axis(Axis(0), i), Spacing::new(sp.row(i).to_vec()).unwrap())
            .unwrap();
        assert_eq!(o.index_axis(Axis(0), i), sets.predict(&img).unwrap().outer.mapv(u8::from));
    }
    // one volume without its batch axis is not a stack of 2-D images
    write_npy(f.path("vol.npy"), &s32.index_axis(Axis(0), 0).to_owned()).unwrap();
    let e = fail(
        &[
            "predict",
            "--calibration",
            f.s("cal.json"),
            "--scores",
            f.s("vol.npy"),
            "--spacing",
            "1,1,2",
            "--outer-out",
            f.s("v.npy"),
        ],
        1,
    );
    assert!(e.contains("3-D") && e.contains("batch axis"), "{e}");
    assert!(!f.path("v.npy").exists());
    // a spacing file of the wrong shape names its expected shape
    write_npy(f.path("bad.npy"), &Array::<f64, _>::ones((30, 2))).unwrap();
    let e = fail(
        &[
            "calibrate",
            "--masks",
            f.s("m.npy"),
            "--scores",
            f.s("s.npy"),
            "--spacing-file",
            f.s("bad.npy"),
            "--alpha",
            "0.2",
        ],
        1,
    );
    assert!(e.contains("(30, 3)"), "{e}");
}

#[test]
fn a_file_named_twice_is_read_once_and_gives_the_same_thresholds() {
    let f = Files::new();
    let (s, m) = data(0..40);
    write_npy(f.path("s.npy"), &s.mapv(|x| x as f32)).unwrap();
    std::fs::copy(f.path("s.npy"), f.path("copy.npy")).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    let args = |b: &'static str| {
        [
            "calibrate",
            "--masks",
            f.s("m.npy"),
            "--inner-scores",
            f.s("s.npy"),
            "--outer-scores",
            b,
            "--alpha",
            "0.1",
        ]
    };
    let once = ok(&args(f.s("s.npy")));
    let twice = ok(&args(f.s("copy.npy")));
    assert_eq!(thresholds(&once), thresholds(&twice));
}

#[test]
fn risk_control_is_fitted_saved_and_predicted() {
    let f = Files::new();
    let (s, m) = data(0..60);
    let (test, _) = data(100..105);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    write_npy(f.path("t.npy"), &test).unwrap();
    let base = ["calibrate", "--masks", f.s("m.npy"), "--scores", f.s("s.npy"), "--outer", "distance"];
    let stdout =
        ok(&[&base[..], &["--alpha", "0.1", "--mode", "risk-control", "-o", f.s("rc.json")]].concat());
    assert!(stdout.contains("expected missed fraction"), "{stdout}");
    // The library on the same images gives the same threshold.
    let calibrator = Calibrator::new(ScoreTransform::Identity, distance());
    let mut risk = confseg::calibrate::RiskCalibration::new();
    for i in 0..60 {
        calibrator.observe_risk(&mut risk, &s.index_axis(Axis(0), i), &m.index_axis(Axis(0), i)).unwrap();
    }
    let sets = calibrator
        .fit_risk_control(&risk, confseg::risk::RiskControl::new(Alpha::new(0.1).unwrap()))
        .unwrap();
    let j = json(&f.path("rc.json"));
    assert_eq!(j["mode"], "risk-control");
    assert_eq!(file_thresholds(&f.path("rc.json")), (f64::INFINITY, sets.thresholds().outer.value()));
    ok(&[
        "predict",
        "--calibration",
        f.s("rc.json"),
        "--scores",
        f.s("t.npy"),
        "--inner-out",
        f.s("i.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let want = sets.predict_stack(&test).unwrap();
    let outer: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
    let inner: Array3<u8> = read_npy(f.path("i.npy")).unwrap();
    assert_eq!(outer, want.outer.mapv(u8::from));
    assert!(inner.iter().all(|&x| x == 0));
    // Its validation is the risk-control baseline's.
    let v = ["validate", "--masks", f.s("m.npy"), "--scores", f.s("s.npy"), "--outer", "distance"];
    let rc = ok(&[
        &v[..],
        &["--n-cal", "40", "--repeats", "20", "--alpha", "0.1", "--mode", "risk-control", "--json"],
    ]
    .concat());
    let baseline = ok(&[
        &v[..],
        &["--n-cal", "40", "--repeats", "20", "--alpha", "0.1", "--method", "risk-control", "--json"],
    ]
    .concat());
    assert_eq!(rc, baseline);
    // No inner level, no precision without delta.
    for (extra, msg) in [
        (&["--alpha-inner", "0.05", "--alpha-outer", "0.05"][..], "risk-control"),
        (&["--risk", "precision"], "give delta"),
    ] {
        let args =
            [&base[..], &["--alpha", "0.1", "--mode", "risk-control", "-o", f.s("x.json")], extra].concat();
        let err = fail(&args, 2);
        assert!(err.contains(msg), "{err}");
    }
    assert!(!f.path("x.json").exists());
}

/// Risk control with confidence through the command line: the file holds
/// the library's thresholds and guarantee, predict applies them, the
/// summary names the set, and validate honours the options.
#[test]
fn risk_control_with_confidence_through_the_cli() {
    use confseg::quantile::Delta;
    use confseg::risk::{Bound, Risk, Search};
    let f = Files::new();
    let (s, m) = data(0..120);
    let (test, _) = data(200..204);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    write_npy(f.path("t.npy"), &test).unwrap();
    let base = [
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--inner",
        "sigmoid",
        "--outer",
        "sigmoid",
    ];
    let calibrator = Calibrator::new(ScoreTransform::Sigmoid, ScoreTransform::Sigmoid);
    let (alpha, delta) = (Alpha::new(0.2).unwrap(), Delta::new(0.1).unwrap());
    let grid = Search::Grid("0:0.99:0.01".parse().unwrap());
    let cases = [
        (
            vec!["--risk", "precision", "--delta", "0.1", "--grid", "0:0.99:0.01"],
            confseg::risk::RiskControl::precision(alpha, delta).with_search(grid).unwrap(),
            "I = {f_I > ",
        ),
        (
            vec!["--risk", "recall", "--delta", "0.1", "--bound", "bernstein"],
            confseg::risk::RiskControl::with_confidence(Risk::Recall, alpha, delta, Bound::Bernstein)
                .unwrap(),
            "O = {f_O >= ",
        ),
    ];
    for (i, (flags, level, rule)) in cases.into_iter().enumerate() {
        let out = f.s(&format!("rc{i}.json"));
        let stdout =
            ok(&[&base[..], &["--alpha", "0.2", "--mode", "risk-control", "-o", out], &flags[..]].concat());
        assert!(stdout.contains(rule) && stdout.contains("with probability >= 0.9"), "{stdout}");
        let mut state = confseg::calibrate::RiskCalibration::for_risk(level.risk());
        for k in 0..120 {
            calibrator
                .observe_risk(&mut state, &s.index_axis(Axis(0), k), &m.index_axis(Axis(0), k))
                .unwrap();
        }
        let sets = calibrator.fit_risk_control(&state, level).unwrap();
        assert!(sets.thresholds().side(level.risk().side()).is_finite(), "{flags:?}: nothing certified");
        let j = json(Path::new(out));
        assert_eq!((j["risk"].as_str(), j["delta"].as_f64()), (Some(level.risk().name()), Some(0.1)));
        let (ti, to) = file_thresholds(Path::new(out));
        assert_eq!((ti, to), (sets.thresholds().inner.value(), sets.thresholds().outer.value()));
        ok(&[
            "predict",
            "--calibration",
            out,
            "--scores",
            f.s("t.npy"),
            "--inner-out",
            f.s("i.npy"),
            "--outer-out",
            f.s("o.npy"),
        ]);
        let want = sets.predict_stack(&test).unwrap();
        let inner: Array3<u8> = read_npy(f.path("i.npy")).unwrap();
        let outer: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
        assert_eq!((inner, outer), (want.inner.mapv(u8::from), want.outer.mapv(u8::from)));
    }
    // validate honours the options: precision is measured on the inner set
    let v = ["validate", "--masks", f.s("m.npy"), "--scores", f.s("s.npy"), "--inner", "sigmoid"];
    let out = ok(&[
        &v[..],
        &["--n-cal", "80", "--repeats", "10", "--alpha", "0.2", "--mode", "risk-control"],
        &["--risk", "precision", "--delta", "0.1", "--json", "--geometry-splits", "0"],
    ]
    .concat());
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r[0]["method"], "risk-control delta=0.1 risk=precision");
    assert_eq!(r[0]["outer_coverage"], 1.0);
    assert!(r[0]["efficiency"]["inner_share"].as_f64().unwrap() > 0.0, "{out}");
}

#[test]
fn chained_transforms_calibrate_save_and_predict() {
    let f = Files::new();
    let (s, m) = data(0..40);
    let (test, _) = data(100..104);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    write_npy(f.path("t.npy"), &test).unwrap();
    ok(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--inner",
        "gaussian:2|box",
        "--outer",
        "gaussian:2 | distance:chessboard",
        "--alpha",
        "0.1",
        "-o",
        f.s("cal.json"),
    ]);
    let j = json(&f.path("cal.json"));
    assert_eq!(j["inner"]["transform"]["name"], "chain");
    assert_eq!(j["inner"]["transform"]["steps"][1]["name"], "box", "{}", j["inner"]["transform"]);
    assert_eq!(j["inner"]["transform"]["steps"][1]["kind"], "inner", "{}", j["inner"]["transform"]);
    let inner: ScoreTransform = "gaussian:2|box-inner".parse().unwrap();
    let outer: ScoreTransform = "gaussian:2|distance:chessboard".parse().unwrap();
    let calibrator = Calibrator::new(inner, outer);
    let sets = calibrator
        .fit(&calibrator.calibrate_stack(&s, &m).unwrap(), Mode::marginal(Alpha::new(0.1).unwrap()))
        .unwrap();
    assert_eq!(
        file_thresholds(&f.path("cal.json")),
        (sets.thresholds().inner.value(), sets.thresholds().outer.value())
    );
    ok(&[
        "predict",
        "--calibration",
        f.s("cal.json"),
        "--scores",
        f.s("t.npy"),
        "--inner-out",
        f.s("i.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let want = sets.predict_stack(&test).unwrap();
    let got: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
    assert_eq!(got, want.outer.mapv(u8::from));
    let e = fail(
        &[
            "calibrate",
            "--masks",
            f.s("m.npy"),
            "--scores",
            f.s("s.npy"),
            "--outer",
            "gaussian:2|",
            "--alpha",
            "0.1",
            "-o",
            f.s("x.json"),
        ],
        1,
    );
    assert!(e.contains("empty step"), "{e}");
    assert!(!f.path("x.json").exists());
}

/// `validate --delta` fits every split at the training-conditional rank:
/// its recorded split thresholds are those of `calibrate --delta` on the
/// same calibration images, for each mode, and differ from the marginal
/// rank's (the validation fast path once had its own quantile that never
/// saw `delta`).
#[test]
fn validate_with_delta_fits_each_split_as_calibrate_does() {
    let f = Files::new();
    let (s, m) = data(0..160);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m.mapv(u8::from)).unwrap();
    let (sp, mp) = (f.s("s.npy"), f.s("m.npy"));
    for (mode, extra) in [("max", &[][..]), ("bonferroni", &["--weights", "1:4"][..]), ("marginal", &[][..])]
    {
        let validate = |delta: Option<&str>| -> Value {
            let mut args = vec![
                "validate",
                "--masks",
                mp,
                "--scores",
                sp,
                "--outer",
                "distance",
                "--alpha",
                "0.1",
                "--mode",
                mode,
                "--n-cal",
                "100",
                "--repeats",
                "3",
                "--record-splits",
                "2",
                "--geometry-splits",
                "0",
                "--json",
            ];
            args.extend(extra);
            if let Some(d) = delta {
                args.extend(["--delta", d]);
            }
            serde_json::from_str(&ok(&args)).unwrap()
        };
        let conditional = validate(Some("0.05"));
        let marginal = validate(None);
        let recorded = conditional[0]["recorded"].as_array().expect("recorded splits");
        assert_eq!(recorded.len(), 2);
        for (r, rec) in recorded.iter().enumerate() {
            let idx: Vec<i64> =
                rec["calibration"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(idx.len(), 100);
            assert_eq!(
                idx,
                marginal[0]["recorded"][r]["calibration"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect::<Vec<_>>()
            );
            let ip = f.path(&format!("idx_{mode}_{r}.npy"));
            write_npy(&ip, &Array::from(idx)).unwrap();
            let out = f.path(&format!("cal_{mode}_{r}.json"));
            let mut args = vec![
                "calibrate",
                "--masks",
                mp,
                "--scores",
                sp,
                "--outer",
                "distance",
                "--alpha",
                "0.1",
                "--mode",
                mode,
                "--delta",
                "0.05",
                "--indices",
            ];
            let (ips, outs) = (
                Box::leak(ip.to_string_lossy().into_owned().into_boxed_str()) as &str,
                Box::leak(out.to_string_lossy().into_owned().into_boxed_str()) as &str,
            );
            args.extend([ips, "-o", outs]);
            args.extend(extra);
            ok(&args);
            let (ti, to) = thresholds(&std::fs::read_to_string(&out).unwrap());
            let number = |v: &Value| match v {
                Value::String(s) => s.parse::<f64>().unwrap(),
                v => v.as_f64().unwrap(),
            };
            assert_eq!(
                (number(&rec["lambda_inner"]), number(&rec["lambda_outer"])),
                (ti, to),
                "{mode} split {r}"
            );
            // the conditional rank (n = 100, delta = 0.05) is not the marginal one
            let j = json(&out);
            assert!(
                j["outer"]["rank"].as_u64().unwrap()
                    > Alpha::new(j["outer"]["alpha"].as_f64().unwrap()).unwrap().rank(100) as u64
            );
        }
        // at a higher rank the thresholds can only grow, and here some do
        let number = |v: &Value| match v {
            Value::String(s) => s.parse::<f64>().unwrap(),
            v => v.as_f64().unwrap(),
        };
        let mut grew = false;
        for r in 0..2 {
            for side in ["lambda_inner", "lambda_outer"] {
                let (c, m) =
                    (number(&conditional[0]["recorded"][r][side]), number(&marginal[0]["recorded"][r][side]));
                assert!(c >= m, "{mode} split {r} {side}: {c} < {m}");
                grew |= c > m;
            }
        }
        assert!(grew, "{mode}: the conditional rank changed no threshold");
    }
}

/// The level vocabulary through the command line: every request of
/// `tests/data/levels.json` (the table the library and Python are checked
/// against) as flags of `calibrate`, with the table's levels and ranks in
/// the written file, or the table's error and exit code.
#[test]
fn level_flags_validate_as_the_shared_table_says() {
    let table: Value = serde_json::from_str(include_str!("data/levels.json")).unwrap();
    let n = table["n"].as_u64().unwrap() as usize;
    let f = Files::new();
    let (s, m) = data(0..n);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m.mapv(u8::from)).unwrap();
    for (i, case) in table["cases"].as_array().unwrap().iter().enumerate() {
        let r = &case["request"];
        let out = f.s(&format!("levels_{i}.json"));
        let mut args: Vec<String> =
            ["calibrate", "--masks", f.s("m.npy"), "--scores", f.s("s.npy"), "-o", out]
                .map(String::from)
                .to_vec();
        for (key, flag) in [
            ("mode", "--mode"),
            ("alpha", "--alpha"),
            ("alpha_inner", "--alpha-inner"),
            ("alpha_outer", "--alpha-outer"),
            ("delta", "--delta"),
            ("risk", "--risk"),
            ("bound", "--bound"),
            ("grid", "--grid"),
        ] {
            match &r[key] {
                Value::Null => {}
                Value::String(v) => args.extend([flag.to_owned(), v.clone()]),
                v => args.extend([flag.to_owned(), v.to_string()]),
            }
        }
        if let Some(w) = r.get("weights") {
            args.extend(["--weights".to_owned(), format!("{}:{}", w[0], w[1])]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match case.get("error") {
            Some(Value::String(e)) => {
                let code = case["cli_exit"].as_i64().unwrap() as i32;
                let err = fail(&args, code);
                let want = case.get("cli_error").and_then(Value::as_str).unwrap_or(e);
                assert!(err.contains(want), "{case}: {err}");
            }
            _ => {
                ok(&args);
                let (j, w) = (json(Path::new(out)), &case["want"]);
                assert_eq!(j["mode"], w["mode"], "{case}");
                assert_eq!(j["alpha"].as_f64(), w["alpha"].as_f64(), "{case}");
                assert_eq!(j.get("delta").and_then(Value::as_f64), w["delta"].as_f64(), "{case}");
                if w["mode"] == "risk-control" {
                    // the file names the risk only when it is not the default recall
                    let risk = j.get("risk").and_then(Value::as_str).unwrap_or("recall");
                    assert_eq!(Some(risk), w["risk"].as_str(), "{case}");
                    assert_eq!(j.get("bound").and_then(Value::as_str), w["bound"].as_str(), "{case}");
                    assert_eq!(j.get("grid").and_then(Value::as_str), w["grid"].as_str(), "{case}");
                }
                for side in ["inner", "outer"] {
                    let a = j[side]["alpha"].as_f64().unwrap();
                    assert!((a - w[format!("alpha_{side}")].as_f64().unwrap()).abs() < 1e-12, "{case}");
                    assert_eq!(j[side]["rank"].as_u64(), w[format!("rank_{side}")].as_u64(), "{case}");
                }
            }
        }
    }
}

/// The dilation baselines dilate the predicted mask at the transforms'
/// threshold: `distance:threshold=1` moves them exactly as
/// `--mask-threshold 1` does (they ignored `:threshold=` before).
#[test]
fn validate_baselines_take_the_transforms_threshold() {
    let f = Files::new();
    let (s, m) = data(0..60);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    let run = |outer: &str, extra: &[&str]| -> Value {
        let mut a = vec!["validate", "--scores", f.s("s.npy"), "--masks", f.s("m.npy"), "--outer", outer];
        a.extend([
            "--method",
            "morphological-chessboard",
            "--n-cal",
            "30",
            "--repeats",
            "10",
            "--alpha",
            "0.2",
        ]);
        a.extend(["--json", "--geometry-splits", "0"]);
        a.extend(extra);
        serde_json::from_str(&ok(&a)).unwrap()
    };
    let by_option = run("distance", &["--mask-threshold", "1"]);
    let by_transform = run("distance:threshold=1", &[]);
    let at_zero = run("distance", &[]);
    let key =
        |v: &Value| (v[0]["outer_coverage"].clone(), v[0]["outer_share"].clone(), v[0]["outer_size"].clone());
    assert_eq!(key(&by_transform), key(&by_option));
    assert_ne!(key(&by_transform), key(&at_zero), "{at_zero}");
}

/// `--inner-tolerance`/`--outer-tolerance` on calibrate and validate: the
/// file's thresholds are the library's for the same tolerances (and not
/// the containment ones), the file states the event, predict reads it, and
/// validate's recorded splits refit with calibrate to the same thresholds.
#[test]
fn tolerances_calibrate_validate_and_predict_as_the_library_does() {
    use confseg::tolerance::Tolerances;
    let f = Files::new();
    let (s, m) = data(0..80);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m.mapv(u8::from)).unwrap();
    let (sp, mp, out) = (f.s("s.npy"), f.s("m.npy"), f.s("cal.json"));
    let tol = ["--inner-tolerance", "5vox", "--outer-tolerance", "0.05"];
    let base = [
        "calibrate",
        "--masks",
        mp,
        "--scores",
        sp,
        "--outer",
        "distance",
        "--alpha",
        "0.2",
        "--mode",
        "max",
    ];
    let printed = ok(&[&base[..], &tol[..], &["-o", out]].concat());
    assert!(
        printed.contains("guarantee: P(|I \\ Y| <= 5 voxels and |Y \\ O| <= ⌊0.05 |Y|⌋) >= 0.8"),
        "{printed}"
    );
    let t = Tolerances::new("5vox".parse().unwrap(), "0.05".parse().unwrap());
    let lib = Calibrator::new(ScoreTransform::Identity, distance()).with_tolerances(t);
    let cal = lib.calibrate_stack(&s, &m).unwrap();
    let sets = lib.fit(&cal, Mode::max(Alpha::new(0.2).unwrap())).unwrap();
    let (ti, to) = file_thresholds(&f.path("cal.json"));
    assert_eq!((ti, to), (sets.thresholds().inner.value(), sets.thresholds().outer.value()));
    let plain = Calibrator::new(ScoreTransform::Identity, distance()).calibrate_stack(&s, &m).unwrap();
    let plain = Calibrator::new(ScoreTransform::Identity, distance())
        .fit(&plain, Mode::max(Alpha::new(0.2).unwrap()));
    assert_ne!(ti, plain.unwrap().thresholds().inner.value(), "the tolerance changed nothing");
    let j = json(&f.path("cal.json"));
    assert_eq!(
        (j["inner"]["tolerance"].as_str(), j["outer"]["tolerance"].as_str()),
        (Some("5vox"), Some("0.05"))
    );
    ok(&[
        "predict",
        "--calibration",
        out,
        "--scores",
        sp,
        "--inner-out",
        f.s("i.npy"),
        "--outer-out",
        f.s("o.npy"),
    ]);
    let o: Array3<u8> = read_npy(f.path("o.npy")).unwrap();
    assert_eq!(o, sets.predict_stack(&s).unwrap().outer.mapv(u8::from));
    // validate: a recorded split refits with calibrate --indices to the same thresholds
    let v: Value = serde_json::from_str(&ok(&[
        &[
            "validate", "--masks", mp, "--scores", sp, "--outer", "distance", "--alpha", "0.2", "--mode",
            "max",
        ][..],
        &tol[..],
        &["--n-cal", "50", "--repeats", "3", "--record-splits", "1", "--geometry-splits", "0", "--json"][..],
    ]
    .concat()))
    .unwrap();
    let rec = &v[0]["recorded"][0];
    let idx: Vec<i64> = rec["calibration"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    write_npy(f.path("idx.npy"), &Array::from(idx)).unwrap();
    let split = f.s("split.json");
    ok(&[&base[..], &tol[..], &["--indices", f.s("idx.npy"), "-o", split]].concat());
    let number = |v: &Value| match v {
        Value::String(s) => s.parse::<f64>().unwrap(),
        v => v.as_f64().unwrap(),
    };
    assert_eq!(
        (number(&rec["lambda_inner"]), number(&rec["lambda_outer"])),
        file_thresholds(&f.path("split.json"))
    );
    // a count without its unit, and a tolerance with risk control, are refused with the fix
    let e = fail(&[&base[..], &["--outer-tolerance", "5"]].concat(), 2);
    assert!(e.contains("5vox"), "{e}");
    let out = run(&[
        "calibrate",
        "--masks",
        mp,
        "--scores",
        sp,
        "--alpha",
        "0.2",
        "--mode",
        "risk-control",
        "--outer-tolerance",
        "0.05",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("no tolerance"), "{e}");
}

/// Morphological transforms through the CLI: named footprints and a
/// physical ball with `--spacing` calibrate as the library does, the file
/// stores a custom footprint's cells (the `.npy` may then go), `predict`
/// and `transform` read them, and bad footprints are one-line errors.
#[test]
fn morphological_transforms_calibrate_save_and_predict() {
    let f = Files::new();
    let data = Synthetic::new([10, 11, 12]).seed(5);
    let (s, m) = data.stack(0..40);
    let (test, _) = data.stack(100..104);
    write_npy(f.path("s.npy"), &s).unwrap();
    write_npy(f.path("m.npy"), &m).unwrap();
    write_npy(f.path("t.npy"), &test).unwrap();
    let cross = ndarray::Array3::from_shape_fn((3, 3, 3), |(i, j, k)| {
        u8::from([i, j, k].iter().filter(|&&x| x != 1).count() <= 1)
    });
    write_npy(f.path("fp.npy"), &cross).unwrap();
    let fp = format!("morphological:footprint={}", f.s("fp.npy"));
    let spacing = Spacing::new(vec![1.0, 1.0, 2.5]).unwrap();
    for (inner, outer, with_spacing) in [
        ("morphological", "morphological:footprint=edge", false),
        (
            "morphological:footprint=full:threshold=0.5",
            "morphological:footprint=ball:radius=2.5:units=physical",
            true,
        ),
        ("identity", fp.as_str(), false),
    ] {
        let mut args = vec![
            "calibrate",
            "--masks",
            f.s("m.npy"),
            "--scores",
            f.s("s.npy"),
            "--inner",
            inner,
            "--outer",
            outer,
        ];
        if with_spacing {
            args.extend(["--spacing", "1,1,2.5"]);
        }
        args.extend(["--alpha", "0.1", "-o", f.s("cal.json")]);
        ok(&args);
        let (ti, to): (ScoreTransform, ScoreTransform) = (inner.parse().unwrap(), outer.parse().unwrap());
        let mut calibrator = Calibrator::new(ti.clone(), to.clone());
        if with_spacing {
            calibrator = calibrator.with_spacing(spacing.clone());
        }
        let sets = calibrator
            .fit(&calibrator.calibrate_stack(&s, &m).unwrap(), Mode::marginal(Alpha::new(0.1).unwrap()))
            .unwrap();
        assert_eq!(
            file_thresholds(&f.path("cal.json")),
            (sets.thresholds().inner.value(), sets.thresholds().outer.value()),
            "{inner} {outer}"
        );
        let j = json(&f.path("cal.json"));
        assert_eq!(j["outer"]["transform"]["name"], "morphological", "{}", j["outer"]["transform"]);
        assert!(!j["outer"]["transform"].to_string().contains("fp.npy"), "{}", j["outer"]["transform"]);
        if outer == fp {
            assert_eq!(j["outer"]["transform"]["footprint"]["custom"]["shape"], serde_json::json!([3, 3, 3]));
            std::fs::remove_file(f.path("fp.npy")).unwrap();
        }
        ok(&[
            "predict",
            "--calibration",
            f.s("cal.json"),
            "--scores",
            f.s("t.npy"),
            "--outer-out",
            f.s("o.npy"),
        ]);
        let got: Array<u8, ndarray::Ix4> = read_npy(f.path("o.npy")).unwrap();
        let want = sets.predict_stack(&test).unwrap();
        assert_eq!(got, want.outer.mapv(u8::from), "{outer}");
        assert!(want.outer.iter().any(|&b| b) && want.outer.iter().any(|&b| !b), "non-trivial sets");
    }
    // the transform subcommand, with the spacing the physical ball uses
    let ball = "morphological:footprint=ball:radius=2.5:units=physical";
    ok(&[
        "transform",
        "--scores",
        f.s("t.npy"),
        "--transform",
        ball,
        "--spacing",
        "1,1,2.5",
        "-o",
        f.s("d.npy"),
    ]);
    let got: Array<f64, ndarray::Ix4> = read_npy(f.path("d.npy")).unwrap();
    let t: ScoreTransform = ball.parse().unwrap();
    for (i, image) in test.outer_iter().enumerate() {
        assert_eq!(got.index_axis(Axis(0), i), t.apply(&image, &spacing).unwrap(), "image {i}");
    }
    for (bad, says) in [
        ("morphological:footprint=ball", "radius"),
        ("morphological:footprint=[010,111,010]", "2-D"),
        ("morphological:footprint=hex", "footprint is face, edge"),
    ] {
        let e = fail(
            &[
                "calibrate",
                "--masks",
                f.s("m.npy"),
                "--scores",
                f.s("s.npy"),
                "--outer",
                bad,
                "--alpha",
                "0.1",
            ],
            1,
        );
        assert!(e.contains(says), "{bad}: {e}");
    }
}
