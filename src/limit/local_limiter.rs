//! The rate-limit stage on a worker: per policy, a bounded table of keys, each
//! either a thread-local [`TokenBucket`] (`scope = "worker"`) or a [`Lease`] from
//! the global limiter thread (`instance`, `fleet`).
//!
//! Two lifetimes meet here. A [`LocalLimiter`] belongs to one generation: it maps
//! the positions of its snapshot's policies to tables. The tables themselves, the
//! link to the limiter thread and the leases waiting to expire belong to the worker
//! ([`WorkerLimiter`]), and a table is found by its policy's identity
//! ([`PolicyId`]): a reload that leaves a policy unchanged hands the new generation
//! the very same buckets and leases, while a changed policy starts afresh. A table
//! lives as long as some generation on the worker uses it.
//!
//! Nothing here blocks or locks. Grants from the limiter are picked up with
//! `try_recv` at the start of every rate-limited request and on the worker's
//! limit tick ([`LIMIT_TICK`]); reports go out with `try_send`, and a full channel
//! makes the key fall back to a local bucket of this worker's share (counted).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use crate::observe::metrics::{PolicyResult, PolicySeries};
use crate::observe::Counters;

use super::lease::{Lease, Report, Take};
use super::lease_sizing::LeaseSizing;
use super::lru_map::{LruMap, Slot};
use super::messages::{Demand, Grant, WorkerLink};
use super::policy::{Policy, PolicyId, RateLimitSettings, Scope};
use super::quota_headers::{Denial, LeastRemaining, Quota};
use super::request_key::{write_key, RequestFacts};
use super::token_bucket::{retry_after_secs, seconds_until_full, TokenBucket};

/// How often a worker picks up grants and hands back expired leases when no
/// request does it.
pub const LIMIT_TICK: Duration = Duration::from_millis(10);

/// One generation's view of the worker's rate-limit tables.
pub struct LocalLimiter {
    /// The table of each policy, in the order of `RateLimitSettings::policies`.
    tables: Vec<Rc<PolicyTable>>,
    worker: Rc<WorkerLimiter>,
}

/// A worker's rate-limit state that outlives generations.
pub struct WorkerLimiter {
    /// The link to the limiter thread: absent until some configuration needs it.
    link: RefCell<Option<WorkerLink>>,
    /// Workers of the process (lease sizes are shares of a policy's burst).
    workers: usize,
    /// Every policy table some generation holds, by identity.
    tables: RefCell<HashMap<PolicyId, Weak<PolicyTable>>>,
    /// The key being checked (reused).
    key: RefCell<Vec<u8>>,
    /// Leases in the order they expire.
    expiring: RefCell<VecDeque<Expiry>>,
    /// Key evictions of tables no generation holds any more.
    evictions_gone: Rc<Cell<u64>>,
}

/// One policy's table on one worker.
struct PolicyTable {
    id: PolicyId,
    sizing: LeaseSizing,
    table: RefCell<Table>,
    /// Where its evictions go when the table is dropped.
    evictions_gone: Rc<Cell<u64>>,
}

enum Table {
    Buckets(LruMap<TokenBucket>),
    Leases(LruMap<Lease>),
}

struct Expiry {
    table: Weak<PolicyTable>,
    slot: Slot,
    at: Instant,
}

impl LocalLimiter {
    /// The tables of `settings`' policies: those the worker already holds for an
    /// unchanged policy, new ones for the others.
    pub fn new(settings: &RateLimitSettings, worker: &Rc<WorkerLimiter>) -> LocalLimiter {
        let tables = settings
            .policies
            .iter()
            .map(|p| worker.table_for(p))
            .collect();
        LocalLimiter {
            tables,
            worker: worker.clone(),
        }
    }

    /// True when the worker talks to a limiter thread (and needs its limit tick).
    pub fn has_limiter(&self) -> bool {
        self.worker.has_limiter()
    }

