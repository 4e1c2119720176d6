//! `portico-load run` options, and their checked form: the `Plan` a run follows.
//! Every mistake a user can make here is reported as one line (exit status 2).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::http2;
use super::requests::{is_token_byte, Header, Http2Requests, RequestSet};
use super::target::Target;
use super::tls::{TlsArgs, TlsClient};
use crate::cpus::CpuList;

/// Options of `portico-load run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// URL(s) to load, http[s]://host[:port]/path; several are used round robin (they
    /// must resolve to one address and share the scheme).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,

    /// Connections in total, spread over the threads.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub connections: u64,

    /// A new connection for every request (with `Connection: close`): for https a
    /// handshake per request, resumed unless --no-resume.
    #[arg(long)]
    pub new_connection: bool,

    /// Speak HTTP/2: over TLS with ALPN h2 for https URLs, h2c with prior knowledge
    /// for http URLs.
    #[arg(long)]
    pub http2: bool,

    /// With --http2: concurrent streams (requests in flight) per connection; in all,
    /// connections × streams are in flight. Default 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub streams: Option<u64>,

    /// Open loop: requests per second in total, sent at fixed intended times; latency
    /// counts from those times (coordinated omission corrected). Without it: closed loop.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Measured duration: 10s, 500ms, 2m, or plain seconds.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Unmeasured load before the measured duration.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// A request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = Header::parse)]
    pub headers: Vec<Header>,

    /// A file of "Name: value" lines, one per request in turn (cycled): e.g. 1,000 API
    /// keys or tokens. Blank lines are skipped.
    #[arg(long, value_name = "FILE")]
    pub header_file: Option<PathBuf>,

    /// Request method.
    #[arg(long, default_value = "GET", value_parser = parse_method)]
    pub method: String,

    /// Send this file as every request's body (with Content-Length).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Worker threads (default: one per --cpus entry, else 1).
    #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,

    /// CPUs to pin the worker threads to, e.g. `0`, `0,1` or `2-3`.
    #[arg(long, value_parser = CpuList::parse)]
    pub cpus: Option<CpuList>,

    /// A request without a complete response after this long is a timeout error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// No progress line (it is shown each second only when stdout is a terminal).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Write the latency distribution to FILE in HdrHistogram's percentile text
    /// format (milliseconds), for `portico-load plot`.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// How requests travel, with the requests pre-built for it.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// HTTP/1.1 keep-alive: a connection carries one request at a time (`http1.rs`).
    Http1(RequestSet),
    /// HTTP/2 (`http2.rs`): a connection carries `streams` requests at a time; h2c with
    /// prior knowledge for http URLs, ALPN h2 for https.
    Http2 {
        requests: Http2Requests,
        streams: u64,
    },
}

/// A checked run: what the workers and the report need.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub connections: u64,
    /// Open a new connection for every request.
    pub new_connection: bool,
    /// https URLs: the TLS client (a copy per worker, see `for_worker`).
    pub tls: Option<TlsClient>,
    pub threads: u64,
    pub cpus: Option<CpuList>,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub json: Option<PathBuf>,
    pub hgrm: Option<PathBuf>,
    /// No progress line.
    pub quiet: bool,
}

