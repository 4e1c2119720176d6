//! The committed prost code in `src/generated/` is what prost-build makes of the
//! vendored `.proto` files. With `PORTICO_REGENERATE_OTLP=1` it is rewritten
//! instead of checked. Needs `protoc` (Debian: protobuf-compiler).

use std::path::{Path, PathBuf};

const FILES: [&str; 4] = [
    "opentelemetry.proto.common.v1.rs",
    "opentelemetry.proto.resource.v1.rs",
    "opentelemetry.proto.trace.v1.rs",
    "opentelemetry.proto.collector.trace.v1.rs",
];

#[test]
fn generated_code_matches_the_proto_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("portico-otlp-proto-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    prost_build::Config::new()
        .out_dir(&out)
        .compile_protos(
            &[root.join("proto/opentelemetry/proto/collector/trace/v1/trace_service.proto")],
            &[root.join("proto")],
        )
        .expect("prost-build ran (is protoc installed?)");
    let committed: PathBuf = root.join("src/generated");
    let regenerate = std::env::var_os("PORTICO_REGENERATE_OTLP").is_some();
    for file in FILES {
        let fresh = std::fs::read_to_string(out.join(file)).expect("generated file");
        let path = committed.join(file);
        if regenerate {
            std::fs::write(&path, &fresh).expect("write generated file");
            continue;
        }
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            old == fresh,
            "{} is stale: run PORTICO_REGENERATE_OTLP=1 cargo test -p portico-otlp-proto --test generated",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
