//! Hostile inputs where users reach first (issue: "Hardened where users
//! reach it first"): subject IDs that would escape the output folder, two
//! outputs naming one file, outputs into the input folder, unbounded reads
//! and glob walks that never end. Each is one line and writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use confseg::synthetic::Synthetic;
use ndarray_npy::write_npy;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

/// The command fails with `code` and one line naming the problem.
fn fail(args: &[&str], code: i32) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "confseg {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(out.status.success(), "confseg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &'static str {
    Box::leak(p.to_string_lossy().into_owned().into_boxed_str())
}

/// `n` subjects as single-image `.npy` files in `dir/data`, `ID_prob.npy` and `ID_seg.npy`.
fn subjects(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let syn = Synthetic::new([12, 10]).seed(2);
    for i in 0..n {
        let (scores, mask) = syn.pair(i);
        write_npy(data.join(format!("s{i:02}_prob.npy")), &scores.mapv(|x| x as f32)).unwrap();
        write_npy(data.join(format!("s{i:02}_seg.npy")), &mask.mapv(u8::from)).unwrap();
    }
    data
}

/// Twelve subjects in `dir/data` and their calibration file `dir/cal.json`.
fn calibrated(dir: &Path) -> (PathBuf, PathBuf) {
    let data = subjects(dir, 12);
    let cal = dir.join("cal.json");
    ok(&[
        "calibrate",
        "--scores",
        s(&data),
        "--masks",
        s(&data),
        "--scores-suffix",
        "_prob",
        "--masks-suffix",
        "_seg",
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        s(&cal),
    ]);
    (data, cal)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn manifest_ids_are_file_names_never_paths() {
    let d = tempfile::tempdir().unwrap();
    let (_, cal) = calibrated(d.path());
    for id in ["../escaped", "/tmp/absolute", "..", "a\\b"] {
        let manifest = d.path().join("m.csv");
        std::fs::write(&manifest, format!("id,scores\n\"{id}\",data/s00_prob.npy\n")).unwrap();
        let before = files_under(d.path());
        let out = d.path().join("out");
        let e =
            fail(&["predict", "--calibration", s(&cal), "--manifest", s(&manifest), "--out-dir", s(&out)], 1);
        assert!(e.contains("line 2") && e.contains("not a plain file name"), "{e}");
        std::fs::remove_file(&manifest).unwrap();
        let mut after = files_under(d.path());
        after.push(manifest.clone());
        after.sort();
        assert_eq!(after, before, "{id}: nothing written");
        assert!(!d.path().parent().unwrap().join("escaped_inner.npy").exists());
    }
}

#[test]
fn two_outputs_or_an_input_folder_are_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let (data, cal) = calibrated(d.path());
    // the same file spelled twice, before it exists
    let stack = d.path().join("stack.npy");
    let (sc, _) = Synthetic::new([12, 10]).seed(3).stack(0..4);
    write_npy(&stack, &sc).unwrap();
    let i = d.path().join("I.npy");
    let i2 = d.path().join(".").join("I.npy");
    let e = fail(
        &[
            "predict",
            "--calibration",
            s(&cal),
            "--scores",
            s(&stack),
            "--inner-out",
            s(&i),
            "--outer-out",
            s(&i2),
        ],
        2,
    );
    assert!(e.contains("same file"), "{e}");
    assert!(!i.exists());
    // the output folder is the input folder
    let before = files_under(d.path());
    let e = fail(
        &[
            "predict",
            "--calibration",
            s(&cal),
            "--scores",
            s(&data),
            "--scores-suffix",
            "_prob",
            "--out-dir",
            s(&data),
        ],
        2,
    );
    assert!(e.contains("holds input files"), "{e}");
    assert_eq!(files_under(d.path()), before);
}

