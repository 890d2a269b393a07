//! The `kindsnap` binary: parse the command line, resolve settings once,
//! run the command, map errors to one line and an exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
