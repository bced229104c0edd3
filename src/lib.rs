//! # confseg: conformal confidence sets for image segmentation
//!
//! A segmentation network outputs a score per pixel or voxel. confseg
//! calibrates those scores on labelled images and then, for every new image,
//! returns an **inner set** `I` (where the object surely is) and an **outer
//! set** `O` (outside which it surely is not) with the finite-sample,
//! model-free guarantee
//!
//! ```text
//! P(I ⊆ Y ⊆ O) >= 1 - alpha
//! ```
//!
//! for a new image exchangeable with the calibration images (split conformal
//! inference on the per-image maximum of transformed scores; Davenport,
//! "Conformal confidence sets for biomedical image segmentation").
//!
//! ```
//! use confseg::{Alpha, Calibration, Calibrator, Identity, Mode};
//! use confseg::synthetic::Synthetic;
//!
//! // Labelled calibration images (here synthetic logits and masks).
//! let data = Synthetic::new([32, 32]).seed(1);
//! let calibrator = Calibrator::new(Identity, Identity);
//! let mut cal = Calibration::new();
//! for (scores, mask) in data.pairs(0..100) {
//!     calibrator.observe(&mut cal, &scores, &mask)?;
//! }
//! // 90% joint coverage, alpha split 1:4 between the inner and outer set.
//! let sets = calibrator.fit(&cal, Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?)?;
//!
//! let (scores, truth) = data.pair(500); // a new image
//! let pred = sets.predict(&scores)?;
//! assert!(pred.inner.iter().zip(pred.outer.iter()).all(|(&i, &o)| !i || o));
//! let covered = pred.coverage(&truth)?.joint(); // true for >= 90% of new images
//! # let _ = covered;
//! # Ok::<(), confseg::Error>(())
//! ```
//!
//! ## The method, module by module
//!
//! The precise method (quantile convention, empty regions, transforms,
//! modes, validation protocol) is written down in `docs/METHOD.md` in the
//! repository; the `METHOD.md §N` references in these docs point there.
//!
//! * [`quantile`]: the conformal quantile `k = ceil((1 - alpha)(n + 1))`, a
//!   validated [`Alpha`] and a [`Threshold`] that says when it is infinite.
//! * [`transform`]: score transforms `f_I`, `f_O` (the [`Transform`] trait).
//! * [`calibrate`]: per-image statistics `tau_i`, `gamma_i` in one fused pass,
//!   a mergeable streaming [`Calibration`], and the [`Mode`]s of METHOD.md §4.
//! * [`risk`]: risk control of the missed share of the object or the
//!   false share of the inner set, in expectation or with probability
//!   `1 - delta` (RCPS and Learn-then-Test bounds), exact or on a grid.
//! * [`sets`]: fitted [`ConfidenceSets`] and the inner/outer masks.
//! * [`evaluate`]: validation over repeated random splits, efficiency
//!   measures, baselines (risk control, pixel-wise Bonferroni, dilation
//!   margins) and transform selection on a learning set (METHOD.md §6–7).
//! * [`synthetic`]: a seeded generator of exchangeable test data.
//!
//! ## Crate feature flags
//!
//! * `serde`: serialize fitted sets and calibration states.
//! * `rayon`: parallel calibration.
//! * `plot`: figures (coverage curves, overlays); with `npy`, the
//!   self-contained HTML report ([`html`]).
//! * `npy`: read and write NumPy `.npy` stacks of any common dtype (module `io`).
//! * `nifti`: read and write NIfTI-1 and NIfTI-2 images, `.nii` and `.nii.gz`,
//!   with their spacing and affine (module `io::nifti`; implies `npy`).
//! * `cli`: the `confseg` command-line tool (implies the others).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod alloc;
pub mod calibrate;
pub mod cancel;
pub mod error;
pub mod evaluate;
pub mod float;
mod grid;
pub mod groups;
#[cfg(all(feature = "plot", feature = "npy"))]
pub mod html;
pub mod image;
#[cfg(feature = "npy")]
pub mod io;
#[cfg(feature = "serde")]
mod json;
pub mod levels;
pub mod mask;
#[cfg(any(feature = "npy", feature = "plot"))]
pub mod output;
#[cfg(feature = "npy")]
pub mod pipeline;
#[cfg(feature = "plot")]
pub mod plot;
pub mod quantile;
pub mod risk;
pub mod sets;
pub mod stream;
pub mod synthetic;
pub mod tolerance;
pub mod transform;

// The method's vocabulary at the root; everything else has one path, in
// its module.
pub use calibrate::{Calibration, Calibrator};
pub use error::{Error, Result, Warning};
pub use image::{Image, Spacing};
pub use levels::{Levels, Mode};
pub use quantile::{Alpha, Delta, Rank, Side, Threshold};
pub use sets::{ConfidenceSets, Sets};
pub use tolerance::{Tolerance, Tolerances};
pub use transform::{
    GaussianSmoothing, Identity, Metric, ScoreTransform, Sigmoid, SignedDistance, Transform, TwoClassSoftmax,
};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
