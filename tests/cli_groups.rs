//! `calibrate --groups` / `predict --groups` and a manifest's group column,
//! checked against the library's per-group fit on the same images.

use std::path::PathBuf;
use std::process::{Command, Output};

use confseg::groups::{Group, GroupedSets, SmallGroups};
use confseg::pipeline::Fitted;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibration, Calibrator, Mode, ScoreTransform};
use ndarray::{Array1, Array3, Axis};
use ndarray_npy::{read_npy, write_npy};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "confseg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Failure with `code` and one `error:` line; returns stderr.
fn fail(args: &[&str], code: i32) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "confseg {args:?}: {stderr}");
    assert!(stderr.starts_with("error:") && stderr.trim_end().lines().count() == 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).to_string_lossy().into_owned()
    }
}

const N: usize = 50;

/// 50 images: group 0 easy, 1 hard, 9 (5 images) small.
fn setup() -> (Dir, Array3<f64>, Array3<bool>, Vec<i64>) {
    let d = Dir(tempfile::tempdir().unwrap());
    let easy = Synthetic::new([10, 12]).seed(3).noise(0.3).unwrap();
    let hard = Synthetic::new([10, 12]).seed(4).noise(3.0).unwrap();
    let labels: Vec<i64> = (0..N).map(|i| if i % 10 == 9 { 9 } else { (i % 2) as i64 }).collect();
    let pairs: Vec<_> =
        labels.iter().enumerate().map(|(i, &g)| if g == 1 { hard.pair(i) } else { easy.pair(i) }).collect();
    let s = ndarray::stack(Axis(0), &pairs.iter().map(|p| p.0.view()).collect::<Vec<_>>()).unwrap();
    let m = ndarray::stack(Axis(0), &pairs.iter().map(|p| p.1.view()).collect::<Vec<_>>()).unwrap();
    write_npy(d.p("S.npy"), &s).unwrap();
    write_npy(d.p("M.npy"), &m.mapv(u8::from)).unwrap();
    write_npy(d.p("G.npy"), &Array1::from(labels.clone())).unwrap();
    (d, s, m, labels)
}

fn library_fit(s: &Array3<f64>, m: &Array3<bool>, labels: &[i64], policy: SmallGroups) -> GroupedSets {
    let c = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Sigmoid);
    let cal: Calibration = c.calibrate_stack(s, m).unwrap();
    let groups: Vec<Group> = labels.iter().map(|&g| Group::from(g)).collect();
    c.fit_groups(&cal, &groups, Mode::bonferroni(Alpha::new(0.2).unwrap(), 1.0, 1.0).unwrap(), policy)
        .unwrap()
}