#[cfg(unix)]
#[test]
fn devices_and_link_loops_end_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let data = subjects(d.path(), 4);
    // /dev/zero is not a file: a manifest or calibration file there is refused, not read forever
    let e = fail(&["calibrate", "--manifest", "/dev/zero", "--alpha", "0.2"], 1);
    assert!(e.contains("not a regular file"), "{e}");
    let e = fail(&["predict", "--calibration", "/dev/zero", "--scores", s(&data), "--out-dir", "x"], 1);
    assert!(e.contains("not a regular file"), "{e}");
    // a symbolic link loop under a `**` pattern
    std::os::unix::fs::symlink(&data, data.join("loop")).unwrap();
    let pattern = format!("{}/**/*_prob.npy", data.display());
    let e =
        fail(&["calibrate", "--scores", s(Path::new(&pattern)), "--masks", s(&data), "--alpha", "0.2"], 2);
    assert!(e.contains("twice"), "{e}");
}

/// A run publishes all its outputs or none: a NaN in the last subject
/// leaves no subject's sets, no overlay and no temporary file behind
/// (per-subject `--out-dir`, `--overlay-dir`, stacks with overlays, and
/// `transform --out-dir`); the same run without the NaN writes every file.
#[test]
fn a_failing_subject_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cal) = calibrated(dir.path());
    let new = dir.path().join("new");
    std::fs::create_dir_all(&new).unwrap();
    let syn = Synthetic::new([12, 10]).seed(5);
    for i in 0..6 {
        let mut scores = syn.pair(i).0.mapv(|x| x as f32);
        if i == 5 {
            scores[[3, 4]] = f32::NAN;
        }
        write_npy(new.join(format!("t{i:02}_prob.npy")), &scores).unwrap();
    }
    let (out, figs, tr) = (dir.path().join("sets"), dir.path().join("figs"), dir.path().join("tr"));
    let predict = |extra: &[&str]| {
        let mut args =
            vec!["predict", "--calibration", s(&cal), "--scores", s(&new), "--scores-suffix", "_prob"];
        args.extend(extra);
        run(&args)
    };
    let e = predict(&["--out-dir", s(&out), "--overlay-dir", s(&figs)]);
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("NaN"));
    for d in [&out, &figs] {
        assert!(!d.exists() || files_under(d).is_empty(), "{:?}", files_under(d));
    }
    let e = run(&[
        "transform",
        "--scores",
        s(&new),
        "--scores-suffix",
        "_prob",
        "--transform",
        "sigmoid",
        "--out-dir",
        s(&tr),
    ]);
    assert!(!e.status.success());
    assert!(!tr.exists() || files_under(&tr).is_empty(), "{:?}", files_under(&tr));
    // without the NaN: every subject's two sets and one overlay
    std::fs::remove_file(new.join("t05_prob.npy")).unwrap();
    let done = predict(&["--out-dir", s(&out), "--overlay-dir", s(&figs)]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(files_under(&out).len(), 10);
    assert_eq!(files_under(&figs).len(), 5);
    assert!(files_under(dir.path()).iter().all(|p| !p.to_string_lossy().contains(".confseg-")));
    let _ = data;
}

