//! The fleet's true buckets, in Redis: one pipelined Lua call per sync tick takes
//! (or gives back) tokens for every active key at once.
//!
//! Only the global limiter thread uses this, with the `redis` crate's blocking API
//! and `[fleet] redis_timeout_ms` on connect, read and write. Any error drops the
//! connection; the limiter then follows `on_redis_failure` and probes every
//! [`RECONNECT_EVERY`] with a short timeout (the sync interval, at most the Redis
//! timeout), so a frozen Redis holds the limiter thread up for at most one Redis
//! timeout when it fails, and a few milliseconds per probe after that. Bucket state lives in a hash per key (`tokens`, `ts` in
//! Redis server microseconds, so instances with skewed clocks agree) that expires
//! once a full refill has passed without use.

use std::time::{Duration, Instant};

use redis::{Client, Connection, Script};

use super::policy::FleetSettings;

/// While Redis is unreachable, a reconnect is tried this often.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(200);
/// Keys per Lua call; a tick with more keys pipelines several calls.
const KEYS_PER_CALL: usize = 512;

/// Takes tokens from (positive `want`) or returns them to (negative) each bucket.
/// Per key: ARGV = rate (tokens/s), burst, want, ttl (ms). Returns per key
/// `{granted, remaining × 1000}`; `granted` is negative for a return.
const TAKE_TOKENS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[4 * i - 3]) / 1000000
  local burst = tonumber(ARGV[4 * i - 2])
  local want = tonumber(ARGV[4 * i - 1])
  local ttl = tonumber(ARGV[4 * i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  if now > ts and tokens < burst then
    tokens = math.min(burst, tokens + (now - ts) * rate)
  end
  if now > ts then ts = now end
  local granted = 0
  if want > 0 then
    granted = math.min(want, math.floor(tokens))
    if granted < 0 then granted = 0 end
    tokens = tokens - granted
  elseif want < 0 then
    granted = want
    tokens = math.min(burst, tokens - want)
  end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', ts))
  redis.call('PEXPIRE', key, ttl)
  out[i] = {granted, math.floor(tokens * 1000)}
end
return out
"#;

/// One key's part of a sync.
pub struct SyncItem {
    pub redis_key: Vec<u8>,
    pub rate: f64,
    pub burst: f64,
    pub want: i64,
}

/// Redis's answer for one key.
#[derive(Debug, Clone, Copy)]
pub struct SyncReply {
    /// Tokens taken (negative: given back).
    pub granted: i64,
    /// Tokens left in Redis's bucket.
    pub remaining: f64,
}

pub struct RedisBuckets {
    settings: FleetSettings,
    client: Option<Client>,
    conn: Option<Connection>,
    script: Script,
    next_attempt: Instant,
}

impl RedisBuckets {
    /// Does not connect yet: the first sync does.
    pub fn new(settings: &FleetSettings) -> RedisBuckets {
        let client = match Client::open(settings.redis.as_str()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("fleet: redis address {:?} is unusable: {e}", settings.redis);
                None
            }
        };
        RedisBuckets {
            settings: settings.clone(),
            client,
            conn: None,
            script: Script::new(TAKE_TOKENS),
            next_attempt: Instant::now(),
        }
    }

    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// True when a sync may be tried now (connected, or time for a reconnect).
    pub fn may_try(&self, now: Instant) -> bool {
        self.conn.is_some() || now >= self.next_attempt
    }

    /// The Redis key of `key` under policy `policy`.
    pub fn redis_key(&self, policy: &str, key: &[u8]) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.settings.key_prefix.len() + policy.len() + 1 + key.len());
        out.extend_from_slice(self.settings.key_prefix.as_bytes());
        out.extend_from_slice(policy.as_bytes());
        out.push(b':');
        out.extend_from_slice(key);
        out
    }

    /// Takes and returns tokens for all `items` in one round trip. On error the
    /// connection is dropped and the next attempt waits [`RECONNECT_EVERY`].
    pub fn sync(&mut self, items: &[SyncItem], now: Instant) -> Result<Vec<SyncReply>, String> {
        let result = self.try_sync(items);
        if result.is_err() {
            self.conn = None;
            self.next_attempt = now + RECONNECT_EVERY;
        }
        result
    }

    fn try_sync(&mut self, items: &[SyncItem]) -> Result<Vec<SyncReply>, String> {
        self.connect()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err("no redis connection".to_string());
        };
        if items.is_empty() {
            // Still prove the connection works (a reconnect, or a quiet tick).
            return redis::cmd("PING")
                .query::<String>(conn)
                .map(|_| Vec::new())
                .map_err(|e| e.to_string());
        }
        let mut pipe = redis::pipe();
        let mut invocations = Vec::new();
        for chunk in items.chunks(KEYS_PER_CALL) {
            let mut inv = self.script.prepare_invoke();
            for item in chunk {
                let ttl_ms = ((item.burst / item.rate) * 1000.0)
                    .ceil()
                    .clamp(0.0, 6.048e8) as u64
                    + 1000;
                inv.key(item.redis_key.as_slice())
                    .arg(item.rate)
                    .arg(item.burst)
                    .arg(item.want)
                    .arg(ttl_ms);
            }
            invocations.push(inv);
        }
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let replies: Vec<Vec<(i64, i64)>> = pipe.query(conn).map_err(|e| e.to_string())?;
        let flat: Vec<SyncReply> = replies
            .into_iter()
            .flatten()
            .map(|(granted, milli)| SyncReply {
                granted,
                remaining: milli as f64 / 1000.0,
            })
            .collect();
        if flat.len() != items.len() {
            return Err(format!(
                "redis answered for {} keys, asked for {}",
                flat.len(),
                items.len()
            ));
        }
        Ok(flat)
    }

    fn connect(&mut self) -> Result<(), String> {
        if self.conn.is_some() {
            return Ok(());
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| "the redis address is unusable".to_string())?;
        let timeout = self.settings.redis_timeout;
        let probe = self.settings.sync_interval.min(timeout);
        let set = |conn: &Connection, t: Duration| -> Result<(), String> {
            conn.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
            conn.set_write_timeout(Some(t)).map_err(|e| e.to_string())
        };
        let mut conn = client
            .get_connection_with_timeout(probe)
            .map_err(|e| e.to_string())?;
        set(&conn, probe)?;
        // Pipelined calls use EVALSHA: the script must be known to this server.
        self.script.load(&mut conn).map_err(|e| e.to_string())?;
        set(&conn, timeout)?;
        self.conn = Some(conn);
        Ok(())
    }
}
