//! The two-class layouts MONAI and ITK write (issue: "MONAI's two-class
//! channel-last volumes fail"): `(X, Y, Z, 2)` NIfTI (MONAI's
//! `SaveImage`), `(X, Y, Z, 1, 2)` NIfTI (ITK vector images) and
//! channel-first `(2, X, Y, Z)` arrays calibrate exactly as the foreground
//! probabilities `(X, Y, Z)` with the same header do: the class axis loses
//! its spacing entry, NIfTI's empty 4th axis is dropped, and the spacing of
//! the spatial axes is used (an outer signed distance in millimetres).

use std::path::{Path, PathBuf};
use std::process::Command;

use confseg::image::Geometry;
use confseg::io::cohort::Pairing;
use confseg::io::nifti::{write_labels, write_scores, NiftiHeader};
use confseg::pipeline::{Request, ScoreFiles};
use confseg::synthetic::Synthetic;
use confseg::{Spacing, TwoClassSoftmax};
use ndarray::{Array3, Array4, Array5, Axis, Ix3};
use ndarray_npy::write_npy;

const SHAPE: [usize; 3] = [14, 12, 6];
const SPACING: [f64; 3] = [0.87, 0.87, 2.5];
const N: usize = 16;

fn ok(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs");
    assert!(out.status.success(), "confseg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn header(shape: &[usize], spacing: &[f64]) -> NiftiHeader {
    NiftiHeader::new(shape, &Geometry::new(Spacing::new(spacing.to_vec()).unwrap())).unwrap()
}

/// Subject `i`: two-class logits `(l0, l1)` with `l1 - l0 = s`, their
/// foreground probability (the library's softmax, in f32) and the mask.
fn subject(i: usize) -> (Array4<f32>, Array3<f32>, Array3<u8>) {
    let (s, m) = Synthetic::new(SHAPE).seed(9).pair(i);
    let last = Array4::from_shape_fn((SHAPE[0], SHAPE[1], SHAPE[2], 2), |(x, y, z, c)| {
        if c == 1 {
            s[[x, y, z]] as f32 + 0.25
        } else {
            0.25
        }
    });
    let p = TwoClassSoftmax::new(Axis(3)).apply(&last.clone().into_dyn()).unwrap();
    (last, p.into_dimensionality::<Ix3>().unwrap(), m.mapv(u8::from))
}

fn thresholds(cal: &Path) -> (serde_json::Value, serde_json::Value) {
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cal).unwrap()).unwrap();
    (j["inner"]["threshold"].clone(), j["outer"]["threshold"].clone())
}

#[test]
fn monai_itk_and_channel_first_logits_calibrate_as_their_probabilities() {
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| -> PathBuf { d.path().join(name) };
    for dir in ["prob", "last", "itk", "first", "seg"] {
        std::fs::create_dir_all(p(dir)).unwrap();
    }
    let mut with_spacing = [SPACING.to_vec(), vec![1.0]].concat();
    for i in 0..N {
        let (last, prob, mask) = subject(i);
        let id = format!("s{i:02}");
        write_scores(p(&format!("prob/{id}.nii.gz")), &prob, &header(&SHAPE, &SPACING)).unwrap();
        write_labels(p(&format!("seg/{id}.nii.gz")), &mask, &header(&SHAPE, &SPACING)).unwrap();
        let shape4 = last.shape().to_vec();
        write_scores(p(&format!("last/{id}.nii.gz")), &last, &header(&shape4, &with_spacing)).unwrap();
        let itk: Array5<f32> = last.clone().insert_axis(Axis(3));
        let shape5 = itk.shape().to_vec();
        with_spacing.truncate(3);
        with_spacing.extend([1.0, 1.0]);
        write_scores(p(&format!("itk/{id}.nii.gz")), &itk, &header(&shape5, &with_spacing)).unwrap();
        with_spacing.truncate(3);
        with_spacing.push(1.0);
        let first = last.permuted_axes([3, 0, 1, 2]).as_standard_layout().to_owned();
        write_npy(p(&format!("first/{id}.npy")), &first).unwrap();
        write_npy(p(&format!("seg/{id}.npy")), &mask).unwrap();
    }
    let s = |x: &Path| x.to_string_lossy().into_owned();
    let run = |scores: &str, masks: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "calibrate".to_owned(),
            "--scores".into(),
            s(&p(scores)),
            "--masks".into(),
            s(&p(masks)),
            "--outer".into(),
            "distance:threshold=0.5".into(),
            "--alpha".into(),
            "0.2".into(),
            "--mode".into(),
            "max".into(),
            "-o".into(),
            s(&p(out)),
        ];
        args.extend(extra.iter().map(|x| (*x).to_owned()));
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        thresholds(&p(out))
    };
    let want = run("prob/*.nii.gz", "seg/*.nii.gz", &[], "prob.json");
    assert!(want.1.as_f64().is_some_and(f64::is_finite), "{want:?}");
    assert_eq!(run("last/*.nii.gz", "seg/*.nii.gz", &["--class-axis", "-1"], "last.json"), want);
    assert_eq!(run("itk/*.nii.gz", "seg/*.nii.gz", &["--class-axis", "-1"], "itk.json"), want);
    let spacing = "0.87,0.87,2.5";
    assert_eq!(
        run("first/*.npy", "seg/*.npy", &["--class-axis", "0", "--spacing", spacing], "first.json"),
        want
    );
    // the spacing matters here: in voxel units the outer threshold differs
    let unit = run("first/*.npy", "seg/*.npy", &["--class-axis", "0"], "unit.json");
    assert_ne!(unit.1, want.1);

    // the library's data path gives the same thresholds to a Rust embedder
    let mut request = Request::new(
        ScoreFiles::Subjects { scores: s(&p("last/*.nii.gz")), pairing: Pairing::new("", "") },
        Some(s(&p("seg/*.nii.gz"))),
    );
    request.class_axis = Some(-1);
    request.transforms.1 = "distance:threshold=0.5".parse().unwrap();
    let inputs = request.open().unwrap();
    let cal = inputs.statistics().unwrap();
    let sets = inputs.calibrator.fit(&cal, confseg::Mode::max(confseg::Alpha::new(0.2).unwrap())).unwrap();
    assert_eq!(Some(sets.thresholds().outer.value()), want.1.as_f64());
    // and a channel-last image read by the library has the spatial spacing
    let image = inputs.reader.image::<f32>(0).unwrap();
    assert_eq!(confseg::image::AsImage::scores(&image).shape(), SHAPE);
    // (as the header stores it, in float32)
    let stored: Vec<f64> = SPACING.iter().map(|&x| f64::from(x as f32)).collect();
    assert_eq!(confseg::image::AsImage::spacing(&image).and_then(Spacing::as_slice), Some(&stored[..]));
}

