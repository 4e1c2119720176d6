//! Writes that cannot wait forever: every write to a client or to an upstream goes
//! through [`write_all_within`], which fails with `TimedOut` when one write call moves
//! no byte for the no-progress timeout (nginx's `send_timeout`: between two successive
//! writes, not a bound on the whole transfer), or when an absolute deadline passes.
//!
//! It sits below `downstream` and `upstream`, which both use it. Reads keep their
//! own deadlines where they are made (the head, body and idle timeouts of a client
//! connection, the route's timeout upstream): docs/http.md lists every one.

use std::io;
use std::ops::Range;
use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRent;
use monoio::time::Instant;

/// How long a write may take.
#[derive(Clone, Copy, Debug)]
pub struct WriteDeadline {
    /// A write call that moves no byte for this long fails.
    pub no_progress: Duration,
    /// Nothing is written after this instant (e.g. the route's exchange deadline).
    pub until: Option<Instant>,
    /// `until` comes before any write call's no-progress bound (it is within
    /// `no_progress` of an instant already past), so no clock reading is needed.
    until_binds: bool,
}

impl WriteDeadline {
    /// Only the no-progress bound.
    pub fn idle(no_progress: Duration) -> Self {
        WriteDeadline {
            no_progress,
            until: None,
            until_binds: false,
        }
    }

    /// The no-progress bound and an absolute deadline `until`, for writes that
    /// start at `since` or later (an instant the caller read already): when
    /// `until` is within `no_progress` of `since`, it binds every write call.
    pub fn until(no_progress: Duration, until: Instant, since: Instant) -> Self {
        WriteDeadline {
            no_progress,
            until: Some(until),
            until_binds: until <= since + no_progress,
        }
    }

    /// The deadline of the next write call, starting now.
    fn next(&self) -> Instant {
        match self.until {
            Some(until) if self.until_binds => until,
            Some(until) => until.min(Instant::now() + self.no_progress),
            None => Instant::now() + self.no_progress,
        }
    }
}

/// Writes `slot[range]` to `to`, one write call after another, each bounded by
/// `limit`: the same write calls `write_all` makes, with a timer around each. The
/// buffer goes back into `slot` when the write ends, well or not; after a timeout it
/// stays with the cancelled write and `slot` is left empty (the caller closes that
/// connection anyway). A write of zero bytes is `WriteZero`; a timeout is `TimedOut`
/// ([`timed_out`]).
pub async fn write_all_within<W: AsyncWriteRent>(
    to: &mut W,
    slot: &mut Vec<u8>,
    range: Range<usize>,
    limit: WriteDeadline,
) -> io::Result<()> {
    let mut buf = std::mem::take(slot);
    let (mut at, end) = (range.start, range.end.min(buf.len()));
    while at < end {
        let write = to.write(buf.slice(at..end));
        let Ok((res, slice)) = monoio::time::timeout_at(limit.next(), write).await else {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer took no bytes within the write deadline",
            ));
        };
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                *slot = buf;
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => at += n,
            Err(e) => {
                *slot = buf;
                return Err(e);
            }
        }
    }
    *slot = buf;
    Ok(())
}

/// The error of a write that hit its deadline.
pub fn timed_out(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A peer that reads nothing: the write fills the socket buffers, then stalls
    /// for the no-progress timeout; a reading peer takes everything.
    #[test]
    fn a_stalled_write_times_out_and_a_read_one_completes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let (deaf, _) = listener.accept().expect("accept");
            let (mut reading, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            reading.read_to_end(&mut got).expect("read");
            deaf.set_nonblocking(true).expect("nonblocking");
            got.len()
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut deaf = monoio::net::TcpStream::connect(addr)
                .await
                .expect("connect");
            let mut reading = monoio::net::TcpStream::connect(addr)
                .await
                .expect("connect");
            let limit = WriteDeadline::idle(Duration::from_millis(200));
            let mut big = vec![7u8; 32 << 20];
            let len = big.len();
            let started = std::time::Instant::now();
            let e = write_all_within(&mut deaf, &mut big, 0..len, limit)
                .await
                .expect_err("nobody reads 32 MiB");
            assert!(timed_out(&e), "{e}");
            assert!(started.elapsed() >= Duration::from_millis(200));
            let mut small = vec![1u8; 100_000];
            write_all_within(&mut reading, &mut small, 10..100_000, limit)
                .await
                .expect("a reading peer takes it");
            assert_eq!(small.len(), 100_000, "the buffer comes back");
        });
        assert_eq!(reader.join().expect("reader"), 100_000 - 10);
    }

    /// An absolute deadline within the no-progress bound of a past instant binds
    /// every write; a later one gives way to the no-progress bound.
    #[test]
    fn the_earlier_bound_is_the_write_calls_deadline() {
        let since = Instant::now();
        let soon = since + Duration::from_secs(5);
        let binds = WriteDeadline::until(Duration::from_secs(10), soon, since);
        assert_eq!(binds.next(), soon);
        let far = since + Duration::from_secs(3600);
        let before = Instant::now();
        let idle = WriteDeadline::until(Duration::from_secs(1), far, since).next();
        assert!(idle >= before + Duration::from_secs(1) && idle < far);
        let late = WriteDeadline::until(Duration::from_secs(1), since, since);
        assert_eq!(late.next(), since, "a deadline already past stays past");
    }
}
