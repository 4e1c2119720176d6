//! One part's call: exchange its request with the chosen endpoint (once more on a
//! fresh connection when a pooled one turns out closed, as the forwarder does), read
//! the answer whole under `max_part_bytes` (de-chunked as it arrives), parse it as
//! JSON and shape it. Dropping the future cancels the call: its connection is
//! closed, never pooled (only a fully read answer goes back to the pool).

use monoio::time::Instant;
use serde_json::Value;

use crate::config::{ComposePart, Endpoint, On4xx, Upstream};
use crate::downstream::BodySource;
use crate::http::{BodyFraming, ChunkedScanner};
use crate::upstream::{
    record_outcome, Balancer, Breaker, Exchanger, FailureSource, OutboundRequest, Outcome,
    UpstreamResponse,
};

use super::failure::{FailureKind, PartFailure};
use super::shape::{shape, ShapeError};

/// What one part's call needs: the part, where it goes, and its limits.
pub struct PartCall<'a> {
    pub part: &'a ComposePart,
    pub upstream: &'a Upstream,
    /// The upstream's circuit breakers on this worker.
    pub breaker: &'a Breaker,
    pub endpoint: &'a Endpoint,
    /// The request head (and any body bytes that came with the client's head).
    pub head: Vec<u8>,
    /// The part must be done by then: its `timeout_ms` or the route's deadline.
    pub deadline: Instant,
    /// What running out of time is: `Timeout` when `deadline` is the part's own,
    /// `Deadline` when it is the route's.
    pub expiry: FailureKind,
    pub max_bytes: u64,
    /// The merge is flat: the shaped answer must be an object.
    pub flat: bool,
}

/// The end of one part's call: its shaped answer or why it failed, how many
/// exchanges it took, and the status its upstream answered with (`None` when no
/// answer's head came).
pub struct PartOutcome {
    pub result: Result<Value, PartFailure>,
    pub attempts: u32,
    pub status: Option<u16>,
}

/// Calls one part, pulling its request body (if any) from `body`.
pub async fn call<B: BodySource>(
    exchanger: Exchanger<'_>,
    balancer: &Balancer,
    mut call: PartCall<'_>,
    mut body: B,
) -> PartOutcome {
    // In flight under the upstream's `max_requests` while it lives, as a forwarded
    // request is.
    let _admitted = match call.breaker.admit_request() {
        Ok(admitted) => admitted,
        Err(limit) => {
            return PartOutcome {
                result: Err(PartFailure::overflow(limit)),
                attempts: 0,
                status: None,
            }
        }
    };
    let _in_flight = Started::start(balancer, call.endpoint.id);
    let (mut attempts, mut status) = (0, None);
    let (deadline, expiry) = (call.deadline, call.expiry);
    let answer = exchange_and_read(
        exchanger,
        balancer,
        &mut call,
        &mut body,
        (&mut attempts, &mut status),
    );
    let result = match monoio::time::timeout_at(deadline, answer).await {
        Ok(Ok(bytes)) => parse(&bytes, call.part, call.flat),
        // The exchange's own deadline is this one.
        Ok(Err(failure)) if failure.source == Some(FailureSource::Timeout) => Err(expired(expiry)),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(expired(expiry)),
    };
    PartOutcome {
        result,
        attempts,
        status,
    }
}

/// The failure of a part that ran out of time (`Timeout` or `Deadline`).
pub fn expired(kind: FailureKind) -> PartFailure {
    match kind {
        FailureKind::Deadline => PartFailure {
            source: Some(FailureSource::Timeout),
            ..PartFailure::new(kind, "the route's deadline passed")
        },
        _ => PartFailure {
            source: Some(FailureSource::Timeout),
            ..PartFailure::new(kind, "upstream timed out")
        },
    }
}

