//! Portico: a thread-per-core API gateway on io_uring.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; integration tests
//! and benches use the library directly. `docs/architecture.md` is the map.

pub mod admin;
pub mod auth;
pub mod compose;
pub mod config;
pub mod deadline;
pub mod doctor;
pub mod downstream;
pub mod http;
pub mod limit;
pub mod observe;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod server;
pub mod side_net;
pub mod text;
pub mod tls;
pub mod transform;
pub mod upstream;
