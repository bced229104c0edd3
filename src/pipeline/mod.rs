//! From a user's files and words to the method: the one data path that the
//! CLI, the Python package and Rust embedders share.
//!
//! * [`source`]: score and mask files (stacks, already transformed stacks,
//!   per-subject folders, globs and manifests) opened for streaming, the
//!   class axis of two-class logits (counted on one image's own axes, for
//!   stacks and subjects alike), spacing precedence, and the [`Reader`]
//!   whose images are read on worker threads;
//! * [`inputs`]: a calibration [`Request`] opened and cross-checked once
//!   into [`Inputs`], which compute the calibration statistics, the risk
//!   statistics and the validation pool in the files' native precision,
//!   and warn about the inputs;
//! * [`structures`]: the same for several structures of one label map
//!   (where their scores sit in the output, and their calibration);
//! * [`record`] (feature `serde`): the pipeline [`Record`] saved next to
//!   fitted sets ([`Fitted`]), so that prediction redoes the same steps.
//!
//! ```no_run
//! use confseg::io::cohort::Pairing;
//! use confseg::pipeline::{Request, ScoreFiles};
//! use confseg::{Alpha, Mode};
//!
//! // MONAI's two-class channel-last volumes (X, Y, Z, 2) and their label maps
//! let mut request = Request::new(
//!     ScoreFiles::Subjects { scores: "out/*_trans.nii.gz".into(), pairing: Pairing::new("_trans", "") },
//!     Some("labels/".into()),
//! );
//! request.class_axis = Some(-1);
//! let inputs = request.open()?;
//! let calibration = inputs.statistics()?;
//! let sets = inputs.calibrator.fit(&calibration, Mode::max(Alpha::new(0.1)?))?;
//! for warning in inputs.warnings().iter().chain(&calibration.warnings(&sets)) {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok::<(), confseg::Error>(())
//! ```

pub mod chunked;
pub mod inputs;
pub mod predict;
#[cfg(feature = "serde")]
pub mod record;
pub mod source;
pub mod structures;
pub mod subjects;

pub use inputs::{image_groups, GroupFit, Grouping, Inputs, Request, Selection, SpacingSource};
pub use predict::{Extras, Prediction, SubjectTable, Summary};
#[cfg(feature = "serde")]
pub use record::{Fitted, InputKind, Record};
pub use source::{resolve_axis, MaskSource, Reader, ScoreFiles, ScoreSource, Tick};
