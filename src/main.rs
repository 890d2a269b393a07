//! The `kindsnap` binary: parse the command line, resolve settings once,
//! run the command, map errors to one line and an exit code.

mod cli;
mod ui;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
