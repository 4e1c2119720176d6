//! Endpoint choice: round robin, least request (power of two choices) and hashing,
//! over the endpoints that are available — healthy by the active health check and
//! not ejected by outlier detection — and, for a retry, not tried yet.
//!
//! State is per worker: round-robin cursors start at the worker's index so workers
//! do not march in step, and least-request compares this worker's in-flight counts.
//! When no endpoint of an upstream is available, the choice is made over all of
//! them (panic mode, as Envoy does): spreading over endpoints that may be failing
//! beats refusing every request.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;

use crate::config::{BalancePolicy, Endpoint, HashOn, Upstream};

use super::endpoint_health::EndpointHealth;

/// One worker's balancing state for every upstream and endpoint of a snapshot.
pub struct Balancer {
    /// Round-robin cursor per upstream.
    cursors: Vec<Cell<usize>>,
    /// Requests in flight per endpoint (`Endpoint::id`) on this worker.
    in_flight: Vec<Cell<u32>>,
    /// What this worker knows of each endpoint (`Endpoint::id`).
    health: Vec<Rc<EndpointHealth>>,
    rng: Cell<u64>,
}

impl Balancer {
    /// The balancer of worker `worker` for `upstreams` upstreams whose endpoints'
    /// states are `health`, indexed by `Endpoint::id`.
    pub fn new(upstreams: usize, health: Vec<Rc<EndpointHealth>>, worker: usize) -> Self {
        Balancer {
            cursors: (0..upstreams).map(|_| Cell::new(worker)).collect(),
            in_flight: (0..health.len()).map(|_| Cell::new(0)).collect(),
            health,
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            ),
        }
    }

    /// Picks the endpoint for one try. `hash` is the fingerprint of what to hash on
    /// for `balance = "hash"` ([`HashKey::fingerprint`]; unused otherwise); `tried`
    /// are the ids of endpoints this request already tried. In order of preference:
    /// available and not tried, available, not tried, any.
    pub fn pick<'u>(
        &self,
        index: usize,
        upstream: &'u Upstream,
        hash: u64,
        tried: &[usize],
    ) -> &'u Endpoint {
        let eps = &upstream.endpoints;
        let n = eps.len();
        if n == 1 {
            return &eps[0];
        }
        match &upstream.balance {
            BalancePolicy::RoundRobin => {
                let c = &self.cursors[index];
                let start = c.get();
                let mut best = (Rank::WORST, start % n);
                for k in 0..n {
                    let i = (start + k) % n;
                    let rank = self.rank(&eps[i], tried);
                    if rank < best.0 {
                        best = (rank, i);
                        if rank == Rank::BEST {
                            break;
                        }
                    }
                }
                c.set(best.1 + 1);
                &eps[best.1]
            }
            BalancePolicy::LeastRequest => {
                let (a, b) = self.two_random(n);
                if self.rank(&eps[a], tried) == Rank::BEST
                    && self.rank(&eps[b], tried) == Rank::BEST
                {
                    return self.less_loaded(&eps[a], &eps[b]);
                }
                // Some endpoint is out or tried: two choices among the best ranked.
                let best = eps
                    .iter()
                    .map(|e| self.rank(e, tried))
                    .min()
                    .unwrap_or(Rank::BEST);
                let candidates: Vec<&Endpoint> =
                    eps.iter().filter(|e| self.rank(e, tried) == best).collect();
                if candidates.len() == 1 {
                    return candidates[0];
                }
                let (a, b) = self.two_random(candidates.len());
                self.less_loaded(candidates[a], candidates[b])
            }
            BalancePolicy::Hash(_) => {
                // Rendezvous hashing: when an endpoint goes away only its keys move.
                let mut best = &eps[0];
                let mut best_key = (Rank::WORST, 0);
                for e in eps {
                    let key = (self.rank(e, tried), mix(hash ^ mix(e.addr_fingerprint())));
                    if key.0 < best_key.0 || (key.0 == best_key.0 && key.1 >= best_key.1) {
                        best_key = key;
                        best = e;
                    }
                }
                best
            }
        }
    }

    /// What this worker knows of endpoint `id`.
    pub fn health(&self, id: usize) -> Option<&EndpointHealth> {
        self.health.get(id).map(|h| &**h)
    }

    /// Every endpoint's state, in `Endpoint::id` order.
    pub fn endpoints(&self) -> impl Iterator<Item = &EndpointHealth> {
        self.health.iter().map(|h| &**h)
    }

    /// The endpoint may be chosen (healthy and not ejected).
    pub fn available(&self, id: usize) -> bool {
        self.health.get(id).is_none_or(|h| h.available())
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

    /// A pseudo-random number (xorshift64*, per worker; not for secrets).
    pub fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn rank(&self, e: &Endpoint, tried: &[usize]) -> Rank {
        let out = !self.available(e.id);
        Rank(u8::from(out) * 2 + u8::from(tried.contains(&e.id)))
    }

    /// Two different indices below `n` (`n` ≥ 2).
    fn two_random(&self, n: usize) -> (usize, usize) {
        let a = (self.random() % n as u64) as usize;
        let mut b = (self.random() % (n as u64 - 1)) as usize;
        if b >= a {
            b += 1;
        }
        (a, b)
    }

    fn less_loaded<'u>(&self, a: &'u Endpoint, b: &'u Endpoint) -> &'u Endpoint {
        let load = |e: &Endpoint| self.in_flight.get(e.id).map_or(0, Cell::get);
        if load(b) < load(a) {
            b
        } else {
            a
        }
    }
}

