//! The rate-limit stage on a worker: per policy, a bounded table of keys, each
//! either a thread-local [`TokenBucket`] (`scope = "worker"`) or a [`Lease`] from
//! the global limiter thread (`instance`, `fleet`).
//!
//! Nothing here blocks or locks. Grants from the limiter are picked up with
//! `try_recv` at the start of every rate-limited request and on the worker's
//! limit tick ([`LIMIT_TICK`]); reports go out with `try_send`, and a full channel
//! makes the key fall back to a local bucket of this worker's share (counted).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use crate::observe::metrics::{PolicyResult, PolicySeries};
use crate::observe::Counters;

use super::lease::{Lease, Report, Take};
use super::lease_sizing::LeaseSizing;
use super::lru_map::{LruMap, Slot};
use super::messages::{Demand, Grant, WorkerLink};
use super::policy::{RateLimitSettings, Scope};
use super::quota_headers::{Denial, LeastRemaining, Quota};
use super::request_key::{write_key, RequestFacts};
use super::token_bucket::{retry_after_secs, seconds_until_full, TokenBucket};

/// How often a worker picks up grants and hands back expired leases when no
/// request does it.
pub const LIMIT_TICK: Duration = Duration::from_millis(10);

pub struct LocalLimiter {
    state: RefCell<State>,
    link: Option<WorkerLink>,
}

struct State {
    /// One table per policy, in the order of `RateLimitSettings::policies`.
    tables: Vec<Table>,
    /// Lease sizing per policy (for leased tables).
    sizing: Vec<LeaseSizing>,
    /// The key being checked (reused).
    key: Vec<u8>,
    /// Leases in the order they expire.
    expiring: VecDeque<Expiry>,
}

enum Table {
    Buckets(LruMap<TokenBucket>),
    Leases(LruMap<Lease>),
}

struct Expiry {
    policy: usize,
    slot: Slot,
    at: Instant,
}

impl LocalLimiter {
    /// The tables for `settings`; `link` is `None` when no policy needs the limiter.
    pub fn new(settings: &RateLimitSettings, link: Option<WorkerLink>) -> LocalLimiter {
        let workers = link.as_ref().map_or(1, |l| l.workers);
        let tables = settings
            .policies
            .iter()
            .map(|p| match p.scope {
                Scope::Worker => Table::Buckets(LruMap::new(p.max_keys)),
                Scope::Instance | Scope::Fleet => Table::Leases(LruMap::new(p.max_keys)),
            })
            .collect();
        let sizing = settings
            .policies
            .iter()
            .map(|p| LeaseSizing::new(p, workers))
            .collect();
        LocalLimiter {
            state: RefCell::new(State {
                tables,
                sizing,
                key: Vec::with_capacity(64),
                expiring: VecDeque::new(),
            }),
            link,
        }
    }

    /// True when the worker talks to a limiter thread (and needs its limit tick).
    pub fn has_limiter(&self) -> bool {
        self.link.is_some()
    }

    /// Checks `policies` (indices into `settings.policies`, most specific first) in
    /// order. The first refusal answers; the policies after it spend nothing. Each
    /// policy passed is offered to `least` for the `RateLimit` fields. Each
    /// decision is counted in `decisions` (by policy index).
    pub fn check(
        &self,
        settings: &RateLimitSettings,
        policies: &[usize],
        facts: &RequestFacts<'_>,
        counters: &Counters,
        decisions: &[Rc<PolicySeries>],
        least: &mut LeastRemaining,
    ) -> Result<(), Denial> {
        if policies.is_empty() {
            return Ok(());
        }
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        self.receive_grants(st);
        let now = Instant::now();
        for &index in policies {
            let Some(policy) = settings.policies.get(index) else {
                continue;
            };
            if !write_key(policy, facts, &mut st.key) {
                continue;
            }
            let (Some(table), Some(sizing)) = (st.tables.get_mut(index), st.sizing.get(index))
            else {
                continue;
            };
            let take = match table {
                Table::Buckets(map) => {
                    let (_, bucket) = map.get_or_insert_with(&st.key, || {
                        TokenBucket::with_tokens(policy.burst, now)
                    });
                    if bucket.try_take(now, policy.rate, policy.burst) {
                        Take::Allowed {
                            remaining: bucket.tokens().max(0.0) as u64,
                            provisional: false,
                        }
                    } else {
                        Take::Denied {
                            wait: bucket.time_until(1.0, policy.rate),
                        }
                    }
                }
                Table::Leases(map) => {
                    let (_, lease) = map.get_or_insert_with(&st.key, || Lease::new(now, sizing));
                    let (take, ask) = lease.take(now, policy, sizing);
                    if lease.is_local() {
                        Counters::bump(&counters.ratelimit_local);
                    }
                    if ask {
                        if let Some(link) = &self.link {
                            let report = lease.report(now, sizing);
                            let demand = Demand {
                                worker: link.worker as u16,
                                policy: index as u16,
                                key: st.key.as_slice().into(),
                                want: report.want,
                                spent: report.spent,
                                unbacked: report.unbacked,
                                returned: report.returned,
                            };
                            Counters::bump(&counters.ratelimit_lease_requests);
                            if let Err(e) = link.demands.try_send(demand) {
                                if matches!(e, TrySendError::Full(_)) {
                                    Counters::bump(&counters.ratelimit_channel_full);
                                }
                                lease.report_failed(report, now);
                            }
                        }
                    }
                    take
                }
            };
            match take {
                Take::Allowed {
                    remaining,
                    provisional,
                } => {
                    Counters::bump(&counters.ratelimit_allowed);
                    if let Some(d) = decisions.get(index) {
                        d.record(PolicyResult::Allowed as usize);
                    }
                    if provisional {
                        Counters::bump(&counters.ratelimit_provisional);
                    }
                    least.offer(Quota {
                        policy: index,
                        remaining,
                        reset_secs: seconds_until_full(remaining as f64, policy.burst, policy.rate),
                    });
                }
                Take::Denied { wait } => {
                    Counters::bump(&counters.ratelimit_denied);
                    if let Some(d) = decisions.get(index) {
                        d.record(PolicyResult::Denied as usize);
                    }
                    return Err(Denial {
                        policy: index,
                        retry_after_secs: retry_after_secs(wait),
                    });
                }
            }
        }
        Ok(())
    }

