//! The route stage: which configured route a request belongs to.
//!
//! It runs before every configured stage (after only the https redirect and the
//! removal of client-sent identity fields), because every later stage is
//! configured per route. Per request, in this order:
//!
//! 1. [`normalize_path`] turns the request-target into the path that is both
//!    matched and forwarded (dot segments resolved, `//` merged, unreserved
//!    escapes decoded), or refuses it with a [`PathError`] (400).
//! 2. [`RouteTable::find`] picks the route by host, path, headers and method:
//!    [`RouteMatch::Found`], or 404 / 405 with its `Allow` value. An exact path
//!    may name whole segments (`/users/{id}`, [`PathPattern`]).
//! 3. [`upstream_path()`] applies the route's `strip_prefix` / `rewrite_prefix`.
//!
//! A [`RouteTable`] is built once per config snapshot from [`RouteSpec`]s,
//! which the config layer checks with [`RouteSpec::check`]. The operator's view
//! of all of this is `docs/routing.md`.

mod host;
mod key_map;
mod normalize;
mod path_index;
mod pattern;
mod spec;
mod table;
mod upstream_path;

pub use normalize::{normalize_path, NormalizedTarget, PathError};
pub use pattern::{path_segment, PathPattern};
pub use spec::{HeaderMatch, PathMatch, RouteSpec};
pub use table::{RouteMatch, RouteTable};
pub use upstream_path::upstream_path;
