//! `portico reload`: the client side of `POST /config/reload` (and `promote`,
//! `rollback`), for scripts and operators. It reads the admin address and
//! `[admin] token_env` from the configuration file, the token from this process's
//! environment, and prints the gateway's answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::ControlAction;

/// One call to a running gateway's admin listener.
pub struct AdminCall {
    pub admin: SocketAddr,
    pub action: ControlAction,
    /// The bearer token, when the gateway wants one.
    pub token: Option<String>,
    /// Wait for the verdict of the canary (`?wait=1`).
    pub wait: bool,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

impl AdminCall {
    /// Sends the call; returns the answer's status and body, or why there is none.
    pub fn send(&self) -> Result<(u16, String), String> {
        let path = match self.action {
            ControlAction::Reload => "/config/reload",
            ControlAction::Promote => "/config/promote",
            ControlAction::Rollback => "/config/rollback",
        };
        let query = if self.wait { "?wait=1" } else { "" };
        let mut stream = TcpStream::connect_timeout(&self.admin, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach the admin listener at {}: {e}", self.admin))?;
        let _ = stream.set_read_timeout(Some(self.timeout));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut request = format!(
            "POST {path}{query} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\nconnection: close\r\n",
            self.admin
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("cannot send to {}: {e}", self.admin))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .map_err(|e| format!("no answer from {}: {e}", self.admin))?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer from {}", self.admin))?;
        Ok((status, body.to_string()))
    }
}