/// How much an endpoint is wanted for a try: lower is better (0: available and
/// not tried; 1: available, tried; 2: out, not tried; 3: out, tried).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank(u8);

impl Rank {
    const BEST: Rank = Rank(0);
    const WORST: Rank = Rank(4);
}

/// What a request hashes on.
pub enum HashKey<'a> {
    Ip(IpAddr),
    Bytes(&'a [u8]),
}

impl<'a> HashKey<'a> {
    /// What a request hashes on under `policy`, as [`Balancer::pick`]'s `hash`: the
    /// fingerprint of the `hash_on = "header:NAME"` field's value (`header` looks it
    /// up by lowercase name) or of the client address `ip` (also when the request
    /// lacks the field); 0 for the policies that do not hash.
    pub fn request_hash(
        policy: &BalancePolicy,
        ip: IpAddr,
        header: impl FnOnce(&[u8]) -> Option<&'a [u8]>,
    ) -> u64 {
        match policy {
            BalancePolicy::Hash(HashOn::Header(name)) => header(name.as_bytes())
                .map_or(HashKey::Ip(ip), HashKey::Bytes)
                .fingerprint(),
            BalancePolicy::Hash(HashOn::ClientIp) => HashKey::Ip(ip).fingerprint(),
            _ => 0,
        }
    }

    /// The 64-bit hash [`Balancer::pick`] takes.
    pub fn fingerprint(&self) -> u64 {
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
    use crate::config::{BreakerSettings, HashOn, RetryBudget};
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
                        text: crate::text::AddrText::new(addr),
                        authority: addr.to_string(),
                        key: crate::config::EndpointKey::new(addr, &addr.to_string(), None),
                    }
                })
                .collect(),
            balance,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            max_idle_per_endpoint: 1,
            pool_idle_timeout: Duration::from_secs(1),
            max_requests_per_connection: 1,
            tls: None,
            protocol: crate::config::UpstreamProtocol::Http1,
            max_concurrent_streams: 100,
            health_check: None,
            outlier: None,
            breakers: BreakerSettings {
                max_connections: 1024,
                max_pending: 1024,
                max_requests: 1024,
                max_retries: None,
            },
            retry_budget: RetryBudget::default(),
        }
    }

    fn balancer(u: &Upstream) -> Balancer {
        let health = u
            .endpoints
            .iter()
            .map(|e| Rc::new(EndpointHealth::new(&u.name, e.addr)))
            .collect();
        Balancer::new(1, health, 0)
    }

    fn picks(b: &Balancer, u: &Upstream, n: usize, tried: &[usize]) -> Vec<usize> {
        (0..n).map(|_| b.pick(0, u, 0, tried).id).collect()
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let u = upstream(BalancePolicy::RoundRobin, 3);
        let b = balancer(&u);
        assert_eq!(picks(&b, &u, 6, &[]), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn unavailable_and_tried_endpoints_are_skipped_but_all_out_means_all() {
        for policy in [
            BalancePolicy::RoundRobin,
            BalancePolicy::LeastRequest,
            BalancePolicy::Hash(HashOn::ClientIp),
        ] {
            let u = upstream(policy.clone(), 3);
            let b = balancer(&u);
            b.health(1).unwrap().set_healthy(false);
            for (i, id) in picks(&b, &u, 30, &[]).into_iter().enumerate() {
                assert_ne!(id, 1, "{policy:?} pick {i}");
            }
            // A retry goes to the available endpoint not tried yet.
            assert!(
                picks(&b, &u, 10, &[0]).iter().all(|&id| id == 2),
                "{policy:?}"
            );
            // Only tried endpoints left available: a tried one beats an unhealthy one.
            assert!(
                picks(&b, &u, 10, &[0, 2]).iter().all(|&id| id != 1),
                "{policy:?}"
            );
            // Panic mode: none available, all are used.
            b.health(0).unwrap().set_healthy(false);
            b.health(2).unwrap().set_healthy(false);
            let mut seen = picks(&b, &u, 60, &[]);
            seen.sort();
            seen.dedup();
            if !matches!(policy, BalancePolicy::Hash(_)) {
                assert_eq!(seen, vec![0, 1, 2], "{policy:?}");
            }
        }
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let u = upstream(BalancePolicy::LeastRequest, 2);
        let b = balancer(&u);
        for _ in 0..5 {
            b.started(0);
        }
        assert!(picks(&b, &u, 20, &[]).iter().all(|&id| id == 1));
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        let u = upstream(BalancePolicy::Hash(HashOn::ClientIp), 4);
        let b = balancer(&u);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let key = HashKey::Ip(ip).fingerprint();
        let first = b.pick(0, &u, key, &[]).id;
        for _ in 0..10 {
            assert_eq!(b.pick(0, &u, key, &[]).id, first);
        }
        let mut seen = [0; 4];
        for i in 0..400u32 {
            let key = HashKey::Bytes(&i.to_le_bytes()).fingerprint();
            seen[b.pick(0, &u, key, &[]).id] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    }
}
