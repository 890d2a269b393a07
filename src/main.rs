//! The `kindsnap` binary: parse the command line, resolve settings once,
//! run the command, map errors to one line and an exit code.

mod cli;

// Entities are built on worker threads and freed on the main one; the
// system allocator is slow at exactly that.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
