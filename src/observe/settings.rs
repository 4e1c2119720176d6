//! What `[tracing]` and `[log] access_log_format` compile to (checked in
//! `crate::config`, documented in docs/configuration.md and docs/observability.md).

use std::time::Duration;

/// `[log] access_log_format`: how each access-log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// Space-separated fields, the request line quoted (the default).
    #[default]
    Text,
    /// One JSON object per line (docs/observability.md lists the fields).
    Json,
}

/// `[tracing]`: the gateway takes part in W3C trace contexts and, with an
/// `otlp_endpoint`, exports its spans.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingSettings {
    /// Share of new traces (requests without a valid `traceparent`) that are
    /// sampled, 0.0–1.0. A continued trace keeps its caller's decision.
    pub sample_ratio: f64,
    /// Where spans are POSTed (OTLP/HTTP, protobuf), when set.
    pub otlp: Option<OtlpEndpoint>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Spans waiting for the exporter, over all workers; past it spans are
    /// dropped and counted.
    pub queue_spans: usize,
    /// Most spans in one export request.
    pub batch_spans: usize,
    /// Longest a finished span waits before it is exported.
    pub export_interval: Duration,
    /// Connect, send and answer of one export request must be done within this.
    pub export_timeout: Duration,
}

/// An `http://host:port/path` OTLP/HTTP traces URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpEndpoint {
    /// Host as written (a name or an address; IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/` (`/v1/traces` when the URL had none).
    pub path: String,
}

impl OtlpEndpoint {
    /// Parses `otlp_endpoint`: `http://` only; a URL without a path (or `/`) gets
    /// the OTLP default `/v1/traces`. `Err` says what is wrong.
    pub fn parse(url: &str) -> Result<OtlpEndpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                "https is not supported for otlp_endpoint: export to a local collector over http://"
                    .to_string()
            } else {
                "otlp_endpoint must start with http://".to_string()
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port \"{p}\""))?,
                None if after.is_empty() => 80,
                None => return Err("bad host".to_string()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("bad port \"{p}\""))?,
                ),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || port == 0 || authority.contains('@') {
            return Err("otlp_endpoint needs a host and a port from 1 to 65535".to_string());
        }
        if path
            .bytes()
            .any(|b| !(0x21..=0x7e).contains(&b) || b == b'#')
        {
            return Err(
                "the path of otlp_endpoint must be printable ASCII without spaces or #".to_string(),
            );
        }
        let path = if path.is_empty() || path == "/" {
            "/v1/traces".to_string()
        } else {
            path.to_string()
        };
        Ok(OtlpEndpoint { host, port, path })
    }

    /// The `Host` field value: `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_endpoints() {
        let e = OtlpEndpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 4318, "/v1/traces")
        );
        let e = OtlpEndpoint::parse("http://collector/custom/traces").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/custom/traces"));
        assert_eq!(e.authority(), "collector:80");
        let e = OtlpEndpoint::parse("http://[::1]:4318/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority()),
            ("::1", "[::1]:4318".to_string())
        );
        for bad in [
            "https://c:4318",
            "c:4318",
            "http://:4318",
            "http://c:0",
            "http://c:x",
            "http://u@c:1",
            "http://c:1/a b",
        ] {
            assert!(OtlpEndpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
