//! A gRPC answer made into the REST answer: a unary call's one length-prefixed
//! message rendered as JSON with the proto3 mapping (prost-reflect; `response_body`
//! renders one field of it), a server stream's messages as newline-delimited JSON
//! lines (`{"result": ...}`, and `{"error": ...}` last when the call fails after its
//! first message), and a non-OK `grpc-status` as the HTTP status Google's mapping
//! gives (google/rpc/code.proto) with a JSON body `{"code": N, "message": "...",
//! "details": []}` (the shape of google.rpc.Status).

use prost_reflect::{DynamicMessage, SerializeOptions, Value};

use super::binding::Binding;

/// An upstream answer that is not a well-formed unary gRPC response (answered
/// 502 by the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadResponse(pub String);

impl Binding {
    /// The JSON body for the gRPC response body `frames` (the DATA, concatenated)
    /// of a call that ended with status OK.
    pub fn response_json(&self, frames: &[u8]) -> Result<Vec<u8>, BadResponse> {
        let payload = single_message(frames)?;
        let mut out = Vec::with_capacity(payload.len() * 2 + 2);
        self.message_json(payload, &mut out)?;
        Ok(out)
    }

    /// One line of a server-streaming answer for the message `payload` (without
    /// its prefix): `{"result":MESSAGE}` and a newline, as grpc-gateway streams.
    pub fn stream_line(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), BadResponse> {
        out.extend_from_slice(b"{\"result\":");
        self.message_json(payload, out)?;
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// Appends the JSON of the response message `payload` (or of its
    /// `response_body` field) to `out`.
    fn message_json(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), BadResponse> {
        let message = DynamicMessage::decode(self.output.clone(), payload).map_err(|e| {
            BadResponse(format!(
                "upstream message is not a {}: {e}",
                self.output.full_name()
            ))
        })?;
        let options = SerializeOptions::new();
        let mut serializer = serde_json::Serializer::new(out);
        let written = match &self.response_body {
            None => message.serialize_with_options(&mut serializer, &options),
            Some(field) => match message.get_field(field).as_ref() {
                Value::Message(inner) => inner.serialize_with_options(&mut serializer, &options),
                _ => message.serialize_with_options(&mut serializer, &options),
            },
        };
        written.map_err(|e| BadResponse(format!("cannot render the answer as JSON: {e}")))
    }
}

/// The next whole message at the start of `frames` (a stream's DATA so far): its
/// payload's range and where the next frame starts; `Ok(None)` until it is whole.
/// A compressed message, or one over `max` bytes, is an error.
pub fn next_frame(
    frames: &[u8],
    max: usize,
) -> Result<Option<(std::ops::Range<usize>, usize)>, BadResponse> {
    let Some(head) = frames.first_chunk::<5>() else {
        return Ok(None);
    };
    if head[0] != 0 {
        return Err(BadResponse(
            "upstream sent a compressed message (none was offered)".to_string(),
        ));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(BadResponse(
            "upstream message is over max_message_bytes".to_string(),
        ));
    }
    Ok((frames.len() >= 5 + len).then_some((5..5 + len, 5 + len)))
}

/// The last line of a server-streaming answer that failed after it began:
/// `{"error":{"code":N,"message":"...","details":[]}}` and a newline.
pub fn stream_error_line(code: u32, message: &str) -> Vec<u8> {
    let status = serde_json::json!({ "code": code, "message": message, "details": [] });
    let mut out = serde_json::to_vec(&serde_json::json!({ "error": status })).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The payload of the one uncompressed message in `frames`.
fn single_message(frames: &[u8]) -> Result<&[u8], BadResponse> {
    let Some((head, rest)) = frames.split_first_chunk::<5>() else {
        return Err(BadResponse(
            "upstream sent no message for a unary call".to_string(),
        ));
    };
    if head[0] != 0 {
        return Err(BadResponse(
            "upstream sent a compressed message (none was offered)".to_string(),
        ));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Equal => Ok(rest),
        std::cmp::Ordering::Less => Err(BadResponse("upstream message cut short".to_string())),
        std::cmp::Ordering::Greater => Err(BadResponse(
            "upstream sent more than one message for a unary call".to_string(),
        )),
    }
}

/// The HTTP status for a gRPC status code, as Google's HTTP mapping gives it
/// (google/rpc/code.proto; the gRPC-JSON transcoders of Envoy and grpc-gateway
/// agree): OK 200, CANCELLED 499, UNKNOWN 500, INVALID_ARGUMENT 400,
/// DEADLINE_EXCEEDED 504, NOT_FOUND 404, ALREADY_EXISTS 409, PERMISSION_DENIED
/// 403, RESOURCE_EXHAUSTED 429, FAILED_PRECONDITION 400, ABORTED 409,
/// OUT_OF_RANGE 400, UNIMPLEMENTED 501, INTERNAL 500, UNAVAILABLE 503, DATA_LOSS
/// 500, UNAUTHENTICATED 401; a code outside 0–16 is 500.
pub fn http_status(grpc_code: u32) -> u16 {
    match grpc_code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The gRPC code for an HTTP status the gateway answers a transcoded call with
/// itself (its own errors on such a route speak the same JSON): 400 and 413
/// INVALID_ARGUMENT, 404 NOT_FOUND, 405 UNIMPLEMENTED, 502 and 503 UNAVAILABLE,
/// 504 DEADLINE_EXCEEDED, else INTERNAL.
pub fn grpc_code_for(http_status: u16) -> u32 {
    match http_status {
        400 | 413 => 3,
        404 => 5,
        405 => 12,
        502 | 503 => 14,
        504 => 4,
        _ => 13,
    }
}

/// A gRPC error as the JSON body the client gets:
/// `{"code":N,"message":"...","details":[]}` (`message` in words; a
/// `grpc-message` goes through [`decode_grpc_message`] first).
pub fn error_json(code: u32, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "code": code, "message": message, "details": [] });
    let mut out = serde_json::to_vec(&body).unwrap_or_default();
    out.push(b'\n');
    out
}

/// `grpc-message` decoded: `%XX` escapes of UTF-8 bytes (invalid sequences
/// replaced), per the gRPC HTTP/2 protocol.
pub fn decode_grpc_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_googles_mapping() {
        for (code, http) in [
            (0, 200),
            (1, 499),
            (2, 500),
            (3, 400),
            (4, 504),
            (5, 404),
            (6, 409),
            (7, 403),
            (8, 429),
            (9, 400),
            (10, 409),
            (11, 400),
            (12, 501),
            (13, 500),
            (14, 503),
            (15, 500),
            (16, 401),
            (99, 500),
        ] {
            assert_eq!(http_status(code), http, "code {code}");
        }
    }

