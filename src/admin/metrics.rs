//! `GET /metrics`: what the workers published on their last tick, the side
//! threads' counters and the endpoints' health, merged and rendered by
//! `crate::observe::metrics` in the format the scraper's `Accept` asks for.

use std::sync::Arc;

use crate::observe::metrics::{self, EndpointHealth, Format, PublishedMetrics, Scrape};
use crate::observe::PublishedCounters;
use crate::upstream::EndpointBoard;

/// The sources of one scrape.
pub struct Sources<'a> {
    pub metrics: &'a [Arc<PublishedMetrics>],
    pub workers: &'a [Arc<PublishedCounters>],
    pub side: &'a [Arc<PublishedCounters>],
    pub endpoints: &'a EndpointBoard,
}

/// The content type and body of `/metrics` for a request whose `Accept` is `accept`.
pub fn scrape(sources: &Sources<'_>, accept: Option<&str>) -> (&'static str, String) {
    let format = Format::negotiate(accept);
    let scrape = Scrape {
        workers: sources.metrics.iter().map(|m| m.load()).collect(),
        counters: PublishedCounters::totals(
            sources.workers.iter().chain(sources.side).map(|c| &**c),
        ),
        endpoints: sources
            .endpoints
            .report()
            .into_iter()
            .map(|r| EndpointHealth {
                upstream: r.upstream,
                endpoint: r.addr,
                healthy: r.healthy,
                ejected_workers: r.ejected_workers,
            })
            .collect(),
    };
    (format.content_type(), metrics::render(format, scrape))
}
