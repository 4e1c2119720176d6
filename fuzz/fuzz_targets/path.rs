//! Path normalization under both `path_parameters` rules: the result is in normal
//! form (starts with '/', no empty, '.' or '..' segment, no ';', ASCII) and
//! normalizing it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::route::{normalize_path, PathParameters};

fuzz_target!(|data: &[u8]| {
    for params in [PathParameters::Reject, PathParameters::Strip] {
        let Ok(target) = normalize_path(data, params) else {
            continue;
        };
        let path = &target.path;
        assert!(path.starts_with('/') && path.is_ascii(), "{path:?}");
        assert!(!path.contains(';'), "{path:?}");
        for bad in ["//", "/./", "/../"] {
            assert!(!path.contains(bad), "{path:?}");
        }
        assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{path:?}");
        for again in [PathParameters::Reject, PathParameters::Strip] {
            let twice = normalize_path(path.as_bytes(), again).expect("normal form normalizes");
            assert_eq!(&twice.path, path);
        }
    }
});
