//! `validate --by-stratum` end to end: the --json diagnostics equal the
//! library's `evaluate::diagnostics::diagnose` on the same images, groups
//! and splits, and the table shows every block.

use std::process::Command;

use confseg::evaluate::diagnostics::{diagnose, StrataSpec};
use confseg::evaluate::{Pool, Splits};
use confseg::groups::{Edges, Group};
use confseg::levels::ModeKind;
use confseg::risk::Bound;
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

/// Risk control (WSR RCPS of the missed share) by stratum: the CLI's
/// per-group losses and events equal the library's on the same splits.
#[test]
fn by_stratum_reports_risk_control_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> String { dir.path().join(n).to_string_lossy().into_owned() };
    let (s, m) = Synthetic::new([10, 10]).seed(2).stack(0..60);
    let g: Array1<i64> = (0..60).map(|i| (i % 3) as i64).collect();
    write_npy(p("s.npy"), &s).unwrap();
    write_npy(p("m.npy"), &m).unwrap();
    write_npy(p("g.npy"), &g).unwrap();
    let (sp, mp, gp) = (p("s.npy"), p("m.npy"), p("g.npy"));
    let args = [
        "validate",
        "--masks",
        &mp,
        "--scores",
        &sp,
        "--n-cal",
        "40",
        "--repeats",
        "15",
        "--alpha",
        "0.2",
        "--mode",
        "risk-control",
        "--delta",
        "0.2",
        "--bound",
        "wsr",
        "--by-stratum",
        "--groups",
        &gp,
        "--json",
    ];
    let out: Value = serde_json::from_str(&ok(&args)).unwrap();
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &s, &m, 0.0).unwrap();
    let spec = StrataSpec {
        groups: Some((0..60).map(|i| Group::Id((i % 3) as i64)).collect()),
        ..StrataSpec::default()
    };
    let levels = Levels { delta: Some(0.2), bound: Some(Bound::Wsr), ..Levels::new(ModeKind::RiskControl) };
    let d =
        diagnose(&pool, &levels, Alpha::new(0.2).unwrap(), Splits::new(40, 15, 0).unwrap(), &spec).unwrap();
    let got = out["by_stratum"][0]["groups"].as_array().unwrap();
    let rows = d.groups.as_ref().unwrap();
    assert_eq!(got.len(), 3);
    for (x, r) in got.iter().zip(rows) {
        assert_eq!(
            (x["tests"].as_u64(), x["outer_covered"].as_u64()),
            (Some(r.tests), Some(r.outer_covered))
        );
        assert_eq!(x["mean_missed_share"].as_f64(), Some(r.mean_missed_share), "{}", r.stratum);
        assert!(r.mean_missed_share > 0.0, "{}: a loss to compare", r.stratum);
    }
    let table = ok(&args[..args.len() - 1]);
    assert!(table.contains("missed") && table.contains("false"), "{table}");
}
