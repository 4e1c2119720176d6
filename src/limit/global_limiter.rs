//! Stage 2: the global limiter thread. It owns the true bucket of every key of
//! every `instance` and `fleet` policy, takes usage reports and lease requests
//! from the workers, and answers with grants.
//!
//! - `instance`: the true bucket refills here, capped so that bucket + tokens
//!   leased out never exceed the burst; a grant takes whole tokens from it.
//! - `fleet`: the bucket here is a local pool filled from Redis ([`RedisBuckets`])
//!   once per `[fleet] sync_interval_ms` tick, sized to two ticks of demand; idle
//!   keys give their pool back. While Redis is unreachable the policy follows
//!   `on_redis_failure`: `open` grants whatever is asked, `closed` grants nothing,
//!   `instance` refills the pool here at the policy's rate, as `scope = "instance"`.
//!
//! Policies are known by identity ([`PolicyId`]), never by position: a reload hands
//! the thread the policies of every configuration some worker serves
//! ([`LimiterThread::set_policies`]); an unchanged policy keeps its keys' buckets,
//! a new one starts with full buckets, and one no configuration holds any more is
//! forgotten.
//!
//! The thread sleeps on its channels until a report or new policies arrive or its
//! tick is due, and ends when told to (after the workers) or when every worker has
//! dropped its end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender, TrySendError};

use crate::observe::{Counters, PublishedCounters};

use super::lease_sizing::{LeaseSizing, LEASE_TTL};
use super::lru_map::{LruMap, Slot};
use super::messages::{Demand, Grant, WorkerLink};
use super::policy::{FleetSettings, OnRedisFailure, Policy, PolicyId, RateLimitSettings, Scope};
use super::redis_buckets::{RedisBuckets, SyncItem};
use super::token_bucket::TokenBucket;

/// Reports waiting for the limiter, from all workers together.
const DEMAND_CHANNEL: usize = 16 * 1024;
/// Grants waiting for one worker.
const GRANT_CHANNEL: usize = 16 * 1024;
/// The tick when no policy is fleet-wide: publish counters, that is all.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// A fleet key with no demand this long gives its pool back and leaves the sync.
const FLEET_IDLE: Duration = Duration::from_secs(1);
/// Large leases of a key are recalled at most this often.
const RECALL_EVERY: Duration = Duration::from_millis(5);
/// The limiter forgets a worker's lease this long after it expired without a report.
const HELD_GRACE: Duration = Duration::from_secs(1);

/// The running limiter thread.
pub struct LimiterThread {
    join: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    updates: Sender<Vec<Arc<RateLimitSettings>>>,
}

impl LimiterThread {
    /// The policies of every configuration some worker serves now (the running
    /// one, and a canary's), the newest last: its `[fleet]` is the one used. Taken
    /// by the thread as soon as it looks at its channels, before later reports.
    pub fn set_policies(&self, settings: Vec<Arc<RateLimitSettings>>) {
        let _ = self.updates.send(settings);
    }

    /// Tells the thread to stop (it ends within one tick, or after the Redis call in
    /// progress, itself bounded by `redis_timeout_ms`) and returns it to wait for.
    /// Workers' links may outlive their threads (a runtime does not drop its
    /// unfinished tasks), so the thread is told, not left to notice.
    pub fn stop(self) -> JoinHandle<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.join
    }
}

pub struct GlobalLimiter {
    demands: Receiver<Demand>,
    updates: Receiver<Vec<Arc<RateLimitSettings>>>,
    grants: Vec<Sender<Grant>>,
    /// The instance and fleet policies, with their keys, by identity.
    policies: HashMap<PolicyId, PolicyState>,
    /// Fleet keys that take part in the sync.
    active: Vec<(PolicyId, Slot)>,
    redis: Option<RedisBuckets>,
    counters: Counters,
    published: Arc<PublishedCounters>,
    stop: Arc<AtomicBool>,
}

/// One policy and the limiter's state of its keys.
struct PolicyState {
    policy: Policy,
    table: LruMap<KeyState>,
}

