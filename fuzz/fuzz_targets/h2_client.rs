//! The gateway's HTTP/2 client to upstreams, receiving: whatever an endpoint sends
//! (frames cut anywhere, HPACK blocks, SETTINGS, flow control, GOAWAY, resets) to a
//! connection with three streams open must end as a response, a stream error or
//! a connection error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = portico::upstream::h2_feed_for_fuzzing(data);
});
