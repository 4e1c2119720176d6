//! TEMPORARY STUB: replaced by the route branch.
pub struct RouteSpec {
    pub name: String,
    pub host: Option<String>,
    pub path: PathMatch,
    pub methods: Option<Vec<String>>,
    pub headers: Vec<(String, HeaderMatch)>,
}
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}
pub enum HeaderMatch {
    Equals(Vec<u8>),
    Present,
}
pub struct RouteTable {
    n: usize,
}
impl RouteTable {
    pub fn new(routes: &[RouteSpec]) -> RouteTable {
        RouteTable { n: routes.len() }
    }
    pub fn find(
        &self,
        _host: Option<&[u8]>,
        _path: &[u8],
        _method: &[u8],
        _headers: &dyn HeaderLookup,
    ) -> RouteMatch {
        if self.n > 0 {
            RouteMatch::Found(0)
        } else {
            RouteMatch::NotFound
        }
    }
}
pub trait HeaderLookup {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]>;
}
pub enum RouteMatch {
    Found(usize),
    MethodNotAllowed { allow: String },
    NotFound,
}
pub struct NormalizedTarget {
    pub path: String,
    pub query: Option<String>,
}
#[derive(Debug)]
pub struct PathError;
impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad path")
    }
}
pub fn normalize_path(raw: &[u8]) -> Result<NormalizedTarget, PathError> {
    let s = std::str::from_utf8(raw).map_err(|_| PathError)?;
    let (p, q) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (s, None),
    };
    Ok(NormalizedTarget {
        path: p.to_string(),
        query: q,
    })
}
pub fn upstream_path(
    spec_prefix: Option<&str>,
    strip_prefix: bool,
    rewrite_prefix: Option<&str>,
    normalized_path: &str,
) -> String {
    let _ = (spec_prefix, strip_prefix, rewrite_prefix);
    normalized_path.to_string()
}