/// The limiter's state for one key.
struct KeyState {
    /// `instance`: the true bucket. `fleet`: the local pool (no refill while Redis
    /// is up; debt before the first sync is allowed).
    bucket: TokenBucket,
    /// Tokens leased out to each worker and not yet reported spent or returned.
    held: Vec<Held>,
    /// Fleet bookkeeping.
    demand: u32,
    last_demand: Instant,
    redis_remaining: f64,
    in_sync: bool,
    /// When other workers' leases were last recalled.
    recalled: Option<Instant>,
}

#[derive(Clone, Copy, Default)]
struct Held {
    tokens: u32,
    until: Option<Instant>,
}

/// How a policy is enforced right now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Instance,
    Redis,
    Open,
    Closed,
}

impl GlobalLimiter {
    /// Starts the limiter thread when some policy needs it, with one link per
    /// worker; the thread publishes its counters into `published`.
    pub fn start(
        settings: Arc<RateLimitSettings>,
        workers: usize,
        published: Arc<PublishedCounters>,
    ) -> Result<Option<(LimiterThread, Vec<WorkerLink>)>, String> {
        if !settings.needs_limiter() {
            return Ok(None);
        }
        let (demand_tx, demand_rx) = bounded(DEMAND_CHANNEL);
        let (updates_tx, updates) = unbounded();
        let mut grant_txs = Vec::new();
        let mut links = Vec::new();
        for worker in 0..workers {
            let (tx, rx) = bounded(GRANT_CHANNEL);
            grant_txs.push(tx);
            links.push(WorkerLink {
                worker,
                workers,
                demands: demand_tx.clone(),
                grants: rx,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut limiter = GlobalLimiter {
            stop: stop.clone(),
            demands: demand_rx,
            updates,
            grants: grant_txs,
            policies: HashMap::new(),
            active: Vec::new(),
            redis: None,
            counters: Counters::resume(&published),
            published,
        };
        limiter.adopt(&[settings], Instant::now());
        let join = std::thread::Builder::new()
            .name("portico-limiter".into())
            .spawn(move || limiter.run())
            .map_err(|e| format!("cannot start the limiter thread: {e}"))?;
        Ok(Some((
            LimiterThread {
                join,
                stop,
                updates: updates_tx,
            },
            links,
        )))
    }

    /// Takes the policies of `settings` (the newest last): new ones start with
    /// fresh buckets, unchanged ones keep theirs, and those in none are forgotten.
    /// The newest `[fleet]` is used; a changed one reconnects.
    fn adopt(&mut self, settings: &[Arc<RateLimitSettings>], now: Instant) {
        let workers = self.grants.len();
        let mut keep = Vec::new();
        for p in settings.iter().flat_map(|s| &s.policies) {
            if p.scope == Scope::Worker {
                continue;
            }
            let id = p.id();
            keep.push(id);
            self.policies.entry(id).or_insert_with(|| {
                log_policy(p, workers);
                PolicyState {
                    policy: p.clone(),
                    table: LruMap::new(p.max_keys),
                }
            });
        }
        self.policies.retain(|id, _| keep.contains(id));
        self.active.retain(|(id, _)| keep.contains(id));
        let any_fleet = self
            .policies
            .values()
            .any(|p| p.policy.scope == Scope::Fleet);
        let fleet: Option<&FleetSettings> = settings.iter().rev().find_map(|s| s.fleet.as_ref());
        let same = match (&self.redis, fleet) {
            (Some(r), Some(f)) => r.settings() == f,
            _ => false,
        };
        if !same || !any_fleet {
            self.redis = match fleet {
                Some(f) if any_fleet => Some(RedisBuckets::new(f)),
                _ => None,
            };
            if self.redis.is_some() {
                // Connect now, so the first requests meet a ready Redis (or a logged failure).
                self.sync_fleet(now);
            }
        }
    }

    fn tick(&self) -> Duration {
        self.redis
            .as_ref()
            .map_or(IDLE_TICK, |r| r.settings().sync_interval)
    }

    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick();
        while !self.stop.load(Ordering::Relaxed) {
            let wait = next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(self.updates) -> settings => {
                    if let Ok(settings) = settings {
                        self.adopt(&settings, Instant::now());
                    }
                }
                recv(self.demands) -> d => {
                    let Ok(d) = d else { break };
                    self.on_demand(d, Instant::now());
                    while let Ok(d) = self.demands.try_recv() {
                        self.on_demand(d, Instant::now());
                    }
                }
                default(wait) => {}
            }
            let tick = self.tick();
            let now = Instant::now();
            if now >= next_tick {
                if self.redis.is_some() {
                    self.sync_fleet(now);
                }
                self.publish();
                next_tick = now + tick;
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let evictions = self.policies.values().map(|p| p.table.evictions()).sum();
        self.counters.limiter_key_evictions.set(evictions);
        self.counters.publish(&self.published);
    }

    fn mode(&self, scope: Scope) -> Mode {
        match (scope, &self.redis) {
            (Scope::Fleet, Some(r)) if r.is_connected() => Mode::Redis,
            (Scope::Fleet, Some(r)) => match r.settings().on_redis_failure {
                OnRedisFailure::Open => Mode::Open,
                OnRedisFailure::Closed => Mode::Closed,
                OnRedisFailure::Instance => Mode::Instance,
            },
            _ => Mode::Instance,
        }
    }

    /// Settles a worker's report and answers its request.
    fn on_demand(&mut self, d: Demand, now: Instant) {
        Counters::bump(&self.counters.limiter_demands);
        let Some(scope) = self.policies.get(&d.policy).map(|p| p.policy.scope) else {
            return; // no configuration in use holds the policy any more
        };
        let mode = self.mode(scope);
        let workers = self.grants.len();
        let tick = self.tick();
        let Some(PolicyState { policy, table }) = self.policies.get_mut(&d.policy) else {
            return;
        };
        let policy = &*policy;
        let sizing = LeaseSizing::new(policy, workers);
        let fresh_tokens = match mode {
            Mode::Instance if policy.scope == Scope::Instance => policy.burst,
            _ => 0.0,
        };
        let (slot, ks) = table.get_or_insert_with(&d.key, || KeyState {
            bucket: TokenBucket::with_tokens(fresh_tokens, now),
            held: vec![Held::default(); workers],
            demand: 0,
            last_demand: now,
            redis_remaining: policy.burst,
            in_sync: false,
            recalled: None,
        });
        let worker = usize::from(d.worker);
        ks.settle(worker, &d, now, policy);
        if d.want == 0 {
            return;
        }
        ks.demand = ks.demand.saturating_add(d.want);
        ks.last_demand = now;
        if policy.scope == Scope::Fleet && !ks.in_sync {
            ks.in_sync = true;
            self.active.push((d.policy, slot));
        }
        let (tokens, retry_after) = match mode {
            Mode::Instance => {
                let cap = policy.burst - f64::from(ks.held_total(now));
                ks.bucket.refill(now, policy.rate, cap);
                let want = d.want.min(sizing.grant_limit(ks.bucket.tokens()));
                let g = ks.bucket.take_up_to(want, now, policy.rate, cap);
                (g, ks.bucket.time_until(1.0, policy.rate))
            }
            Mode::Redis => {
                let want = d.want.min(sizing.grant_limit(ks.bucket.tokens()));
                let g = ks.bucket.take_up_to(want, now, 0.0, f64::MAX);
                // Tokens come with the next sync, if Redis has any by then.
                let redis_wait = Duration::from_secs_f64(
                    ((1.0 - ks.redis_remaining).max(0.0) / policy.rate).min(1e6),
                );
                (g, tick.max(redis_wait))
            }
            Mode::Open => (d.want, Duration::ZERO),
            Mode::Closed => (0, Duration::from_secs(1)),
        };
        let remaining = match mode {
            Mode::Redis => ks.bucket.tokens().max(0.0) + ks.redis_remaining,
            Mode::Open => policy.burst,
            _ => ks.bucket.tokens().max(0.0),
        };
        if mode != Mode::Open {
            ks.lease_out(worker, tokens, now);
        }
        let remaining = remaining.floor().clamp(0.0, u32::MAX as f64) as u32;
        if tokens < d.want && mode != Mode::Open {
            // Short: take back large leases other workers sit on (waiting until the
            // bucket is dry recalls too late to help the short worker).
            for (other, held) in ks.held.iter().enumerate() {
                let big = held.tokens > sizing.max_lease;
                let due = ks.recalled.is_none_or(|t| now >= t + RECALL_EVERY);
                if other != worker && big && due {
                    if let Some(to) = self.grants.get(other) {
                        let _ = to.try_send(Grant {
                            policy: d.policy,
                            key: d.key.clone(),
                            tokens: 0,
                            issued: now,
                            remaining,
                            retry_after,
                            recall: true,
                        });
                        Counters::bump(&self.counters.limiter_recalls);
                    }
                }
            }
            if ks.held.iter().any(|h| h.tokens > sizing.max_lease) {
                ks.recalled = Some(now);
            }
        }
        let grant = Grant {
            policy: d.policy,
            key: d.key,
            tokens,
            issued: now,
            remaining,
            retry_after,
            recall: false,
        };
        let Some(to) = self.grants.get(worker) else {
            return;
        };
        if let Err(TrySendError::Full(g) | TrySendError::Disconnected(g)) = to.try_send(grant) {
            // The worker will time the request out and decide locally meanwhile;
            // the tokens go back into the bucket.
            Counters::bump(&self.counters.limiter_grants_dropped);
            if mode != Mode::Open {
                ks.unlease(worker, g.tokens);
                ks.bucket.credit(f64::from(g.tokens), f64::MAX);
            }
        }
    }

    /// One sync tick: every active fleet key takes what two ticks of its demand
    /// need from Redis (or gives back what an idle key holds), in one round trip.
    fn sync_fleet(&mut self, now: Instant) {
        let Some(redis) = self.redis.as_mut() else {
            return;
        };
        if !redis.may_try(now) {
            return;
        }
        let was_up = redis.is_connected();
        let mut items = Vec::new();
        let mut slots = Vec::new();
        let mut still_active = Vec::with_capacity(self.active.len());
        for &(id, slot) in &self.active {
            let Some(PolicyState { policy, table }) = self.policies.get_mut(&id) else {
                continue;
            };
            let Some((key, ks)) = table.get_slot_mut(slot) else {
                continue; // evicted
            };
            let idle = now.saturating_duration_since(ks.last_demand) >= FLEET_IDLE;
            let pool = if was_up { ks.bucket.tokens() } else { 0.0 };
            let target =
                (2.0 * f64::from(ks.demand)).min(pool_cap(policy, redis.settings().sync_interval));
            let want = if idle {
                -(pool.max(0.0).floor())
            } else if pool < target {
                (target - pool).ceil()
            } else {
                0.0
            } as i64;
            ks.demand = 0;
            if idle && want == 0 && pool > -1.0 {
                ks.in_sync = false;
                continue;
            }
            still_active.push((id, slot));
            if want != 0 || !was_up {
                items.push(SyncItem {
                    redis_key: redis.redis_key(&policy.name, key),
                    rate: policy.rate,
                    burst: policy.burst,
                    want,
                });
                slots.push((id, slot));
            }
        }
        self.active = still_active;
        match redis.sync(&items, now) {
            Ok(replies) => {
                Counters::bump(&self.counters.fleet_syncs);
                if !was_up {
                    tracing::info!(
                        "fleet: redis at {} answers again; fleet limits are shared again",
                        redis.settings().redis
                    );
                    self.counters.fleet_redis_down.set(0);
                }
                for ((id, slot), reply) in slots.into_iter().zip(replies) {
                    let Some(p) = self.policies.get_mut(&id) else {
                        continue;
                    };
                    if let Some((_, ks)) = p.table.get_slot_mut(slot) {
                        if !was_up {
                            // What the instance-mode bucket held was never Redis's.
                            ks.bucket = TokenBucket::with_tokens(0.0, now);
                        }
                        ks.bucket.credit(reply.granted as f64, f64::MAX);
                        ks.redis_remaining = reply.remaining;
                    }
                }
            }
            Err(e) => {
                Counters::bump(&self.counters.fleet_redis_failures);
                if was_up || self.counters.fleet_redis_down.get() == 0 {
                    let mode = redis.settings().on_redis_failure;
                    tracing::warn!(
                        "fleet: redis at {} failed ({e}); fleet policies now run {} until it answers",
                        redis.settings().redis,
                        match mode {
                            OnRedisFailure::Open => "open (admitting everything)",
                            OnRedisFailure::Closed => "closed (refusing everything)",
                            OnRedisFailure::Instance => "per instance",
                        }
                    );
                    self.counters.fleet_redis_down.set(1);
                    if was_up {
                        self.start_instance_buckets(now);
                    }
                }
            }
        }
    }

    /// Redis just failed: each fleet key's pool becomes an instance bucket that
    /// refills from now on (keeping any debt).
    fn start_instance_buckets(&mut self, now: Instant) {
        for &(id, slot) in &self.active {
            if let Some(p) = self.policies.get_mut(&id) {
                if let Some((_, ks)) = p.table.get_slot_mut(slot) {
                    ks.bucket = TokenBucket::with_tokens(ks.bucket.tokens(), now);
                }
            }
        }
    }
}

/// Says at start-up what each policy enforces and what it may over-admit.
fn log_policy(p: &Policy, workers: usize) {
    let sizing = LeaseSizing::new(p, workers);
    let over = match p.scope {
        Scope::Worker => format!("each of the {workers} workers has its own bucket: up to {workers}x the limit per instance"),
        Scope::Instance => format!(
            "leases up to {} and provisional {} per worker: at most {} over per key at a time, repaid; each instance enforces the whole limit",
            sizing.max_lease, sizing.provisional, sizing.worst_case_over_admission()
        ),
        Scope::Fleet => format!(
            "leases up to {} and provisional {} per worker: at most {} over per key and instance at a time, repaid; one limit for all instances sharing the Redis",
            sizing.max_lease, sizing.provisional, sizing.worst_case_over_admission()
        ),
    };
    tracing::info!(
        "rate limit {:?}: scope {}, {} tokens/s, burst {}; {over}",
        p.name,
        p.scope.name(),
        p.rate,
        p.burst
    );
}

/// The most a fleet key's pool holds: four ticks of the full rate, at most a
/// quarter of the burst, at least one token.
fn pool_cap(policy: &Policy, tick: Duration) -> f64 {
    (policy.rate * 4.0 * tick.as_secs_f64())
        .min(policy.burst / 4.0)
        .max(1.0)
        .ceil()
}

impl KeyState {
    /// Applies a report: spending from leases and returns shrink what the worker
    /// holds (returns go back into the bucket); unbacked spending is taken now.
    fn settle(&mut self, worker: usize, d: &Demand, now: Instant, policy: &Policy) {
        let Some(held) = self.held.get_mut(worker) else {
            return;
        };
        if held.until.is_some_and(|t| now >= t) {
            *held = Held::default();
        }
        let spent = d.spent.min(held.tokens);
        held.tokens -= spent;
        let returned = d.returned.min(held.tokens);
        held.tokens -= returned;
        if returned > 0 {
            self.bucket.credit(f64::from(returned), policy.burst);
        }
        if d.unbacked > 0 {
            self.bucket.debit(f64::from(d.unbacked));
        }
    }

    fn lease_out(&mut self, worker: usize, tokens: u32, now: Instant) {
        if let Some(held) = self.held.get_mut(worker) {
            held.tokens = held.tokens.saturating_add(tokens);
            held.until = Some(now + LEASE_TTL + HELD_GRACE);
        }
    }

    fn unlease(&mut self, worker: usize, tokens: u32) {
        if let Some(held) = self.held.get_mut(worker) {
            held.tokens = held.tokens.saturating_sub(tokens);
        }
    }

    fn held_total(&mut self, now: Instant) -> u32 {
        let mut total = 0u32;
        for h in &mut self.held {
            if h.until.is_some_and(|t| now >= t) {
                *h = Held::default();
            }
            total = total.saturating_add(h.tokens);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn limiter(policy: &str) -> (LimiterThread, Vec<WorkerLink>, PolicyId) {
        let text = format!(
            r#"
[[route]]
name = "r"
path_prefix = "/"
respond = {{ status = 200 }}
rate_limits = ["p"]
[[rate_limit]]
name = "p"
key = "global"
{policy}
"#
        );
        let snap = parse("t.toml", &text).expect("config");
        let id = snap.rate_limits.policies[0].id();
        let (thread, links) = GlobalLimiter::start(snap.rate_limits.clone(), 2, Arc::default())
            .expect("start")
            .expect("a limiter for an instance policy");
        (thread, links, id)
    }

    fn demand(policy: PolicyId, worker: u16, want: u32, spent: u32) -> Demand {
        Demand {
            worker,
            policy,
            key: b"g".as_slice().into(),
            want,
            spent,
            unbacked: 0,
            returned: 0,
        }
    }

    fn next(link: &WorkerLink) -> Grant {
        link.grants
            .recv_timeout(Duration::from_secs(2))
            .expect("an answer")
    }

    #[test]
    fn grants_come_from_a_full_bucket_and_stop_when_it_is_empty() {
        let (thread, links, p) = limiter("rate = \"1/h\"\nburst = 10");
        links[0].demands.send(demand(p, 0, 100, 0)).expect("send");
        let g = next(&links[0]);
        assert_eq!(
            (g.tokens, g.remaining, g.recall),
            (2, 8, false),
            "at most max(max_lease, available / 2W) at once"
        );
        let mut total = g.tokens;
        let last = loop {
            links[0].demands.send(demand(p, 0, 100, 0)).expect("send");
            let g = next(&links[0]);
            if g.tokens == 0 {
                break g;
            }
            total += g.tokens;
        };
        assert_eq!(total, 10, "the whole burst, no more");
        assert_eq!(last.remaining, 0);
        assert!(
            last.retry_after > Duration::from_secs(3000),
            "one token per hour: {:?}",
            last.retry_after
        );
        thread.stop();
    }

    #[test]
    fn leased_tokens_cap_the_refill_and_large_leases_are_recalled() {
        // burst 8, W = 2: max_lease = 2, grants up to available / 4.
        let (thread, links, p) = limiter("rate = 1000\nburst = 8");
        links[0].demands.send(demand(p, 0, 8, 0)).expect("send");
        let g = next(&links[0]);
        assert_eq!(g.tokens, 2);
        links[0].demands.send(demand(p, 0, 8, 0)).expect("send");
        let held: u32 = g.tokens + next(&links[0]).tokens;
        assert_eq!(held, 4, "worker 0 holds 4 tokens it has not spent");
        std::thread::sleep(Duration::from_millis(50));
        // 50 ms at 1000/s would refill far past the burst: bucket + leases stay <= 8.
        links[1].demands.send(demand(p, 1, 100, 0)).expect("send");
        let g = next(&links[1]);
        assert!(g.tokens <= 2 && g.remaining <= 4 - g.tokens, "{g:?}");
        // Worker 1 drains the rest; then it is short while worker 0 sits on 4 > 2.
        let mut got = g.tokens;
        while got < 4 {
            links[1].demands.send(demand(p, 1, 100, 0)).expect("send");
            got += next(&links[1]).tokens;
        }
        links[1].demands.send(demand(p, 1, 100, 0)).expect("send");
        assert_eq!(next(&links[1]).tokens, 0);
        let recall = next(&links[0]);
        assert!(recall.recall, "{recall:?}");
        thread.stop();
    }
}
