//! Test harness: real `portico` and `portico-load serve` processes on 127.0.0.1,
//! and a small raw HTTP/1.1 client that sends exact bytes and reads exact answers.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod json_upstream;
pub mod jwt;
pub mod load;
pub mod nginx;
pub mod peers;
pub mod pki;
pub mod procs;
pub mod redis;
pub mod tls_client;

pub use client::{Client, Response};
pub use load::{LoadPlan, LoadResult};
pub use procs::{free_port, Gateway, Upstream};
pub use redis::RedisServer;
