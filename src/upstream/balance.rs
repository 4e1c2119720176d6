//! Endpoint choice: round robin, least request (power of two choices) and hashing.
//!
//! State is per worker: round-robin cursors start at the worker's index so workers
//! do not march in step, and least-request compares this worker's in-flight counts.

use std::cell::Cell;
use std::net::IpAddr;

use crate::config::{BalancePolicy, Endpoint, HashOn, Upstream};

/// One worker's balancing state for every upstream and endpoint of a snapshot.
pub struct Balancer {
    /// Round-robin cursor per upstream.
    cursors: Vec<Cell<usize>>,
    /// Requests in flight per endpoint (`Endpoint::id`) on this worker.
    in_flight: Vec<Cell<u32>>,
    rng: Cell<u64>,
}

impl Balancer {
    pub fn new(upstreams: usize, endpoints: usize, worker: usize) -> Self {
        Balancer {
            cursors: (0..upstreams).map(|_| Cell::new(worker)).collect(),
            in_flight: (0..endpoints).map(|_| Cell::new(0)).collect(),
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            ),
        }
    }

    /// Picks the endpoint for one request. `hash_key` is the value to hash on for
    /// `balance = "hash"` (already chosen by the caller: header value or client IP).
    pub fn pick<'u>(
        &self,
        index: usize,
        upstream: &'u Upstream,
        hash_key: HashKey<'_>,
    ) -> &'u Endpoint {
        let eps = &upstream.endpoints;
        let n = eps.len();
        if n == 1 {
            return &eps[0];
        }
        match &upstream.balance {
            BalancePolicy::RoundRobin => {
                let c = &self.cursors[index];
                let i = c.get() % n;
                c.set(i + 1);
                &eps[i]
            }
            BalancePolicy::LeastRequest => {
                let a = (self.next_random() % n as u64) as usize;
                let mut b = (self.next_random() % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                let load = |e: &Endpoint| self.in_flight.get(e.id).map_or(0, Cell::get);
                if load(&eps[b]) < load(&eps[a]) {
                    &eps[b]
                } else {
                    &eps[a]
                }
            }
            BalancePolicy::Hash(_) => {
                // Rendezvous hashing: when an endpoint goes away only its keys move.
                let key = hash_key.fingerprint();
                let mut best = &eps[0];
                let mut best_score = 0;
                for e in eps {
                    let score = mix(key ^ mix(e.addr_fingerprint()));
                    if score >= best_score {
                        best_score = score;
                        best = e;
                    }
                }
                best
            }
        }
    }

    pub fn started(&self, endpoint: usize) {
        if let Some(c) = self.in_flight.get(endpoint) {
            c.set(c.get() + 1);
        }
    }

    pub fn finished(&self, endpoint: usize) {
        if let Some(c) = self.in_flight.get(endpoint) {
            c.set(c.get().saturating_sub(1));
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What a request hashes on.
pub enum HashKey<'a> {
    Ip(IpAddr),
    Bytes(&'a [u8]),
}

impl<'a> HashKey<'a> {
    /// What a request hashes on under `policy`: with `hash_on = "header:NAME"` the
    /// request's value of NAME (`header` looks it up by lowercase name), else — and
    /// when the request has no such field — the client address `ip`.
    pub fn for_request(
        policy: &BalancePolicy,
        ip: IpAddr,
        header: impl FnOnce(&[u8]) -> Option<&'a [u8]>,
    ) -> Self {
        match policy {
            BalancePolicy::Hash(HashOn::Header(name)) => {
                header(name.as_bytes()).map_or(HashKey::Ip(ip), HashKey::Bytes)
            }
            _ => HashKey::Ip(ip),
        }
    }

    fn fingerprint(&self) -> u64 {
        match self {
            HashKey::Ip(IpAddr::V4(v4)) => fnv1a(&v4.octets()),
            HashKey::Ip(IpAddr::V6(v6)) => fnv1a(&v6.octets()),
            HashKey::Bytes(b) => fnv1a(b),
        }
    }
}

impl Endpoint {
    fn addr_fingerprint(&self) -> u64 {
        fnv1a(self.authority.as_bytes()) ^ u64::from(self.addr.port())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A finalizer (splitmix64) so nearby inputs spread over the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashOn;
    use std::time::Duration;

    fn upstream(balance: BalancePolicy, n: usize) -> Upstream {
        Upstream {
            name: "u".into(),
            endpoints: (0..n)
                .map(|i| {
                    let addr: std::net::SocketAddr =
                        format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
                    Endpoint {
                        id: i,
                        addr,
                        authority: addr.to_string(),
                        key: crate::config::EndpointKey::new(addr, &addr.to_string(), None),
                    }
                })
                .collect(),
            balance,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_idle_per_endpoint: 1,
            pool_idle_timeout: Duration::from_secs(1),
            max_requests_per_connection: 1,
            tls: None,
        }
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let u = upstream(BalancePolicy::RoundRobin, 3);
        let b = Balancer::new(1, 3, 0);
        let ids: Vec<usize> = (0..6)
            .map(|_| b.pick(0, &u, HashKey::Bytes(b"")).id)
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let u = upstream(BalancePolicy::LeastRequest, 2);
        let b = Balancer::new(1, 2, 0);
        for _ in 0..5 {
            b.started(0);
        }
        for _ in 0..20 {
            assert_eq!(b.pick(0, &u, HashKey::Bytes(b"")).id, 1);
        }
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        let u = upstream(BalancePolicy::Hash(HashOn::ClientIp), 4);
        let b = Balancer::new(1, 4, 0);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let first = b.pick(0, &u, HashKey::Ip(ip)).id;
        for _ in 0..10 {
            assert_eq!(b.pick(0, &u, HashKey::Ip(ip)).id, first);
        }
        let mut seen = [0; 4];
        for i in 0..400u32 {
            seen[b.pick(0, &u, HashKey::Bytes(&i.to_le_bytes())).id] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    }
}
