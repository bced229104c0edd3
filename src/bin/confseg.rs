//! The `confseg` command-line tool (feature `cli`); see `confseg --help`.
//!
//! The subcommands live in `src/bin/confseg/` (`mod.rs` and one file per
//! subcommand).

#[path = "confseg/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
