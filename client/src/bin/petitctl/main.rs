//! `petitctl`: parse the command line, run the command, turn the outcome into an exit
//! code (see `EXIT_CODES` in cli.rs).

mod cli;
mod commands;
mod exit;
mod out;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Usage errors print clap's message and exit 2.
    let cli = cli::Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|err| err.exit());
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if err.should_report() {
                let _ = writeln!(std::io::stderr(), "error: {err}");
            }
            err.exit_code()
        }
    };
    ExitCode::from(code)
}
