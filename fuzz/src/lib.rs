//! Helpers shared by the fuzz targets: the checks every target makes, a
//! scratch directory for inputs that must be files, and decoders from
//! fuzzer bytes to small images, spacings and levels.

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use ndarray::{ArrayD, IxDyn};

/// Panic unless `e` displays as exactly one non-empty line.
pub fn assert_one_line(e: &dyn Display) {
    let s = e.to_string();
    assert!(!s.is_empty(), "empty error message");
    assert!(!s.contains(['\n', '\r']), "error message of more than one line: {s:?}");
}

/// Check a result's error, if any, and return the value.
pub fn ok<T, E: Display>(r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert_one_line(&e);
            None
        }
    }
}

/// Fixed-size parameters decoded from the start of `data` (zeros where
/// `data` is too short), and the bytes after them: a file's bytes stay
/// contiguous, so a seed is the parameters' bytes followed by a file.
pub fn split<'a, P: Arbitrary<'a>>(data: &'a [u8]) -> (P, &'a [u8]) {
    let mut u = Unstructured::new(data);
    let p = P::arbitrary(&mut u).expect("fixed-size parameters decode from any bytes");
    (p, u.take_rest())
}

/// A path in a per-process scratch directory (in memory where `/dev/shm` exists).
pub fn scratch(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("confseg-fuzz")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a scratch directory")
    });
    dir.path().join(name)
}

/// Values that break arithmetic: zeros of both signs, subnormals, the
/// extremes, infinities, NaN, and some ordinary numbers.
pub const SPECIAL: [f64; 24] = [
    0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    -0.0,
    3.25,
    -7.5,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    5e-324,
    -5e-324,
    1e300,
    -1e300,
    1e-300,
    f32::MAX as f64,
    f32::MIN_POSITIVE as f64,
    1e-45,
    16_777_217.0,
    0.1,
];

/// A value from a selector byte and a pool of raw values: mostly
/// [`SPECIAL`], sometimes a raw `f64` from the input.
pub fn value(sel: u8, raw: &[f64]) -> f64 {
    let s = usize::from(sel);
    if s < SPECIAL.len() * 8 || raw.is_empty() {
        SPECIAL[s % SPECIAL.len()]
    } else {
        raw[s % raw.len()]
    }
}

/// A small image shape: 1 to 4 axes of 0 to 4 voxels each (zero-length
/// and length-1 axes included; all-zero bytes give a 3 x 3 image).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct SmallShape {
    /// Selects the number of axes.
    pub ndim: u8,
    /// Select the axis lengths.
    pub dims: [u8; 4],
}

impl SmallShape {
    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        const NDIM: [usize; 4] = [2, 1, 3, 4];
        const LEN: [usize; 5] = [3, 1, 0, 2, 4];
        let nd = NDIM[usize::from(self.ndim % 4)];
        self.dims[..nd].iter().map(|&d| LEN[usize::from(d % 5)]).collect()
    }
}

/// An array of `shape` whose voxels are [`value`]s of the selectors (cycled).
pub fn image(shape: &[usize], sel: &[u8], raw: &[f64]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|i| if sel.is_empty() { 0.0 } else { value(sel[i % sel.len()], raw) }).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches the shape")
}

/// A spacing of `ndim` entries from selector bytes: `None` (unit) for a
/// selector of 0, else one of [`SPECIAL`] or a raw value per axis.
pub fn spacing(ndim: usize, sel: &[u8], raw: &[f64]) -> Option<Vec<f64>> {
    match sel.first() {
        None | Some(0) => None,
        Some(&n) => {
            // sometimes the wrong number of axes
            let len = if n % 7 == 0 { usize::from(n % 5) } else { ndim };
            Some((0..len).map(|k| spacing_value(sel.get(k + 1).copied().unwrap_or(1), raw)).collect())
        }
    }
}

/// One spacing entry: mostly ordinary, sometimes extreme.
fn spacing_value(sel: u8, raw: &[f64]) -> f64 {
    const ORDINARY: [f64; 6] = [1.0, 0.5, 2.0, 0.75, 3.0, 1e-3];
    if sel < 128 {
        ORDINARY[usize::from(sel) % ORDINARY.len()]
    } else {
        value(sel, raw)
    }
}

/// Transform names: the documented forms, with parameters at their edges.
pub const TRANSFORMS: [&str; 20] = [
    "identity",
    "sigmoid",
    "distance",
    "distance:chessboard",
    "distance:cityblock:threshold=0.5",
    "distance-centre:euclidean",
    "distance-centre:chessboard:threshold=-1e300",
    "gaussian:2",
    "gaussian:0.1",
    "gaussian-sigma:0.7:units=physical:mode=constant:cval=-3",
    "gaussian:1.5:mode=wrap",
    "gaussian:3:mode=mirror:truncate=0.5",
    "gaussian-sigma:1e-300",
    "gaussian:1000",
    "gaussian:2:mode=nearest:units=physical",
    "box-outer",
    "box-inner",
    "box-inner:connectivity=full:threshold=0.5",
    "box-outer:threshold=1e308",
    "distance:euclidean:threshold=5e-324",
];

/// Fitted sets written to JSON read back as the same sets, and write the
/// same JSON again. (Sets calibrated with each image's own spacing write
/// `"spacing": "per-image"` in place of the calibrator's default spacing,
/// which such sets never use for the transforms that depend on it: that
/// one field may come back as unit spacing.)
pub fn round_trip(sets: &confseg::ConfidenceSets) {
    let json = serde_json::to_string(sets).expect("fitted sets serialize");
    let back: confseg::ConfidenceSets = serde_json::from_str(&json).expect("written sets read back");
    assert_eq!(serde_json::to_string(&back).expect("fitted sets serialize"), json);
    if !sets.per_image_spacing() {
        assert_eq!(&back, sets, "sets changed on the way back: {json}");
    }
}
