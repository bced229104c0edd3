//! Regression tests for hostile input: one test per class of the
//! adversarial pass (crashes and resource blow-ups, silent wrong results,
//! files touched that should not be, messages, guard rails). Every failure
//! must be one line, a clean exit code, no panic, no output left behind.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use confseg::synthetic::Synthetic;
use ndarray::{Array, Array3};
use ndarray_npy::write_npy;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "confseg {args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Failure with `code`, one `error:` line, no panic; returns stderr.
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

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> &'static str {
        Box::leak(self.path(name).to_string_lossy().into_owned().into_boxed_str())
    }
    /// Files in the folder other than `keep`.
    fn extra(&self, keep: &[&str]) -> Vec<String> {
        std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect()
    }
}

/// A `.npy` file with this header dictionary text and raw data.
fn raw_npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let mut h = dict.as_bytes().to_vec();
    h.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&u16::try_from(h.len()).unwrap().to_le_bytes());
    } else {
        out.extend_from_slice(&u32::try_from(h.len()).unwrap().to_le_bytes());
    }
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn cohort(d: &Dir, n: usize) {
    let (s, m) = Synthetic::new([12, 12]).seed(7).stack(0..n);
    write_npy(d.path("s.npy"), &s.mapv(|x| x as f32)).unwrap();
    write_npy(d.path("m.npy"), &m.mapv(u8::from)).unwrap();
}

#[test]
fn images_without_voxels_are_refused_before_allocating() {
    let d = Dir::new();
    for (name, shape) in [("huge.npy", "(1000000000000, 0)"), ("flat.npy", "(5, 16, 0)")] {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        std::fs::write(d.path(name), raw_npy(1, &dict, &[])).unwrap();
    }
    let f = d.s("flat.npy");
    for scores in [d.s("huge.npy"), f] {
        let masks = scores;
        let e = fail(&["calibrate", "--masks", masks, "--scores", scores, "--alpha", "0.1"], 1);
        assert!(e.contains("no voxels"), "{e}");
        let e = fail(
            &[
                "validate",
                "--masks",
                masks,
                "--scores",
                scores,
                "--alpha",
                "0.1",
                "--n-cal",
                "2",
                "--repeats",
                "3",
            ],
            1,
        );
        assert!(e.contains("no voxels"), "{e}");
        let e = fail(&["select", "--masks", masks, "--scores", scores, "--alpha", "0.1"], 1);
        assert!(e.contains("no voxels"), "{e}");
        let e = fail(&["transform", "--scores", scores, "--transform", "identity", "-o", d.s("t.npy")], 1);
        assert!(e.contains("no voxels"), "{e}");
    }
    assert!(!d.path("t.npy").exists());
    // the library: no statistics, no sets, no validation for an empty image
    use confseg::{Calibration, Calibrator, Error, Identity};
    let c = Calibrator::new(Identity, Identity);
    let e = c.observe(
        &mut Calibration::new(),
        &Array3::<f32>::zeros((16, 0, 3)),
        &Array3::<u8>::zeros((16, 0, 3)),
    );
    assert!(matches!(e, Err(Error::EmptyImage { .. })), "{e:?}");
    let e = confseg::evaluate::Pool::new(
        &c,
        &Array3::<f32>::zeros((5, 16, 0)),
        &Array3::<u8>::zeros((5, 16, 0)),
        0.0,
    );
    assert!(matches!(e, Err(Error::EmptyImage { image: Some(0), .. })), "{e:?}");
}