#[test]
fn calibrate_and_predict_per_group_match_the_library() {
    let (d, s, m, labels) = setup();
    for (policy, extra) in [(SmallGroups::Infinite, None), (SmallGroups::Pool, Some("--pool-small-groups"))] {
        let mut args = vec![
            "calibrate".to_owned(),
            "--masks".into(),
            d.s("M.npy"),
            "--scores".into(),
            d.s("S.npy"),
            "--outer".into(),
            "sigmoid".into(),
            "--alpha".into(),
            "0.2".into(),
            "--mode".into(),
            "bonferroni".into(),
            "--groups".into(),
            d.s("G.npy"),
            "-o".into(),
            d.s("cal.json"),
        ];
        args.extend(extra.map(str::to_owned));
        let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.contains("calibration images: n = 50 in 3 groups"), "{out}");
        assert!(out.contains("group 9: n = 5"), "{out}");
        let file: Fitted<GroupedSets> = Fitted::read(&d.p("cal.json")).unwrap();
        let expected = library_fit(&s, &m, &labels, policy);
        assert_eq!(file.sets.sizes(), expected.sizes());
        for (g, _) in expected.sizes() {
            let (a, b) = (file.sets.sets(&g).unwrap(), expected.sets(&g).unwrap());
            assert_eq!(a.thresholds(), b.thresholds(), "group {g}");
            assert_eq!(a.n(), b.n());
        }
        assert_eq!(file.sets.small_groups(), policy);
        assert_eq!(file.sets.is_pooled(&Group::from(9)), policy == SmallGroups::Pool);
        // predict: each image with its group's thresholds
        ok(&[
            "predict",
            "--calibration",
            &d.s("cal.json"),
            "--scores",
            &d.s("S.npy"),
            "--groups",
            &d.s("G.npy"),
            "--inner-out",
            &d.s("I.npy"),
            "--outer-out",
            &d.s("O.npy"),
        ]);
        let (inner, outer): (Array3<u8>, Array3<u8>) =
            (read_npy(d.p("I.npy")).unwrap(), read_npy(d.p("O.npy")).unwrap());
        for (i, &g) in labels.iter().enumerate() {
            let p = expected.predict(&Group::from(g), &s.index_axis(Axis(0), i)).unwrap();
            assert_eq!(inner.index_axis(Axis(0), i), p.inner.mapv(u8::from), "image {i}");
            assert_eq!(outer.index_axis(Axis(0), i), p.outer.mapv(u8::from), "image {i}");
        }
    }
    // the groups differ: a calibration without groups gives other sets for the hard group
    let hard = expected_hard_threshold(&s, &m, &labels);
    let pooled = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Sigmoid)
        .fit(
            &Calibrator::new(ScoreTransform::Identity, ScoreTransform::Sigmoid)
                .calibrate_stack(&s, &m)
                .unwrap(),
            Mode::bonferroni(Alpha::new(0.2).unwrap(), 1.0, 1.0).unwrap(),
        )
        .unwrap();
    assert_ne!(pooled.thresholds().outer.value(), hard);
}

fn expected_hard_threshold(s: &Array3<f64>, m: &Array3<bool>, labels: &[i64]) -> f64 {
    library_fit(s, m, labels, SmallGroups::Infinite).sets(&Group::from(1)).unwrap().thresholds().outer.value()
}

#[test]
fn bad_groups_are_one_line_errors() {
    let (d, _, _, labels) = setup();
    let cal = |g: &str, code: i32| {
        fail(
            &[
                "calibrate",
                "--masks",
                &d.s("M.npy"),
                "--scores",
                &d.s("S.npy"),
                "--alpha",
                "0.2",
                "--groups",
                &d.s(g),
                "-o",
                &d.s("x.json"),
            ],
            code,
        )
    };
    write_npy(d.p("short.npy"), &Array1::from(labels[1..].to_vec())).unwrap();
    let e = cal("short.npy", 1);
    assert!(e.contains("short.npy: invalid groups = 49 labels: the score files hold 50 images"), "{e}");
    write_npy(d.p("float.npy"), &Array1::from(vec![0.5f64; N])).unwrap();
    let e = cal("float.npy", 1);
    assert!(e.contains("unsupported dtype float64 for group labels"), "{e}");
    write_npy(d.p("two.npy"), &ndarray::Array2::<i64>::zeros((N, 2))).unwrap();
    assert!(cal("two.npy", 1).contains("a 1-D array of one group label per image"));
    let e = fail(
        &[
            "calibrate",
            "--masks",
            &d.s("M.npy"),
            "--scores",
            &d.s("S.npy"),
            "--alpha",
            "0.2",
            "--pool-small-groups",
        ],
        2,
    );
    assert!(e.contains("--pool-small-groups needs groups"), "{e}");
    ok(&[
        "calibrate",
        "--masks",
        &d.s("M.npy"),
        "--scores",
        &d.s("S.npy"),
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "--groups",
        &d.s("G.npy"),
        "-o",
        &d.s("cal.json"),
    ]);
    ok(&[
        "calibrate",
        "--masks",
        &d.s("M.npy"),
        "--scores",
        &d.s("S.npy"),
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        &d.s("plain.json"),
    ]);
    let predict = |file: &str, groups: Option<&str>, code| {
        let mut a = vec![
            "predict".to_owned(),
            "--calibration".into(),
            d.s(file),
            "--scores".into(),
            d.s("S.npy"),
            "--inner-out".into(),
            d.s("I.npy"),
        ];
        if let Some(g) = groups {
            a.extend(["--groups".to_owned(), d.s(g)]);
        }
        fail(&a.iter().map(String::as_str).collect::<Vec<_>>(), code)
    };
    let e = predict("cal.json", None, 2);
    assert!(e.contains("was calibrated per group (groups 0, 1, 9): give each image's group"), "{e}");
    let mut unknown = labels.clone();
    unknown[7] = 4;
    write_npy(d.p("unknown.npy"), &Array1::from(unknown)).unwrap();
    let e = predict("cal.json", Some("unknown.npy"), 1);
    assert!(e.ends_with("error: image 7: group 4 was not calibrated (known groups: 0, 1, 9)\n"), "{e}");
    assert!(!d.p("I.npy").exists(), "no output after a refused group");
    let e = predict("plain.json", Some("G.npy"), 2);
    assert!(e.contains("was not calibrated per group"), "{e}");
}

