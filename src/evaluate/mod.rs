//! Validation over repeated random splits, efficiency measures, baselines
//! and transform selection (METHOD.md §6–7).
//!
//! The paper validates its sets by splitting a pool of labelled images many
//! times into a calibration and a test part and reporting, per nominal
//! level, the share of test images whose sets cover the true mask, averaged
//! over the splits. This module does that for any pair of transforms and
//! any levels ([`Levels`](crate::Levels)), and for the comparators of METHOD.md §7 ([`Method`]).
//!
//! # How it is fast
//!
//! A [`Pool`] transforms every image **once**: it keeps each image's
//! calibration statistics `(tau_i, gamma_i)` and, per side, the transformed
//! scores sorted separately over the object and the background. A split is
//! then a conformal quantile of the calibration part (the crate's one
//! [`conformal_quantile`](crate::quantile::conformal_quantile), via
//! [`Calibration::thresholds`](crate::Calibration::thresholds)) and a count over the test part:
//!
//! * **Coverage from the statistics.** With the max combination, for a test
//!   image `j`,
//!   `I_j ⊆ Y_j  ⟺  tau_j <= lambda_I` and `Y_j ⊆ O_j  ⟺  gamma_j <= lambda_O`.
//!   Proof: `I_j ⊆ Y_j` means no background voxel `v` has `f_I(v) > lambda_I`,
//!   i.e. `f_I(v) <= lambda_I` for every background `v`, i.e.
//!   `max_{Y_j = 0} f_I = tau_j <= lambda_I` (an empty background gives
//!   `tau_j = -inf`, and the inclusion holds trivially). Likewise
//!   `Y_j ⊆ O_j` means `-f_O(v) <= lambda_O` for every object voxel, i.e.
//!   `max_{Y_j = 1} -f_O = gamma_j <= lambda_O`. For the max-joint mode both
//!   thresholds are `lambda`, so joint coverage is `max(tau_j, gamma_j) <= lambda`.
//!   (`tests/evaluate.rs` checks this against sets built by
//!   [`ConfidenceSets::predict`](crate::ConfidenceSets::predict).)
//! * **Sizes by table.** The inner set at threshold `a` is `{f_I > a}`,
//!   so `|I ∩ Y|` and `|I \ Y|` are counts of sorted object and background
//!   values above `a`; the same holds for the outer set `{f_O >= -lambda_O}`.
//!   Thresholds are order statistics of the pool (for the conformal method,
//!   of the pool's statistics, at ranks near the level's quantile), so the
//!   splits of a batch meet few distinct values: every image is counted once
//!   at each of them (a binary search), and a split's test images look their
//!   counts up. The conformal thresholds of all modes and levels of a split
//!   come from its calibration statistics sorted once.
//! * **Splits in parallel.** Splits are drawn in order from one seeded
//!   generator, in batches; with `rayon` the batch's thresholds and set
//!   sizes are computed in parallel, each split summing over its test images
//!   in order, and the per-split results are folded into the report in split
//!   order: the reports are the same bit for bit on any number of threads.
//!   The per-split coverages are kept as histograms, so memory does not grow
//!   with the number of splits.
//! * **Geometry memoized.** Diameters and Hausdorff distances need the sets
//!   themselves. Thresholds are order statistics of the pool's statistics,
//!   so with discrete scores each image meets only a few distinct
//!   thresholds across splits: the geometry is computed once per distinct
//!   `(image, set, threshold)` (in parallel with `rayon`) and looked up for
//!   every split, on the splits chosen by [`Geometry`] (default: the first
//!   20; with continuous scores nearly every split brings new thresholds,
//!   and 20 splits of a few hundred test images already average thousands
//!   of sets).
//!
//! Every baseline produces its sets in the same form, `{g_I > a}` and
//! `{g_O >= b}` for per-image fields `g` (see [`baselines`]), so all methods
//! are measured by the same code on the same splits.
//!
//! ```
//! use confseg::evaluate::{Method, Pool, Splits, Validation};
//! use confseg::{synthetic::Synthetic, Alpha, Calibrator, Identity, Levels};
//! use confseg::levels::ModeKind;
//!
//! let (scores, masks) = Synthetic::new([24, 24]).seed(3).stack(0..150);
//! let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0)?;
//! let validation = Validation::new(vec![Alpha::new(0.1)?, Alpha::new(0.2)?], Splits::new(100, 200, 7)?);
//! let max = Levels { mode: ModeKind::Max, ..Levels::default() };
//! let reports = validation.run(&pool, &[Method::Conformal(max)])?;
//! for r in &reports {
//!     println!("{}: alpha {} joint coverage {:.3}", r.method, r.alpha, r.joint_coverage);
//! }
//! # Ok::<(), confseg::Error>(())
//! ```
//!
//! # Where things are
//!
//! The rooms follow the method: [`Pool`] (`pool`) transforms every image
//! once; [`Splits`] (`splits`) draws the calibration and test parts;
//! [`baselines`] gives each method's thresholds on a split; [`Validation`]
//! (`validation`) runs the splits in batches and counts coverage and set
//! sizes per split; `geometry` measures the sets of the first splits;
//! [`Report`] (`report`) holds what comes out, with [`table`].
//! [`diagnostics`], [`select`] and [`structures`] build on these.

// 1. the pool: every image transformed once
mod pool;
// 2. the splits
mod splits;
// 3. the methods: thresholds of a split
pub mod baselines;
// 4. the run over the splits, with coverage and set sizes per split
mod validation;
// 5. geometry of the sets
mod geometry;
// 6. the reports
mod report;

mod interval;

pub mod diagnostics;
pub mod select;
pub mod structures;

pub use baselines::{Method, MethodKind};
pub use interval::clopper_pearson;
pub use pool::Pool;
pub use report::{table, Efficiency, Report, SplitRecord, Spread};
pub use splits::{Splits, MAX_SPLITS};
pub use validation::{Geometry, Progress, Validation, MAX_LEVELS, MAX_RECORDED_SPLITS};

pub(crate) use pool::{count_above, count_at_least, Field};
pub(crate) use validation::{FieldId, Nominal, SplitSets};
