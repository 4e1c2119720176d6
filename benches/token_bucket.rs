//! Token-bucket micro benchmark: one `TokenBucket::try_take` (refill + take), the
//! arithmetic every rate-limited request does on its worker. Std only; prints
//! `name: N ns/op` (best of 15 runs).
//!
//!     cargo bench --bench token_bucket

use std::hint::black_box;
use std::time::{Duration, Instant};

use portico::limit::token_bucket::TokenBucket;

const OPS: u32 = 2_000_000;
const ROUNDS: usize = 15;

fn best_ns_per_op(mut f: impl FnMut(u32)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..OPS {
            f(i);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(OPS));
    }
    best
}

fn main() {
    let t0 = Instant::now();
    // Times advance by 1 µs per take, as requests arriving at 1 M/s would.
    let times: Vec<Instant> = (0..1024u64)
        .map(|i| t0 + Duration::from_micros(i))
        .collect();

    let mut admitting = TokenBucket::with_tokens(1e12, t0);
    let ns = best_ns_per_op(|i| {
        black_box(admitting.try_take(times[(i & 1023) as usize], 1_000.0, 1e12));
    });
    println!("token_bucket_take_admitted: {ns:.1} ns/op");

    let mut empty = TokenBucket::with_tokens(0.0, t0);
    let ns = best_ns_per_op(|i| {
        black_box(empty.try_take(times[(i & 1023) as usize], 0.001, 1.0));
    });
    println!("token_bucket_take_refused: {ns:.1} ns/op");

    let ns = best_ns_per_op(|i| {
        black_box(Instant::now());
        black_box(i);
    });
    println!("reference_instant_now: {ns:.1} ns/op");
}
