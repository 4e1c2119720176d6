//! The `portico` command: run the gateway, check a configuration, print the version.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "portico",
    version,
    about = "A thread-per-core API gateway on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "config/portico.toml")]
        config: PathBuf,
        /// Share the listen and admin addresses with the gateway already listening
        /// there, for a binary upgrade (docs/operations.md); without it, start-up
        /// refuses an address another process listens on.
        #[arg(long)]
        takeover: bool,
    },
    /// Validate a configuration file: exit 0, or print every problem as file:line:col and exit 1.
    Check {
        #[arg(long, short, default_value = "config/portico.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match portico::config::load(&config) {
            Ok(snapshot) => {
                for warning in &snapshot.warnings {
                    eprintln!("{warning}");
                }
                println!(
                    "{}: ok ({} route(s), {} upstream(s))",
                    config.display(),
                    snapshot.routes.len(),
                    snapshot.upstreams.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, takeover } => {
            let snapshot = match portico::config::load(&config) {
                Ok(s) => s,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&snapshot.log.level);
            for warning in &snapshot.warnings {
                tracing::warn!("{warning}");
            }
            let options = portico::server::RunOptions { takeover };
            match portico::server::run(Arc::new(snapshot), options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs go to stderr (the access log owns stdout); `RUST_LOG` overrides `[log] level`.
fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