/// An nnU-Net `case.npz`: `probabilities` of shape `(C, z, y, x)`, deflated.
fn write_npz(path: &Path, probabilities: &ndarray::ArrayD<f32>) {
    use ndarray_npy::WriteNpyExt;
    use std::io::Write;
    let mut npy = Vec::new();
    probabilities.as_standard_layout().write_npy(&mut npy).unwrap();
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    z.start_file("probabilities.npy", options).unwrap();
    z.write_all(&npy).unwrap();
    z.finish().unwrap();
}

/// nnU-Net's `--save_probabilities` folder (`case.npz` with `(C, z, y, x)`
/// probabilities beside `case.nii.gz`, plus `.pkl` and `.json` files) and
/// its `labelsTr`: the two-class probabilities calibrate exactly as their
/// foreground channel saved as NIfTI with the case's header; `predict`
/// writes NIfTI sets with that header; several classes calibrate as
/// structures; a probabilities file refuses logits at predict time.
#[test]
fn nnunet_probability_folders_calibrate_as_their_foreground_channel() {
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| -> PathBuf { d.path().join(name) };
    for dir in ["prob", "nnunet", "multi", "labelsTr", "sets"] {
        std::fs::create_dir_all(p(dir)).unwrap();
    }
    for i in 0..N {
        let (_, prob, mask) = subject(i);
        let id = format!("case_{i:03}");
        write_scores(p(&format!("prob/{id}.nii.gz")), &prob, &header(&SHAPE, &SPACING)).unwrap();
        write_labels(p(&format!("labelsTr/{id}.nii.gz")), &mask, &header(&SHAPE, &SPACING)).unwrap();
        // nnU-Net: (C, z, y, x), the segmentation beside it carries the header
        let two = ndarray::stack(Axis(3), &[prob.mapv(|v| 1.0 - v).view(), prob.view()]).unwrap();
        let stored = two.into_dyn().reversed_axes(); // (x, y, z, C) -> (C, z, y, x)
        write_npz(&p(&format!("nnunet/{id}.npz")), &stored.to_owned());
        let seg = prob.mapv(|v| u8::from(v > 0.5));
        write_labels(p(&format!("nnunet/{id}.nii.gz")), &seg, &header(&SHAPE, &SPACING)).unwrap();
        std::fs::write(p(&format!("nnunet/{id}.pkl")), b"\x80\x04N.").unwrap();
        // three classes: background, the object, and an empty class
        let zero = prob.mapv(|_| 0.0);
        let three =
            ndarray::stack(Axis(3), &[prob.mapv(|v| 1.0 - v).view(), prob.view(), zero.view()]).unwrap();
        write_npz(&p(&format!("multi/{id}.npz")), &three.into_dyn().reversed_axes().to_owned());
        write_labels(p(&format!("multi/{id}.nii.gz")), &seg, &header(&SHAPE, &SPACING)).unwrap();
    }
    std::fs::write(p("nnunet/plans.json"), b"{}").unwrap();
    let s = |x: &Path| x.to_string_lossy().into_owned();
    let run = |scores: &str, out: &str, extra: &[&str]| {
        let mut args: Vec<String> = ["calibrate", "--scores", &s(&p(scores)), "--masks", &s(&p("labelsTr"))]
            .map(str::to_owned)
            .to_vec();
        args.extend(
            ["--outer", "distance:threshold=0.5", "--alpha", "0.2", "--mode", "max", "-o"].map(str::to_owned),
        );
        args.push(s(&p(out)));
        args.extend(extra.iter().map(|x| (*x).to_owned()));
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        thresholds(&p(out))
    };
    let want = run("prob", "prob.json", &[]);
    assert!(want.1.as_f64().is_some_and(f64::is_finite), "{want:?}");
    assert_eq!(run("nnunet", "nnunet.json", &[]), want);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("nnunet.json")).unwrap()).unwrap();
    assert_eq!(file["input"], "probabilities", "{file}");

    // predict writes NIfTI sets with the case's header
    ok(&[
        "predict",
        "--calibration",
        &s(&p("nnunet.json")),
        "--scores",
        &s(&p("nnunet")),
        "--out-dir",
        &s(&p("sets")),
    ]);
    let outer = p("sets/case_000_outer.nii.gz");
    let h = confseg::io::nifti::read_header(&outer).unwrap();
    assert_eq!(h.shape(), SHAPE);
    let stored: Vec<f64> = SPACING.iter().map(|&x| f64::from(x as f32)).collect();
    assert_eq!(h.spacing().as_slice(), Some(&stored[..]));
    let n_written = std::fs::read_dir(p("sets")).unwrap().count();
    assert_eq!(n_written, 2 * N, "inner and outer per case, nothing for the .nii.gz beside each .npz");

    // sets calibrated on probabilities refuse logits, and the other way round
    let out = Command::new(env!("CARGO_BIN_EXE_confseg"))
        .args(["predict", "--calibration", &s(&p("prob.json")), "--scores", &s(&p("nnunet")), "--out-dir"])
        .arg(p("sets2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("predict on the same kind of files"));

    // several classes: one structure per class, the class axis last
    let out = Command::new(env!("CARGO_BIN_EXE_confseg"))
        .args([
            "calibrate",
            "--scores",
            &s(&p("multi")),
            "--masks",
            &s(&p("labelsTr")),
            "--alpha",
            "0.2",
            "-o",
        ])
        .arg(p("multi.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("more than two classes") && e.contains("class axis"), "{e}");
    ok(&[
        "calibrate",
        "--scores",
        &s(&p("multi")),
        "--masks",
        &s(&p("labelsTr")),
        "--structure",
        "object=1",
        "--class-axis",
        "-1",
        "--outer",
        "distance:threshold=0.5",
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        &s(&p("multi.json")),
    ]);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("multi.json")).unwrap()).unwrap();
    let outer = j.to_string();
    assert!(outer.contains(&want.1.to_string()), "the object's outer threshold {} in {outer}", want.1);
}

/// Scores saved with a unit-spacing header next to masks with the scanner's:
/// refused with one line naming both files, instead of calibrating in voxels.
#[test]
fn score_and_mask_headers_must_agree() {
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| -> PathBuf { d.path().join(name) };
    std::fs::create_dir_all(p("s")).unwrap();
    for i in 0..6 {
        let (_, prob, mask) = subject(i);
        let scores_spacing = if i == 4 { [1.0, 1.0, 1.0] } else { SPACING };
        write_scores(p(&format!("s/x{i}_prob.nii.gz")), &prob, &header(&SHAPE, &scores_spacing)).unwrap();
        write_labels(p(&format!("s/x{i}_seg.nii.gz")), &mask, &header(&SHAPE, &SPACING)).unwrap();
    }
    let dir = p("s").to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_confseg"))
        .args([
            "calibrate",
            "--scores",
            &dir,
            "--masks",
            &dir,
            "--scores-suffix",
            "_prob",
            "--masks-suffix",
            "_seg",
        ])
        .args(["--alpha", "0.2", "--mode", "max"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("subject x4")
            && stderr.contains("x4_prob.nii.gz")
            && stderr.contains("x4_seg.nii.gz"),
        "{stderr}"
    );
    assert!(stderr.contains("different geometry"), "{stderr}");
}
