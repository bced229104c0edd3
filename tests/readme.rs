//! The README's medical-volumes walkthrough, run as a user runs it: its
//! shell block executed by `bash` in a fresh folder (with the example and
//! the binary this build made), and its printed outputs compared with what
//! the README shows.

use std::path::{Path, PathBuf};
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The fenced blocks after `heading`, up to the next heading of its level.
fn blocks(text: &str, heading: &str) -> Vec<(String, String)> {
    let section = text.split(heading).nth(1).expect("the heading is in the README");
    let section = section.split("\n### ").next().unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (lang, body) = after.split_once('\n').unwrap_or_default();
        let end = body.find("```").expect("a closed block");
        out.push((lang.trim().to_owned(), body[..end].to_owned()));
        rest = &body[end + 3..];
    }
    out
}

/// The example program built next to the test binaries.
fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_confseg"));
    let p = bin.parent().unwrap().join("examples").join(name);
    assert!(p.exists(), "{} is built by cargo test (cargo build --examples)", p.display());
    p
}

fn bash(script: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn medical_volumes_walkthrough_runs_and_prints_what_the_readme_shows() {
    let text = readme();
    let b = blocks(&text, "### Medical volumes\n");
    let (lang, script) = &b[0];
    assert_eq!(lang, "sh");
    let generator = "cargo run --release --features nifti --example nifti_cohort --";
    assert!(script.contains(generator) && script.contains("C=target/release/confseg"), "{script}");
    let script = script
        .replace(generator, &format!("'{}'", example("nifti_cohort").display()))
        .replace("C=target/release/confseg", &format!("C='{}'", env!("CARGO_BIN_EXE_confseg")));
    let dir = tempfile::tempdir().unwrap();
    let out = bash(&script, dir.path());
    // `head -3 subjects.csv`, as the next block shows it
    let shown = &b[1].1;
    assert!(out.ends_with(shown.as_str()), "printed:\n{out}\nREADME:\n{shown}");
    for f in ["sets/sub-1000_inner.nii.gz", "viewer/sub-1000_sets.nii.gz", "viewer/confseg_sets.itksnap.txt"]
    {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    // the coverage the README prints for the 60 calibration subjects
    let check = format!(
        "'{}' predict --calibration cal.json --scores cohort/cal --scores-suffix _prob \
         --masks cohort/cal --masks-suffix _seg --labels 1,2 --summary cal.csv",
        env!("CARGO_BIN_EXE_confseg")
    );
    let out = bash(&check, dir.path());
    let coverage = &b[2].1;
    assert!(out.contains(coverage.as_str()), "printed:\n{out}\nREADME:\n{coverage}");

    // the report, and the same cohort from MONAI's and nnU-Net's layouts
    let c = format!("C='{}'\n", env!("CARGO_BIN_EXE_confseg"));
    let block = |needle: &str| {
        b.iter().find(|(lang, body)| lang == "sh" && body.contains(needle)).map(|(_, body)| body.clone())
    };
    let report = block("report --calibration").expect("the report block");
    bash(&format!("{c}{report}"), dir.path());
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("<img") && (html.contains("lambda") || html.contains("λ")),
        "a report with pictures"
    );
    let tools = block("cohort/monai/cal").expect("the MONAI and nnU-Net block");
    bash(&format!("{c}{tools}"), dir.path());
    let fitted = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(f)).unwrap()).unwrap()
    };
    let (monai, nnunet) = (fitted("monai.json"), fitted("nnunet.json"));
    assert_eq!(monai["outer"]["threshold"], nnunet["outer"]["threshold"]);
    assert_eq!(monai["inner"]["threshold"], nnunet["inner"]["threshold"]);
    assert!(monai["outer"]["threshold"].as_f64().is_some_and(f64::is_finite));
    assert_eq!(nnunet["input"], "probabilities");
    let rows = std::fs::read_to_string(dir.path().join("nnunet.csv")).unwrap();
    assert_eq!(rows.lines().count(), 7, "{rows}");
    assert!(dir.path().join("viewer_nnunet/sub-1000_sets.nii.gz").is_file());
}