    #[test]
    fn errors_render_as_status_json() {
        let body = error_json(5, &decode_grpc_message(b"user 7 not found: 100%25 sure"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 5);
        assert_eq!(v["message"], "user 7 not found: 100% sure");
        assert_eq!(v["details"], serde_json::json!([]));
    }

    #[test]
    fn stream_frames_split_as_they_complete() {
        let frames = [0, 0, 0, 0, 2, 8, 1, 0, 0, 0];
        assert_eq!(next_frame(&frames, 10).unwrap(), Some((5..7, 7)));
        assert_eq!(next_frame(&frames[7..], 10).unwrap(), None);
        assert!(next_frame(&[0, 0, 0, 0, 20], 10).is_err());
        assert!(next_frame(&[1, 0, 0, 0, 0], 10).is_err());
        let line = stream_error_line(8, "too many");
        assert_eq!(
            line,
            b"{\"error\":{\"code\":8,\"message\":\"too many\",\"details\":[]}}\n"
        );
    }

    #[test]
    fn one_message_exactly() {
        assert!(single_message(b"").is_err());
        assert_eq!(single_message(&[0, 0, 0, 0, 2, 8, 1]).unwrap(), &[8, 1]);
        assert!(single_message(&[0, 0, 0, 0, 3, 8, 1]).is_err());
        assert!(single_message(&[0, 0, 0, 0, 1, 8, 1]).is_err());
        assert!(single_message(&[1, 0, 0, 0, 2, 8, 1]).is_err());
        assert_eq!(single_message(&[0, 0, 0, 0, 0]).unwrap(), &[] as &[u8]);
    }
}
