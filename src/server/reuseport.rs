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

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_port() -> (std::net::TcpListener, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        (l, a)
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
