//! Write the seed corpus of every fuzz target into `fuzz/corpus/<target>/`:
//! valid files written by confseg itself (`.npy` stacks, NIfTI images,
//! calibration JSON), a few hand-made variants of them (big-endian,
//! Fortran order, NIfTI-2), and transform names.
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use confseg::io::nifti::{self, NiftiHeader};
use confseg::io::{write_array, write_masks, write_npy};
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibration, Calibrator, Image, Mode, ScoreTransform, Spacing};
use confseg::image::Geometry;
use confseg::calibrate::ImageStatistics;
use ndarray::{array, Array1, Array3, ArrayD, IxDyn};

type Res = Result<(), Box<dyn std::error::Error>>;

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    dir
}

fn put(target: &str, name: &str, prefix: &[u8], bytes: &[u8]) {
    let mut all = prefix.to_vec();
    all.extend_from_slice(bytes);
    std::fs::write(corpus(target).join(name), all).expect("seed written");
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    if let Some(at) = out.windows(from.len()).position(|w| w == from) {
        out[at..at + to.len()].copy_from_slice(to);
    }
    out
}

fn npy_seeds(tmp: &Path) -> Res {
    let p = tmp.join("s.npy");
    // labels 1, 2; 8 images for indices; read_array up to 64 elements; range 1..4
    let prefix = [1u8, 2, 8, 4, 1, 3];
    let (scores, masks) = Synthetic::new([4, 5]).seed(1).stack(0..3);
    let seed = |name: &str, bytes: Vec<u8>| put("npy", name, &prefix, &bytes);
    write_array(&p, &scores.mapv(|x| x as f32))?;
    let f32_stack = std::fs::read(&p)?;
    seed("stack-f32.npy", f32_stack.clone());
    seed("stack-f32-big-endian.npy", replace(&f32_stack, b"'<f4'", b"'>f4'"));
    seed("stack-f16.npy", {
        let half = replace(&f32_stack, b"'<f4'", b"'<f2'");
        let data_at = half.len() - 4 * scores.len();
        half[..data_at + 2 * scores.len()].to_vec()
    });
    seed("stack-f32-fortran.npy", replace(&f32_stack, b"False", b"True "));
    write_array(&p, &scores)?;
    seed("stack-f64.npy", std::fs::read(&p)?);
    write_masks(&p, &masks)?;
    let m = std::fs::read(&p)?;
    seed("masks-u8.npy", m.clone());
    seed("masks-bool.npy", replace(&m, b"'|u1'", b"'|b1'"));
    seed("masks-i8.npy", replace(&m, b"'|u1'", b"'|i1'"));
    let labels = Array3::from_shape_fn((2, 3, 3), |(i, j, k)| ((i + j * 3 + k) % 5) as u8);
    write_npy(&p, &labels)?;
    seed("label-map-u8.npy", std::fs::read(&p)?);
    write_npy(&p, &Array1::from(vec![2u8, 0, 5, 1]))?;
    seed("indices-u8.npy", std::fs::read(&p)?);
    write_array(&p, &Array1::from(vec![0.8, 0.8, 2.5]))?;
    seed("spacing-f64.npy", std::fs::read(&p)?);
    write_array(&p, &array![[1.0f64, f64::INFINITY, f64::NAN, -0.0, 5e-324]])?;
    seed("extremes-f64.npy", std::fs::read(&p)?);
    write_array(&p, &ArrayD::<f32>::zeros(IxDyn(&[1, 1, 1, 1])))?;
    seed("one-voxel-4d.npy", std::fs::read(&p)?);
    Ok(())
}

