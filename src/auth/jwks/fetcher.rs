//! The JWKS fetcher thread of one provider.
//!
//! Schedule: fetch at once (the prefetch; the gateway reports ready when it ends),
//! then again after the refresh interval — `jwks_refresh_s`, or the answer's
//! `max-age` when sooner, never sooner than `jwks_min_refetch_s`. An unknown-`kid`
//! request from a worker brings the next fetch forward, but never to less than
//! `jwks_min_refetch_s` after the previous fetch began: one fetch at a time, and a
//! flood of random `kid`s costs the identity provider at most one fetch per cooldown.
//! A failed fetch keeps the last good keys and retries with backoff (1 s doubling,
//! capped at the refresh interval).
//!
//! At shutdown [`JwksFetchers::stop`] wakes every fetcher out of its wait; one in
//! the middle of a fetch ends when the fetch does (bounded by `jwks_timeout_ms`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustls::ClientConfig;

use super::http_get::{self, tls_config};
use super::slot::KeySetSlot;
use crate::auth::keys;
use crate::auth::settings::{JwtProvider, RemoteJwks};

const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The running fetcher threads.
pub struct JwksFetchers {
    /// Dropped to stop them: their waits see the channel disconnect.
    stop: Sender<()>,
    threads: Vec<(String, JoinHandle<()>)>,
}

impl JwksFetchers {
    /// Tells every fetcher to stop; returns the threads (with their provider's
    /// name) to wait for.
    pub fn stop(self) -> Vec<(String, JoinHandle<()>)> {
        drop(self.stop);
        self.threads
    }
}

/// Starts one fetcher thread for each of `providers` with a `jwks_url` (a reload
/// starts them for the providers whose key set it does not carry over).
pub fn start<'a>(
    providers: impl IntoIterator<Item = &'a JwtProvider>,
) -> Result<JwksFetchers, String> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut threads = Vec::new();
    for p in providers {
        let Some(remote) = p.remote.clone() else {
            continue;
        };
        let slot = p.keys.clone();
        let name = p.name.clone();
        let tls = if remote.url.https {
            Some(tls_config(remote.ca.as_deref()).map_err(|e| format!("auth.jwt.{name}: {e}"))?)
        } else {
            None
        };
        let stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portico-jwks-{name}"))
            .spawn(move || run(&name, &remote, tls.as_ref(), &slot, &stopped))
            .map_err(|e| format!("cannot start the JWKS fetcher of {}: {e}", p.name))?;
        threads.push((p.name.clone(), thread));
    }
    Ok(JwksFetchers { stop, threads })
}

fn run(
    name: &str,
    remote: &RemoteJwks,
    tls: Option<&Arc<ClientConfig>>,
    slot: &KeySetSlot,
    stopped: &Receiver<()>,
) {
    let requests = slot.refetch_requests();
    let mut last_body: Option<Vec<u8>> = None;
    let mut retry = FIRST_RETRY;
    loop {
        let started = Instant::now();
        let wait = match fetch_once(name, remote, tls, slot, &mut last_body) {
            Ok(max_age) => {
                retry = FIRST_RETRY;
                max_age
                    .map_or(remote.refresh, |m| m.min(remote.refresh))
                    .max(remote.min_refetch)
            }
            Err(e) => {
                let keeping = if slot.current().1.is_empty() {
                    "no keys yet"
                } else {
                    "keeping the last good keys"
                };
                tracing::warn!(provider = name, url = %remote.url_text, "JWKS fetch failed: {e}; {keeping}; retry in {} s", retry.as_secs());
                let w = retry;
                retry = (retry * 2).min(remote.refresh);
                w
            }
        };
        slot.mark_ready();
        // Drain requests that arrived during the fetch: it already answered them.
        while requests.try_recv().is_ok() {}
        let mut next = started + wait;
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            crossbeam_channel::select! {
                recv(stopped) -> _ => return,
                recv(requests) -> request => match request {
                    Ok(()) => {
                    let earliest = started + remote.min_refetch;
                    if earliest < next {
                        next = earliest;
                        tracing::info!(
                            provider = name,
                            "unknown kid: JWKS refetch in {} ms",
                            earliest
                                .saturating_duration_since(Instant::now())
                                .as_millis()
                        );
                    }
                }
                    Err(_) => return,
                },
                default(next - now) => break,
            }
        }
    }
}

/// One fetch; publishes the set when it changed. Returns the answer's max-age.
fn fetch_once(
    name: &str,
    remote: &RemoteJwks,
    tls: Option<&Arc<ClientConfig>>,
    slot: &KeySetSlot,
    last_body: &mut Option<Vec<u8>>,
) -> Result<Option<Duration>, String> {
    let fetched = http_get::get(&remote.url, remote.timeout, tls)?;
    if last_body.as_deref() == Some(fetched.body.as_slice()) {
        return Ok(fetched.max_age);
    }
    let loaded = keys::from_jwks(&fetched.body, &remote.policy)?;
    for s in &loaded.skipped {
        tracing::warn!(provider = name, "JWKS {s}; skipped");
    }
    if loaded.set.is_empty() {
        return Err("the JWKS has no usable key".to_string());
    }
    let kids: Vec<&str> = loaded
        .set
        .keys
        .iter()
        .map(|k| k.kid.as_deref().unwrap_or("-"))
        .collect();
    tracing::info!(
        provider = name,
        "JWKS loaded: {} key(s): {}",
        kids.len(),
        kids.join(", ")
    );
    slot.publish(loaded.set);
    *last_body = Some(fetched.body);
    Ok(fetched.max_age)
}
