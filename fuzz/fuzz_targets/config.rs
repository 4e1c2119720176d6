//! The configuration loader (`portico::config::parse`) on arbitrary text: errors
//! with a position, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = portico::config::parse("fuzz.toml", text) {
        assert!(!errors.to_string().is_empty());
    }
});
