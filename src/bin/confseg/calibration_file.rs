//! The calibration JSON file that `calibrate` writes and `predict` reads:
//! the library's [`Fitted`] sets with their pipeline record (see
//! `confseg::pipeline::record`).

use confseg::pipeline::Fitted;
use confseg::{ConfidenceSets, ScoreTransform};

/// Fitted sets as the CLI uses them.
pub type Sets = ConfidenceSets<ScoreTransform, ScoreTransform>;

/// The calibration file of one structure.
pub type CalibrationFile = Fitted<Sets>;
