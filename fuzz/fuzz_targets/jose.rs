//! JOSE header and claims parsing of a compact JWS: the gateway's own checks
//! (crit, b64, zip, duplicate names, registered claim types) and jsonwebtoken's
//! header and claims decoding (`insecure_decode`: no signature check).
#![no_main]

use jsonwebtoken::dangerous::insecure_decode;
use jsonwebtoken::decode_header;
use libfuzzer_sys::fuzz_target;
use portico::auth::jose;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    portico::auth::ring_provider::install();
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let header_ok = jose::check_header(token).is_ok();
    let _ = jose::check_claims(token);
    if header_ok {
        let _ = decode_header(token);
    }
    if let Ok(data) = insecure_decode::<Map<String, Value>>(token) {
        let _ = jose::check_registered_claims(&data.claims);
    }
});