/// Issue 21's minor cases on the command line: each error is one line and
/// names the file (and image) it is about; numbers are short.
#[test]
fn errors_name_the_file_and_print_short_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let syn = Synthetic::new([10, 12]).seed(4);
    let (scores, masks) = syn.stack(0..6);
    let mut scores = scores.mapv(|x| x as f32);
    scores[[3, 2, 2]] = f32::INFINITY;
    let (sp, mp) = (dir.path().join("inf.npy"), dir.path().join("masks.npy"));
    write_npy(&sp, &scores).unwrap();
    write_npy(&mp, &masks.mapv(u8::from)).unwrap();
    let out = dir.path().join("cal.json");
    let e = fail(
        &[
            "calibrate",
            "--scores",
            s(&sp),
            "--masks",
            s(&mp),
            "--inner",
            "gaussian:2",
            "--alpha",
            "0.1",
            "-o",
            s(&out),
        ],
        1,
    );
    assert!(e.contains("inf.npy") && e.contains("image 3") && e.contains("needs finite scores"), "{e}");
    for (option, value) in [("--alpha", "1e300"), ("--delta", "-1e300")] {
        let alpha: &[&str] = if option == "--alpha" { &[] } else { &["--alpha", "0.1"] };
        let r =
            run(&[&["calibrate", "--scores", s(&sp), "--masks", s(&mp), option, value][..], alpha].concat());
        let e = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{e}");
        let first = e.lines().next().unwrap_or("");
        assert!(first.contains(&format!("{value} is outside (0, 1)")) && !first.contains("000000"), "{e}");
    }
    let e = fail(
        &[
            "calibrate",
            "--scores",
            s(&sp),
            "--masks",
            s(&mp),
            "--inner",
            "distance:threshold=1:threshold=2",
            "--alpha",
            "0.1",
            "-o",
            s(&out),
        ],
        1,
    );
    assert!(e.contains("option threshold is given twice"), "{e}");
    // a selection that leaves nothing names the index file that emptied it
    let (none, all) = (dir.path().join("none.npy"), dir.path().join("all.npy"));
    write_npy(&none, &ndarray::Array1::<i64>::zeros(0)).unwrap();
    write_npy(&all, &ndarray::Array1::from_iter(0..6_i64)).unwrap();
    let base = ["calibrate", "--scores", s(&mp), "--masks", s(&mp), "--alpha", "0.1", "-o", s(&out)];
    let e = fail(&[&base[..], &["--indices", s(&none)]].concat(), 1);
    assert!(e.contains("none.npy") && e.contains("lists no image index"), "{e}");
    let e = fail(&[&base[..], &["--exclude", s(&all)]].concat(), 1);
    assert!(e.contains("all.npy") && e.contains("excludes all 6 selected images"), "{e}");
    // a calibration file whose class_axis does not fit the scores names the file and the field
    let good = dir.path().join("good.json");
    ok(&["calibrate", "--scores", s(&mp), "--masks", s(&mp), "--alpha", "0.1", "-o", s(&good)]);
    let text = std::fs::read_to_string(&good).unwrap().replace("\"class_axis\": null", "\"class_axis\": 5");
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, text).unwrap();
    let inner = dir.path().join("inner.npy");
    let e =
        fail(&["predict", "--calibration", s(&tampered), "--scores", s(&mp), "--inner-out", s(&inner)], 1);
    assert!(e.contains("tampered.json: field class_axis: class_axis 5 is outside"), "{e}");
    assert!(!inner.exists());
    // a file name with a newline stays on one line, escaped
    let odd = dir.path().join("two\nlines.json");
    std::fs::copy(&tampered, &odd).unwrap();
    let e = fail(&["predict", "--calibration", s(&odd), "--scores", s(&mp), "--inner-out", s(&inner)], 1);
    assert!(e.contains("two\\nlines.json: field class_axis"), "{e}");
    assert!(!out.exists());
}

/// A calibration file with a field removed by hand (`ndim`, `labels`,
/// `class_axis`, `input`) would be read with that field's default, silently:
/// it is refused with one line naming the field.
#[test]
fn a_calibration_file_with_a_field_removed_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cal) = calibrated(dir.path());
    let text = std::fs::read_to_string(&cal).unwrap();
    let full: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["ndim", "labels", "class_axis", "input"] {
        let mut edited = full.clone();
        assert!(edited.as_object_mut().unwrap().remove(key).is_some(), "calibrate writes {key}");
        let path = dir.path().join(format!("no_{key}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        let out = dir.path().join(format!("sets_{key}"));
        let e = fail(
            &[
                "predict",
                "--calibration",
                s(&path),
                "--scores",
                s(&data),
                "--scores-suffix",
                "_prob",
                "--out-dir",
                s(&out),
            ],
            1,
        );
        assert!(e.contains(&format!("field {key} is missing")), "{key}: {e}");
        assert!(!out.exists() || files_under(&out).is_empty(), "{key}: nothing written");
    }
    // the file as written still works
    ok(&[
        "predict",
        "--calibration",
        s(&cal),
        "--scores",
        s(&data),
        "--scores-suffix",
        "_prob",
        "--out-dir",
        s(&dir.path().join("sets")),
    ]);
}