    /// The limit tick: picks up grants, hands back what expired leases left, and
    /// publishes the eviction count.
    pub fn tick(&self, counters: &Counters) {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        self.receive_grants(st);
        let now = Instant::now();
        while st.expiring.front().is_some_and(|e| e.at <= now) {
            let Some(e) = st.expiring.pop_front() else {
                break;
            };
            let Some(Table::Leases(map)) = st.tables.get_mut(e.policy) else {
                continue;
            };
            let Some((key, lease)) = map.get_slot_mut(e.slot) else {
                continue; // evicted since
            };
            if !lease.expires_at(e.at) {
                continue; // a newer grant renewed it
            }
            if let Some(report) = lease.final_report() {
                self.send_report(e.policy, key, report, counters);
            }
        }
        let evictions = st
            .tables
            .iter()
            .map(|t| match t {
                Table::Buckets(m) => m.evictions(),
                Table::Leases(m) => m.evictions(),
            })
            .sum();
        counters.ratelimit_key_evictions.set(evictions);
    }

    fn receive_grants(&self, st: &mut State) {
        let Some(link) = &self.link else { return };
        while let Ok(grant) = link.grants.try_recv() {
            self.take_grant(st, grant);
        }
    }

    fn take_grant(&self, st: &mut State, grant: Grant) {
        let index = usize::from(grant.policy);
        let (Some(Table::Leases(map)), Some(sizing)) =
            (st.tables.get_mut(index), st.sizing.get(index))
        else {
            return;
        };
        if grant.recall {
            if let Some((_, lease)) = map.get_mut(&grant.key) {
                if let Some(report) = lease.recall() {
                    self.send_demand(index, &grant.key, report);
                }
            }
            return;
        }
        match map.get_mut(&grant.key) {
            Some((slot, lease)) => {
                let at = lease.on_grant(&grant, sizing);
                if grant.tokens > 0 {
                    st.expiring.push_back(Expiry {
                        policy: index,
                        slot,
                        at,
                    });
                }
            }
            None if grant.tokens > 0 => {
                // The key was evicted meanwhile: hand the tokens straight back.
                if let Some(link) = &self.link {
                    let _ = link.demands.try_send(Demand {
                        worker: link.worker as u16,
                        policy: grant.policy,
                        key: grant.key,
                        want: 0,
                        spent: 0,
                        unbacked: 0,
                        returned: grant.tokens,
                    });
                }
            }
            None => {}
        }
    }

    fn send_report(&self, policy: usize, key: &[u8], r: Report, counters: &Counters) {
        if !self.send_demand(policy, key, r) {
            // The limiter expires the lease on its own (see `GlobalLimiter`).
            Counters::bump(&counters.ratelimit_channel_full);
        }
    }

    /// Sends a report; `false` when it did not fit.
    fn send_demand(&self, policy: usize, key: &[u8], r: Report) -> bool {
        let Some(link) = &self.link else { return false };
        let demand = Demand {
            worker: link.worker as u16,
            policy: policy as u16,
            key: key.into(),
            want: r.want,
            spent: r.spent,
            unbacked: r.unbacked,
            returned: r.returned,
        };
        link.demands.try_send(demand).is_ok()
    }
}
