//! Per-subject medical volumes through the CLI: NIfTI files paired by ID
//! (folder, glob, manifest), each subject's header spacing, label maps, and
//! outputs written with the subject's header.

use std::path::PathBuf;
use std::process::{Command, Output};

use confseg::image::Geometry;
use confseg::io::nifti::{read_header, read_scores, write_labels, write_scores, NiftiHeader};
use confseg::synthetic::Synthetic;
use confseg::Spacing;
use ndarray::{Array2, Array3};
use ndarray_npy::write_npy;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "confseg {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fail(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "confseg {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"));
    stderr
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

const SHAPES: [[usize; 3]; 3] = [[20, 18, 8], [18, 22, 7], [22, 20, 9]];
const SPACINGS: [[f64; 3]; 3] = [[0.8, 0.8, 2.5], [0.7, 0.7, 3.0], [1.0, 0.9, 2.0]];

/// Subject `i`: logits and a label map (1 = object core, 2 = the rest of the object).
fn subject(i: usize) -> (Array3<f64>, Array3<u8>) {
    let (s, m) = Synthetic::new(SHAPES[i % 3]).seed(5).pair(i);
    let labels = Array3::from_shape_fn(m.dim(), |(a, b, c)| match m[[a, b, c]] {
        true if (a + b + c) % 3 == 0 => 2,
        true => 1,
        false => 0,
    });
    (s, labels)
}

fn header(i: usize) -> NiftiHeader {
    let g = Geometry::new(Spacing::new(SPACINGS[i % 3].to_vec()).unwrap());
    NiftiHeader::new(&SHAPES[i % 3], &g).unwrap()
}

/// `n` subjects as NIfTI in `dir/nii`, and the same as single-image .npy
/// files in `dir/npy` with a manifest giving their spacing.
fn cohort(d: &Dir, n: usize) {
    std::fs::create_dir_all(d.p("nii")).unwrap();
    std::fs::create_dir_all(d.p("npy")).unwrap();
    let mut manifest = String::from("id,scores,mask,spacing\n");
    for i in 0..n {
        let (s, labels) = subject(i);
        let id = format!("sub-{i:03}");
        write_scores(d.p(&format!("nii/{id}_prob.nii.gz")), &s.mapv(|x| x as f32), &header(i)).unwrap();
        write_labels(d.p(&format!("nii/{id}_seg.nii.gz")), &labels, &header(i)).unwrap();
        write_npy(d.p(&format!("npy/{id}_prob.npy")), &s.mapv(|x| x as f32)).unwrap();
        write_npy(d.p(&format!("npy/{id}_seg.npy")), &labels).unwrap();
        let sp = SPACINGS[i % 3];
        manifest += &format!("{id},npy/{id}_prob.npy,npy/{id}_seg.npy,{} {} {}\n", sp[0], sp[1], sp[2]);
    }
    std::fs::write(d.p("manifest.csv"), manifest).unwrap();
}

fn thresholds(json: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (v["inner"]["threshold"].to_string(), v["outer"]["threshold"].to_string())
}

#[test]
fn subjects_pair_by_folder_glob_and_manifest_with_their_own_spacing() {
    let d = Dir(tempfile::tempdir().unwrap());
    cohort(&d, 30);
    let levels = ["--inner", "identity", "--outer", "distance", "--labels", "1,2", "--alpha", "0.2"];
    let by_glob = ok(&[
        &["calibrate", "--scores", d.s("nii/*_prob.nii.gz"), "--masks", d.s("nii/*_seg.nii.gz")],
        &levels[..],
    ]
    .concat());
    let by_folder = ok(&[
        &[
            "calibrate",
            "--scores",
            d.s("nii"),
            "--masks",
            d.s("nii"),
            "--scores-suffix",
            "_prob",
            "--masks-suffix",
            "_seg",
        ],
        &levels[..],
    ]
    .concat());
    // the manifest's .npy copies with their spacing given by hand: the same statistics
    let by_manifest = ok(&[&["calibrate", "--manifest", d.s("manifest.csv")], &levels[..]].concat());
    assert_eq!(thresholds(&by_glob), thresholds(&by_folder));
    assert_eq!(thresholds(&by_glob), thresholds(&by_manifest));
    let j: serde_json::Value = serde_json::from_str(&by_glob).unwrap();
    assert_eq!(j["spacing"], "per-image");
    assert_eq!(j["labels"], serde_json::json!([1, 2]));
    // the spacing matters, and --spacing overrides the headers
    let flat = ok(&[
        &[
            "calibrate",
            "--scores",
            d.s("nii/*_prob.nii.gz"),
            "--masks",
            d.s("nii/*_seg.nii.gz"),
            "--spacing",
            "1,1,1",
        ],
        &levels[..],
    ]
    .concat());
    assert_ne!(thresholds(&flat).1, thresholds(&by_glob).1);
    let j: serde_json::Value = serde_json::from_str(&flat).unwrap();
    assert_eq!(j["spacing"], serde_json::json!([1.0, 1.0, 1.0]));
    // a label set equals calibrating its binarized map
    std::fs::create_dir_all(d.p("bin")).unwrap();
    for i in 0..30 {
        let (_, labels) = subject(i);
        let bin = labels.mapv(|l| u8::from(l == 1 || l == 2));
        write_labels(d.p(&format!("bin/sub-{i:03}_seg.nii.gz")), &bin, &header(i)).unwrap();
    }
    let binary = ok(&[
        "calibrate",
        "--scores",
        d.s("nii/*_prob.nii.gz"),
        "--masks",
        d.s("bin/*_seg.nii.gz"),
        "--inner",
        "identity",
        "--outer",
        "distance",
        "--alpha",
        "0.2",
    ]);
    assert_eq!(thresholds(&binary), thresholds(&by_glob));
}

#[test]
fn unpaired_duplicate_and_mixed_inputs_are_named() {
    let d = Dir(tempfile::tempdir().unwrap());
    cohort(&d, 6);
    std::fs::remove_file(d.p("nii/sub-004_seg.nii.gz")).unwrap();
    let e = fail(&[
        "calibrate",
        "--scores",
        d.s("nii/*_prob.nii.gz"),
        "--masks",
        d.s("nii/*_seg.nii.gz"),
        "--alpha",
        "0.5",
    ]);
    assert!(e.contains("sub-004"), "{e}");
    // the same subject twice, as .nii and .nii.gz
    std::fs::copy(d.p("nii/sub-001_prob.nii.gz"), d.p("nii/sub-001_prob.nii")).unwrap();
    let e = fail(&[
        "calibrate",
        "--scores",
        d.s("nii/sub-00*_prob.nii*"),
        "--masks",
        d.s("npy"),
        "--alpha",
        "0.5",
    ]);
    assert!(e.contains("sub-001") && e.contains("twice"), "{e}");
    // a stack of scores with per-subject masks is refused
    write_npy(d.p("stack.npy"), &Array3::<f32>::zeros((2, 3, 4))).unwrap();
    let out = run(&["calibrate", "--scores", d.s("stack.npy"), "--masks", d.s("nii"), "--alpha", "0.5"]);
    assert_eq!(out.status.code(), Some(2));
    // different dimensionalities in one cohort: named
    std::fs::create_dir_all(d.p("mixed")).unwrap();
    write_npy(d.p("mixed/a_prob.npy"), &Array3::<f32>::zeros((4, 4, 4))).unwrap();
    write_npy(d.p("mixed/a_seg.npy"), &Array3::<u8>::zeros((4, 4, 4))).unwrap();
    write_npy(d.p("mixed/b_prob.npy"), &Array2::<f32>::zeros((4, 4))).unwrap();
    write_npy(d.p("mixed/b_seg.npy"), &Array2::<u8>::zeros((4, 4))).unwrap();
    let e = fail(&[
        "calibrate",
        "--scores",
        d.s("mixed"),
        "--masks",
        d.s("mixed"),
        "--scores-suffix",
        "_prob",
        "--masks-suffix",
        "_seg",
        "--alpha",
        "0.5",
    ]);
    assert!(e.contains("b_prob.npy") && e.contains("3-D"), "{e}");
}

/// `predict --summary`: each subject's row against its written sets, with
/// volumes from its header spacing and band widths by definition (from
/// each outer-contour voxel to the nearest inner voxel, all pairs).
fn check_subject_table(d: &Dir, n: usize) {
    let csv = std::fs::read_to_string(d.p("subjects.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,inner_voxels,band_voxels,outer_voxels,inner_ml,band_ml,outer_ml,\
             band_mean_width_mm,band_max_width_mm,empty_inner,whole_outer"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), n);
    let mut defined = 0;
    for (i, row) in rows.iter().enumerate() {
        let id = format!("sub-{i:03}");
        assert_eq!(row[0], id);
        let (inner, h) = read_scores::<f64>(d.p(&format!("sets/{id}_inner.nii.gz"))).unwrap();
        let (outer, _) = read_scores::<f64>(d.p(&format!("sets/{id}_outer.nii.gz"))).unwrap();
        // the header's spacing (float32 in the file), which the run used
        let sp = h.spacing().as_slice().unwrap().to_vec();
        assert!((sp[2] - SPACINGS[i % 3][2]).abs() < 1e-6);
        let count = |a: &ndarray::ArrayD<f64>| a.iter().filter(|&&v| v == 1.0).count();
        let (ni, no) = (count(&inner), count(&outer));
        let nb = inner.iter().zip(&outer).filter(|(&a, &b)| b == 1.0 && a == 0.0).count();
        assert_eq!(row[1..4], [ni.to_string(), nb.to_string(), no.to_string()], "{id}");
        let ml = |k: usize| k as f64 * sp[0] * sp[1] * sp[2] / 1000.0;
        for (cell, want) in row[4..7].iter().zip([ml(ni), ml(nb), ml(no)]) {
            let got: f64 = cell.parse().unwrap();
            assert!((got - want).abs() <= 5.000_001e-7, "{id}: {got} vs {want}");
            // 6 decimals
        }
        let at = |a: &ndarray::ArrayD<f64>, p: [i64; 3]| {
            let s = a.shape();
            (0..3)
                .all(|k| p[k] >= 0 && (p[k] as usize) < s[k])
                .then(|| a[[p[0] as usize, p[1] as usize, p[2] as usize]])
        };
        let inner_pts: Vec<[f64; 3]> = inner
            .indexed_iter()
            .filter(|(_, &v)| v == 1.0)
            .map(|(ix, _)| [ix[0] as f64 * sp[0], ix[1] as f64 * sp[1], ix[2] as f64 * sp[2]])
            .collect();
        let mut widths = Vec::new();
        for (ix, &v) in outer.indexed_iter() {
            let p = [ix[0] as i64, ix[1] as i64, ix[2] as i64];
            let contour = (0..3).any(|k| {
                [-1, 1].iter().any(|&step| {
                    let mut q = p;
                    q[k] += step;
                    at(&outer, q) == Some(0.0)
                })
            });
            if v == 1.0 && contour {
                let x = [p[0] as f64 * sp[0], p[1] as f64 * sp[1], p[2] as f64 * sp[2]];
                let d2 = inner_pts
                    .iter()
                    .map(|q| (0..3).map(|k| (x[k] - q[k]).powi(2)).sum::<f64>())
                    .fold(f64::INFINITY, f64::min);
                widths.push(d2.sqrt());
            }
        }
        if inner_pts.is_empty() || widths.is_empty() {
            assert_eq!(row[7..9], ["", ""], "{id}");
        } else {
            defined += 1;
            let mean = widths.iter().sum::<f64>() / widths.len() as f64;
            let max = widths.iter().copied().fold(0.0, f64::max);
            let (gm, gx): (f64, f64) = (row[7].parse().unwrap(), row[8].parse().unwrap());
            // 4 decimals
            assert!(
                (gm - mean).abs() <= 5.000_001e-5 && (gx - max).abs() <= 5.000_001e-5,
                "{id}: {gm} {gx} vs {mean} {max}"
            );
        }
        assert_eq!(row[9..11], [u8::from(ni == 0).to_string(), u8::from(no == outer.len()).to_string()]);
    }
    assert!(defined > n / 2, "band widths defined for {defined} of {n} subjects");
}

#[test]
fn predicted_sets_carry_each_subjects_header() {
    let d = Dir(tempfile::tempdir().unwrap());
    cohort(&d, 24);
    ok(&[
        "calibrate",
        "--scores",
        d.s("nii/*_prob.nii.gz"),
        "--masks",
        d.s("nii/*_seg.nii.gz"),
        "--labels",
        "1,2",
        "--outer",
        "distance",
        "--alpha",
        "0.3",
        "-o",
        d.s("cal.json"),
    ]);
    ok(&[
        "predict",
        "--calibration",
        d.s("cal.json"),
        "--scores",
        d.s("nii/*_prob.nii.gz"),
        "--scores-suffix",
        "_prob",
        "--out-dir",
        d.s("sets"),
        "--overlay-dir",
        d.s("fig"),
        "--label-map-out",
        d.s("labels"),
        "--summary",
        d.s("subjects.csv"),
    ]);
    check_subject_table(&d, 24);
    // with the true masks: each subject's events (here containment) and the overall counts
    let out = ok(&[
        "predict",
        "--calibration",
        d.s("cal.json"),
        "--scores",
        d.s("nii/*_prob.nii.gz"),
        "--scores-suffix",
        "_prob",
        "--masks",
        d.s("nii/*_seg.nii.gz"),
        "--masks-suffix",
        "_seg",
        "--labels",
        "1,2",
        "--summary",
        d.s("checked.csv"),
    ]);
    let csv = std::fs::read_to_string(d.p("checked.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",whole_outer,inner_covered,outer_covered,joint_covered"));
    let mut covered = [0; 3];
    for (i, line) in csv.lines().skip(1).enumerate() {
        let row: Vec<&str> = line.split(',').collect();
        let id = format!("sub-{i:03}");
        let (inner, _) = read_scores::<f64>(d.p(&format!("sets/{id}_inner.nii.gz"))).unwrap();
        let (outer, _) = read_scores::<f64>(d.p(&format!("sets/{id}_outer.nii.gz"))).unwrap();
        let truth = subject(i).1.mapv(|l| l > 0).into_dyn();
        let ci = inner.iter().zip(&truth).all(|(&s, &y)| s == 0.0 || y);
        let co = outer.iter().zip(&truth).all(|(&s, &y)| s == 1.0 || !y);
        let want = [ci, co, ci && co].map(|b| u8::from(b).to_string());
        assert_eq!(row[11..14], want, "{id}");
        for (k, b) in covered.iter_mut().zip([ci, co, ci && co]) {
            *k += usize::from(b);
        }
    }
    assert!(covered[2] < 24, "the check should see a miss: {covered:?}");
    for (name, k) in ["inner", "outer", "joint"].iter().zip(covered) {
        assert!(out.contains(&format!("{name:<5} {k:>6} of 24 = ")), "{out}");
    }
    for i in [0usize, 1, 2, 23] {
        // the label map: 2 where the inner set is, 1 in the rest of the outer set, with the header
        let id = format!("sub-{i:03}");
        let (labels, h) = read_scores::<f64>(d.p(&format!("labels/{id}_sets.nii.gz"))).unwrap();
        let (inner, _) = read_scores::<f64>(d.p(&format!("sets/{id}_inner.nii.gz"))).unwrap();
        let (outer, _) = read_scores::<f64>(d.p(&format!("sets/{id}_outer.nii.gz"))).unwrap();
        assert_eq!(labels, &inner * 2.0 + &outer * (1.0 - &inner));
        assert!(labels.iter().any(|&v| v == 1.0) && labels.iter().any(|&v| v == 2.0), "{id}");
        let src = read_header(d.p(&format!("nii/{id}_prob.nii.gz"))).unwrap();
        assert_eq!((h.spacing(), h.affine()), (src.spacing(), src.affine()));
    }
    let itk = std::fs::read_to_string(d.p("labels/confseg_sets.itksnap.txt")).unwrap();
    assert!(itk.contains("\"inner set\"") && itk.contains("ITK-SnAP Label Description File"), "{itk}");
    let slicer = std::fs::read_to_string(d.p("labels/confseg_sets.ctbl")).unwrap();
    assert!(slicer.lines().any(|l| l.starts_with("2 inner ")), "{slicer}");
    for i in [0usize, 1, 2, 23] {
        let id = format!("sub-{i:03}");
        for side in ["inner", "outer"] {
            let h = read_header(d.p(&format!("sets/{id}_{side}.nii.gz"))).unwrap();
            let src = read_header(d.p(&format!("nii/{id}_prob.nii.gz"))).unwrap();
            assert_eq!(h.shape(), src.shape());
            assert_eq!(h.affine(), src.affine());
            assert_eq!(h.spacing(), src.spacing());
        }
    }
    let figures = std::fs::read_dir(d.p("fig")).unwrap().count();
    assert_eq!(figures, 24);
    // a calibration with each subject's own spacing refuses images without one
    std::fs::create_dir_all(d.p("plain")).unwrap();
    write_npy(d.p("plain/x.npy"), &subject(0).0.mapv(|x| x as f32)).unwrap();
    let e =
        fail(&["predict", "--calibration", d.s("cal.json"), "--scores", d.s("plain"), "--out-dir", d.s("o")]);
    assert!(e.contains("spacing"), "{e}");
    // the table may not overwrite a set
    let out = run(&[
        "predict",
        "--calibration",
        d.s("cal.json"),
        "--scores",
        d.s("plain"),
        "--inner-out",
        d.s("t.csv"),
        "--summary",
        d.s("./t.csv"),
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("--inner-out and --summary name the same file"), "{e}");
}

#[test]
fn several_structures_from_class_logits_through_the_cli() {
    use confseg::calibrate::{StructureCalibration, StructureCalibrator};
    use confseg::levels::JointMode;
    use confseg::mask::Structure;
    use confseg::transform::StructureScores;
    use ndarray::{Array4, Axis};
    let d = Dir(tempfile::tempdir().unwrap());
    // BraTS-like: 4 classes with labels 0, 1, 2, 4 along axis 1 of the stack
    let n = 40;
    let data = Synthetic::new([12, 12]).seed(8);
    let mut logits = Array4::<f32>::zeros((n, 4, 12, 12));
    let mut labels = Array3::<u8>::zeros((n, 12, 12));
    for i in 0..n {
        let (s, m) = data.pair(i);
        for ((y, x), &v) in s.indexed_iter() {
            logits[[i, 0, y, x]] = -v as f32;
            logits[[i, 1, y, x]] = (v * 0.5) as f32;
            logits[[i, 2, y, x]] = (v * 0.3 - 0.2) as f32;
            logits[[i, 3, y, x]] = (v - 1.0) as f32;
            labels[[i, y, x]] = match (m[[y, x]], v) {
                (false, _) => 0,
                (true, v) if v > 3.0 => 4,
                (true, v) if v > 1.5 => 1,
                (true, _) => 2,
            };
        }
    }
    write_npy(d.p("logits.npy"), &logits).unwrap();
    write_npy(d.p("labels.npy"), &labels).unwrap();
    let out = ok(&[
        "calibrate",
        "--scores",
        d.s("logits.npy"),
        "--masks",
        d.s("labels.npy"),
        "--class-axis",
        "0",
        "--class-labels",
        "0,1,2,4",
        "--structure",
        "WT=1,2,4",
        "--structure",
        "TC=1,4",
        "--structure",
        "ET=4",
        "--outer",
        "distance:threshold=0.5",
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "-o",
        d.s("cal.json"),
    ]);
    assert!(out.contains("P(for every structure: I ⊆ Y ⊆ O) >= 0.8"), "{out}");
    // the library on the same arrays gives the same thresholds
    let structures: Vec<Structure> =
        ["WT=1,2,4", "TC=1,4", "ET=4"].iter().map(|s| s.parse().unwrap()).collect();
    let sc = StructureCalibrator::new(
        confseg::Calibrator::new(
            confseg::ScoreTransform::Identity,
            "distance:threshold=0.5".parse::<confseg::ScoreTransform>().unwrap(),
        ),
        structures.clone(),
        StructureScores::Softmax { axis: 0, class_labels: vec![0, 1, 2, 4] },
    )
    .unwrap();
    let mut cal = StructureCalibration::new(&structures);
    for i in 0..n {
        sc.observe(&mut cal, &logits.index_axis(Axis(0), i), None, &labels.index_axis(Axis(0), i)).unwrap();
    }
    let sets = sc.fit(&cal, JointMode::max(confseg::Alpha::new(0.2).unwrap(), 3)).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.p("cal.json")).unwrap()).unwrap();
    for k in 0..3 {
        let want = sets.sets()[k].thresholds().outer.value();
        assert_eq!(file["structures"][k]["sets"]["outer"]["threshold"].as_f64(), Some(want));
    }
    // predict: one inner and one outer stack per structure
    ok(&[
        "predict",
        "--calibration",
        d.s("cal.json"),
        "--scores",
        d.s("logits.npy"),
        "--inner-out",
        d.s("i.npy"),
        "--outer-out",
        d.s("o.npy"),
    ]);
    for name in ["WT", "TC", "ET"] {
        let o: Array3<u8> = ndarray_npy::read_npy(d.p(&format!("o_{name}.npy"))).unwrap();
        assert_eq!(o.dim(), (n, 12, 12));
    }
    let want = sets.predict(&logits.index_axis(Axis(0), 3), None).unwrap();
    let got: Array3<u8> = ndarray_npy::read_npy(d.p("o_TC.npy")).unwrap();
    assert_eq!(got.index_axis(Axis(0), 3), want[1].outer.mapv(u8::from));
    // validate: joint and per-structure coverage
    let v = ok(&[
        "validate",
        "--scores",
        d.s("logits.npy"),
        "--masks",
        d.s("labels.npy"),
        "--class-axis",
        "0",
        "--class-labels",
        "0,1,2,4",
        "--structure",
        "WT=1,2,4",
        "--structure",
        "TC=1,4",
        "--structure",
        "ET=4",
        "--alpha",
        "0.2",
        "--mode",
        "max",
        "--n-cal",
        "30",
        "--repeats",
        "50",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert!(r[0]["joint"]["mean"].as_f64().unwrap() > 0.5);
    assert_eq!(r[0]["structures"].as_array().unwrap().len(), 3);
}