/// Exchanges the request and returns the answer's payload bytes; counts the
/// exchanges in `attempts` and notes the answer's status in `status` as soon as
/// its head came (so a part cut off while its body is read still has it).
async fn exchange_and_read<B: BodySource>(
    exchanger: Exchanger<'_>,
    balancer: &Balancer,
    call: &mut PartCall<'_>,
    body: &mut B,
    (attempts, answered): (&mut u32, &mut Option<u16>),
) -> Result<Vec<u8>, PartFailure> {
    let is_head = call.part.method == "HEAD";
    let idempotent = matches!(
        call.part.method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    let mut response = loop {
        *attempts += 1;
        let request = OutboundRequest {
            upgrade: false,
            head: &mut call.head,
            is_head,
            idempotent,
            deadline: call.deadline,
            breaker: Some(call.breaker),
            started: monoio::time::Instant::now(),
        };
        let result = exchanger
            .exchange(call.upstream, call.endpoint, request, body)
            .await;
        // Outlier detection counts a part's try like a forwarded one.
        let outcome = match &result {
            Ok(response) => Outcome::of_status(response.status()),
            Err(e) => Outcome::of_failure(&e.source, e.is_stale_connection()),
        };
        record_outcome(
            balancer,
            call.upstream,
            call.endpoint,
            outcome,
            exchanger.counters,
        );
        match result {
            // An idle connection the upstream had already closed: once more, fresh.
            Err(e) if e.is_stale_connection() && e.replayable && *attempts == 1 => continue,
            Err(e) => return Err(PartFailure::exchange(e)),
            Ok(response) => break response,
        }
    };
    let status = response.status();
    *answered = Some(status);
    let accepted = (200..300).contains(&status)
        || ((400..500).contains(&status) && call.part.on_4xx == On4xx::Data);
    if !accepted {
        // The answer is not read: the connection closes with `response`.
        return Err(PartFailure::status(status));
    }
    let payload = read_payload(&mut response, call.max_bytes).await?;
    response.finish(exchanger.pools);
    Ok(payload)
}

/// Reads the answer body to its end, de-chunked, refusing more than `max` bytes.
async fn read_payload(response: &mut UpstreamResponse, max: u64) -> Result<Vec<u8>, PartFailure> {
    let too_large = || PartFailure::new(FailureKind::TooLarge, "upstream answer too large");
    let cut = || {
        PartFailure::new(
            FailureKind::Protocol,
            "upstream answer cut short or malformed",
        )
    };
    let framing = response.body_framing();
    if let BodyFraming::Length(n) = framing {
        if n > max {
            return Err(too_large());
        }
    }
    let mut payload = Payload {
        bytes: Vec::new(),
        chunked: (framing == BodyFraming::Chunked).then(ChunkedScanner::new),
    };
    let early = response.early_body().map_err(|_| cut())?;
    payload
        .append(&response.head_bytes()[early])
        .ok_or_else(cut)?;
    loop {
        if payload.bytes.len() as u64 > max {
            return Err(too_large());
        }
        match response.next_piece().await {
            Ok(Some(piece)) => {
                let appended = payload.append(&piece.buf[piece.range.clone()]);
                response.give_back(piece);
                appended.ok_or_else(cut)?;
            }
            Ok(None) => return Ok(payload.bytes),
            Err(_) => return Err(cut()),
        }
    }
}

/// An answer's payload as it is read.
struct Payload {
    bytes: Vec<u8>,
    /// De-chunks a chunked body (its framing was checked by the response already).
    chunked: Option<ChunkedScanner>,
}

impl Payload {
    fn append(&mut self, framed: &[u8]) -> Option<()> {
        match &mut self.chunked {
            Some(scanner) => {
                let bytes = &mut self.bytes;
                scanner
                    .scan_with(framed, |data| bytes.extend_from_slice(data))
                    .ok()?;
            }
            None => self.bytes.extend_from_slice(framed),
        }
        Some(())
    }
}

/// Parses the payload (empty: `null`) and shapes it.
fn parse(bytes: &[u8], part: &ComposePart, flat: bool) -> Result<Value, PartFailure> {
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .map_err(|_| PartFailure::new(FailureKind::NotJson, "upstream answer is not JSON"))?
    };
    let shaped =
        shape(value, &part.shape).map_err(|e| PartFailure::new(FailureKind::Shape, e.message()))?;
    if flat && !shaped.is_object() {
        return Err(PartFailure::new(
            FailureKind::Shape,
            ShapeError::NotAnObject.message(),
        ));
    }
    Ok(shaped)
}

/// Counts the call in the balancer's in-flight numbers for as long as it lives,
/// cancelled or not.
struct Started<'a> {
    balancer: &'a Balancer,
    endpoint: usize,
}

impl<'a> Started<'a> {
    fn start(balancer: &'a Balancer, endpoint: usize) -> Self {
        balancer.started(endpoint);
        Started { balancer, endpoint }
    }
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        self.balancer.finished(self.endpoint);
    }
}
