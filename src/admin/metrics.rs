//! `GET /metrics`: what the workers published on their last tick, the side
//! threads' counters and the endpoints' health, merged and rendered by
//! `crate::observe::metrics` in the format the scraper's `Accept` asks for.

use crate::observe::metrics::{self, EndpointHealth, Format, Scrape};
use crate::observe::PublishedCounters;

use super::Counters;

/// The content type and body of `/metrics` for a request whose `Accept` is `accept`.
pub(super) fn scrape(sources: &Counters<'_>, accept: Option<&str>) -> (&'static str, String) {
    let format = Format::negotiate(accept);
    let scrape = Scrape {
        workers: sources.metrics.iter().map(|m| m.load()).collect(),
        retired: sources
            .metrics
            .iter()
            .flat_map(|m| m.load_retired())
            .collect(),
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