#[test]
fn a_manifest_group_column_equals_a_groups_file() {
    let (d, s, m, labels) = setup();
    std::fs::create_dir(d.p("subj")).unwrap();
    let mut manifest = String::from("id,scores,mask,group\n");
    for (i, &g) in labels.iter().enumerate() {
        let id = format!("s{i:03}");
        write_npy(d.p(&format!("subj/{id}_p.npy")), &s.index_axis(Axis(0), i).to_owned()).unwrap();
        write_npy(d.p(&format!("subj/{id}_m.npy")), &m.index_axis(Axis(0), i).mapv(u8::from)).unwrap();
        let name = if g == 9 { "site-z".to_owned() } else { g.to_string() };
        manifest += &format!("{id},subj/{id}_p.npy,subj/{id}_m.npy,{name}\n");
    }
    std::fs::write(d.p("m.csv"), &manifest).unwrap();
    ok(&[
        "calibrate",
        "--manifest",
        &d.s("m.csv"),
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        &d.s("man.json"),
    ]);
    ok(&[
        "calibrate",
        "--masks",
        &d.s("M.npy"),
        "--scores",
        &d.s("S.npy"),
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "--groups",
        &d.s("G.npy"),
        "-o",
        &d.s("npy.json"),
    ]);
    let a: Fitted<GroupedSets> = Fitted::read(&d.p("man.json")).unwrap();
    let b: Fitted<GroupedSets> = Fitted::read(&d.p("npy.json")).unwrap();
    for (g, h) in [
        (Group::from(0), Group::from(0)),
        (Group::from(1), Group::from(1)),
        (Group::Name("site-z".into()), Group::from(9)),
    ] {
        assert_eq!(a.sets.sets(&g).unwrap().thresholds(), b.sets.sets(&h).unwrap().thresholds(), "group {g}");
    }
    // both the column and a file: refused
    let e = fail(
        &[
            "calibrate",
            "--manifest",
            &d.s("m.csv"),
            "--alpha",
            "0.2",
            "--groups",
            &d.s("G.npy"),
            "-o",
            &d.s("x.json"),
        ],
        2,
    );
    assert!(e.contains("the manifest has a group column"), "{e}");
    // predict reads the column
    std::fs::create_dir(d.p("out")).unwrap();
    ok(&[
        "predict",
        "--calibration",
        &d.s("man.json"),
        "--manifest",
        &d.s("m.csv"),
        "--out-dir",
        &d.s("out"),
    ]);
    // a bad label in the column names the line
    std::fs::write(d.p("bad.csv"), manifest.replacen(",site-z\n", ",\n", 1)).unwrap();
    let e = fail(&["calibrate", "--manifest", &d.s("bad.csv"), "--alpha", "0.2", "-o", &d.s("x.json")], 1);
    assert!(e.contains("line 11") && e.contains("no group"), "{e}");
}