#[test]
fn size_parameters_are_bounded_with_the_limit_in_one_line() {
    let d = Dir::new();
    cohort(&d, 20);
    let (s, m) = (d.s("s.npy"), d.s("m.npy"));
    let base = ["validate", "--masks", m, "--scores", s, "--alpha", "0.1", "--n-cal", "10"];
    for repeats in ["1000000000000", "18446744073709551615"] {
        let e = fail(&[&base[..], &["--repeats", repeats]].concat(), 1);
        assert!(e.contains("at most 10000000"), "{e}");
    }
    let mut grid = base.to_vec();
    grid[6] = "0.01:0.99:1e-9";
    let e = fail(&grid, 2);
    assert!(e.contains("1000"), "{e}");
    for size in ["100000", "18446744073709551615"] {
        let e = fail(&["demo", "--size", size], 2);
        assert!(e.contains("1024") || e.contains("invalid"), "{e}");
    }
    fail(&["demo", "--splits", "0"], 2);
    let e = fail(&["demo", "--n-cal", "100000", "--n-test", "100000", "--size", "1024"], 2);
    assert!(e.contains("voxels"), "{e}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let d = Dir::new();
    cohort(&d, 30);
    let mut child = Command::new(env!("CARGO_BIN_EXE_confseg"))
        .args([
            "validate",
            "--masks",
            d.s("m.npy"),
            "--scores",
            d.s("s.npy"),
            "--alpha",
            "0.05:0.5:0.05",
            "--n-cal",
            "15",
            "--repeats",
            "50",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head -c 1`
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn npy_headers_are_not_trusted() {
    let d = Dir::new();
    // version 3 header length field claiming 4 GiB in a 190-byte file
    let mut f = b"\x93NUMPY\x03\x00".to_vec();
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    f.resize(190, b' ');
    std::fs::write(d.path("v3.npy"), &f).unwrap();
    let e = fail(&["transform", "--scores", d.s("v3.npy"), "--transform", "identity", "-o", d.s("o.npy")], 1);
    assert!(e.contains("truncated"), "{e}");
    // malformed dictionaries: one line, the missing key named as it is
    std::fs::write(
        d.path("bad.npy"),
        raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2", &[0; 16]),
    )
    .unwrap();
    fail(&["transform", "--scores", d.s("bad.npy"), "--transform", "identity", "-o", d.s("o.npy")], 1);
    std::fs::write(d.path("noshape.npy"), raw_npy(1, "{'descr': '<f4', 'fortran_order': False}", &[]))
        .unwrap();
    let e = fail(
        &["transform", "--scores", d.s("noshape.npy"), "--transform", "identity", "-o", d.s("o.npy")],
        1,
    );
    assert!(e.contains("'shape'") && !e.contains("shaper"), "{e}");
    // numpy-readable descriptors without a byte order are accepted
    let floats: Vec<u8> = [1.0f32, -2.0, 0.5, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let descr = if cfg!(target_endian = "little") { "f4" } else { ">f4" };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1, 2, 2), }}");
    std::fs::write(d.path("f4.npy"), raw_npy(1, &dict, &floats)).unwrap();
    std::fs::write(
        d.path("b1.npy"),
        raw_npy(1, "{'descr': '<b1', 'fortran_order': False, 'shape': (1, 2, 2), }", &[1, 0, 0, 1]),
    )
    .unwrap();
    ok(&["calibrate", "--masks", d.s("b1.npy"), "--scores", d.s("f4.npy"), "--alpha", "0.5"]);
    assert_eq!(d.extra(&["v3.npy", "bad.npy", "noshape.npy", "f4.npy", "b1.npy"]), Vec::<String>::new());
}

#[test]
fn tampered_calibration_files_blame_the_field_and_the_file() {
    let d = Dir::new();
    cohort(&d, 30);
    let (s, m) = (d.s("s.npy"), d.s("m.npy"));
    ok(&["calibrate", "--masks", m, "--scores", s, "--alpha", "0.1", "--mode", "max", "-o", d.s("cal.json")]);
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("cal.json")).unwrap()).unwrap();
    assert_eq!(good["inner"]["rank"], 28);
    type Tamper = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        ("future", Box::new(|j| j["confseg_version"] = "9.0.0".into()), "newer"),
        ("rank0", Box::new(|j| j["inner"]["rank"] = 0.into()), "inner.rank = 0"),
        ("rankbig", Box::new(|j| j["outer"]["rank"] = 1_000_000.into()), "outer.rank = 1000000"),
        ("nbig", Box::new(|j| j["n"] = 1_000_000_000.into()), "rank"),
        ("maxsplit", Box::new(|j| j["outer"]["threshold"] = 12345.0.into()), "one threshold"),
        (
            "nullrank",
            Box::new(|j| {
                j["inner"]["rank"] = serde_json::Value::Null;
                j["outer"]["rank"] = serde_json::Value::Null;
            }),
            "rank is null",
        ),
    ];
    for (name, tamper, says) in cases {
        let mut j = good.clone();
        tamper(&mut j);
        let p = d.path(&format!("{name}.json"));
        std::fs::write(&p, serde_json::to_string(&j).unwrap()).unwrap();
        let e = fail(
            &["predict", "--calibration", p.to_str().unwrap(), "--scores", s, "--inner-out", d.s("i.npy")],
            1,
        );
        assert!(e.contains(&format!("{name}.json")) && e.contains(says), "{name}: {e}");
        assert!(!e.contains("s.npy"), "{name}: blames the scores: {e}");
        assert!(!d.path("i.npy").exists());
    }
    // a byte-order mark is not an error
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(std::fs::read(d.path("cal.json")).unwrap());
    std::fs::write(d.path("bom.json"), bom).unwrap();
    ok(&["predict", "--calibration", d.s("bom.json"), "--scores", s, "--inner-out", d.s("i.npy")]);
}

#[test]
fn outputs_are_published_together_and_devices_are_written_into() {
    let d = Dir::new();
    cohort(&d, 30);
    let (s, m) = (d.s("s.npy"), d.s("m.npy"));
    ok(&["calibrate", "--masks", m, "--scores", s, "--alpha", "0.2", "-o", d.s("cal.json")]);
    // the same path twice is refused
    let e = fail(
        &[
            "predict",
            "--calibration",
            d.s("cal.json"),
            "--scores",
            s,
            "--inner-out",
            d.s("x.npy"),
            "--outer-out",
            d.s("x.npy"),
        ],
        2,
    );
    assert!(e.contains("same file"), "{e}");
    // a second output that cannot be written: neither is published
    std::fs::write(d.path("i.npy"), b"stale inner").unwrap();
    fail(
        &[
            "predict",
            "--calibration",
            d.s("cal.json"),
            "--scores",
            s,
            "--inner-out",
            d.s("i.npy"),
            "--outer-out",
            d.s("no/such/dir/o.npy"),
        ],
        1,
    );
    assert_eq!(std::fs::read(d.path("i.npy")).unwrap(), b"stale inner");
    // a device stays a device
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        ok(&["calibrate", "--masks", m, "--scores", s, "--alpha", "0.2", "-o", "/dev/null"]);
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        // a link is written through, and stays a link; permissions are kept
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(d.path("target.json"), b"old").unwrap();
        std::fs::set_permissions(d.path("target.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(d.path("target.json"), d.path("link.json")).unwrap();
        ok(&["calibrate", "--masks", m, "--scores", s, "--alpha", "0.2", "-o", d.s("link.json")]);
        assert!(std::fs::symlink_metadata(d.path("link.json")).unwrap().file_type().is_symlink());
        assert!(std::fs::read_to_string(d.path("target.json")).unwrap().contains("confseg_version"));
        assert_eq!(std::fs::metadata(d.path("target.json")).unwrap().permissions().mode() & 0o777, 0o600);
        // figures too: through a link, never through a predictable temporary name
        std::fs::write(d.path("fig_target.png"), b"old").unwrap();
        std::os::unix::fs::symlink(d.path("fig_target.png"), d.path("fig.png")).unwrap();
        ok(&[
            "validate",
            "--masks",
            m,
            "--scores",
            s,
            "--alpha",
            "0.2",
            "--n-cal",
            "15",
            "--repeats",
            "5",
            "--plot",
            d.s("fig.png"),
        ]);
        assert!(std::fs::read(d.path("fig_target.png")).unwrap().starts_with(b"\x89PNG"));
    }
    // a figure into a missing folder: one line, no Debug dump
    let e = fail(
        &[
            "validate",
            "--masks",
            m,
            "--scores",
            s,
            "--alpha",
            "0.2",
            "--n-cal",
            "15",
            "--repeats",
            "5",
            "--plot",
            d.s("missing/fig.png"),
        ],
        1,
    );
    assert!(!e.contains("Os {") && !e.contains("IoError"), "{e}");
    let leftovers: Vec<String> = d.extra(&[]).into_iter().filter(|n| n.starts_with(".confseg")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[cfg(unix)]
#[test]
fn interrupted_commands_leave_no_temporary_files() {
    let d = Dir::new();
    // slow enough to be interrupted while its output is being written
    let s = Array::from_shape_fn((1000, 64, 64), |(i, a, b)| ((i + a * 3 + b * 7) % 29) as f32 - 14.0);
    write_npy(d.path("s.npy"), &s).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_confseg"))
        .args([
            "transform",
            "--scores",
            d.s("s.npy"),
            "--transform",
            "gaussian-sigma:25:mode=wrap",
            "-o",
            d.s("out.npy"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temporary = || d.extra(&["s.npy"]).into_iter().any(|n| n.starts_with(".confseg-"));
    let start = std::time::Instant::now();
    while !temporary() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(temporary(), "the output's temporary file never appeared");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status(); // SIGTERM
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "finished before the signal? {stderr}");
    assert_eq!(d.extra(&["s.npy"]), Vec::<String>::new(), "temporary or partial files left");
    assert!(stderr.starts_with("error: interrupted") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn negative_numbers_are_values_and_zero_counts_are_refused() {
    let d = Dir::new();
    cohort(&d, 12);
    let (s, m) = (d.s("s.npy"), d.s("m.npy"));
    let e = fail(&["calibrate", "--masks", m, "--scores", s, "--alpha", "-0.1"], 2);
    assert!(e.contains("-0.1 is outside (0, 1)"), "{e}");
    let e = fail(&["select", "--masks", m, "--scores", s, "--alpha", "0.1", "--n-cal", "0"], 1);
    assert!(e.contains("n_cal"), "{e}");
    // a learning set too small for every weight: refused, not a suggestion
    let e = fail(&["select", "--masks", m, "--scores", s, "--alpha", "0.05", "--repeats", "5"], 1);
    assert!(e.contains("trivial"), "{e}");
    // --weights 1e308:1e308 is 1:1, not a level of 0
    let (_, summary) = ok(&[
        "calibrate",
        "--masks",
        m,
        "--scores",
        s,
        "--alpha",
        "0.5",
        "--mode",
        "bonferroni",
        "--weights",
        "1e308:1e308",
    ]);
    assert!(summary.contains("alpha_I = 0.25"), "{summary}");
    // newlines in a transform name are not echoed
    let e = fail(&["transform", "--scores", s, "--transform", "gauss\nian:2", "-o", d.s("o.npy")], 1);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

#[test]
fn guard_rails_warn() {
    let d = Dir::new();
    let (s, m) = Synthetic::new([12, 12]).seed(3).stack(0..40);
    // probabilities with the default mask threshold 0
    let p = s.mapv(|x| 1.0 / (1.0 + (-x).exp()));
    write_npy(d.path("p.npy"), &p).unwrap();
    write_npy(d.path("m.npy"), &m.mapv(u8::from)).unwrap();
    let (_, err) = ok(&[
        "calibrate",
        "--masks",
        d.s("m.npy"),
        "--scores",
        d.s("p.npy"),
        "--outer",
        "distance",
        "--alpha",
        "0.2",
    ]);
    assert!(err.contains("warning: the scores all lie in [0, 1]"), "{err}");
    let (_, err) = ok(&[
        "calibrate",
        "--masks",
        d.s("m.npy"),
        "--scores",
        d.s("p.npy"),
        "--outer",
        "distance",
        "--mask-threshold",
        "0.5",
        "--alpha",
        "0.2",
    ]);
    assert!(!err.contains("warning"), "{err}");
    // max mode with transforms on different scales: probabilities inside, large logits outside
    write_npy(d.path("l.npy"), &s.mapv(|x| 50.0 * x)).unwrap();
    let (_, err) = ok(&[
        "calibrate",
        "--masks",
        d.s("m.npy"),
        "--inner-scores",
        d.s("p.npy"),
        "--outer-scores",
        d.s("l.npy"),
        "--mode",
        "max",
        "--alpha",
        "0.2",
        "-o",
        d.s("cal.json"),
    ]);
    assert!(err.contains("different scales"), "{err}");
    let (_, err) = ok(&[
        "predict",
        "--calibration",
        d.s("cal.json"),
        "--inner-scores",
        d.s("p.npy"),
        "--outer-scores",
        d.s("l.npy"),
        "--inner-out",
        d.s("i.npy"),
    ]);
    assert!(err.contains("inner set is empty for all 40 images"), "{err}");
}
