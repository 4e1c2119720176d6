//! What an accept loop does when the process runs out of file descriptors
//! (`accept` fails with `EMFILE` or `ENFILE`).
//!
//! The failed connection stays in the kernel's accept queue, so a loop that just
//! retries spins, and one that waits leaves the clients hanging with no answer. The
//! classic remedy (libev, nginx, HAProxy): keep one spare descriptor open. When
//! accept fails for lack of descriptors, close the spare, accept the waiting client
//! with the descriptor that frees, answer it `503` (plaintext; a TLS client is
//! closed, as a handshake would need more), close it and reopen the spare. Workers
//! are threads of one process sharing one descriptor table, so the sequence runs
//! under a process-wide lock (only while descriptors are short): another worker's
//! accept cannot take the freed descriptor in between. Meanwhile the failures are
//! counted (`accept_fd_exhausted`), logged at most once per [`LOG_EVERY`] with the
//! count since the last line, and, when even the spare cannot be had, the loop
//! backs off (10 ms doubling to 500 ms) instead of spinning.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one log line per accept loop this often while descriptors are short.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Taken by an accept loop for one [`FdShortage::take_one`].
static SPARE_TURN: Mutex<()> = Mutex::new(());

/// True for the errors that mean "no descriptor to put the connection in".
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// What [`FdShortage::take_one`] did with the next waiting client.
pub enum Taken {
    /// A descriptor was free again: the client is accepted, to be served.
    Served(TcpStream, SocketAddr),
    /// Still short: the client was refused with the spare descriptor.
    Refused(io::Error),
    /// Still short, and the spare is gone (another thread took the descriptor it
    /// freed once); it is reopened as soon as a descriptor frees.
    NoSpare(io::Error),
    /// Nobody was waiting after all.
    Nobody,
}

/// One accept loop's spare descriptor, log throttle and backoff.
pub struct FdShortage {
    spare: Option<File>,
    failures_since_log: u64,
    last_log: Option<Instant>,
    backoff: Duration,
}

impl FdShortage {
    /// Opens the spare descriptor (`/dev/null`); without one, only backoff is left.
    pub fn new() -> FdShortage {
        FdShortage {
            spare: open_spare(),
            failures_since_log: 0,
            last_log: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Notes a failed accept; logs if the last line is older than [`LOG_EVERY`].
    pub fn note_failure(&mut self, worker: usize, error: &io::Error) {
        self.failures_since_log += 1;
        let now = Instant::now();
        if self.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            return;
        }
        tracing::warn!(
            worker,
            "accept failed: {error}; {} time(s) since the last such line. Waiting clients \
             get 503 until descriptors free up; raise the descriptor limit (see \
             docs/operations.md, \"File descriptors\")",
            self.failures_since_log
        );
        self.failures_since_log = 0;
        self.last_log = Some(now);
    }

    /// Takes the next waiting client with `accept` (a non-blocking accept): hands
    /// it back to be served if a descriptor is free, else refuses it with the spare
    /// descriptor, writing `answer` (when given) before closing it.
    pub fn take_one(
        &mut self,
        mut accept: impl FnMut() -> io::Result<(TcpStream, SocketAddr)>,
        answer: Option<&[u8]>,
    ) -> Taken {
        let _turn = SPARE_TURN.lock().unwrap_or_else(PoisonError::into_inner);
        self.restore_spare();
        match accept() {
            Ok((stream, peer)) => {
                self.recovered();
                Taken::Served(stream, peer)
            }
            Err(e) if is_fd_exhaustion(&e) => {
                if self.spare.take().is_none() {
                    return Taken::NoSpare(e);
                }
                let refused = match accept() {
                    Ok((stream, _)) => {
                        refuse(stream, answer);
                        true
                    }
                    Err(_) => false,
                };
                self.restore_spare();
                if refused {
                    Taken::Refused(e)
                } else {
                    Taken::Nobody
                }
            }
            Err(_) => Taken::Nobody,
        }
    }

    fn restore_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// How long to wait before the next accept when nothing could be done; doubles.
    pub fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// An accept succeeded: descriptors are back.
    pub fn recovered(&mut self) {
        self.backoff = FIRST_BACKOFF;
        self.restore_spare();
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Answers and closes a refused client without ever waiting: reads what it sent
/// so far (closing over unread bytes sends a reset that can discard the answer),
/// writes `answer` (a fresh socket's send buffer takes it at once), closes.
fn refuse(mut stream: TcpStream, answer: Option<&[u8]>) {
    let Some(answer) = answer else { return };
    let _ = stream.set_nonblocking(true);
    let _ = stream.read(&mut [0u8; 2048]);
    let _ = stream.write(answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut s = FdShortage::new();
        let waits: Vec<u64> = (0..8)
            .map(|_| s.next_backoff().as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 500, 500]);
        s.recovered();
        assert_eq!(s.next_backoff(), FIRST_BACKOFF);
    }

    #[test]
    fn a_client_is_refused_with_the_spare_while_short_and_served_after() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).expect("connect");
        let mut s = FdShortage::new();
        // The first accept "fails for lack of descriptors", the next one works.
        let mut calls = 0;
        let taken = s.take_one(
            || {
                calls += 1;
                match calls {
                    1 => Err(io::Error::from_raw_os_error(libc::EMFILE)),
                    _ => listener.accept(),
                }
            },
            Some(b"HTTP/1.1 503 x\r\n\r\n"),
        );
        assert!(matches!(taken, Taken::Refused(_)));
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("the refusal");
        assert_eq!(answer, "HTTP/1.1 503 x\r\n\r\n");
        assert!(s.spare.is_some(), "the spare is back");
        let _client = TcpStream::connect(addr).expect("connect");
        assert!(matches!(
            s.take_one(|| listener.accept(), None),
            Taken::Served(..)
        ));
        assert!(matches!(
            s.take_one(|| listener.accept(), None),
            Taken::Nobody
        ));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
