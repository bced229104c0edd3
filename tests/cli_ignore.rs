//! `--ignore-label` end to end: the built binary on `.npy` stacks whose
//! masks mark an ignored border strip with 255, against the same images
//! with the strip cropped away (issue 19 item 3).

use std::path::PathBuf;
use std::process::{Command, Output};

use confseg::synthetic::Synthetic;
use ndarray::{s, Array3};
use ndarray_npy::write_npy;
use serde_json::Value;

const N: usize = 60;
const H: usize = 16;
const W: usize = 20;
const STRIP: usize = 4;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "confseg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fail(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "confseg {args:?} succeeded");
    assert!(stderr.starts_with("error:") && !stderr.contains("panicked"), "{stderr}");
    stderr
}

struct Files(tempfile::TempDir);

impl Files {
    fn s(&self, name: &str) -> &'static str {
        let p: PathBuf = self.0.path().join(name);
        Box::leak(p.to_string_lossy().into_owned().into_boxed_str())
    }
}

/// Stacks with an ignored strip (`s.npy`, `m.npy`: 255 on the strip,
/// extreme scores there) and cropped (`sc.npy`, `mc.npy`); test images
/// alike (`t.npy`/`tm.npy`, `tc.npy`/`tmc.npy`).
fn files() -> Files {
    let f = Files(tempfile::tempdir().unwrap());
    for (range, (s_name, m_name, sc_name, mc_name)) in
        [(0..N, ("s.npy", "m.npy", "sc.npy", "mc.npy")), (100..130, ("t.npy", "tm.npy", "tc.npy", "tmc.npy"))]
    {
        let n = range.len();
        let (scores, masks) = Synthetic::new([H, W - STRIP]).seed(5).stack(range);
        let masks = masks.mapv(u8::from);
        let mut s = Array3::<f64>::from_elem((n, H, W), 0.0);
        let mut m = Array3::<u8>::from_elem((n, H, W), 255);
        s.slice_mut(s![.., .., STRIP..]).assign(&scores);
        m.slice_mut(s![.., .., STRIP..]).assign(&masks);
        for (k, v) in s.slice_mut(s![.., .., ..STRIP]).iter_mut().enumerate() {
            *v = if k % 3 == 0 { 50.0 } else { -50.0 };
        }
        write_npy(f.s(s_name), &s).unwrap();
        write_npy(f.s(m_name), &m).unwrap();
        write_npy(f.s(sc_name), &scores).unwrap();
        write_npy(f.s(mc_name), &masks).unwrap();
    }
    f
}

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn calibrate_with_an_ignored_strip_equals_calibrating_the_cropped_images() {
    let f = files();
    let e = fail(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--alpha",
        "0.1",
        "-o",
        f.s("x.json"),
    ]);
    assert!(e.contains("--ignore-label 255"), "{e}");
    let e = fail(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--label",
        "1",
        "--ignore-label",
        "1",
        "--alpha",
        "0.1",
        "-o",
        f.s("x.json"),
    ]);
    assert!(e.contains("ignore label"), "{e}");
    for extra in [&["--mode", "max"][..], &["--inner-tolerance", "3vox", "--outer-tolerance", "0.05"][..]] {
        let common = ["--alpha", "0.1", "--outer", "distance"];
        ok(&[
            &[
                "calibrate",
                "--masks",
                f.s("m.npy"),
                "--scores",
                f.s("s.npy"),
                "--ignore-label",
                "255",
                "-o",
                f.s("a.json"),
            ][..],
            &common,
            extra,
        ]
        .concat());
        ok(&[
            &["calibrate", "--masks", f.s("mc.npy"), "--scores", f.s("sc.npy"), "-o", f.s("b.json")][..],
            &common,
            extra,
        ]
        .concat());
        let (a, b) = (json(f.s("a.json")), json(f.s("b.json")));
        // identity inner: equal thresholds; the outer distance transform sees the strip's
        // predicted voxels (it uses the prediction, not the truth), so it is only checked to be finite
        assert_eq!(a["thresholds"]["inner"], b["thresholds"]["inner"], "{extra:?}");
        assert_eq!(a["ignore_label"], 255);
        assert!(b.get("ignore_label").is_none());
    }
    ok(&[
        "calibrate",
        "--masks",
        f.s("m.npy"),
        "--scores",
        f.s("s.npy"),
        "--ignore-label",
        "255",
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        f.s("a.json"),
    ]);
    ok(&[
        "calibrate",
        "--masks",
        f.s("mc.npy"),
        "--scores",
        f.s("sc.npy"),
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        f.s("b.json"),
    ]);
    let (a, b) = (json(f.s("a.json")), json(f.s("b.json")));
    assert_eq!(a["thresholds"], b["thresholds"]);
    // predict --masks reuses the recorded ignore label: the same coverage lines as the cropped images
    let pa =
        ok(&["predict", "--calibration", f.s("a.json"), "--scores", f.s("t.npy"), "--masks", f.s("tm.npy")]);
    let pb = ok(&[
        "predict",
        "--calibration",
        f.s("b.json"),
        "--scores",
        f.s("tc.npy"),
        "--masks",
        f.s("tmc.npy"),
    ]);
    let cov = |t: &str| t.lines().filter(|l| l.contains("interval")).map(str::to_owned).collect::<Vec<_>>();
    assert!(!cov(&pa).is_empty(), "{pa}");
    assert_eq!(cov(&pa), cov(&pb));
    // the summary's volumes leave the strip out
    let pa = ok(&[
        "predict",
        "--calibration",
        f.s("a.json"),
        "--scores",
        f.s("t.npy"),
        "--masks",
        f.s("tm.npy"),
        "--summary",
        f.s("a.csv"),
    ]);
    let pb = ok(&[
        "predict",
        "--calibration",
        f.s("b.json"),
        "--scores",
        f.s("tc.npy"),
        "--masks",
        f.s("tmc.npy"),
        "--summary",
        f.s("b.csv"),
    ]);
    // the run's share of voxels in the sets, over the voxels that count
    let share = |t: &str| t.lines().find(|l| l.contains("of the voxels")).map(str::to_owned);
    assert!(share(&pa).is_some());
    assert_eq!(share(&pa), share(&pb));
    let counts = |p: &str| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.split(',').skip(1).take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(counts(f.s("a.csv")), counts(f.s("b.csv")));
}

#[test]
fn validate_with_an_ignored_strip_equals_validating_the_cropped_images() {
    let f = files();
    let common = [
        "--n-cal",
        "30",
        "--repeats",
        "50",
        "--alpha",
        "0.1",
        "--mode",
        "max",
        "--json",
        "--geometry-splits",
        "0",
    ];
    let a = ok(&[
        &["validate", "--masks", f.s("m.npy"), "--scores", f.s("s.npy"), "--ignore-label", "255"][..],
        &common,
    ]
    .concat());
    let b = ok(&[&["validate", "--masks", f.s("mc.npy"), "--scores", f.s("sc.npy")][..], &common].concat());
    let (a, b): (Value, Value) = (serde_json::from_str(&a).unwrap(), serde_json::from_str(&b).unwrap());
    for key in ["joint_coverage", "inner_coverage", "outer_coverage"] {
        assert_eq!(a[0][key], b[0][key], "{key}");
    }
    for key in ["inner_share", "outer_share", "inner_size_ratio", "outer_size_ratio"] {
        assert_eq!(a[0]["efficiency"][key], b[0]["efficiency"][key], "{key}");
    }
}
