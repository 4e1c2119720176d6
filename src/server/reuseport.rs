//! Listening sockets: the start-up check that no other process listens on an
//! address, and the `SO_REUSEPORT` binding of the data and admin listeners.
//!
//! Every worker binds its own socket on each data address with `SO_REUSEPORT`, and
//! the kernel spreads new connections over all sockets bound so — including those of
//! *another* process with the same user. A second gateway started by mistake on the
//! same address would silently take a share of the connections, and reset the ones
//! waiting in its queues when it exits. So before binding, each address is probed:
//! a socket with `SO_REUSEADDR` but without `SO_REUSEPORT` is bound to it and closed
//! again. The bind fails with `EADDRINUSE` exactly when some socket listens on an
//! overlapping address (the same one; a wildcard `0.0.0.0` or `[::]` against a
//! specific one, either way; a dual-stack `[::]` against IPv4), while sockets left
//! in `TIME_WAIT` by an earlier run do not count. `portico run --takeover` skips the
//! probe and joins the other process's sockets on purpose (docs/operations.md).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of the admin listener (health checks and scrapes, one at a time).
pub const ADMIN_BACKLOG: i32 = 128;

/// Fails with a clear message when another socket listens on (or overlaps) `addr`.
/// `what` names the listener in the message ("listen", "the admin listener on").
pub fn check_nobody_listens(addr: SocketAddr, what: &str) -> Result<(), String> {
    match probe(addr) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(format!(
            "cannot {what} {addr}: another process already listens there ({e}). \
             Two gateways on one address would split its connections between them: \
             stop the other one, or start with --takeover to share the address on \
             purpose during an upgrade (see docs/operations.md)"
        )),
        Err(e) => Err(format!("cannot {what} {addr}: {e}")),
    }
}

fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
    // Dropped here: closed without ever listening.
}

/// Binds a listening socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`),
/// non-blocking, with `backlog` (as monoio's own `bind_with_config` does, so that
/// either driver can take it over with `TcpListener::from_std`).
pub fn bind_shared(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// How many sockets listen on exactly `addr`, in any process of this network
/// namespace (from `/proc/net/tcp` or `/proc/net/tcp6`); `None` where that cannot
/// be read. After binding, a count above the gateway's own sockets means another
/// process bound the same address with `SO_REUSEPORT` in the moment between the
/// start-up check and the bind, and would silently share its connections.
pub fn listeners_on(addr: SocketAddr) -> Option<usize> {
    let table = match addr {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    Some(count_listeners(&text, addr))
}

/// Counts the `LISTEN` (state `0A`) entries of a `/proc/net/tcp{,6}` table whose
/// local address is `addr`.
fn count_listeners(table: &str, addr: SocketAddr) -> usize {
    let want = proc_address(addr);
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1);
            let state = fields.nth(1);
            state == Some("0A") && local.is_some_and(|l| l.eq_ignore_ascii_case(&want))
        })
        .count()
}

/// `addr` as `/proc/net/tcp{,6}` prints it: the address as 32-bit words in host
/// (little-endian) order, hex, then `:` and the port in hex.
fn proc_address(addr: SocketAddr) -> String {
    let words: Vec<u32> = match addr.ip() {
        std::net::IpAddr::V4(v4) => vec![u32::from_ne_bytes(v4.octets())],
        std::net::IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    let mut out: String = words.iter().map(|w| format!("{w:08X}")).collect();
    out.push_str(&format!(":{:04X}", addr.port()));
    out
}

/// Fails when more sockets listen on `addr` than the `ours` this process bound.
pub fn check_alone(addr: SocketAddr, ours: usize, what: &str) -> Result<(), String> {
    match listeners_on(addr) {
        Some(n) if n > ours => Err(format!(
            "cannot {what} {addr}: another process started listening there at the same              moment ({n} sockets, {ours} of them ours); it would split the connections              with this one. Start again, or use --takeover to share the address on              purpose (see docs/operations.md)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_port() -> (std::net::TcpListener, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        (l, a)
    }

    #[test]
    fn listening_sockets_are_counted_per_address() {
        let (_a, addr) = loopback_port();
        assert_eq!(listeners_on(addr), Some(1));
        let joined = bind_shared(addr, 16);
        // The first listener was bound without SO_REUSEPORT: nobody can join it.
        assert!(joined.is_err());
        let free = {
            let (l, a) = loopback_port();
            drop(l);
            a
        };
        let one = bind_shared(free, 16).expect("bind");
        let two = bind_shared(free, 16).expect("join");
        assert_eq!(listeners_on(free), Some(2));
        assert!(check_alone(free, 2, "listen on").is_ok());
        assert!(check_alone(free, 1, "listen on").is_err());
        drop((one, two));
        assert_eq!(
            proc_address("127.0.0.1:8080".parse().unwrap()),
            "0100007F:1F90"
        );
    }

    #[test]
    fn a_listener_on_the_address_or_a_wildcard_over_it_is_found() {
        let (held, addr) = loopback_port();
        let err = check_nobody_listens(addr, "listen on").expect_err("taken");
        assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
        assert!(err.contains("--takeover"), "{err}");
        let wildcard: SocketAddr = format!("0.0.0.0:{}", addr.port()).parse().expect("addr");
        assert!(check_nobody_listens(wildcard, "listen on").is_err());
        drop(held);
        assert!(check_nobody_listens(addr, "listen on").is_ok());
    }

    #[test]
    fn our_own_reuseport_sockets_share_but_are_seen_by_the_probe() {
        let (held, addr) = loopback_port();
        drop(held);
        let a = bind_shared(addr, 16).expect("first");
        let b = bind_shared(addr, 16).expect("a second SO_REUSEPORT socket joins");
        assert!(check_nobody_listens(addr, "listen on").is_err());
        drop((a, b));
    }
}
