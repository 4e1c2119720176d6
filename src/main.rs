//! The `portico` command: run the gateway, check a configuration, ask a running
//! gateway to reload it, print the version.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment
/// is read after them and wins). Freed pages go back to the system within about a
/// second (`dirty_decay_ms`; jemalloc's default is 10 s), straight with
/// `MADV_DONTNEED` (`muzzy_decay_ms:0`: `MADV_FREE`d pages would still count in RSS
/// until the kernel needs them), and a background thread does it, so the memory of
/// a burst, or of connections that went idle, returns even to a worker that then
/// stays idle (docs/http.md, "Idle connections").
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static, NUL-terminated string.
    Some(unsafe { &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr() });

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
    /// Inspect this host with a configuration: print what will limit the gateway and
    /// what to change (docs/tuning.md); exit 0 when nothing does, 1 otherwise.
    /// Changes nothing.
    Doctor {
        #[arg(long, short, default_value = "config/portico.toml")]
        config: PathBuf,
    },
    /// Ask the running gateway to reload its configuration file (POST /config/reload
    /// on its admin listener, with the bearer token of `[admin] token_env` from this
    /// environment). Exit 0 when accepted (with --wait: promoted), 1 otherwise.
    Reload {
        /// The configuration file; its `[admin]` says where to call and which
        /// variable holds the token.
        #[arg(long, short, default_value = "config/portico.toml")]
        config: PathBuf,
        /// The admin listener's address, instead of the file's `[admin] listen`.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Wait for the canary's verdict (promoted or rolled back).
        #[arg(long)]
        wait: bool,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
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
        Command::Doctor { config } => {
            let snapshot = match portico::config::load(&config) {
                Ok(s) => s,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("portico doctor: the configuration must be valid first");
                    return ExitCode::FAILURE;
                }
            };
            let host = portico::doctor::Host::read(snapshot.server.runtime.ring_entries);
            let findings = portico::doctor::examine(&snapshot, &host);
            let (report, limited) =
                portico::doctor::render(&config.display().to_string(), &host, &findings);
            print!("{report}");
            if limited {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Reload {
            config,
            admin,
            wait,
            timeout_s,
        } => reload(&config, admin, wait, Duration::from_secs(timeout_s)),
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

/// `portico reload`: the admin address and token variable come from the file's
/// `[admin]` (read as plain TOML: the rest of the file may be what is wrong).
fn reload(config: &Path, admin: Option<SocketAddr>, wait: bool, timeout: Duration) -> ExitCode {
    let table: Option<toml::Table> = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| toml::from_str(&text).ok());
    let section = table.as_ref().and_then(|t| t.get("admin"));
    let field = |key: &str| section.and_then(|a| a.get(key)).and_then(|v| v.as_str());
    let Some(addr) = admin.or_else(|| field("listen").and_then(|l| l.parse().ok())) else {
        eprintln!(
            "{}: no [admin] listen address: give --admin ADDRESS",
            config.display()
        );
        return ExitCode::FAILURE;
    };
    let token = field("token_env").and_then(|name| std::env::var(name).ok());
    let call = portico::admin::reload_client::AdminCall {
        admin: addr,
        action: portico::admin::ControlAction::Reload,
        token,
        wait,
        timeout,
    };
    match call.send() {
        Ok((status, body)) => {
            println!("{}", body.trim_end());
            match status {
                200 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (the access log owns stdout); `RUST_LOG` overrides `[log] level`.
/// Colours only on a terminal: a file, a pipe or the journal gets plain text.
fn init_logging(level: &str) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
