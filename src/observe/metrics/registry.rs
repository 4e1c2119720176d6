//! Where a worker's series live, keyed by identity: a route, upstream, auth
//! provider or rate-limit policy by its name, an endpoint by its upstream's name
//! and its address. A generation (one configuration snapshot) gets
//! [`GenerationMetrics`]: the same series, indexed by the snapshot's own
//! positions, so the request path finds its series by index and a reload can
//! neither mix two configurations' series nor restart the counts of what did not
//! change. Series no generation uses any more are dropped when published.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::series::{AuthSeries, EndpointSeries, PolicySeries, RouteSeries, UpstreamSeries};
use super::snapshot::{MetricsSnapshot, RouteCounts, WorkerGauges};

/// The names a configuration gives its series, in its own order.
#[derive(Default)]
pub struct SeriesNames<'a> {
    pub routes: Vec<&'a str>,
    pub upstreams: Vec<&'a str>,
    /// `(upstream name, address)` of every endpoint, indexed by the endpoint's
    /// number in the snapshot.
    pub endpoints: Vec<(&'a str, SocketAddr)>,
    pub auth_providers: Vec<&'a str>,
    pub policies: Vec<&'a str>,
}

/// One worker's series, by identity (lives as long as the worker).
#[derive(Default)]
pub struct WorkerMetrics {
    routes: SeriesMap<Arc<str>, RouteSeries>,
    /// Requests no route took (404, 405, refused heads, shed, redirected).
    unrouted: Rc<RouteSeries>,
    upstreams: SeriesMap<Arc<str>, UpstreamSeries>,
    endpoints: SeriesMap<(Arc<str>, SocketAddr), EndpointSeries>,
    auth: SeriesMap<Arc<str>, AuthSeries>,
    policies: SeriesMap<Arc<str>, PolicySeries>,
}

/// The series of one generation, by the snapshot's positions.
pub struct GenerationMetrics {
    routes: Vec<Rc<RouteSeries>>,
    unrouted: Rc<RouteSeries>,
    upstreams: Vec<Rc<UpstreamSeries>>,
    endpoints: Vec<Rc<EndpointSeries>>,
    auth: Vec<Rc<AuthSeries>>,
    policies: Vec<Rc<PolicySeries>>,
}

impl WorkerMetrics {
    /// The series of a configuration named `names`: existing ones where the name
    /// is known, new ones otherwise.
    pub fn generation(&self, names: &SeriesNames<'_>) -> GenerationMetrics {
        GenerationMetrics {
            routes: names
                .routes
                .iter()
                .map(|n| self.routes.get((*n).into()))
                .collect(),
            unrouted: self.unrouted.clone(),
            upstreams: names
                .upstreams
                .iter()
                .map(|n| self.upstreams.get((*n).into()))
                .collect(),
            endpoints: names
                .endpoints
                .iter()
                .map(|(u, addr)| self.endpoints.get(((*u).into(), *addr)))
                .collect(),
            auth: names
                .auth_providers
                .iter()
                .map(|n| self.auth.get((*n).into()))
                .collect(),
            policies: names
                .policies
                .iter()
                .map(|n| self.policies.get((*n).into()))
                .collect(),
        }
    }

    /// A copy of every series for the admin thread, with this worker's `gauges`;
    /// series that no generation uses any more are dropped first.
    pub fn snapshot(&self, gauges: WorkerGauges) -> MetricsSnapshot {
        let mut routes = vec![RouteCounts {
            route: Arc::from(""),
            codes: self.unrouted.snapshot_codes(),
            duration: self.unrouted.snapshot_duration(),
        }];
        routes.extend(self.routes.live().into_iter().map(|(name, s)| RouteCounts {
            route: name,
            codes: s.snapshot_codes(),
            duration: s.snapshot_duration(),
        }));
        MetricsSnapshot {
            routes,
            upstreams: map(self.upstreams.live(), |s| s.snapshot()),
            endpoints: self
                .endpoints
                .live()
                .into_iter()
                .map(|((upstream, addr), s)| (upstream, addr, s.snapshot()))
                .collect(),
            auth: map(self.auth.live(), |s| s.snapshot()),
            policies: map(self.policies.live(), |s| s.snapshot()),
            gauges,
        }
    }
}

