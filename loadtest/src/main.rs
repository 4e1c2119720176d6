//! `portico-load`: Portico's bundled load tool.
//!
//! Subcommands:
//! - `serve`: a fast HTTP/1.1 test and benchmark upstream, HTTPS with `--tls`
//!   (`serve/`);
//! - `run`: the load generator, closed or open loop, HdrHistogram latencies, http and
//!   https, HTTP/1.1 and HTTP/2 (`run/`);
//! - `plot`: latency-by-percentile SVG charts from `.hgrm` files (`plot/`);
//! - `token`: an HS256 JWT for trying a gateway's JWT routes (`token.rs`).
//!
//! `tls/` is the TLS both sides share (rustls on ring, over monoio).
//!
//! Exit status: 0 on success, 2 for bad input (options, files, an unreachable
//! target), 1 when something fails later.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

mod cpus;
mod hgrm;
mod plot;
mod run;
mod serve;
mod tls;
mod token;

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
    /// Load an HTTP/1.1 or HTTP/2 server (http or https): closed loop (-c) or open
    /// loop (--rate), latency percentiles from HdrHistogram.
    Run(run::RunArgs),
    /// Draw latency-by-percentile charts (SVG) from .hgrm files.
    Plot(plot::PlotArgs),
    /// Run a fast HTTP/1.1 test upstream (fixed body, echo, delays, stalls; HTTPS
    /// with --tls).
    Serve(serve::ServeArgs),
    /// Print an HS256 JWT signed with a secret from a file or an environment
    /// variable (for trying JWT routes, e.g. scripts/demo).
    Token(token::TokenArgs),
}

/// How a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// The user asked for something impossible: exit status 2.
    BadInput(String),
    /// Something went wrong while working: exit status 1.
    Failed(String),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            eprintln!("portico-load: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Token(args) => token::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(message)) => {
            eprintln!("portico-load: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("portico-load: {message}");
            ExitCode::FAILURE
        }
    }
}

/// clap's multi-line usage error as one line: "error: " and the "try --help" hint
/// dropped, the rest joined.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}
