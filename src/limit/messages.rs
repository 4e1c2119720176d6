//! What workers and the global limiter thread say to each other, over bounded
//! crossbeam channels that neither side ever waits on from the request path.
//!
//! - A worker sends [`Demand`]s: "I spent this much (from leases, and without
//!   one), here is what I give back, and I want this many more tokens".
//! - The limiter answers each `Demand` that wants tokens with one [`Grant`] on
//!   that worker's own channel; the worker picks grants up with `try_recv` on its
//!   next rate-limited request or on its limit tick. When a worker gets less than
//!   it asked for while another holds a large lease, the limiter also sends that
//!   worker a recall (a `Grant` with `recall` set), so tokens do not sit on a worker whose
//!   traffic moved elsewhere.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::policy::PolicyId;

/// A worker's usage report and lease request for one key of one policy.
#[derive(Debug)]
pub struct Demand {
    pub worker: u16,
    /// The policy by identity: workers on different configurations may hold the
    /// same policy at different positions.
    pub policy: PolicyId,
    pub key: Box<[u8]>,
    /// Tokens asked for; 0 = only a report.
    pub want: u32,
    /// Tokens spent from leases since the last report.
    pub spent: u32,
    /// Tokens spent without a lease (provisional allowance) since the last report:
    /// the limiter takes them from the true bucket after the fact.
    pub unbacked: u32,
    /// Lease tokens handed back unspent (the lease expired).
    pub returned: u32,
}

/// The limiter's answer to a [`Demand`].
#[derive(Debug)]
pub struct Grant {
    pub policy: PolicyId,
    pub key: Box<[u8]>,
    /// Tokens the worker may spend, until `issued + LEASE_TTL`.
    pub tokens: u32,
    pub issued: Instant,
    /// Whole tokens left in the true bucket after this grant (for `RateLimit`).
    pub remaining: u32,
    /// How long from `issued` until the bucket may hold a whole token again (what
    /// the worker says in `Retry-After` once `remaining` is 0 and its lease is spent).
    pub retry_after: Duration,
    /// Not a grant but a recall: another worker is short while this one holds a
    /// large lease; hand back what is in hand (and ask again if still busy).
    pub recall: bool,
}

/// A worker's ends of the channels to the limiter thread. The control thread keeps
/// a copy, to hand to a worker it restarts.
#[derive(Clone)]
pub struct WorkerLink {
    pub worker: usize,
    pub workers: usize,
    pub demands: Sender<Demand>,
    pub grants: Receiver<Grant>,
}
