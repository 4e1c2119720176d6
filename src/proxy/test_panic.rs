//! Panics on purpose, for the tests of panic isolation and worker restarts: only
//! in debug builds (never compiled into a release binary), and only when the
//! process runs with `PORTICO_TEST_PANICS=1`.
//!
//! - A request routed to a route named `test-panic-connection` panics while it is
//!   served: the panic guard of its connection must catch it.
//! - One routed to `test-panic-worker` makes its worker's next tick panic, outside
//!   any connection: the worker thread dies, and the control thread must restart it.
//! - A configuration with a route named `test-panic-install` panics while a worker
//!   builds its generation: the worker must go on with the one it had.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static DIE_ON_TICK: Cell<bool> = const { Cell::new(false) };
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("PORTICO_TEST_PANICS").is_ok_and(|v| v == "1"))
}

/// Called with the name of the route a request matched.
pub fn on_route(name: &str) {
    if !enabled() {
        return;
    }
    match name {
        "test-panic-connection" => panic!("test panic while serving a connection"),
        "test-panic-worker" => DIE_ON_TICK.with(|d| d.set(true)),
        _ => {}
    }
}

/// Called when a worker builds a generation from a configuration with `routes`.
pub fn on_install<'a>(mut routes: impl Iterator<Item = &'a str>) {
    if enabled() && routes.any(|r| r == "test-panic-install") {
        panic!("test panic while building a generation");
    }
}

/// Called on every worker tick.
pub fn worker_tick() {
    if DIE_ON_TICK.with(|d| d.replace(false)) {
        panic!("test panic on a worker's tick");
    }
}