/// Each image's stratum of `predicted-volume=8,14`, by hand: its predicted
/// volume `|{s > 0}|` binned at 8 and 14 voxels.
fn strata_by_hand(s: &Array3<f64>) -> Vec<i64> {
    s.outer_iter()
        .map(|im| {
            let v = im.iter().filter(|&&x| x > 0.0).count();
            i64::from(v >= 8) + i64::from(v >= 14)
        })
        .collect()
}

#[test]
fn strata_of_the_predictions_equal_groups_computed_by_hand() {
    let (d, s, _, _) = setup();
    let strata = strata_by_hand(&s);
    assert!((0..3).all(|j| strata.iter().filter(|&&g| g == j).count() >= 4), "{strata:?}");
    write_npy(d.p("H.npy"), &Array1::from(strata.clone())).unwrap();
    let base =
        ["calibrate", "--masks", &d.s("M.npy"), "--scores", &d.s("S.npy"), "--alpha", "0.2", "--mode", "max"];
    let mut a = base.to_vec();
    a.extend(["--strata", "predicted-volume=8,14", "-o", Box::leak(d.s("st.json").into_boxed_str())]);
    let out = ok(&a);
    assert!(out.contains("groups: strata predicted-volume=8,14 of the predictions (scores > 0)"), "{out}");
    let mut b = base.to_vec();
    b.extend([
        "--groups",
        Box::leak(d.s("H.npy").into_boxed_str()),
        "-o",
        Box::leak(d.s("h.json").into_boxed_str()),
    ]);
    ok(&b);
    let st: Fitted<GroupedSets> = Fitted::read(&d.p("st.json")).unwrap();
    let by_hand: Fitted<GroupedSets> = Fitted::read(&d.p("h.json")).unwrap();
    let names: Vec<Group> = st.sets.sizes().into_iter().map(|(g, _)| g).collect();
    assert_eq!(
        names.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "0: predicted volume < 8 vox",
            "1: predicted volume in [8, 14) vox",
            "2: predicted volume >= 14 vox"
        ]
    );
    for (j, g) in names.iter().enumerate() {
        let (x, y) = (st.sets.sets(g).unwrap(), by_hand.sets.sets(&Group::from(j as i64)).unwrap());
        assert_eq!((x.n(), x.thresholds()), (y.n(), y.thresholds()), "stratum {g}");
    }
    // predict recomputes each image's stratum
    ok(&[
        "predict",
        "--calibration",
        &d.s("st.json"),
        "--scores",
        &d.s("S.npy"),
        "--inner-out",
        &d.s("I.npy"),
        "--outer-out",
        &d.s("O.npy"),
    ]);
    let (inner, outer): (Array3<u8>, Array3<u8>) =
        (read_npy(d.p("I.npy")).unwrap(), read_npy(d.p("O.npy")).unwrap());
    for (i, &j) in strata.iter().enumerate() {
        let p = by_hand.sets.predict(&Group::from(j), &s.index_axis(Axis(0), i)).unwrap();
        assert_eq!(inner.index_axis(Axis(0), i), p.inner.mapv(u8::from), "image {i}");
        assert_eq!(outer.index_axis(Axis(0), i), p.outer.mapv(u8::from), "image {i}");
    }
    let e = fail(
        &[
            "predict",
            "--calibration",
            &d.s("st.json"),
            "--scores",
            &d.s("S.npy"),
            "--groups",
            &d.s("H.npy"),
            "--inner-out",
            &d.s("I.npy"),
        ],
        2,
    );
    assert!(e.contains("stratum is recomputed, give no --groups"), "{e}");
    let mut c = base.to_vec();
    c.extend(["--strata", "max-score=2,1"]);
    let e = run(&c);
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("edges are strictly increasing"));
}

