//! `validate --by-stratum` end to end: the --json diagnostics equal the
//! library's `evaluate::diagnostics::diagnose` on the same images, groups
//! and splits, and the table shows every block.

use std::process::Command;

use confseg::evaluate::diagnostics::{diagnose, StrataSpec};
use confseg::evaluate::{Pool, Splits};
use confseg::groups::{Edges, Group};
use confseg::levels::ModeKind;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, Identity, Levels};
use ndarray::Array1;
use ndarray_npy::write_npy;
use serde_json::Value;

fn ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().unwrap();
    assert!(out.status.success(), "confseg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn validate_by_stratum_equals_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> &'static str {
        Box::leak(dir.path().join(n).to_string_lossy().into_owned().into_boxed_str())
    };
    let (s, m) = Synthetic::new([14, 14]).seed(2).stack(0..70);
    let g: Array1<i64> = (0..70).map(|i| (i % 4) as i64).collect();
    write_npy(p("s.npy"), &s).unwrap();
    write_npy(p("m.npy"), &m).unwrap();
    write_npy(p("g.npy"), &g).unwrap();
    let common =
        ["validate", "--masks", p("m.npy"), "--scores", p("s.npy"), "--n-cal", "35", "--repeats", "25"];
    let opts = [
        "--alpha",
        "0.1,0.2",
        "--mode",
        "max",
        "--by-stratum",
        "--groups",
        p("g.npy"),
        "--strata",
        "predicted-volume=20,40",
        "--geometry-splits",
        "3",
    ];
    let out: Value = serde_json::from_str(&ok(&[&common[..], &opts, &["--json"]].concat())).unwrap();
    assert_eq!(out["reports"].as_array().unwrap().len(), 2);
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &s, &m, 0.0).unwrap();
    let spec = StrataSpec {
        groups: Some((0..70).map(|i| Group::Id((i % 4) as i64)).collect()),
        volume_edges: Some(Edges::new(vec![20.0, 40.0]).unwrap()),
        lesion_splits: 3,
    };
    let levels = Levels { mode: ModeKind::Max, ..Levels::default() };
    for (k, a) in [0.1, 0.2].into_iter().enumerate() {
        let d =
            diagnose(&pool, &levels, Alpha::new(a).unwrap(), Splits::new(35, 25, 0).unwrap(), &spec).unwrap();
        let j = &out["by_stratum"][k];
        assert_eq!(j["alpha"], a);
        for (key, rows) in [
            ("groups", d.groups.as_ref().unwrap()),
            ("true_size", &d.true_size),
            ("predicted_volume", &d.predicted_volume),
        ] {
            let got = j[key].as_array().unwrap();
            assert_eq!(got.len(), rows.len(), "{key}");
            for (x, r) in got.iter().zip(rows) {
                assert_eq!(x["stratum"], r.stratum.as_str());
                for (f, v) in [
                    ("tests", r.tests),
                    ("inner_covered", r.inner_covered),
                    ("outer_covered", r.outer_covered),
                    ("joint_covered", r.joint_covered),
                ] {
                    assert_eq!(x[f], v, "{key} {} {f}", r.stratum);
                }
            }
        }
        assert_eq!(j["lesions"]["true_components"], d.lesions.true_components);
        assert_eq!(j["lesions"]["inner_in_truth"], d.lesions.inner_in_truth);
    }
    let table = ok(&[&common[..], &opts].concat());
    for needle in ["group", "true object size (quintiles)", "predicted volume in [20, 40)", "lesions:"] {
        assert!(table.contains(needle), "{needle}: {table}");
    }
}

#[test]
fn by_stratum_refuses_risk_control() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> String { dir.path().join(n).to_string_lossy().into_owned() };
    let (s, m) = Synthetic::new([8, 8]).seed(2).stack(0..30);
    write_npy(p("s.npy"), &s).unwrap();
    write_npy(p("m.npy"), &m).unwrap();
    let (sp, mp) = (p("s.npy"), p("m.npy"));
    let base = [
        "validate",
        "--masks",
        &mp,
        "--scores",
        &sp,
        "--n-cal",
        "20",
        "--repeats",
        "5",
        "--alpha",
        "0.1",
        "--by-stratum",
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_confseg"))
        .args(base)
        .args(["--mode", "risk-control"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.starts_with("error:") && e.contains("--by-stratum"), "{e}");
}
