//! Portico: a thread-per-core API gateway on io_uring.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; integration tests
//! and benches use the library directly.

pub mod route;