/// `calibrate --mode risk-control` with `--groups` or `--strata`: each
/// group's threshold is the library's risk control fitted on that group's
/// images alone, and `predict` applies it to the image's group.
#[test]
fn risk_control_per_group_and_per_stratum_match_the_library() {
    use confseg::calibrate::RiskCalibration;
    use confseg::quantile::Delta;
    use confseg::risk::{Bound, Risk, RiskControl};
    let (d, s, m, labels) = setup();
    let c = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Sigmoid);
    let level = RiskControl::with_confidence(
        Risk::Recall,
        Alpha::new(0.3).unwrap(),
        Delta::new(0.2).unwrap(),
        Bound::Wsr,
    )
    .unwrap();
    let strata = strata_by_hand(&s);
    let base = [
        "calibrate",
        "--masks",
        &d.s("M.npy"),
        "--scores",
        &d.s("S.npy"),
        "--outer",
        "sigmoid",
        "--mode",
        "risk-control",
        "--alpha",
        "0.3",
        "--delta",
        "0.2",
        "--bound",
        "wsr",
        "-o",
        &d.s("rc.json"),
    ];
    for (by, grouping) in [("--groups", labels.clone()), ("--strata", strata)] {
        let mut a = base.to_vec();
        let spec = if by == "--groups" { d.s("G.npy") } else { "predicted-volume=8,14".to_owned() };
        a.extend([by, &spec]);
        let out = ok(&a);
        assert!(out.contains("in 3 groups"), "{out}");
        let file: Fitted<GroupedSets> = Fitted::read(&d.p("rc.json")).unwrap();
        let names: Vec<Group> = file.sets.sizes().into_iter().map(|(g, _)| g).collect();
        let mut predicted: Vec<Option<ndarray::Array2<u8>>> = vec![None; N];
        for (j, g) in names.iter().enumerate() {
            // the group's images alone, by the library
            let label = if by == "--groups" { [0, 1, 9][j] } else { j as i64 };
            let mut risk = RiskCalibration::for_risk(Risk::Recall);
            for i in (0..N).filter(|&i| grouping[i] == label) {
                c.observe_risk(&mut risk, &s.index_axis(Axis(0), i), &m.index_axis(Axis(0), i)).unwrap();
            }
            let alone = c.fit_risk_control(&risk, level).unwrap();
            let got = file.sets.sets(g).unwrap();
            assert_eq!((got.n(), got.thresholds()), (alone.n(), alone.thresholds()), "{by} group {g}");
            for i in (0..N).filter(|&i| grouping[i] == label) {
                predicted[i] = Some(alone.predict(&s.index_axis(Axis(0), i)).unwrap().outer.mapv(u8::from));
            }
        }
        // two groups' thresholds are finite and differ (the test is not of infinities)
        let t: Vec<f64> =
            names.iter().map(|g| file.sets.sets(g).unwrap().thresholds().outer.value()).collect();
        assert!(t[0].is_finite() && t[1].is_finite() && t[0] != t[1], "{by}: {t:?}");
        // the guarantee is risk control per group, stated as such
        assert!(out.contains("conditionally on the group"), "{out}");
        let mut p = vec!["predict", "--calibration", Box::leak(d.s("rc.json").into_boxed_str())];
        p.extend(["--scores", Box::leak(d.s("S.npy").into_boxed_str())]);
        if by == "--groups" {
            p.extend(["--groups", Box::leak(d.s("G.npy").into_boxed_str())]);
        }
        p.extend(["--outer-out", Box::leak(d.s("O.npy").into_boxed_str())]);
        ok(&p);
        let outer: Array3<u8> = read_npy(d.p("O.npy")).unwrap();
        for (i, want) in predicted.iter().enumerate() {
            assert_eq!(outer.index_axis(Axis(0), i), want.as_ref().unwrap(), "{by} image {i}");
        }
    }
}