/// A NIfTI-2 file (little- or big-endian) with the header fields of
/// `v1` (a NIfTI-1 file written by confseg) and its data.
fn nifti2(v1: &[u8], big: bool) -> Vec<u8> {
    let f32_at = |at: usize| f32::from_le_bytes(v1[at..at + 4].try_into().expect("4 bytes"));
    let i16_at = |at: usize| i16::from_le_bytes(v1[at..at + 2].try_into().expect("2 bytes"));
    let mut h = vec![0u8; 544];
    let mut set = |at: usize, le: &[u8]| {
        let mut b = le.to_vec();
        if big {
            b.reverse();
        }
        h[at..at + b.len()].copy_from_slice(&b);
    };
    set(0, &540i32.to_le_bytes());
    set(12, &i16_at(70).to_le_bytes());
    set(14, &i16_at(72).to_le_bytes());
    for k in 0..8 {
        set(16 + 8 * k, &i64::from(i16_at(40 + 2 * k)).to_le_bytes());
        set(104 + 8 * k, &f64::from(f32_at(76 + 4 * k)).to_le_bytes());
    }
    set(168, &544i64.to_le_bytes());
    set(176, &1.0f64.to_le_bytes());
    set(344, &0i32.to_le_bytes());
    set(348, &i32::from(i16_at(254)).to_le_bytes());
    for k in 0..12 {
        set(400 + 8 * k, &f64::from(f32_at(280 + 4 * k)).to_le_bytes());
    }
    set(500, &i32::from(v1[123]).to_le_bytes());
    h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
    let data = &v1[352..];
    let size = usize::try_from(i16_at(72)).expect("bitpix") / 8;
    for chunk in data.chunks(size.max(1)) {
        let mut c = chunk.to_vec();
        if big {
            c.reverse();
        }
        h.extend_from_slice(&c);
    }
    h
}

fn nifti_seeds(tmp: &Path) -> Res {
    let labels = [1u8, 2];
    let seed = |how: u8, name: &str, bytes: &[u8]| {
        let mut prefix = vec![how];
        prefix.extend_from_slice(&labels);
        put("nifti", name, &prefix, bytes);
    };
    let g = Geometry::new(Spacing::new(vec![0.75, 0.75, 2.5])?);
    let like = NiftiHeader::new(&[4, 3, 2], &g)?;
    let scores =
        Array3::from_shape_fn((4, 3, 2), |(x, y, z)| (x as f32) - 1.5 * (y as f32) + 0.25 * (z as f32));
    let mask = scores.mapv(|v| v > 0.0);
    for (name, gz) in [("x.nii", false), ("x.nii.gz", true)] {
        let p = tmp.join(name);
        let how = if gz { 2 } else { 0 };
        nifti::write_scores(&p, &scores, &like)?;
        let f32_file = std::fs::read(&p)?;
        seed(how, &format!("scores-f32-{name}"), &f32_file);
        nifti::write_scores(&p, &scores.mapv(f64::from), &like)?;
        seed(how, &format!("scores-f64-{name}"), &std::fs::read(&p)?);
        nifti::write_mask(&p, &mask, &like)?;
        seed(how, &format!("mask-u8-{name}"), &std::fs::read(&p)?);
        if !gz {
            seed(1, "scores-f32-gzipped-by-the-target.nii", &f32_file);
            seed(0, "scores-f32-nifti2.nii", &nifti2(&f32_file, false));
            seed(0, "scores-f32-nifti2-big-endian.nii", &nifti2(&f32_file, true));
        }
    }
    let p = tmp.join("y.nii");
    let one = NiftiHeader::new(&[5], &Geometry::new(Spacing::unit()))?;
    nifti::write_scores(&p, &Array1::from(vec![0.0f64, 1.0, f64::INFINITY, f64::NAN, -2.0]), &one)?;
    seed(0, "scores-1d.nii", &std::fs::read(&p)?);
    let four = NiftiHeader::new(&[2, 2, 1, 3], &Geometry::new(Spacing::unit()))?;
    let vol = ArrayD::from_shape_fn(IxDyn(&[2, 2, 1, 3]), |i| (i[0] + 2 * i[1] + 4 * i[3]) as f32);
    nifti::write_scores(&p, &vol, &four)?;
    seed(0, "scores-4d.nii", &std::fs::read(&p)?);
    Ok(())
}

