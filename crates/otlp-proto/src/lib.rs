//! The OTLP trace messages as prost types, generated from the official
//! opentelemetry-proto definitions (release 1.10.0, vendored in `proto/`): what
//! Portico's span exporter encodes and what its tests' OTLP receiver decodes.
//!
//! Module paths follow the protobuf packages, as prost-build expects:
//! `opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest`, ...
//! The code in `src/generated/` is prost-build's output, committed so that a build
//! needs no `protoc`; `tests/generated.rs` checks that it matches the `.proto`
//! files.

pub use prost::Message;

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                include!("generated/opentelemetry.proto.common.v1.rs");
            }
        }
        pub mod resource {
            pub mod v1 {
                include!("generated/opentelemetry.proto.resource.v1.rs");
            }
        }
        pub mod trace {
            pub mod v1 {
                include!("generated/opentelemetry.proto.trace.v1.rs");
            }
        }
        pub mod collector {
            pub mod trace {
                pub mod v1 {
                    include!("generated/opentelemetry.proto.collector.trace.v1.rs");
                }
            }
        }
    }
}

pub use opentelemetry::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
pub use opentelemetry::proto::resource::v1::Resource;
pub use opentelemetry::proto::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
