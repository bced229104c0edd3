//! Per-subject outputs of a prediction: each subject's inner and outer
//! sets in its own format (NIfTI with its header and affine, or `.npy`),
//! and viewer label maps (0 outside, 1 the band `O \ I`, 2 the inner set)
//! with the colour tables ITK-SNAP and 3D Slicer load. Everything is
//! staged in a [`Publication`], so that a run writes all its files or none.
//!
//! ```no_run
//! use std::sync::Arc;
//! use confseg::io::cohort::{Cohort, Pairing};
//! use confseg::io::Publication;
//! use confseg::pipeline::subjects::SubjectOutputs;
//! use confseg::pipeline::{Extras, Fitted, Reader};
//! use confseg::ConfidenceSets;
//!
//! let file: Fitted<ConfidenceSets> = Fitted::read("cal.json".as_ref())?;
//! let cohort = Arc::new(Cohort::discover("new/", None, &Pairing::default())?);
//! let source = file.record.open_subjects(Arc::clone(&cohort))?;
//! let outputs = SubjectOutputs::new(cohort, Some("sets".into()), Some("viewer".into()))?;
//! let reader = Arc::new(Reader::new(source));
//! let mut run = Publication::new();
//! let all: Vec<usize> = (0..reader.scores.n_images()).collect();
//! reader.predict(&file.sets, &all, Extras::default(), |i, p| outputs.stage(i, &p.sets, &mut run))?;
//! outputs.finish(&mut run)?;
//! run.publish()?;
//! # Ok::<(), confseg::Error>(())
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use ndarray::IxDyn;

use crate::error::Result;
use crate::io::cohort::Cohort;
use crate::io::Publication;
use crate::sets::Sets;

/// Where a cohort's sets go: `ID_inner` and `ID_outer` per subject in
/// `sets`, `ID_sets` label maps (and the two colour tables) in
/// `label_maps`.
#[derive(Debug, Clone)]
pub struct SubjectOutputs {
    cohort: Arc<Cohort>,
    sets: Option<PathBuf>,
    label_maps: Option<PathBuf>,
}

impl SubjectOutputs {
    /// Outputs for `cohort`'s subjects in the folders given (created if
    /// missing).
    ///
    /// # Errors
    /// A folder that holds the cohort's input files (outputs would be read
    /// as subjects next time, or replace an input); a folder that cannot be
    /// created.
    pub fn new(
        cohort: Arc<Cohort>,
        sets: Option<PathBuf>,
        label_maps: Option<PathBuf>,
    ) -> Result<SubjectOutputs> {
        for d in [&sets, &label_maps].into_iter().flatten() {
            cohort.check_output_folder(d)?;
            std::fs::create_dir_all(d).map_err(|e| crate::io::os_error(d, &e))?;
        }
        Ok(SubjectOutputs { cohort, sets, label_maps })
    }

    /// Stage subject `i`'s outputs in `run`.
    ///
    /// # Errors
    /// An output that cannot be written (its header, a temporary file).
    pub fn stage(&self, i: usize, s: &Sets<IxDyn>, run: &mut Publication) -> Result<()> {
        let cohort = &self.cohort;
        if let Some(dir) = &self.sets {
            let out = |suffix: &str, set: &ndarray::ArrayD<bool>| {
                cohort.mask_output(i, &cohort.output_path(i, dir, suffix)?, &set.mapv(u8::from))
            };
            run.stage_all(vec![out("_inner", &s.inner)?, out("_outer", &s.outer)?])?;
        }
        if let Some(dir) = &self.label_maps {
            run.stage(cohort.label_map_output(i, &cohort.output_path(i, dir, "_sets")?, &s.label_map())?)?;
        }
        Ok(())
    }

    /// Stage the colour tables next to the label maps.
    ///
    /// # Errors
    /// A table that cannot be staged.
    pub fn finish(&self, run: &mut Publication) -> Result<()> {
        match &self.label_maps {
            Some(dir) => crate::io::viewer::stage_tables(dir, run),
            None => Ok(()),
        }
    }

    /// The folder of the sets, if any.
    #[must_use]
    pub fn sets_dir(&self) -> Option<&std::path::Path> {
        self.sets.as_deref()
    }

    /// The folder of the label maps, if any.
    #[must_use]
    pub fn label_maps_dir(&self) -> Option<&std::path::Path> {
        self.label_maps.as_deref()
    }
}