fn calibration_seeds() -> Res {
    let seed = |name: &str, json: String| put("calibration_file", name, &[], json.as_bytes());
    let data = Synthetic::new([8, 8]).seed(4);
    let a = Alpha::new(0.1)?;
    let fits: [(&str, &str, &str, Mode, usize); 6] = [
        ("sets-identity-max.json", "identity", "identity", Mode::max(a), 30),
        ("sets-distance-bonferroni.json", "identity", "distance", Mode::bonferroni(a, 1.0, 4.0)?, 30),
        ("sets-too-few-marginal.json", "sigmoid", "distance-centre:chessboard", Mode::marginal(a), 3),
        ("sets-gaussian-box.json", "gaussian:2:mode=nearest", "box-outer:threshold=0.5", Mode::max(a), 12),
        ("sets-box-inner.json", "box-inner:connectivity=full", "distance:cityblock", Mode::marginal(a), 20),
        (
            "sets-split.json",
            "identity",
            "distance",
            Mode::bonferroni_split(a, Alpha::new(0.03)?, Alpha::new(0.07)?)?,
            40,
        ),
    ];
    for (name, ti, to, mode, n) in fits {
        let c = Calibrator::new(ti.parse::<ScoreTransform>()?, to.parse::<ScoreTransform>()?)
            .with_spacing(Spacing::new(vec![1.0, 2.0])?);
        let mut cal = Calibration::new();
        for (s, m) in data.pairs(0..n) {
            c.observe(&mut cal, &s, &m)?;
        }
        seed(name, serde_json::to_string_pretty(&c.fit(&cal, mode)?)?);
        if name == "sets-distance-bonferroni.json" {
            seed("calibration-with-provenance.json", serde_json::to_string(&cal)?);
        }
    }
    // per-image spacing
    let c = Calibrator::new(ScoreTransform::Identity, "distance".parse::<ScoreTransform>()?);
    let mut cal = Calibration::new();
    for (i, (s, m)) in data.pairs(0..15).enumerate() {
        let img = Image::new(s.view(), Spacing::new(vec![1.0 + i as f64 * 0.1, 0.5])?)?;
        c.observe(&mut cal, &img, &m)?;
    }
    seed("sets-per-image-spacing.json", serde_json::to_string(&c.fit(&cal, Mode::max(Alpha::new(0.2)?))?)?);
    seed("calibration-per-image-spacing.json", serde_json::to_string(&cal)?);
    // by hand: no provenance, infinite statistics
    let hand: Calibration = [(1.0, -1.0), (f64::INFINITY, f64::NEG_INFINITY), (0.5, 2.0)]
        .into_iter()
        .map(|(tau, gamma)| ImageStatistics { tau, gamma })
        .collect();
    seed("calibration-by-hand.json", serde_json::to_string(&hand)?);
    seed(
        "sets-infinite-statistic.json",
        serde_json::to_string(
            &Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity)
                .fit(&hand, Mode::marginal(Alpha::new(0.5)?))?,
        )?,
    );
    Ok(())
}

fn transform_seeds() {
    let names = [
        "identity",
        "sigmoid",
        "distance",
        "distance:euclidean",
        "distance:chessboard:threshold=0.25",
        "distance-centre:cityblock",
        "distance-center:euclidean:threshold=-1.5",
        "gaussian:2",
        "gaussian-sigma:0.7:units=physical:mode=constant:cval=-3:truncate=2.5",
        "gaussian:1.5:mode=wrap",
        "gaussian:3:mode=mirror",
        "gaussian:0.5:mode=reflect:units=voxels",
        "box-outer",
        "box-inner:connectivity=full:threshold=0.5",
        "box-outer:connectivity=face",
    ];
    for (k, name) in names.iter().enumerate() {
        // shape (5 bytes), spacing (5), values (16), raw values (16)
        let mut prefix = vec![0u8; 42];
        prefix[0] = (k % 4) as u8; // 2-D, 1-D, 3-D, 4-D
        prefix[1..5].copy_from_slice(&[0, 3, 4, 1]);
        if k % 3 == 1 {
            prefix[5..10].copy_from_slice(&[1, 1, 2, 3, 4]);
        }
        for (i, v) in prefix[10..26].iter_mut().enumerate() {
            *v = ((i * 7 + k) % 24) as u8;
        }
        prefix[26..34].copy_from_slice(&0.3f64.to_le_bytes());
        prefix[34..42].copy_from_slice(&(-2.5f64).to_le_bytes());
        put("transform_names", &format!("name-{k:02}"), &prefix, name.as_bytes());
    }
}

fn api_seeds() {
    // arbitrary bytes decode to small stacks; a few patterns to start from
    for k in 0..8u8 {
        let bytes: Vec<u8> =
            (0..160u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(k * 17) % 200).collect();
        put("api", &format!("pattern-{k}"), &[], &bytes);
    }
    put("api", "zeros", &[], &[0u8; 120]);
}

fn main() -> Res {
    let tmp = tempfile::tempdir()?;
    npy_seeds(tmp.path())?;
    nifti_seeds(tmp.path())?;
    calibration_seeds()?;
    transform_seeds();
    api_seeds();
    let _ = std::io::stdout().write_all(b"seeds written to fuzz/corpus/\n");
    Ok(())
}
