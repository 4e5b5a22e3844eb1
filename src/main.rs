//! The `backstop` command: a thin edge over the library. Parses arguments, reads files, prints,
//! and maps outcomes to exit codes (0 ok, 1 problems found or failure, 2 bad input).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