fn map<K, T, V>(items: Vec<(K, Rc<T>)>, f: impl Fn(&T) -> V) -> Vec<(K, V)> {
    items.into_iter().map(|(k, s)| (k, f(&s))).collect()
}

impl GenerationMetrics {
    /// The series of route `index`, or of requests no route took.
    pub fn route(&self, index: Option<usize>) -> &RouteSeries {
        index
            .and_then(|i| self.routes.get(i))
            .unwrap_or(&self.unrouted)
    }

    /// The series of upstream `index` (`None` for an index out of range).
    pub fn upstream(&self, index: usize) -> Option<&UpstreamSeries> {
        self.upstreams.get(index).map(|s| &**s)
    }

    /// The series of endpoint number `id`.
    pub fn endpoint(&self, id: usize) -> Option<&EndpointSeries> {
        self.endpoints.get(id).map(|s| &**s)
    }

    /// The series of auth provider `index`.
    pub fn auth(&self, index: usize) -> Option<&AuthSeries> {
        self.auth.get(index).map(|s| &**s)
    }

    /// The series of every rate-limit policy, by the snapshot's policy index.
    pub fn policies(&self) -> &[Rc<PolicySeries>] {
        &self.policies
    }
}

/// Series by key, touched only when a generation is built and when published.
struct SeriesMap<K, T>(RefCell<HashMap<K, Rc<T>>>);

impl<K, T> Default for SeriesMap<K, T> {
    fn default() -> Self {
        SeriesMap(RefCell::new(HashMap::new()))
    }
}

impl<K: Eq + Hash + Clone + Ord, T: Default> SeriesMap<K, T> {
    fn get(&self, key: K) -> Rc<T> {
        self.0.borrow_mut().entry(key).or_default().clone()
    }

    /// The series some generation still holds, sorted by key; the others go.
    fn live(&self) -> Vec<(K, Rc<T>)> {
        let mut map = self.0.borrow_mut();
        map.retain(|_, s| Rc::strong_count(s) > 1);
        let mut out: Vec<(K, Rc<T>)> = map.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::series::MethodClass;
    use super::*;

    fn names<'a>(routes: &[&'a str]) -> SeriesNames<'a> {
        SeriesNames {
            routes: routes.to_vec(),
            ..SeriesNames::default()
        }
    }

    #[test]
    fn a_new_generation_keeps_the_series_of_unchanged_names() {
        let w = WorkerMetrics::default();
        let first = w.generation(&names(&["a", "b"]));
        first
            .route(Some(1))
            .record(MethodClass::Get, 200, Duration::ZERO);
        // Reordered, "a" gone, "c" new: "b" keeps its count wherever it now is.
        let second = w.generation(&names(&["c", "b"]));
        second
            .route(Some(1))
            .record(MethodClass::Get, 200, Duration::ZERO);
        second
            .route(None)
            .record(MethodClass::Get, 404, Duration::ZERO);
        let snap = w.snapshot(WorkerGauges::default());
        let b = snap.routes.iter().find(|r| &*r.route == "b").unwrap();
        assert_eq!(b.codes, vec![(MethodClass::Get, 200, 2)]);
        assert_eq!(snap.routes[0].codes, vec![(MethodClass::Get, 404, 1)]);
        // Once no generation holds "a", it is no longer published.
        drop(first);
        let snap = w.snapshot(WorkerGauges::default());
        let names: Vec<&str> = snap.routes.iter().map(|r| &*r.route).collect();
        assert_eq!(names, ["", "b", "c"]);
    }
}
