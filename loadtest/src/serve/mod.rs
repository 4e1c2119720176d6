//! `portico-load serve`: a fast HTTP/1.1 upstream for tests and benchmarks.
//!
//! One thread per worker, each a monoio runtime (io_uring, epoll fallback) with its
//! own SO_REUSEPORT listener, optionally pinned to a CPU. The connection loop lives in
//! `conn.rs`, request-head parsing in `request.rs`, response bytes in `response.rs`,
//! the echo JSON in `echo.rs`, and HTTPS (`--tls`) in `tls.rs`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use clap::Args;
use monoio::net::{ListenerOpts, TcpListener};
use monoio::{FusionRuntime, RuntimeBuilder};
use rustls::ServerConfig;

mod conn;
mod echo;
mod request;
mod response;
mod tls;

use crate::cpus::CpuList;
use crate::Failure;
use response::FixedResponses;
use tls::ServerTls;

/// Options of `portico-load serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, shared by all workers).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,

    /// Size of the fixed response body (bytes of 'x', content-type text/plain).
    #[arg(long, default_value_t = 100)]
    pub body_bytes: u64,

    /// Wait this many milliseconds before answering each request.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,

    /// Answer with a JSON description of the request instead of the fixed body.
    #[arg(long)]
    pub echo: bool,

    /// Every Nth request of a worker waits --stall-ms before answering (counted per worker).
    #[arg(long, requires = "stall_ms", value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_every: Option<u64>,

    /// Length of a stall in milliseconds (used with --stall-every).
    #[arg(long, requires = "stall_every")]
    pub stall_ms: Option<u64>,

    /// Number of worker threads, each with its own runtime and listener.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: u64,

    /// CPUs to pin workers to, e.g. `0`, `0,1` or `0-3`; worker i gets cpu[i % len].
    #[arg(long, value_parser = CpuList::parse)]
    pub cpus: Option<CpuList>,

    /// Serve HTTPS (TLS 1.2 and 1.3, ALPN http/1.1) with --cert and --key.
    #[arg(long, requires_all = ["cert", "key"])]
    pub tls: bool,

    /// PEM certificate chain for --tls, leaf first.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the --cert certificate.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub key: Option<PathBuf>,
}

/// What every connection of a worker needs; one per worker, shared by `Rc`.
pub(crate) struct Worker {
    pub index: usize,
    pub args: ServeArgs,
    pub fixed: Option<FixedResponses>,
    pub hits: Arc<Hits>,
    /// `--tls`: this worker's rustls configuration.
    pub tls: Option<Arc<ServerConfig>>,
    /// Requests counted by this worker, for `--stall-every` (per worker by design).
    pub served: Cell<u64>,
}

impl Worker {
    /// Counts one served request and returns the extra delay it gets in milliseconds
    /// (the global `--delay-ms` plus a stall when it is the Nth request).
    pub fn count_request(&self) -> u64 {
        self.hits.add(self.index);
        let n = self.served.get() + 1;
        self.served.set(n);
        let stall = match (self.args.stall_every, self.args.stall_ms) {
            (Some(every), Some(ms)) if n.is_multiple_of(every) => ms,
            _ => 0,
        };
        self.args.delay_ms.saturating_add(stall)
    }
}

/// Requests served by the process, one cache-line-padded counter per worker so the
/// workers never write the same line; `/__hits` sums them.
pub(crate) struct Hits {
    slots: Box<[PaddedCounter]>,
}

#[repr(align(128))]
struct PaddedCounter(AtomicU64);

impl Hits {
    fn new(workers: usize) -> Self {
        Hits {
            slots: (0..workers)
                .map(|_| PaddedCounter(AtomicU64::new(0)))
                .collect(),
        }
    }

    fn add(&self, worker: usize) {
        if let Some(slot) = self.slots.get(worker) {
            slot.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Starts the workers, prints the listening line, and waits for SIGINT/SIGTERM.
/// Unusable `--cert`/`--key` files are bad input (exit status 2).
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) if args.tls => {
            Some(ServerTls::load(cert, key).map_err(Failure::BadInput)?)
        }
        _ => None,
    };
    start(args, tls.as_ref()).map_err(Failure::Failed)
}

