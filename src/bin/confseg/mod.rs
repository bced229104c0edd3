//! `confseg`: conformal confidence sets for image segmentation, from the
//! command line.
//!
//! Inputs are NumPy `.npy` stacks, batch-first `(N, spatial...)`, of any
//! common dtype. Subcommands:
//!
//! * `calibrate`: masks + scores -> thresholds, written as JSON;
//! * `predict`: JSON + new scores -> inner and outer masks (`uint8` `.npy`);
//! * `transform`: write transformed scores, to inspect or compare;
//! * `demo`: the whole pipeline on built-in synthetic data;
//! * `report`: one self-contained HTML file about fitted sets on new images.
//!
//! Errors print one line, `error: <file>: <problem>`, and exit with code 1
//! (code 2 for command-line usage errors); outputs are written atomically.
//!
//! # Adding a subcommand
//!
//! One module file under `src/bin/confseg/` (beside this `mod.rs`) with an `Args` struct (clap
//! derive) and a `run(args) -> anyhow::Result<()>` function, one variant of
//! [`Command`] and one arm in [`run`]. Shared pieces live in
//! [`inputs`] (score/mask files, selection, transform options, loading and
//! calibrating), [`levels`] (`--alpha`/`--mode`/... into the library's
//! [`confseg::Levels`] request), [`calibration_file`] (the JSON file) and [`report`]
//! (summaries, warnings, progress, usage errors).

mod calibrate;
mod calibration_file;
mod demo;
mod figures;
mod html;
mod inputs;
mod levels;
mod predict;
mod report;
mod select;
mod structures;
mod transform;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use confseg::pipeline::record::FittedFile;

/// Conformal confidence sets for image segmentation: inner and outer sets
/// with P(inner ⊆ truth ⊆ outer) >= 1 - alpha.
#[derive(Debug, Parser)]
#[command(name = "confseg", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Calibrate thresholds on labelled images and write them as JSON.
    Calibrate(calibrate::Args),
    /// Inner and outer sets for new images from a calibration file.
    Predict(predict::Args),
    /// Write a transformed score stack (same shape, float).
    Transform(transform::Args),
    /// Run the whole pipeline on built-in synthetic data and report coverage.
    Demo(demo::Args),
    /// Coverage and efficiency over repeated random calibration/test splits, with baselines.
    Validate(validate::Args),
    /// Rank candidate transforms on a learning set and suggest the alpha split.
    Select(select::Args),
    /// Write one self-contained HTML report: guarantee, histograms, coverage, slices with contours.
    Report(html::Args),
}

/// Dispatch one subcommand.
fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Calibrate(args) if args.inputs.structures.any() => structures::calibrate(&args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Predict(args) => {
            predict::check_outputs(&args)?;
            match FittedFile::read(&args.calibration)? {
                FittedFile::Sets(file) => predict::run(args, predict::Loaded::One(*file)),
                FittedFile::Groups(file) => predict::run(args, predict::Loaded::Grouped(*file)),
                FittedFile::Structures(file) => structures::predict(&args, &file),
            }
        }
        Command::Transform(args) => transform::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Validate(args) if args.inputs.structures.any() => structures::validate(&args),
        Command::Validate(args) => validate::run(args),
        Command::Select(args) => select::run(args),
        Command::Report(args) => html::run(args),
    }
}

/// Parse the command line, run it, and map errors to one line and an exit code.
pub fn main() -> ExitCode {
    // Ctrl-C, SIGTERM, SIGHUP: remove the temporary files of unfinished
    // outputs (their destinations are untouched), then exit as interrupted.
    let _ = ctrlc::set_handler(|| {
        confseg::io::remove_temporaries();
        eprintln!("error: interrupted; unfinished outputs were removed");
        std::process::exit(130);
    });
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<report::ReaderGone>() => ExitCode::SUCCESS,
        Err(e) => {
            // one line whatever a path or a value holds (a file name with a newline)
            let message: String = format!("{e:#}")
                .chars()
                .flat_map(|c| if c.is_control() { c.escape_debug().collect() } else { vec![c] })
                .collect();
            eprintln!("error: {message}");
            // options that do not fit together, found by the library, are usage errors too
            let levels = matches!(
                e.downcast_ref::<confseg::Error>(),
                Some(confseg::Error::Levels(_) | confseg::Error::Options { .. })
            );
            if e.is::<report::UsageError>() || levels {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