    /// The limit tick (see [`WorkerLimiter::tick`]).
    pub fn tick(&self, counters: &Counters) {
        self.worker.tick(counters);
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
        let worker = &*self.worker;
        worker.receive_grants();
        let now = Instant::now();
        let mut key = worker.key.borrow_mut();
        for &index in policies {
            let (Some(policy), Some(pt)) = (settings.policies.get(index), self.tables.get(index))
            else {
                continue;
            };
            if !write_key(policy, facts, &mut key) {
                continue;
            }
            let take = match &mut *pt.table.borrow_mut() {
                Table::Buckets(map) => {
                    let (_, bucket) = map
                        .get_or_insert_with(&key, || TokenBucket::with_tokens(policy.burst, now));
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
                    let (_, lease) = map.get_or_insert_with(&key, || Lease::new(now, &pt.sizing));
                    let (take, ask) = lease.take(now, policy, &pt.sizing);
                    if lease.is_local() {
                        Counters::bump(&counters.ratelimit_local);
                    }
                    if ask {
                        worker.ask(pt, &key, lease, now, counters);
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
}

impl WorkerLimiter {
    /// The state of one of `workers` workers; `link` is its link to the limiter
    /// thread, when there is one yet.
    pub fn new(link: Option<WorkerLink>, workers: usize) -> WorkerLimiter {
        WorkerLimiter {
            link: RefCell::new(link),
            workers: workers.max(1),
            tables: RefCell::new(HashMap::new()),
            key: RefCell::new(Vec::with_capacity(64)),
            expiring: RefCell::new(VecDeque::new()),
            evictions_gone: Rc::default(),
        }
    }

    /// True when the worker talks to a limiter thread.
    pub fn has_limiter(&self) -> bool {
        self.link.borrow().is_some()
    }

    /// Connects the worker to a limiter thread started after it (a reload brought
    /// the first policy that needs one). A link already there stays.
    pub fn connect(&self, link: WorkerLink) {
        let mut mine = self.link.borrow_mut();
        if mine.is_none() {
            *mine = Some(link);
        }
    }

    /// The table of `policy`: the one a generation already holds for it, or a new one.
    fn table_for(&self, policy: &Policy) -> Rc<PolicyTable> {
        let id = policy.id();
        let mut tables = self.tables.borrow_mut();
        if let Some(table) = tables.get(&id).and_then(Weak::upgrade) {
            return table;
        }
        let table = Rc::new(PolicyTable {
            id,
            sizing: LeaseSizing::new(policy, self.workers),
            table: RefCell::new(match policy.scope {
                Scope::Worker => Table::Buckets(LruMap::new(policy.max_keys)),
                Scope::Instance | Scope::Fleet => Table::Leases(LruMap::new(policy.max_keys)),
            }),
            evictions_gone: self.evictions_gone.clone(),
        });
        tables.insert(id, Rc::downgrade(&table));
        table
    }

    /// The limit tick: picks up grants, hands back what expired leases left, forgets
    /// tables no generation holds, and publishes the eviction count.
    pub fn tick(&self, counters: &Counters) {
        self.receive_grants();
        let now = Instant::now();
        loop {
            let Some(e) = self.pop_expired(now) else {
                break;
            };
            let Some(pt) = e.table.upgrade() else {
                continue; // no generation holds the policy any more
            };
            let mut table = pt.table.borrow_mut();
            let Table::Leases(map) = &mut *table else {
                continue;
            };
            let Some((key, lease)) = map.get_slot_mut(e.slot) else {
                continue; // evicted since
            };
            if !lease.expires_at(e.at) {
                continue; // a newer grant renewed it
            }
            if let Some(report) = lease.final_report() {
                if !self.send(pt.id, key, report) {
                    // The limiter expires the lease on its own (see `GlobalLimiter`).
                    Counters::bump(&counters.ratelimit_channel_full);
                }
            }
        }
        let mut tables = self.tables.borrow_mut();
        tables.retain(|_, t| t.strong_count() > 0);
        let live: u64 = tables
            .values()
            .filter_map(Weak::upgrade)
            .map(|t| t.evictions())
            .sum();
        counters
            .ratelimit_key_evictions
            .set(live + self.evictions_gone.get());
    }

    fn pop_expired(&self, now: Instant) -> Option<Expiry> {
        let mut expiring = self.expiring.borrow_mut();
        match expiring.front() {
            Some(e) if e.at <= now => expiring.pop_front(),
            _ => None,
        }
    }

    /// Asks the limiter for tokens for `key` (a report of what the lease did).
    fn ask(
        &self,
        pt: &PolicyTable,
        key: &[u8],
        lease: &mut Lease,
        now: Instant,
        counters: &Counters,
    ) {
        let link = self.link.borrow();
        let Some(link) = link.as_ref() else { return };
        let report = lease.report(now, &pt.sizing);
        Counters::bump(&counters.ratelimit_lease_requests);
        if let Err(e) = link.demands.try_send(demand(link, pt.id, key, report)) {
            if matches!(e, TrySendError::Full(_)) {
                Counters::bump(&counters.ratelimit_channel_full);
            }
            lease.report_failed(report, now);
        }
    }

    fn receive_grants(&self) {
        let link = self.link.borrow();
        let Some(link) = link.as_ref() else { return };
        while let Ok(grant) = link.grants.try_recv() {
            self.take_grant(grant);
        }
    }

    fn take_grant(&self, grant: Grant) {
        let table = self
            .tables
            .borrow()
            .get(&grant.policy)
            .and_then(Weak::upgrade);
        let Some(pt) = table else {
            // No generation holds the policy any more: hand the tokens straight back.
            if grant.tokens > 0 && !grant.recall {
                self.give_back(&grant);
            }
            return;
        };
        let mut table = pt.table.borrow_mut();
        let Table::Leases(map) = &mut *table else {
            return;
        };
        if grant.recall {
            if let Some((_, lease)) = map.get_mut(&grant.key) {
                if let Some(report) = lease.recall() {
                    self.send(pt.id, &grant.key, report);
                }
            }
            return;
        }
        match map.get_mut(&grant.key) {
            Some((slot, lease)) => {
                let at = lease.on_grant(&grant, &pt.sizing);
                if grant.tokens > 0 {
                    self.expiring.borrow_mut().push_back(Expiry {
                        table: Rc::downgrade(&pt),
                        slot,
                        at,
                    });
                }
            }
            // The key was evicted meanwhile: hand the tokens straight back.
            None if grant.tokens > 0 => self.give_back(&grant),
            None => {}
        }
    }

    fn give_back(&self, grant: &Grant) {
        let returned = Report {
            returned: grant.tokens,
            ..Report::default()
        };
        self.send(grant.policy, &grant.key, returned);
    }

    /// Sends a report; `false` when it did not fit (or there is no limiter).
    fn send(&self, policy: PolicyId, key: &[u8], r: Report) -> bool {
        let link = self.link.borrow();
        let Some(link) = link.as_ref() else {
            return false;
        };
        link.demands.try_send(demand(link, policy, key, r)).is_ok()
    }
}

fn demand(link: &WorkerLink, policy: PolicyId, key: &[u8], r: Report) -> Demand {
    Demand {
        worker: link.worker as u16,
        policy,
        key: key.into(),
        want: r.want,
        spent: r.spent,
        unbacked: r.unbacked,
        returned: r.returned,
    }
}

impl PolicyTable {
    fn evictions(&self) -> u64 {
        match &*self.table.borrow() {
            Table::Buckets(m) => m.evictions(),
            Table::Leases(m) => m.evictions(),
        }
    }
}

impl Drop for PolicyTable {
    fn drop(&mut self) {
        let gone = self.evictions();
        self.evictions_gone.set(self.evictions_gone.get() + gone);
    }
}
