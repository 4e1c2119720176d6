//! `portico-load`: Portico's bundled load tool.
//!
//! Subcommands:
//! - `serve`: a fast HTTP/1.1 test and benchmark upstream (see `serve/`).
//!
//! `run` (load generator) and `plot` will join `Command` later.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod serve;

#[derive(Parser, Debug)]
#[command(
    name = "portico-load",
    version,
    about = "Portico's load tool and test upstream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a fast HTTP/1.1 test upstream (fixed body, echo, delays, stalls).
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("portico-load: {message}");
            ExitCode::FAILURE
        }
    }
}