impl Plan {
    /// Checks the options, reads the files, resolves the URLs and makes sure the
    /// target accepts connections. `Err` is one line for the user.
    pub fn from_args(args: RunArgs) -> Result<Plan, String> {
        let targets = args
            .urls
            .iter()
            .map(|u| Target::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let addr = targets[0].addr;
        if let Some(other) = targets.iter().find(|t| t.addr != addr) {
            return Err(format!(
                "all URLs must go to one address: {} is {addr}, {} is {}",
                targets[0].url, other.url, other.addr
            ));
        }
        if let Some(other) = targets.iter().find(|t| t.tls != targets[0].tls) {
            return Err(format!(
                "http and https URLs cannot be mixed: {} and {}",
                targets[0].url, other.url
            ));
        }
        let streams = match (args.streams, args.http2) {
            (Some(_), false) => return Err(
                "--streams needs --http2 (HTTP/1.1 carries one request at a time per connection)"
                    .into(),
            ),
            (Some(n), true) if n > 1 && args.new_connection => {
                return Err(format!(
                "--new-connection carries one request per connection: it cannot have --streams {n}"
            ))
            }
            (streams, _) => streams.unwrap_or(1),
        };
        let tls = if targets[0].tls {
            Some(TlsClient::new(&args.tls, &targets, args.http2)?)
        } else if args.tls.any() {
            return Err(
                "--cacert, --insecure, --sni, --tls-version and --no-resume need https URLs".into(),
            );
        } else {
            None
        };
        let cycled = match &args.header_file {
            Some(path) => read_header_file(path)?,
            None => Vec::new(),
        };
        let body = match &args.body_file {
            Some(path) => Some(
                fs::read(path)
                    .map_err(|e| format!("cannot read --body-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        if args.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if args.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        if let Some(cpu) = args.cpus.as_ref().and_then(CpuList::first_unavailable) {
            return Err(format!(
                "--cpus: cpu {cpu} is not available to this process"
            ));
        }
        let threads = args
            .threads
            .unwrap_or_else(|| args.cpus.as_ref().map_or(1, |c| c.len() as u64))
            .min(args.connections);
        let protocol = if args.http2 {
            let requests = Http2Requests::new(
                &args.method,
                &targets,
                &args.headers,
                &cycled,
                body.as_deref(),
            )
            .map_err(|e| format!("--http2: {e}"))?;
            Protocol::Http2 { requests, streams }
        } else {
            Protocol::Http1(RequestSet::new(
                &args.method,
                &targets,
                &args.headers,
                &cycled,
                body.as_deref(),
                args.new_connection,
            ))
        };
        let check_timeout = args.timeout.min(Duration::from_secs(3));
        let socket = check_reachable(&targets[0], check_timeout)?;
        if let Some(tls) = &tls {
            tls.check(socket, &targets[0].url, check_timeout)?;
        }
        let plan = Plan {
            protocol,
            targets,
            addr,
            connections: args.connections,
            new_connection: args.new_connection,
            tls,
            threads,
            cpus: args.cpus,
            rate: args.rate,
            duration: args.duration,
            warmup: args.warmup,
            timeout: args.timeout,
            json: args.json,
            hgrm: args.hgrm,
            quiet: args.quiet,
        };
        if args.http2 {
            http2::check(&plan, check_timeout)?;
        }
        Ok(plan)
    }

    /// Requests each connection carries at a time.
    pub fn streams(&self) -> u64 {
        match self.protocol {
            Protocol::Http1(_) => 1,
            Protocol::Http2 { streams, .. } => streams,
        }
    }

    /// Lanes of the run (`loops.rs`): requests in flight at most, connections ×
    /// streams.
    pub fn lanes(&self) -> u64 {
        self.connections * self.streams()
    }

    /// The plan one worker thread follows: its own copy, with TLS session caches of
    /// its own.
    pub fn for_worker(&self) -> Plan {
        Plan {
            tls: self.tls.as_ref().map(TlsClient::for_worker),
            ..self.clone()
        }
    }

    /// The global indexes of the connections worker `index` drives.
    pub fn connections_of(&self, index: u64) -> std::ops::Range<u64> {
        let per = self.connections / self.threads;
        let extra = self.connections % self.threads;
        let start = index * per + index.min(extra);
        start..start + per + u64::from(index < extra)
    }
}

fn read_header_file(path: &PathBuf) -> Result<Vec<Header>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read --header-file {}: {e}", path.display()))?;
    let headers = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            Header::parse(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if headers.is_empty() {
        return Err(format!("--header-file {} has no headers", path.display()));
    }
    Ok(headers)
}

/// One blocking connect before the run, so an unreachable target is one clear line
/// instead of a run full of connect errors. The socket is kept for the TLS check.
fn check_reachable(target: &Target, timeout: Duration) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&target.addr, timeout)
        .map_err(|e| format!("cannot connect to {} ({}): {e}", target.url, target.addr))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("the rate must be more than 0 requests per second".into()),
        Err(_) => Err(format!("not a number: {text:?}")),
    }
}

fn parse_method(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.bytes().all(is_token_byte) {
        Ok(text.to_string())
    } else {
        Err(format!("not an HTTP method: {text:?}"))
    }
}

/// `10s`, `1.5s`, `500ms`, `250us`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("bad duration {text:?} (want e.g. 10s, 500ms, 2m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (want e.g. 10s, 500ms, 2m)"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .ok()
        .filter(|d| *d <= Duration::from_secs(7 * 24 * 3600))
        .ok_or_else(|| format!("duration out of range: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "10x", "-1s", "1e3s", "99999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_and_methods() {
        assert_eq!(parse_rate("2000"), Ok(2000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-5", "nan", "inf", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_method("PURGE").is_ok());
        assert!(parse_method("GE T").is_err());
        assert!(parse_method("").is_err());
    }

    #[test]
    fn connections_spread_over_threads() {
        let plan = |connections, threads| Plan {
            targets: Vec::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
            protocol: Protocol::Http1(RequestSet::new("GET", &[], &[], &[], None, false)),
            connections,
            new_connection: false,
            tls: None,
            threads,
            cpus: None,
            rate: None,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(1),
            json: None,
            hgrm: None,
            quiet: false,
        };
        let p = plan(10, 3);
        let ranges: Vec<_> = (0..3).map(|i| p.connections_of(i)).collect();
        assert_eq!(ranges, [0..4, 4..7, 7..10]);
        assert_eq!(plan(2, 2).connections_of(1), 1..2);
    }
}