fn start(args: ServeArgs, tls: Option<&ServerTls>) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let workers = usize::try_from(args.workers).map_err(|_| "too many workers".to_string())?;
    let hits = Arc::new(Hits::new(workers));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<SocketAddr, String>>();

    // The workers share their port through SO_REUSEPORT, which would also let this
    // server share it silently with another process that listens there with the
    // option (a gateway, another serve): check first that nobody listens on it.
    // std binds with SO_REUSEADDR only, so this fails exactly when a listener exists.
    if args.listen.port() != 0 {
        std::net::TcpListener::bind(args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    }
    // Worker 0 binds first so that `--listen host:0` resolves to one port that the
    // other workers then share through SO_REUSEPORT.
    let mut addr = args.listen;
    for index in 0..workers {
        let cpu = args.cpus.as_ref().map(|list| list.for_worker(index));
        let worker_args = ServeArgs {
            listen: addr,
            ..args.clone()
        };
        let hits = Arc::clone(&hits);
        let tls = tls.map(ServerTls::for_worker);
        let ready = ready_tx.clone();
        thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || worker_thread(index, cpu, worker_args, hits, tls, ready))
            .map_err(|e| format!("cannot spawn worker {index}: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("worker {index} exited before binding")),
        }
    }
    let scheme = if tls.is_some() { ", https" } else { "" };
    println!("portico-load serve listening on {addr} (workers {workers}{scheme})");

    if signals.forever().next().is_some() {
        std::process::exit(0);
    }
    Ok(())
}

fn worker_thread(
    index: usize,
    cpu: Option<usize>,
    args: ServeArgs,
    hits: Arc<Hits>,
    tls: Option<Arc<ServerConfig>>,
    ready: mpsc::Sender<Result<SocketAddr, String>>,
) {
    if let Some(id) = cpu {
        if !crate::cpus::pin_current_thread(id) {
            eprintln!("portico-load serve: worker {index}: cannot pin to cpu {id}");
        }
    }
    let runtime = RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("worker {index}: cannot build runtime: {e}")));
            return;
        }
    };
    let driver = match &runtime {
        FusionRuntime::Uring(_) => "io_uring",
        FusionRuntime::Legacy(_) => "epoll",
    };
    let pinned = cpu.map_or_else(|| "unpinned".to_string(), |c| format!("cpu {c}"));
    eprintln!("portico-load serve: worker {index}: {driver}, {pinned}");

    runtime.block_on(async move {
        let listener = match TcpListener::bind_with_config(args.listen, &ListenerOpts::new()) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen on {}: {e}", args.listen)));
                return;
            }
        };
        let bound = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot read listener address: {e}")));
                return;
            }
        };
        let fixed = usize::try_from(args.body_bytes)
            .ok()
            .and_then(FixedResponses::new);
        let worker = Rc::new(Worker {
            index,
            args,
            fixed,
            hits,
            tls,
            served: Cell::new(0),
        });
        let _ = ready.send(Ok(bound));
        drop(ready);
        accept_loop(listener, worker).await;
    });
}

async fn accept_loop(listener: TcpListener, worker: Rc<Worker>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(conn::serve_connection(stream, Rc::clone(&worker)));
            }
            // Out of file descriptors or a transient accept error: back off briefly.
            Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_every_nth_request_of_a_worker() {
        let args = ServeArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            body_bytes: 1,
            delay_ms: 5,
            echo: false,
            stall_every: Some(3),
            stall_ms: Some(100),
            workers: 1,
            cpus: None,
            tls: false,
            cert: None,
            key: None,
        };
        let worker = Worker {
            index: 0,
            args,
            fixed: None,
            hits: Arc::new(Hits::new(1)),
            tls: None,
            served: Cell::new(0),
        };
        let delays: Vec<u64> = (0..6).map(|_| worker.count_request()).collect();
        assert_eq!(delays, [5, 5, 105, 5, 5, 105]);
        assert_eq!(worker.hits.total(), 6);
    }
}
